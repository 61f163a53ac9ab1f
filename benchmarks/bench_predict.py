"""Batch prediction from a saved model, as a user's predict process runs it: xmc's default against PECOS's.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_predict.py --datasets eurlex57k,bibtex --write

bench_xr_linear.py times prediction inside the process that has just trained the model. A user's
``xmc predict`` / ``xmc serve`` process (or PECOS's ``XLinearModel.load(..., is_predict_only=True)``)
instead loads the model fresh, and that can change the figures: on one VM (2026-12-03) PECOS's
predict-only model predicted EURLEX57K in ~240 ms per 1,000 documents after training in the same
process but ~313 ms in a fresh one (a process that has trained has a grown heap, so glibc's
allocator serves the large per-call buffers without new page faults); on another (2026-12-04) the
two were 227 and 231 ms. Both protocols are kept.

Here each method is trained once in its own spawned process and saved; then every round starts
one fresh process per method (the order alternates between rounds, so neither always runs first
after the other's), which loads the model (timed), makes one untimed call over the test set and
times ``--calls`` more (their median). The predict processes get only the test matrix, so their
peak RSS is the test matrix + model + prediction. Reported: medians over the rounds, each round's
figure, ratios to PECOS, and P@1 / P@5 (xmc.metrics) to tie the models to the other tables.
Results are kept in ``--results-dir`` (``benchmarks/results/predict``, committed), one JSON file per
data set; ``--write`` rebuilds the ``bench_predict`` section of BENCHMARKS.md from them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import bench_xr_linear  # noqa: E402
import markdown_section  # noqa: E402
import measure  # noqa: E402
import peers  # noqa: E402

METHODS = ("xmc", "pecos")  # xmc: configs/xr-linear.json (the default); PECOS: its defaults


# --------------------------------------------------------------------------- in the children


def train_and_save_xmc(X_train, Y_train, X_test, *, out: str, threads: int = 2) -> dict:
    with open(os.path.join(_ROOT, bench_xr_linear.DEFAULT_XMC_CONFIGS[0])) as f:  # configs/xr-linear.json
        config = json.load(f)
    model, train_s = bench_xr_linear.train_xmc(X_train, Y_train, config=config, threads=threads)
    model.save(out)
    return {"train_s": train_s, "model_bytes": peers._path_bytes(out)}


def train_and_save_pecos(X_train, Y_train, X_test, *, out: str, threads: int = 2) -> dict:
    model, _, times = peers.train_pecos(X_train, Y_train, threads=threads)
    model.save(out)
    return {"train_s": times[3] - times[0], "model_bytes": peers._path_bytes(out)}


def _time_calls(load_s: float, call, calls: int, topk: int) -> dict:
    t = time.perf_counter()
    scores = call()
    first_s = time.perf_counter() - t
    return {"scores": peers._keep_topk(sp.csr_matrix(scores), topk), "load_s": load_s, "first_call_s": first_s,
            "predict_s": peers.median_call_seconds(call, calls), "predict_calls": calls}


def predict_saved_xmc(X_train, Y_train, X_test, *, model: str, calls: int, topk: int = 10, beam: int = 10,
                      threads: int = 2) -> dict:
    from xmc.models.xr_linear import XRLinear

    X_test = peers._csr32(X_test)
    t = time.perf_counter()
    loaded = XRLinear.load(model)
    load_s = time.perf_counter() - t
    loaded.config.n_threads = threads
    return _time_calls(load_s, lambda: loaded.predict(X_test, topk=topk, beam_size=beam), calls, topk)


def predict_saved_pecos(X_train, Y_train, X_test, *, model: str, calls: int, topk: int = 10, beam: int = 10,
                        threads: int = 2) -> dict:
    from pecos.xmc.xlinear.model import XLinearModel

    X_test = peers._csr32(X_test)
    t = time.perf_counter()
    loaded = XLinearModel.load(model, is_predict_only=True)
    load_s = time.perf_counter() - t
    return _time_calls(load_s, lambda: loaded.predict(X_test, beam_size=beam, only_topk=topk, threads=threads),
                       calls, topk)


# --------------------------------------------------------------------------- the run


def _run(fn: str, inputs: str, args, **kwargs) -> dict:
    res = measure.run_in_subprocess(f"bench_predict:{fn}", inputs, timeout=args.timeout, **kwargs)
    if "error" in res:
        raise SystemExit(f"{fn} failed: {res['error']}\n{res.get('traceback', '')}")
    return res


def run_dataset(name: str, args) -> dict:
    X_train, Y_train, X_test, Y_test = bench_xr_linear.load_dataset(name, args.cache_dir)
    started = time.time()
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[dict]] = {m: [] for m in METHODS}
    trained = {}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        train_inputs = measure.save_inputs(os.path.join(tmp, "train.npz"), X_train, Y_train, X_test[:1])
        # The predict processes load the test matrix only (empty training matrices of the same widths).
        predict_inputs = measure.save_inputs(os.path.join(tmp, "test.npz"), sp.csr_matrix((0, X_train.shape[1])),
                                             sp.csr_matrix((0, Y_train.shape[1])), X_test)
        for m in METHODS:
            print(f"[{name}] training {m} ...", flush=True)
            res = _run(f"train_and_save_{m}", train_inputs, args, out=os.path.join(tmp, m), threads=args.threads)
            trained[m] = {"train_s": res["train_s"], "model_bytes": res["model_bytes"]}
        for r in range(args.rounds):
            for m in (METHODS if r % 2 == 0 else METHODS[::-1]):
                res = _run(f"predict_saved_{m}", predict_inputs, args, model=os.path.join(tmp, m), calls=args.calls,
                           topk=args.topk, beam=args.beam, threads=args.threads)
                res.update(bench_xr_linear._metrics(res.pop("scores"), Y_test, Y_train))
                res["ms_per_1k"] = res["predict_s"] / X_test.shape[0] * 1e6
                res["first_call_ms_per_1k"] = res["first_call_s"] / X_test.shape[0] * 1e6
                rounds[m].append({k: v for k, v in res.items() if isinstance(v, (int, float))})
                print(f"[{name}] round {r + 1}/{args.rounds} {m}: {res['ms_per_1k']:.0f} ms / 1k docs, "
                      f"load {res['load_s']:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    rows = []
    for m in METHODS:
        runs = rounds[m]
        row = {"method": m, **trained[m], "rounds": runs}
        for key in ("ms_per_1k", "first_call_ms_per_1k", "load_s", "peak_rss_mb", "P@1", "P@5", "PSP@5"):
            row[key] = float(np.median([x[key] for x in runs]))
        rows.append(row)
    return {"dataset": name, "train_docs": X_train.shape[0], "test_docs": X_test.shape[0], "labels": Y_train.shape[1],
            "date": datetime.date.today().isoformat(), "started_utc": time.strftime("%H:%M", time.gmtime(started)),
            "load_before": load_before, "load_after": os.getloadavg()[0], "rounds": args.rounds, "calls": args.calls,
            "threads": args.threads, "machine": bench_xr_linear.machine(), "command": args.command, "rows": rows}


# --------------------------------------------------------------------------- the report


def dataset_table(result: dict) -> list[str]:
    ref = next(r for r in result["rows"] if r["method"] == "pecos")

    def ratio(r, key):
        return f"{r[key] / ref[key]:.2f}x"

    out = [
        f"### {result['dataset']}",
        "",
        f"Train {result['train_docs']:,}, test {result['test_docs']:,}, {result['labels']:,} labels. "
        f"{result['date']}, {result['started_utc']} UTC; {result['machine']}; load average {result['load_before']:.1f} "
        f"before, {result['load_after']:.1f} after. {result['rounds']} rounds of fresh processes, each the median of "
        f"{result['calls']} batch calls after an untimed one; {result['threads']} threads, top-10, beam 10. "
        f"Command: `{result['command']}`",
        "",
        "| method | P@1 | P@5 | PSP@5 | predict (ms / 1k docs) | per round | predict / PECOS | first call (ms / 1k) "
        "| load (s) | peak RSS (MB) | RSS / PECOS | model (MB) | train (s) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        per_round = " / ".join(f"{x['ms_per_1k']:.0f}" for x in r["rounds"])
        out.append(
            f"| {r['method']} | {100 * r['P@1']:.2f} | {100 * r['P@5']:.2f} | {100 * r['PSP@5']:.2f} "
            f"| {r['ms_per_1k']:.0f} | {per_round} | {ratio(r, 'ms_per_1k')} | {r['first_call_ms_per_1k']:.0f} "
            f"| {r['load_s']:.2f} | {r['peak_rss_mb']:.0f} | {ratio(r, 'peak_rss_mb')} | {r['model_bytes'] / 2**20:.1f} "
            f"| {r['train_s']:.1f} |")
    return out + [""]


def render(results_dir: str) -> str:
    files = sorted(f for f in os.listdir(results_dir) if f.endswith(".json"))
    lines = [
        "`benchmarks/bench_predict.py`: each method's default model (xmc: `configs/xr-linear.json`; PECOS: "
        "`Indexer.gen` and `XLinearModel.train` defaults, loaded `is_predict_only=True`) is trained once, saved, "
        "and timed in fresh processes that load it, as `xmc predict` and a PECOS predict script do. "
        "Rounds alternate the order of the methods; the figures are medians over rounds. Peak RSS is the "
        "predict process's (test matrix + model + prediction). The first call includes what a process pays "
        "once (xmc: numba loading its cached machine code).",
        "",
    ]
    for f in files:
        with open(os.path.join(results_dir, f)) as fh:
            lines += dataset_table(json.load(fh))
    return "\n".join(lines).rstrip("\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="eurlex57k,bibtex", help="comma-separated: eurlex57k, bibtex, synthetic-N")
    ap.add_argument("--rounds", type=int, default=3, help="fresh predict processes per method")
    ap.add_argument("--calls", type=int, default=peers.N_PREDICT_CALLS, help="timed batch calls per process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=3600.0, help="per process, seconds")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--results-dir", default=os.path.join(_HERE, "results", "predict"),
                    help="where each data set's JSON is kept (committed, so that --write can rebuild every table)")
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        ap.error("--rounds and --calls must be at least 1")
    args.command = markdown_section.invocation()
    os.makedirs(args.results_dir, exist_ok=True)
    for name in [d for d in args.datasets.split(",") if d]:
        result = run_dataset(name, args)
        with open(os.path.join(args.results_dir, f"{name}.json"), "w") as f:
            json.dump(result, f, indent=1)
        print("\n".join(dataset_table(result)), flush=True)
    if args.write:
        body = markdown_section.keep_missing_subsections(render(args.results_dir), markdown_section.read_section("predict"))
        markdown_section.write_section("predict", body, "XR-Linear: batch prediction from a saved model (fresh processes)")


if __name__ == "__main__":
    main()
