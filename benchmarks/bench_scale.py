"""XR-Linear at extreme scale: xmc against PECOS on generated sparse problems (100k - 3M labels).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py --labels 100000 --write
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py --labels 1000000 --write
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scale.py --labels 100000 --methods xmc-dask --write

``--methods xmc-dask`` trains and batch-predicts on a 2-worker local Dask cluster
(``fit_predict_xmc_dask``) against a single-process xmc run of the same invocation, into its own
results file and table ("Distributed training (2-worker local cluster)").

The data comes from ``xmc.datasets.sparse.make_sparse_problem`` (seeded: the same command gives
the same matrices): per ``--labels`` size a preset of training documents and features
(100k labels: 200k documents, 1M features; 1M: 1M documents, 2M features; 3M: 3M documents,
4M features; 10M: 10M documents, 8M features), ``--test-docs`` held-out documents from the same
distribution. The 10M-label size is the "trainable within 24 GB" check: ``--methods xmc`` (PECOS,
at ten times its 1M training time, would take about three hours here).

Each method runs in its own fresh ``spawn``-ed process (``measure.run_in_subprocess``) on the
same ``.npz`` inputs, one after the other: xmc is ``XRLinear(XRLinearConfig()).fit_matrix`` (the
default config; ``bench_xr_linear.fit_predict_xmc``), PECOS is its README pipeline with defaults
(``peers.fit_predict_pecos``: PIFA -> ``Indexer.gen`` -> ``XLinearModel.train``). Reported: train
wall time, one batch prediction over the test set (top-10, beam 10, ``--threads`` threads, on the
saved and reloaded model: PECOS' predict-only fast path), per-document ms, peak RSS of the process
(Linux VmHWM, inputs included), model size on disk, P@1/P@3/P@5 and PSP@5 (xmc.metrics; propensities of the
training label counts), ratios to PECOS.

Results are kept as JSON in ``--results-dir`` (one file per size; by default
``benchmarks/results/scale``, committed with the tables they make); ``--write`` rebuilds the
``bench_scale`` section of BENCHMARKS.md from all of them, so sizes may be run by separate commands.
A size (or the distributed table, or the notes) with no result file there keeps its subsection of
the section as it was: rerunning one size never drops another's table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
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

# labels -> (training documents, features): the sizes for 100k and 1M; from there one
# document per label and a vocabulary that grows slower than the label set (as real ones do)
PRESETS = {100_000: (200_000, 1_000_000), 1_000_000: (1_000_000, 2_000_000), 3_000_000: (3_000_000, 4_000_000),
           10_000_000: (10_000_000, 8_000_000)}


def preset_sizes(n_labels: int) -> tuple[int, int]:
    """(training documents, features) of the problem with ``n_labels`` labels (other sizes: 2x and 10x)."""
    return PRESETS.get(n_labels, (2 * n_labels, 10 * n_labels))
METHODS = {"xmc": "bench_xr_linear:fit_predict_xmc", "pecos": "pecos", "xmc-dask": "bench_scale:fit_predict_xmc_dask"}
GOALS = "at 1M labels: train <= 0.5x PECOS, batch predict <= 1.0x, peak RSS <= 0.8x, P@1/P@5 >= PECOS"


def _worker_peak_rss_mb() -> float:
    import measure as _m  # on the worker: its own VmHWM

    return _m.peak_rss_mb()


def _worker_reset_peak() -> bool:
    import measure as _m

    return _m._reset_peak_rss()


def fit_predict_xmc_dask(X_train, Y_train, X_test, *, topk=10, beam=10, threads=2, workers=2, **options) -> dict:
    """xmc's default XR-Linear trained and batch-predicted on a ``workers``-process local Dask cluster
    (``threads // workers`` threads each; PIFA and the clustering run in this driver process with
    ``threads`` threads). Same result dict as ``fit_predict_xmc`` plus each worker's peak RSS (VmHWM,
    reset once the cluster is up) during training and prediction; the driver's is the process's own
    (``peak_rss_mb``; the local cluster's scheduler runs in it too)."""
    import shutil

    from xmc.distributed import DaskEngine
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    config = XRLinearConfig.from_dict(dict(options.get("config") or {}))
    config.n_threads = threads
    X_train = sp.csr_matrix(X_train, dtype=np.float32)
    X_test = sp.csr_matrix(X_test, dtype=np.float32)
    t_start = time.perf_counter()
    with DaskEngine(workers=workers, threads_per_worker=max(1, threads // workers)) as engine:
        start_s = time.perf_counter() - t_start
        engine.client.run(_worker_reset_peak)
        t0 = time.perf_counter()
        model = XRLinear(config).fit_matrix(X_train, sp.csr_matrix(Y_train), progress=False, engine=engine)
        train_s = time.perf_counter() - t0
        train_peaks = sorted(engine.client.run(_worker_peak_rss_mb).values())
        parts = {key: sum(t[key] for t in model.fit_seconds_) for key in model.fit_seconds_[0]}
        tmp = tempfile.mkdtemp(prefix="bench_xmc_dask_")
        try:
            model.save(os.path.join(tmp, "model"))
            del model
            model_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(tmp, "model"))
                              for f in fs)
            shard = max(1, -(-X_test.shape[0] // (2 * workers)))
            engine.predict(os.path.join(tmp, "model"), X_test[:2], topk=topk, beam_size=beam)  # warm-up: loads
            t1 = time.perf_counter()
            scores = engine.predict(os.path.join(tmp, "model"), X_test, topk=topk, beam_size=beam, shard_size=shard)
            predict_s = time.perf_counter() - t1
            all_peaks = sorted(engine.client.run(_worker_peak_rss_mb).values())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"scores": scores, "train_s": train_s, **{f"{k}_s": v for k, v in parts.items()},
            "predict_s": predict_s, "model_bytes": model_bytes, "workers": workers, "cluster_start_s": start_s,
            "worker_train_peak_rss_mb": train_peaks, "worker_peak_rss_mb": all_peaks}


def _metrics(scores, Y_test, propensities) -> dict:
    from xmc.metrics import precision_at_k, psprecision_at_k

    p = precision_at_k(Y_test, scores, k=(1, 3, 5))
    return {"P@1": p[1], "P@3": p[3], "P@5": p[5],
            "PSP@5": psprecision_at_k(Y_test, scores, k=5, propensities=propensities)[5]}


def run_size(n_labels: int, args, tmpdir: str) -> dict:
    from xmc.datasets.sparse import make_sparse_problem
    from xmc.metrics import train_propensities

    n_train, n_features = preset_sizes(n_labels)
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
        "seed": args.seed, "idf": True, "generate_s": gen_s, "generate_peak_rss_mb": gen_rss,
        "train_nnz_per_doc": prob.X_train.nnz / n_train, "labels_per_doc": prob.Y_train.nnz / n_train,
        "labels_seen_in_train": int((counts > 0).sum()), "labels_le5_docs": float((counts <= 5).mean()),
    }
    print(f"=== {n_labels} labels: generated in {gen_s:.1f} s (parent peak RSS {gen_rss:.0f} MB): "
          + json.dumps(info), flush=True)
    inputs = measure.save_inputs(os.path.join(tmpdir, f"scale_{n_labels}.npz"),
                                 prob.X_train, prob.Y_train, prob.X_test)
    Y_test = prob.Y_test
    propensities = train_propensities(counts, n_train, n_labels)  # xmc.metrics' one PSP definition
    del prob  # the children load their own copy; keep the shared box's memory free
    runs: dict[str, list[dict]] = {name: [] for name in args.methods}
    failed: dict[str, str] = {}
    scores_of: dict[str, object] = {}
    # Repeats alternate the methods (xmc, pecos, xmc, pecos, ...) so that a slow spell of a shared
    # machine falls on both; every number in a row is the median over its method's runs.
    for rep in range(args.repeats):
        for name in args.methods:
            if name in failed:
                continue
            print(f"[{n_labels}] {name} run {rep + 1}/{args.repeats} ...", flush=True)
            log_path = os.path.join(tmpdir, f"{name}_{n_labels}.log")
            res = measure.run_in_subprocess(METHODS[name], inputs, timeout=args.timeout, log_path=log_path,
                                            topk=10, beam=10, threads=args.threads, n_latency=args.n_latency)
            if "error" in res:
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-3000:]
                print(f"[{n_labels}] {name} FAILED: {res['error']}\n{res.get('traceback', '')}\n{tail}", flush=True)
                failed[name] = res["error"]
                continue
            scores_of[name] = res.pop("scores")  # the same every run: the methods are seeded
            runs[name].append(res)
    rows = []
    xmc_scores = None
    for name in args.methods:
        if name in failed:
            rows.append({"method": name, "error": failed[name]})
            continue
        res = measure.median_row(runs[name]) if args.repeats > 1 else runs[name][0]
        scores = scores_of[name]
        if name == "xmc":
            xmc_scores = scores
        elif name == "xmc-dask" and xmc_scores is not None:
            res["scores_equal_xmc"] = bool(xmc_scores.shape == scores.shape and (xmc_scores != scores).nnz == 0)
        res.update(_metrics(scores, Y_test, propensities))
        res["predict_ms_per_doc"] = 1000.0 * res["predict_s"] / Y_test.shape[0]
        row = {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool))
               or (isinstance(v, list) and all(isinstance(x, (int, float)) for x in v))}
        row["method"] = name
        print(f"[{n_labels}] {name}: " + measure.summary(row), flush=True)
        rows.append(row)
    return {**info, "rows": rows}


# --------------------------------------------------------------------------- report


_SAME_DATA = ("labels", "train_docs", "test_docs", "features", "seed", "idf")
OLD_DATA = ("**Data generated without idf** (before 2026-12-02, 17:30 UTC): the background tokens "
            "dominated every row, and a random label tree was more accurate than either library's clustered one "
            "(see the reading below), so this size's accuracies do not rank the two methods; its times and "
            "memory stand.")


def _runs_note(result: dict) -> str:
    repeats = max((r.get("repeats", 1) for r in result["rows"] if "error" not in r), default=1)
    return "One run." if repeats == 1 else f"Repeats: {repeats}, methods alternating (median)."


def _data_note(result: dict) -> str:
    """A warning for results on the generator's data before it weighed features by idf."""
    return "" if result.get("idf") else " " + OLD_DATA


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
        if row["method"] not in methods:  # an error row too: "did not finish" stays a finding
            kept.append({**row, "from_run": row.get("from_run") or f"{old['date']}, `{old['command']}`"})
    return kept


def _keep_finished(path: str, result: dict) -> None:
    """Replace this run's failed rows by the earlier result's finished ones for the same data (marked
    as kept, with the failure noted): a rerun that times out never erases a measurement."""
    finished = {r["method"]: r for r in _earlier_rows(path, result, []) if "error" not in r}
    for i, row in enumerate(result["rows"]):
        if "error" in row and row["method"] in finished:
            result["rows"][i] = {**finished[row["method"]],
                                 "rerun_error": f"{row['error']} ({result['date']}, `{result['command']}`)"}


def _trees(row: dict) -> str:
    """xmc's tree count where its default chose more than one (``"auto"``, from 50,000 labels)."""
    return f" ({row['n_trees']} trees)" if row["method"] == "xmc" and row.get("n_trees", 1) > 1 else ""


def _pct(row: dict, metric: str) -> str:
    """A metric in percent; "-" for results written before the metric was recorded (PSP@5: 2026-12-04)."""
    return f"{100 * row[metric]:.2f}" if metric in row else "-"


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
        f"(seed {result['seed']}). Date: {result['date']}. {_runs_note(result)} Command: `{result['command']}`"
        + (" Load average {:.1f} before, {:.1f} after.".format(*result["loadavg"]) if "loadavg" in result else "")
        + _data_note(result),
        "",
        "| method | P@1 | P@3 | P@5 | PSP@5 | train (s) | batch predict (s) | predict (ms / doc) | peak RSS (MB) "
        "| model (MB) | train / PECOS | predict / PECOS | RSS / PECOS | model / PECOS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["method"] == "xmc-dask":
            continue  # its own table below
        if "error" in r:
            out.append(f"| {r['method']}{' (earlier run *)' if r.get('from_run') else ''} | error: {r['error']} |"
                       + " |" * 13)
            continue
        out.append(
            f"| {r['method']}{_trees(r)}{' (earlier run *)' if r.get('from_run') else ''} | {_pct(r, 'P@1')} "
            f"| {_pct(r, 'P@3')} | {_pct(r, 'P@5')} | {_pct(r, 'PSP@5')} | {r['train_s']:.1f} "
            f"| {r['predict_s']:.2f} | {r['predict_ms_per_doc']:.3f} | {r['peak_rss_mb']:.0f} "
            f"| {r['model_bytes'] / 2**20:.1f} | {_fmt_ratio(r['train_s'], g('train_s'))} "
            f"| {_fmt_ratio(r['predict_s'], g('predict_s'))} | {_fmt_ratio(r['peak_rss_mb'], g('peak_rss_mb'))} "
            f"| {_fmt_ratio(r['model_bytes'], g('model_bytes'))} |"
        )
    for r in rows:
        if r.get("from_run"):
            out += ["", f"\\* {r['method']}'s row is kept from an earlier run on the same matrices ({r['from_run']})"
                        + ("." if "error" in r else ": its accuracy is comparable as is; its timings carry that run's load.")
                        + (f" A rerun failed: {r['rerun_error']}." if r.get("rerun_error") else "")]
    xmc = next((r for r in rows if r["method"] == "xmc" and "rank_s" in r), None)
    if xmc:
        out += ["", f"xmc train time split: label representation {xmc['label_repr_s']:.1f} s, indexing "
                    f"{xmc['index_s']:.1f} s, linear layers {xmc['rank_s']:.1f} s."
                    + (f" PECOS: PIFA {g('embed_s') or 0:.1f} s, indexing {g('index_s') or 0:.1f} s, "
                       f"layers {g('fit_s') or 0:.1f} s." if ref else " PECOS: not run at this size.")]
    out.append("")
    return out


def distributed_table(results: list[dict]) -> list[str]:
    """The "Distributed training" subsection: each size's xmc-dask row against its same-run xmc row."""
    out = [
        "### Distributed training (2-worker local cluster)",
        "",
        "`xmc.distributed.DaskEngine(workers=2, threads_per_worker=1)` (a local Dask cluster; see README, "
        "\"Bigger than one machine\"): PIFA and the clustering run in the driver with 2 threads, the linear "
        "layers as tasks on the workers (the root's classifiers on every row; label sub-trees, split by cost, each "
        "on only its rows), the driver assembles one model; batch prediction in 4 shards, the model memory-mapped once per "
        "worker. Against the single-process `xmc` row of the same run (2 threads). Worker peaks are each "
        "worker process's VmHWM (reset once the cluster is up; the first figure is during training, the "
        "second over training and prediction); the driver's is its process's VmHWM (inputs, clustering, the "
        "local scheduler and the assembled model).",
        "",
        "| labels | method | train (s) | train / xmc | cluster start (s) | layers (s) | driver peak RSS (MB) "
        "| worker peak RSS, training (MB) | worker peak RSS, + predict (MB) | batch predict (s) | P@1 | P@5 "
        "| predictions = xmc |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    found = False
    for res in results:
        rows = {r["method"]: r for r in res["rows"] if "error" not in r}
        d = rows.get("xmc-dask")
        if d is None:
            continue
        found = True
        x = rows.get("xmc")
        if x:
            out.append(f"| {res['labels']:,} | xmc (1 process) | {x['train_s']:.1f} | 1.00 | - | {x['rank_s']:.1f} "
                       f"| {x['peak_rss_mb']:.0f} | - | - | {x['predict_s']:.2f} | {100 * x['P@1']:.2f} "
                       f"| {100 * x['P@5']:.2f} | - |")
        wt = " / ".join(f"{v:.0f}" for v in d["worker_train_peak_rss_mb"])
        wa = " / ".join(f"{v:.0f}" for v in d["worker_peak_rss_mb"])
        eq = {True: "identical", False: "differ"}.get(d.get("scores_equal_xmc"), "n/a")
        out.append(f"| {res['labels']:,} | xmc, dask 2 workers | {d['train_s']:.1f} "
                   f"| {_fmt_ratio(d['train_s'], x['train_s'] if x else None)} | {d['cluster_start_s']:.1f} "
                   f"| {d['rank_s']:.1f} | {d['peak_rss_mb']:.0f} | {wt} | {wa} | {d['predict_s']:.2f} "
                   f"| {100 * d['P@1']:.2f} | {100 * d['P@5']:.2f} | {eq} |")
    if not found:
        out = out[:2] + ["Not measured yet (`--methods xmc-dask`)."]
    for res in results:
        load = res.get("loadavg")
        busy = (f"; 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end on 2 cores"
                + (" (other engineers' jobs were running: absolute times are inflated, the ratio is the reading)"
                   if max(load) > 2.5 else "")) if load else ""
        out += ["", f"{res['labels']:,} labels: {res['date']}, one run{busy}. Command: `{res['command']}`"
                + _data_note(res)]
    return out + [""]


DISTRIBUTED, NOTES = "### Distributed training", "### Notes"


def previous_subsections(body: str | None) -> dict:
    """The ``### ...`` subsections of an earlier section body, keyed like :func:`render_section`'s parts.

    Keys: a size's label count (``### 3,000,000 labels``), ``"distributed"`` and ``"notes"``;
    values are the subsection's text, heading included, as it was written.
    """
    parts: dict = {}
    key, lines = None, []
    for line in (body or "").split("\n") + ["### end"]:
        if line.startswith("### "):
            if key is not None:
                parts[key] = "\n".join(lines).strip("\n")
            m = re.fullmatch(r"### ([\d,]+) labels", line)
            key = (int(m.group(1).replace(",", "")) if m else "distributed" if line.startswith(DISTRIBUTED)
                   else "notes" if line.startswith(NOTES) else None)
            lines = []
        lines.append(line)
    return parts


def render_section(results_dir: str, notes: str, previous: str | None = None) -> str:
    """The section's body from every result in ``results_dir``; ``previous`` (the body as it stands)
    supplies the subsections that have no result there."""
    results, distributed = [], []
    for fname in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        if fname.endswith(".json"):
            with open(os.path.join(results_dir, fname)) as f:
                (distributed if fname.endswith("_distributed.json") else results).append(json.load(f))
    results.sort(key=lambda r: r["labels"])
    distributed.sort(key=lambda r: r["labels"])
    kept = previous_subsections(previous)
    machines = {r["machine"] for r in results + distributed}
    if any(k != "notes" for k in kept):  # the kept tables' machines stay named
        m = re.search(r"^Machine: (.*), shared with", previous or "", re.M)
        machines |= set(m.group(1).split(" / ")) if m else set()
    machines = sorted(machines)
    lines = [
        "Generated sparse problems (`xmc.datasets.sparse.make_sparse_problem`: a hidden topic/group label "
        "hierarchy, Zipf label popularity, power-law background features; TF-IDF values, rows L2-normalised). xmc's default "
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
    tables = {r["labels"]: size_table(r) for r in results}
    tables.update({n: [text, ""] for n, text in kept.items() if isinstance(n, int) and n not in tables})
    for n in sorted(tables):
        lines += tables[n]
    if distributed:
        lines += distributed_table(distributed)
    elif "distributed" in kept:
        lines += [kept["distributed"], ""]
    else:
        lines += distributed_table([])
    if notes:
        lines += [NOTES, "", notes, ""]
    elif "notes" in kept:
        lines += [kept["notes"], ""]
    return "\n".join(lines).rstrip("\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", default="100000",
                    help="comma-separated label counts (presets for 100000, 1000000, 3000000, 10000000)")
    ap.add_argument("--train-docs", type=int, default=None, help="override the preset's training documents")
    ap.add_argument("--features", type=int, default=None, help="override the preset's feature count")
    ap.add_argument("--test-docs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="xmc,pecos",
                    help="comma-separated subset of xmc,pecos; or xmc-dask alone: xmc on a 2-worker local Dask "
                         "cluster against a single-process xmc run of the same invocation (its own results file "
                         "and table, so the main table's rows stay as they are)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs per method, alternating; times are medians")
    ap.add_argument("--n-latency", type=int, default=20, help="single-document latency rows (not tabulated)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="per method run, seconds")
    ap.add_argument("--results-dir", default=os.path.join(_HERE, "results", "scale"),
                    help="one JSON file per size (default: benchmarks/results/scale, committed)")
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    ap.add_argument("--notes", default="", help="a paragraph for the section's Notes (kept from the last --write "
                                               "when empty)")
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if "xmc-dask" in args.methods:
        if args.methods != ["xmc-dask"]:
            ap.error("--methods xmc-dask runs alone (it runs its own single-process xmc reference)")
        args.methods = ["xmc", "xmc-dask"]
    sizes = [int(n) for n in args.labels.split(",") if n]
    os.makedirs(args.results_dir, exist_ok=True)
    command = markdown_section.invocation()
    common = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": command}
    for n in sizes:
        load_start = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmpdir:
            result = {**common, **run_size(n, args, tmpdir)}
        result["loadavg"] = [load_start, os.getloadavg()[0]]
        suffix = "_distributed" if "xmc-dask" in args.methods else ""
        path = os.path.join(args.results_dir, f"labels_{n:09d}{suffix}.json")
        if not suffix:
            _keep_finished(path, result)
            result["rows"] += _earlier_rows(path, result, args.methods)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print("\n".join(size_table(result)), flush=True)
    if args.write:
        body = render_section(args.results_dir, args.notes, markdown_section.read_section("scale"))
        markdown_section.write_section("scale", body, "XR-Linear at scale")
        print("BENCHMARKS.md updated", flush=True)


if __name__ == "__main__":
    main()
