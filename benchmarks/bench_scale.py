"""XR-Linear at extreme scale: xmc against PECOS on generated sparse problems (100k - 3M labels).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py --labels 100000 --write
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py --labels 1000000 --write

The data comes from ``xmc.datasets.sparse.make_sparse_problem`` (seeded: the same command gives
the same matrices): per ``--labels`` size a preset of training documents and features
(100k labels: 200k documents, 1M features; 1M: 1M documents, 2M features; 3M: 3M documents,
4M features), ``--test-docs`` held-out documents from the same distribution.

Each method runs in its own fresh ``spawn``-ed process (``measure.run_in_subprocess``) on the
same ``.npz`` inputs, one after the other: xmc is ``XRLinear(XRLinearConfig()).fit_matrix`` (the
default config; ``bench_xr_linear.fit_predict_xmc``), PECOS is its README pipeline with defaults
(``peers.fit_predict_pecos``: PIFA -> ``Indexer.gen`` -> ``XLinearModel.train``). Reported: train
wall time, one batch prediction over the test set (top-10, beam 10, ``--threads`` threads, on the
saved and reloaded model: PECOS' predict-only fast path), per-document ms, peak RSS of the process
(Linux VmHWM, inputs included), model size on disk, P@1/P@5 (xmc.metrics), ratios to PECOS.

Results are kept as JSON in ``--results-dir`` (one file per size); ``--write`` rebuilds the
``bench_scale`` section of BENCHMARKS.md from all of them, so sizes may be run by separate commands.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import markdown_section  # noqa: E402
import measure  # noqa: E402
from bench_xr_linear import _fmt_ratio, machine  # noqa: E402

# labels -> (training documents, features): the sizes for 100k and 1M
PRESETS = {100_000: (200_000, 1_000_000), 1_000_000: (1_000_000, 2_000_000), 3_000_000: (3_000_000, 4_000_000)}
METHODS = {"xmc": "bench_xr_linear:fit_predict_xmc", "pecos": "pecos"}
GOALS = "at 1M labels: train <= 0.5x PECOS, batch predict <= 1.0x, peak RSS <= 0.8x, P@1/P@5 >= PECOS"


def _metrics(scores, Y_test) -> dict:
    from xmc.metrics import precision_at_k

    p = precision_at_k(Y_test, scores, k=(1, 3, 5))
    return {"P@1": p[1], "P@3": p[3], "P@5": p[5]}


def run_size(n_labels: int, args, tmpdir: str) -> dict:
    from xmc.datasets.sparse import make_sparse_problem

    n_train, n_features = PRESETS.get(n_labels, (2 * n_labels, 10 * n_labels))
    n_train = args.train_docs or n_train
    n_features = args.features or n_features
    t0 = time.perf_counter()
    prob = make_sparse_problem(n_labels=n_labels, n_train=n_train, n_test=args.test_docs, n_features=n_features,
                               seed=args.seed)
    gen_s = time.perf_counter() - t0
    gen_rss = measure.peak_rss_mb()
    counts = np.diff(sp.csc_matrix(prob.Y_train).indptr)
    info = {
        "labels": n_labels, "train_docs": n_train, "test_docs": args.test_docs, "features": n_features,
        "seed": args.seed, "generate_s": gen_s, "generate_peak_rss_mb": gen_rss,
        "train_nnz_per_doc": prob.X_train.nnz / n_train, "labels_per_doc": prob.Y_train.nnz / n_train,
        "labels_seen_in_train": int((counts > 0).sum()), "labels_le5_docs": float((counts <= 5).mean()),
    }
    print(f"=== {n_labels} labels: generated in {gen_s:.1f} s (parent peak RSS {gen_rss:.0f} MB): "
          + json.dumps(info), flush=True)
    inputs = measure.save_inputs(os.path.join(tmpdir, f"scale_{n_labels}.npz"),
                                 prob.X_train, prob.Y_train, prob.X_test)
    Y_test = prob.Y_test
    del prob  # the children load their own copy; keep the shared box's memory free
    rows = []
    for name in args.methods:
        print(f"[{n_labels}] {name} ...", flush=True)
        log_path = os.path.join(tmpdir, f"{name}_{n_labels}.log")
        res = measure.run_in_subprocess(METHODS[name], inputs, timeout=args.timeout, log_path=log_path,
                                        topk=10, beam=10, threads=args.threads, n_latency=args.n_latency)
        if "error" in res:
            with open(log_path, errors="replace") as f:
                tail = f.read()[-3000:]
            print(f"[{n_labels}] {name} FAILED: {res['error']}\n{res.get('traceback', '')}\n{tail}", flush=True)
            rows.append({"method": name, "error": res["error"]})
            continue
        res.update(_metrics(res.pop("scores"), Y_test))
        res["predict_ms_per_doc"] = 1000.0 * res["predict_s"] / Y_test.shape[0]
        row = {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool))}
        row["method"] = name
        print(f"[{n_labels}] {name}: " + measure.summary(row), flush=True)
        rows.append(row)
    return {**info, "rows": rows}


# --------------------------------------------------------------------------- report


_SAME_DATA = ("labels", "train_docs", "test_docs", "features", "seed")


def _earlier_rows(path: str, result: dict, methods: list[str]) -> list[dict]:
    """Rows of the methods this run did not measure, kept from the earlier result for the same data.

    A 1M-label PECOS run takes about half an hour here: ``--methods xmc`` after an xmc change
    reruns xmc alone. The kept rows carry their own date and command, and the table marks them
    (their accuracy is for the same matrices; their timings were taken under that run's load).
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        old = json.load(f)
    if any(old.get(k) != result.get(k) for k in _SAME_DATA):
        return []
    kept = []
    for row in old["rows"]:
        if row["method"] not in methods and "error" not in row:
            kept.append({**row, "from_run": row.get("from_run") or f"{old['date']}, `{old['command']}`"})
    return kept


def size_table(result: dict) -> list[str]:
    rows = result["rows"]
    ref = next((r for r in rows if r["method"] == "pecos" and "error" not in r), None)
    g = lambda k: ref.get(k) if ref else None  # noqa: E731
    out = [
        f"### {result['labels']:,} labels",
        "",
        f"{result['train_docs']:,} training / {result['test_docs']:,} test documents, {result['features']:,} features, "
        f"{result['train_nnz_per_doc']:.1f} non-zeros and {result['labels_per_doc']:.2f} labels per document, "
        f"{result['labels_seen_in_train']:,} labels seen in training ({100 * result['labels_le5_docs']:.0f}% of all "
        f"labels in <= 5 training documents); generated in {result['generate_s']:.0f} s "
        f"(seed {result['seed']}). Date: {result['date']}. One run. Command: `{result['command']}`"
        + (f" Load average {result['load_before']:.1f} before, {result['load_after']:.1f} after."
           if "load_before" in result else ""),
        "",
        "| method | P@1 | P@5 | train (s) | batch predict (s) | predict (ms / doc) | peak RSS (MB) | model (MB) "
        "| train / PECOS | predict / PECOS | RSS / PECOS | model / PECOS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['method']} | error: {r['error']} |" + " |" * 11)
            continue
        out.append(
            f"| {r['method']}{' (earlier run *)' if r.get('from_run') else ''} | {100 * r['P@1']:.2f} | {100 * r['P@5']:.2f} | {r['train_s']:.1f} "
            f"| {r['predict_s']:.2f} | {r['predict_ms_per_doc']:.3f} | {r['peak_rss_mb']:.0f} "
            f"| {r['model_bytes'] / 2**20:.1f} | {_fmt_ratio(r['train_s'], g('train_s'))} "
            f"| {_fmt_ratio(r['predict_s'], g('predict_s'))} | {_fmt_ratio(r['peak_rss_mb'], g('peak_rss_mb'))} "
            f"| {_fmt_ratio(r['model_bytes'], g('model_bytes'))} |"
        )
    for r in rows:
        if r.get("from_run"):
            out += ["", f"\\* {r['method']}'s row is kept from an earlier run on the same matrices ({r['from_run']}): "
                        "its accuracy is comparable as is; its timings carry that run's load."]
    xmc = next((r for r in rows if r["method"] == "xmc" and "rank_s" in r), None)
    if xmc:
        out += ["", f"xmc train time split: label representation {xmc['label_repr_s']:.1f} s, indexing "
                    f"{xmc['index_s']:.1f} s, linear layers {xmc['rank_s']:.1f} s. "
                    f"PECOS: PIFA {g('embed_s') or 0:.1f} s, indexing {g('index_s') or 0:.1f} s, layers {g('fit_s') or 0:.1f} s."]
    out.append("")
    return out


def render_section(results_dir: str, notes: str) -> str:
    results = []
    for fname in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        if fname.endswith(".json"):
            with open(os.path.join(results_dir, fname)) as f:
                results.append(json.load(f))
    results.sort(key=lambda r: r["labels"])
    machines = sorted({r["machine"] for r in results})
    lines = [
        "Generated sparse problems (`xmc.datasets.sparse.make_sparse_problem`: a hidden topic/group label "
        "hierarchy, Zipf label popularity, power-law background features; rows L2-normalised). xmc's default "
        "`XRLinear(XRLinearConfig()).fit_matrix` against PECOS' README pipeline with its defaults, each in its "
        "own fresh process on the same matrices, one after the other. Batch prediction: top-10, beam 10, "
        "one call over the test set on the saved and reloaded model (PECOS: `is_predict_only=True`). Peak RSS is "
        "the process's VmHWM, inputs included. P@k from `xmc.metrics`.",
        "",
        "Machine: " + " / ".join(machines) + ", shared with other engineers' jobs (timings are one run each "
        "and carry that noise).",
        "",
        f"Goals (issue 23): {GOALS}; and a 10M-label model trainable within 24 GB.",
        "",
    ]
    for r in results:
        lines += size_table(r)
    lines += [
        "### Distributed training (2-worker local cluster)",
        "",
        "Not measured yet: xmc has no distributed training engine. This row (train time and peak RSS per "
        "worker on a 2-worker local cluster) is to be filled in by the issue's distributed part.",
        "",
    ]
    if notes:
        lines += [notes, ""]
    return "\n".join(lines).rstrip("\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", default="100000",
                    help="comma-separated label counts (presets for 100000, 1000000, 3000000)")
    ap.add_argument("--train-docs", type=int, default=None, help="override the preset's training documents")
    ap.add_argument("--features", type=int, default=None, help="override the preset's feature count")
    ap.add_argument("--test-docs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="xmc,pecos", help="comma-separated subset of xmc,pecos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-latency", type=int, default=20, help="single-document latency rows (not tabulated)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="per method run, seconds")
    ap.add_argument("--results-dir", default=os.path.join(tempfile.gettempdir(), "xmc_bench_scale"))
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    ap.add_argument("--notes", default="", help="a paragraph added to the section")
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    sizes = [int(n) for n in args.labels.split(",") if n]
    os.makedirs(args.results_dir, exist_ok=True)
    command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(os.path.abspath(sys.argv[0]), _ROOT)] + sys.argv[1:])
    common = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": command}
    for n in sizes:
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmpdir:
            result = {**common, **run_size(n, args, tmpdir), "load_before": load_before,
                      "load_after": os.getloadavg()[0]}
        path = os.path.join(args.results_dir, f"labels_{n:09d}.json")
        result["rows"] += _earlier_rows(path, result, args.methods)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print("\n".join(size_table(result)), flush=True)
    if args.write:
        markdown_section.write_section("scale", render_section(args.results_dir, args.notes),
                                       "XR-Linear at scale")
        print("BENCHMARKS.md updated", flush=True)


if __name__ == "__main__":
    main()
