"""xmc XR-Linear against PECOS, omikuji and napkinXC on the same TF-IDF matrices.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xr_linear.py --datasets eurlex57k,bibtex --write
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xr_linear.py --scaling --write

Every method (xmc with each ``--xmc-configs`` file, and each ``--peers`` entry of
``benchmarks/peers.py``) runs in its own fresh ``spawn``-ed process through
``measure.run_in_subprocess`` on exactly the same matrices (try_peers.py's loaders: eurlex57k
train -> test with the cached 1-2-gram 200k-feature TF-IDF; bibtex with L2-normalised rows),
one after the other, so peak RSS (Linux VmHWM) and times are each method's own.

Reported per method: P@1/3/5 and PSP@5 (xmc.metrics; propensities from the train label counts,
A=0.55, B=1.5), train wall time, batch prediction time per 1,000 test documents (top-10,
beam 10, all threads), single-document latency p50/p90 (one thread, 200 documents), peak RSS
of the process (inputs included), model size on disk, and ratios to PECOS. With
``--repeats N`` every number is the median over N runs.

Results are kept as JSON in ``--results-dir`` (``benchmarks/results/xr_linear``, committed; one file
per dataset and one for scaling); ``--write`` rebuilds the ``bench_xr_linear`` section of BENCHMARKS.md
from all of them, keeping as written the tables that have no file there, so datasets may be run by
separate commands (each table names its own command and date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import measure  # noqa: E402
import peers  # noqa: E402
import try_peers  # noqa: E402
import markdown_section  # noqa: E402  (benchmarks/ is the script's directory)

DEFAULT_XMC_CONFIGS = ("configs/xr-linear.json",)


# --------------------------------------------------------------------------- xmc in a child


def train_xmc(X_train, Y_train, *, config: dict | None = None, threads: int = 2):
    """xmc XR-Linear trained with ``config`` (a dict for ``XRLinearConfig.from_dict``; None: every default)
    on ``threads`` threads -> (model, seconds of ``XRLinear.fit_matrix``), as ``peers.train_pecos`` for PECOS."""
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    cfg = XRLinearConfig.from_dict(dict(config or {}))
    cfg.n_threads = threads
    X_train, Y = peers._csr32(X_train), peers._binary_csr(Y_train)
    t = time.perf_counter()
    model = XRLinear(cfg).fit_matrix(X_train, Y, progress=False)
    return model, time.perf_counter() - t


def fit_predict_xmc(X_train, Y_train, X_test, *, topk=10, beam=10, threads=2, **options) -> dict:
    """xmc XR-Linear with the same signature and result dict as the peers in peers.py.

    ``train_s`` is ``XRLinear.fit_matrix`` (PIFA + indexing + all layers; the split is in
    ``label_repr_s`` / ``index_s`` / ``rank_s``). The model is saved and reloaded (as for PECOS'
    predict-only model), then ``predict_s`` is the median of ``predict_calls`` batch calls over all
    of X_test after an untimed one (numba's cached machine code is loaded on the first call).
    ``import_s`` is the import of ``xmc.models.xr_linear`` in this fresh process (PECOS's row has its
    own): with ``train_s`` it is what a user's fresh process pays before the model exists.

    options: config (a dict for ``XRLinearConfig.from_dict``), n_latency, latency_threads, predict_calls,
    second_fit (train once more at the end, in the same process: ``train_warm_s`` is that fit's
    time, without numba's one-time setup that the first jitted call of a process pays).
    """
    import_s = peers.import_seconds("xmc.models.xr_linear")
    from xmc.models.xr_linear import XRLinear

    n_lat = min(int(options.get("n_latency", peers.N_LATENCY_ROWS)), X_test.shape[0])
    lat_threads = int(options.get("latency_threads", 1))
    n_calls = int(options.get("predict_calls", peers.N_PREDICT_CALLS))
    X_train = peers._csr32(X_train)
    X_test = peers._csr32(X_test)
    Y = peers._binary_csr(Y_train)

    model, train_s = train_xmc(X_train, Y, config=options.get("config"), threads=threads)
    parts = {key: sum(t[key] for t in model.fit_seconds_) for key in model.fit_seconds_[0]}

    tmp = tempfile.mkdtemp(prefix="bench_xmc_")
    try:
        model.save(os.path.join(tmp, "model"))
        model_bytes = peers._path_bytes(os.path.join(tmp, "model"))
        del model
        model = XRLinear.load(os.path.join(tmp, "model"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scores = model.predict(X_test, topk=topk, beam_size=beam)
    predict_s = peers.median_call_seconds(lambda: model.predict(X_test, topk=topk, beam_size=beam), n_calls)

    n_trees = len(model.trees_)  # what the config's "auto" chose for this label count
    model.config.n_threads = lat_threads
    rows = [X_test[i : i + 1] for i in range(n_lat)]
    lat = peers._latency_stats(lambda i: model.predict(rows[i], topk=topk, beam_size=beam), n_lat)
    warm = {}
    if options.get("second_fit"):
        del model
        warm["train_warm_s"] = train_xmc(X_train, Y, config=options.get("config"), threads=threads)[1]
    return {
        "scores": scores,
        "train_s": train_s,
        "import_s": import_s,
        **{f"{k}_s": v for k, v in parts.items()},
        "predict_s": predict_s,
        "predict_calls": n_calls,
        **lat,
        "latency_threads": lat_threads,
        "model_bytes": model_bytes,
        "n_trees": n_trees,
        **warm,
    }


# --------------------------------------------------------------------------- runs


def synthetic_problem(name: str):
    """``synthetic-10k`` / ``-100k`` / ``-1m``: bench_scale's generated problem of that many labels
    (its preset sizes, 10,000 test documents, seed 0), with its hidden structure."""
    import bench_scale
    from xmc.datasets.sparse import make_sparse_problem

    n_labels = int(float(name.split("-", 1)[1].replace("k", "e3").replace("m", "e6")))
    n_train, n_features = bench_scale.preset_sizes(n_labels)
    return make_sparse_problem(n_labels=n_labels, n_train=n_train, n_test=10_000, n_features=n_features, seed=0)


def load_dataset(name: str, cache_dir: str):
    """(X_train, Y_train, X_test, Y_test) of eurlex57k, bibtex, an ``ave-*`` product set (as plain
    XMC: ``try_peers.load_ave``), ``synthetic-10k`` / ``-100k`` / ``-1m``: bench_scale's generated
    problem of that many labels (its preset sizes, 10,000 test documents, seed 0), or ``demo`` /
    ``demo-N``: ``xmc demo``'s synthetic text corpus (200 labels) with its 2,000 or N training documents,
    or ``eurlex57k-topN``: EURLEX57K with only its N most frequent training labels."""
    if name.startswith("synthetic-"):
        prob = synthetic_problem(name)
        return prob.X_train, prob.Y_train, prob.X_test, prob.Y_test
    if name == "bibtex":
        return try_peers.load_bibtex(True)
    if name == "eurlex57k":
        return try_peers.load_eurlex(cache_dir)
    if name.startswith("eurlex57k-top"):
        return frequent_labels(try_peers.load_eurlex(cache_dir), int(name[len("eurlex57k-top"):]))
    if name.startswith("ave-"):
        return try_peers.load_ave(name)
    if name == "demo" or name.startswith("demo-"):
        return demo_corpus(int(name[len("demo-"):]) if name != "demo" else 2000)
    raise SystemExit(f"unknown dataset {name!r} (eurlex57k, eurlex57k-topN, bibtex, synthetic-N, ave-*, demo, demo-N)")


def frequent_labels(data, n_labels: int):
    """``data`` (X_train, Y_train, X_test, Y_test) with only the ``n_labels`` most frequent training
    labels (every document kept): a real label space with more documents per label."""
    X_train, Y_train, X_test, Y_test = data
    counts = np.asarray(sp.csr_matrix(Y_train).astype(bool).sum(axis=0)).ravel()
    keep = np.sort(np.argsort(-counts, kind="stable")[:n_labels])
    return X_train, sp.csr_matrix(Y_train)[:, keep], X_test, sp.csr_matrix(Y_test)[:, keep]


def demo_corpus(n_train: int):
    """``xmc demo``'s corpus (seed 0) with ``n_train`` training documents, featurised as the demo
    does (xmc's TF-IDF, min_df 1): how a setting depends on documents per label at a fixed label space."""
    from xmc.datasets.synthetic import make_corpus
    from xmc.features.tfidf import TfidfConfig, TfidfFeaturizer

    corpus = make_corpus(n_train=n_train, seed=0)
    config = TfidfConfig(min_df=1)
    featurizer = TfidfFeaturizer(config)
    X_train = featurizer.fit_transform(corpus.train.input_texts(config.fields))
    X_test = featurizer.transform(corpus.test.input_texts(config.fields))
    return X_train, sp.csr_matrix(corpus.train.Y), X_test, sp.csr_matrix(corpus.test.Y)


def _metrics(scores, Y_test, Y_train) -> dict:
    from xmc.metrics import ranking_report, train_propensities

    counts = np.asarray(sp.csr_matrix(Y_train).astype(bool).sum(axis=0)).ravel()
    prop = train_propensities(counts, Y_train.shape[0], Y_test.shape[1], A=0.55, B=1.5)
    rep = ranking_report(Y_test, scores, ks=(1, 3, 5), propensities=prop)
    return {k: rep[k] for k in ("P@1", "P@3", "P@5", "PSP@1", "PSP@3", "PSP@5")}


def _methods(args) -> list[tuple[str, str, dict]]:
    """(display name, function for run_in_subprocess, extra kwargs) per method."""
    out = []
    for path in args.xmc_configs:
        with open(os.path.join(_ROOT, path) if not os.path.isabs(path) else path) as f:
            cfg = json.load(f)
        name = "xmc " + os.path.splitext(os.path.basename(path))[0]
        out.append((name, "bench_xr_linear:fit_predict_xmc", {"config": cfg, "config_file": path}))
    for peer in args.peers:
        out.append((peer, peer, {}))
    if args.pecos_threshold is not None:
        # PECOS with xmc's default weight threshold: separates the threshold's effect from the rest.
        out.append((f"pecos threshold={args.pecos_threshold:g}", "pecos",
                    {"train_kwargs": {"threshold": args.pecos_threshold}}))
    return out


def run_dataset(name: str, args, tmpdir: str) -> list[dict]:
    Xtr, Ytr, Xte, Yte = load_dataset(name, args.cache_dir)
    print(f"\n=== {name}: train {Xtr.shape} nnz={Xtr.nnz}  test {Xte.shape} nnz={Xte.nnz}", flush=True)
    inputs = measure.save_inputs(os.path.join(tmpdir, f"{name}_inputs.npz"), Xtr, Ytr, Xte)
    xc_path = None
    rows = []
    for display, fn, extra in _methods(args):
        kwargs = dict(topk=args.topk, beam=args.beam, threads=args.threads)
        if not fn.startswith("omikuji"):  # omikuji's per-document loop runs once (peers.py)
            kwargs["predict_calls"] = args.predict_calls
        if args.second_fit and (fn == "pecos" or fn.startswith("bench_xr_linear:")):
            kwargs["second_fit"] = True
        extra = dict(extra)
        config_file = extra.pop("config_file", None)
        kwargs.update(extra)
        if fn.startswith("omikuji"):
            if xc_path is None:
                xc_path = peers.write_xc_file(os.path.join(tmpdir, f"{name}_train_xc.txt"), Xtr, Ytr)
            kwargs["xc_train_path"] = xc_path
        if name == "eurlex57k" and fn == "omikuji_bonsai" and args.skip_bonsai_eurlex:
            print(f"[{name}] {display}: skipped (--skip-bonsai-eurlex)", flush=True)
            continue
        runs = []
        for rep in range(args.repeats):
            print(f"[{name}] {display} run {rep + 1}/{args.repeats} ...", flush=True)
            log_path = os.path.join(tmpdir, f"{name}_{fn.replace(':', '_')}.log")
            res = measure.run_in_subprocess(fn, inputs, timeout=args.timeout, log_path=log_path, **kwargs)
            if "error" in res:
                with open(log_path, errors="replace") as f:
                    tail = f.read()[-3000:]
                print(f"[{name}] {display} FAILED: {res['error']}\n{res.get('traceback', '')}\n{tail}", flush=True)
                runs = [{"error": res["error"]}]
                break
            res.update(_metrics(res.pop("scores"), Yte, Ytr))
            res["predict_ms_per_1k"] = 1000.0 * res["predict_s"] / Xte.shape[0] * 1000.0
            runs.append({k: v for k, v in res.items() if isinstance(v, (int, float, str, bool, list))})
            print(f"[{name}] {display}: " + measure.summary(runs[-1]), flush=True)
        row = measure.median_row(runs) if "error" not in runs[0] else runs[0]
        row.update(method=display, dataset=name)
        if config_file:
            row["config_file"] = config_file
        rows.append(row)
    return rows


def run_scaling(args, tmpdir: str) -> list[dict]:
    """Training time of xmc (first config) and PECOS on the first n train rows of eurlex57k.

    The TF-IDF matrix is NOT refit: the rows of the full-train matrix are reused (same
    vocabulary and IDF for every n), so only the number of documents changes.
    """
    Xtr, Ytr, Xte, _ = load_dataset("eurlex57k", args.cache_dir)
    xmc_name, xmc_fn, xmc_extra = _methods(args)[0]
    xmc_extra = {k: v for k, v in xmc_extra.items() if k != "config_file"}
    # The full-size point may come from the main eurlex57k run (same matrices, same code).
    main_rows = {}
    main_path = os.path.join(args.results_dir, "eurlex57k.json")
    if args.scaling_reuse_main and os.path.exists(main_path):
        with open(main_path) as f:
            main_rows = {r["method"]: r for r in json.load(f)["rows"] if "error" not in r}
    rows = []
    for n in args.scaling_sizes:
        inputs = measure.save_inputs(os.path.join(tmpdir, f"scale_{n}.npz"), Xtr[:n], Ytr[:n], Xte[:200])
        for display, fn, extra in ((xmc_name, xmc_fn, xmc_extra), ("pecos", "pecos", {})):
            if n == Xtr.shape[0] and display in main_rows:
                row = {"n": n, "method": display, "train_s": main_rows[display]["train_s"],
                       "labels_seen": int((np.diff(sp.csc_matrix(Ytr).indptr) > 0).sum()),
                       "nnz": int(Xtr.nnz), "source": "main eurlex57k run"}
                print(f"[scaling] {row}", flush=True)
                rows.append(row)
                continue
            times = []
            for rep in range(args.repeats):
                res = measure.run_in_subprocess(
                    fn, inputs, timeout=args.timeout, log_path=os.path.join(tmpdir, "scale.log"),
                    topk=args.topk, beam=args.beam, threads=args.threads, n_latency=5, predict_calls=1, **extra,
                )
                if "error" in res:
                    raise SystemExit(f"scaling {display} n={n} failed: {res['error']}")
                times.append(res["train_s"])
            row = {"n": n, "method": display, "train_s": float(np.median(times)),
                   "labels_seen": int((np.diff(sp.csc_matrix(Ytr[:n]).indptr) > 0).sum()),
                   "nnz": int(Xtr[:n].nnz)}
            print(f"[scaling] {row}", flush=True)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import scipy

    return (f"{cpu}, os.cpu_count() = {os.cpu_count()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")


def _fmt_ratio(v, ref):
    if v is None or ref in (None, 0) or not np.isfinite(v) or not np.isfinite(ref):
        return "-"
    return f"{v / ref:.2f}"


def dataset_table(result: dict) -> list[str]:
    rows = result["rows"]
    ref = next((r for r in rows if r.get("method") == "pecos" and "error" not in r), None)
    warm = any("train_warm_s" in r for r in rows)
    # With --second-fit: the fit again in the same process, and the library's import + the first fit
    # (a fresh process's cost to a user: PECOS loads its compiled library at import, xmc's numba
    # kernels load at their first call, inside the fit).
    cold_cols = warm and all("import_s" in r for r in rows if "error" not in r)
    warm_head = (" 2nd fit (s) | 2nd fit / PECOS |" if warm else "") + (
        " import + fit (s) | import + fit / PECOS |" if cold_cols else "")
    calls = max((int(r.get("predict_calls", 1)) for r in rows if "error" not in r), default=1)
    calls_note = f" Batch predict: median of {calls} calls per run, after an untimed one." if calls > 1 else ""
    out = [
        f"### {result['dataset']}" + (f" ({result['tag']})" if result.get("tag") else ""),
        "",
        f"Train {result['shape']['train']}, test {result['shape']['test']}, {result['shape']['labels']} labels. "
        f"Date: {result['date']}. Repeats: {result['repeats']} (median).{calls_note} Command: `{result['command']}`",
        "",
        "| method | P@1 | P@3 | P@5 | PSP@5 | train (s) | predict (ms / 1k docs) | latency p50 / p90 (ms) "
        "| peak RSS (MB) | model (MB) | train / PECOS | predict / PECOS | latency / PECOS | RSS / PECOS |" + warm_head,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if warm else "") + ("---:|---:|" if cold_cols else ""),
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['method']} | error: {r['error']} |" + " |" * 13)
            continue
        g = lambda k: ref.get(k) if ref else None  # noqa: E731
        cold = lambda x: x["import_s"] + x["train_s"] if x and "import_s" in x else None  # noqa: E731
        out.append(
            f"| {r['method']} | {r['P@1']:.4f} | {r['P@3']:.4f} | {r['P@5']:.4f} | {r['PSP@5']:.4f} "
            f"| {r['train_s']:.1f} | {r['predict_ms_per_1k']:.0f} "
            f"| {r['latency_ms_p50']:.2f} / {r['latency_ms_p90']:.2f} | {r['peak_rss_mb']:.0f} "
            f"| {r['model_bytes'] / 2**20:.1f} | {_fmt_ratio(r['train_s'], g('train_s'))} "
            f"| {_fmt_ratio(r['predict_ms_per_1k'], g('predict_ms_per_1k'))} "
            f"| {_fmt_ratio(r['latency_ms_p50'], g('latency_ms_p50'))} "
            f"| {_fmt_ratio(r['peak_rss_mb'], g('peak_rss_mb'))} |"
            + (f" {r['train_warm_s']:.2f} | {_fmt_ratio(r['train_warm_s'], g('train_warm_s'))} |"
               if warm and "train_warm_s" in r else (" - | - |" if warm else ""))
            + (f" {cold(r):.2f} | {_fmt_ratio(cold(r), cold(ref))} |" if cold_cols else "")
        )
    splits = [r for r in rows if "rank_s" in r]
    if splits:
        out.append("")
        out.append("xmc train time split: " + "; ".join(
            f"{r['method']}: label representation {r['label_repr_s']:.1f} s, indexing {r['index_s']:.1f} s, "
            f"linear layers {r['rank_s']:.1f} s" for r in splits) + ".")
    if result.get("skipped"):
        out.append("")
        out.append("Skipped: " + result["skipped"])
    out.append("")
    return out


def scaling_table(result: dict) -> list[str]:
    out = [
        "### Training time vs number of EURLEX57K training documents",
        "",
        "First n documents of the train split; the TF-IDF matrix is not refit: the rows of the "
        "full-train matrix are reused (same vocabulary and IDF for every n). "
        f"Date: {result['date']}. Repeats: {result['repeats']} (median). Command: `{result['command']}`",
        "",
        "| method | n docs | labels seen | train (s) | s per 1k docs | xmc / PECOS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    by = {(r["method"], r["n"]): r for r in result["rows"]}
    for r in result["rows"]:
        p = by.get(("pecos", r["n"]))
        src = " (main run)" if r.get("source") else ""
        out.append(
            f"| {r['method']} | {r['n']:,}{src} | {r['labels_seen']:,} | {r['train_s']:.1f} "
            f"| {1000 * r['train_s'] / r['n']:.2f} | "
            f"{_fmt_ratio(r['train_s'], p['train_s']) if p and r['method'] != 'pecos' else '-'} |"
        )
    out.append("")
    return out


def render_section(results_dir: str, notes: str) -> str:
    lines = []
    results = []
    for fname in sorted(os.listdir(results_dir)) if os.path.isdir(results_dir) else []:
        if fname.endswith(".json"):
            with open(os.path.join(results_dir, fname)) as f:
                results.append(json.load(f))
    machines = sorted({r["machine"] for r in results})
    lines += [
        "Each method runs in its own fresh process (multiprocessing spawn) on the same sparse "
        "matrices, one after the other in one script, so the ratios to PECOS come from one run "
        "on one machine; the notes below say how loaded the machine was.",
        "",
        "Machine: " + " / ".join(machines) + ".",
        "",
        "Columns: P@k / PSP@5 (xmc.metrics; propensities from train label counts, A=0.55, B=1.5); "
        "train = wall time of training on 2 threads (pecos: PIFA + indexing + layers; omikuji: "
        "training only, without parsing its text input file; napkinXC: fit incl. writing its model; "
        "xmc: `XRLinear.fit_matrix`); predict = a batch call over the test set, top-10, beam 10, "
        "2 threads (the median of the calls a table names, one call where it names none; omikuji has no "
        "batch call: the sum of one pass of per-document calls); latency = one document "
        "per call, 1 thread, 200 test documents; peak RSS = VmHWM of the method's process "
        "(inputs included); model = size on disk.",
        "",
    ]
    if notes:
        lines += [notes, ""]
    for r in sorted((r for r in results if r["kind"] == "dataset"),
                    key=lambda r: (r["dataset"] != "eurlex57k", r["dataset"], bool(r.get("tag")))):
        lines += dataset_table(r)
    for r in results:
        if r["kind"] == "scaling":
            lines += scaling_table(r)
    return "\n".join(lines)


def replace_tables(section: str, tables: list[list[str]]) -> str:
    """``section`` with each ``### heading`` subsection of ``tables`` put in place of the one
    with the same heading (appended when new); every other line of the section is kept."""
    for table in tables:
        heading = table[0]
        lines = section.split("\n")
        if heading in lines:
            i = lines.index(heading)
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("### ")), len(lines))
            lines[i:j] = table
        else:
            lines += table
        section = "\n".join(lines)
    return section


def write_benchmarks_md(section: str, path: str) -> None:
    """``section`` is the rendered block without its markers."""
    markdown_section.write_section("xr_linear", section, "XR-Linear vs PECOS, omikuji, napkinXC", path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="eurlex57k,bibtex", help="comma-separated: eurlex57k,bibtex")
    ap.add_argument("--peers", default=",".join(peers.PEERS),
                    help=f"comma-separated subset of {','.join(peers.PEERS)} ('' for none)")
    ap.add_argument("--xmc-configs", default=",".join(DEFAULT_XMC_CONFIGS),
                    help="comma-separated xmc config files (repository-relative), one xmc row each")
    ap.add_argument("--repeats", type=int, default=1, help="runs per method; times are medians")
    ap.add_argument("--scaling", action="store_true",
                    help="only the training-time scaling study (xmc's first config and PECOS)")
    ap.add_argument("--scaling-sizes", default="5000,20000,45000")
    ap.add_argument("--scaling-reuse-main", action="store_true",
                    help="take the full-size (45,000) point from the main eurlex57k results if present")
    ap.add_argument("--pecos-threshold", type=float, default=None,
                    help="also run PECOS with this weight threshold (its default is 0.1)")
    ap.add_argument("--second-fit", action="store_true",
                    help="xmc and PECOS train a second time in the same process (column '2nd fit'): the first "
                         "fit of a process includes one-time costs (numba's setup for xmc) that matter on small data")
    ap.add_argument("--skip-bonsai-eurlex", action="store_true", help="omikuji_bonsai only on bibtex")
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--predict-calls", type=int, default=peers.N_PREDICT_CALLS,
                    help="batch-predict calls timed per run after an untimed one; the column is their median")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--results-dir", default=os.path.join(_HERE, "results", "xr_linear"),
                    help="where each run's JSON is kept (committed, so that --write can rebuild every table)")
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    ap.add_argument("--update-tables", action="store_true",
                    help="replace only this run's tables in BENCHMARKS.md's section, keeping the rest of it "
                         "(the other tables and the notes) as they are")
    ap.add_argument("--notes", default="", help="a paragraph added to the section")
    ap.add_argument("--tag", default="",
                    help="keep this run's results beside (not instead of) earlier ones: DATASET-TAG.json, its own "
                         "table headed 'DATASET (TAG)' (e.g. a few configs against PECOS without rerunning every peer)")
    args = ap.parse_args(argv)
    if args.predict_calls < 1:
        ap.error("--predict-calls must be at least 1")
    args.peers = [p for p in args.peers.split(",") if p]
    for p in args.peers:
        if p not in peers.PEERS:
            ap.error(f"unknown peer {p!r}; choose from {', '.join(peers.PEERS)}")
    args.xmc_configs = [c for c in args.xmc_configs.split(",") if c]
    args.scaling_sizes = [int(n) for n in args.scaling_sizes.split(",")]
    os.makedirs(args.results_dir, exist_ok=True)
    command = markdown_section.invocation()
    common = {"date": datetime.date.today().isoformat(), "machine": machine(), "command": command,
              "repeats": args.repeats}
    new_tables = []
    with tempfile.TemporaryDirectory(prefix="bench_xr_linear_") as tmpdir:
        if args.scaling:
            if not args.xmc_configs:
                ap.error("--scaling needs an xmc config")
            rows = run_scaling(args, tmpdir)
            with open(os.path.join(args.results_dir, "scaling.json"), "w") as f:
                json.dump({"kind": "scaling", **common, "rows": rows}, f, indent=1)
            new_tables.append(scaling_table({"kind": "scaling", **common, "rows": rows}))
        else:
            for name in [d for d in args.datasets.split(",") if d]:
                rows = run_dataset(name, args, tmpdir)
                Xtr, Ytr, Xte, _ = load_dataset(name, args.cache_dir)
                result = {"kind": "dataset", "dataset": name, "tag": args.tag, **common, "rows": rows,
                          "shape": {"train": Xtr.shape[0], "test": Xte.shape[0], "labels": Ytr.shape[1]}}
                if name == "eurlex57k" and args.skip_bonsai_eurlex and "omikuji_bonsai" in args.peers:
                    result["skipped"] = "omikuji_bonsai on eurlex57k (--skip-bonsai-eurlex: it trains for ~500 s)."
                with open(os.path.join(args.results_dir, f"{name}-{args.tag}.json" if args.tag else f"{name}.json"),
                          "w") as f:
                    json.dump(result, f, indent=1)
                new_tables.append(dataset_table(result))
                print("\n".join(new_tables[-1]), flush=True)
    md_path = os.path.join(_ROOT, "BENCHMARKS.md")
    if args.write:
        # Tables whose JSON is not in --results-dir (lost, or run elsewhere) are kept as written.
        section = markdown_section.keep_missing_subsections(render_section(args.results_dir, args.notes),
                                                            markdown_section.read_section("xr_linear", md_path))
        write_benchmarks_md(section, md_path)
        print("BENCHMARKS.md updated", flush=True)
    elif args.update_tables:
        section = markdown_section.read_section("xr_linear", md_path)
        if section is None:
            raise SystemExit(f"{md_path}: no bench_xr_linear block to update (use --write)")
        write_benchmarks_md(replace_tables(section, new_tables), md_path)
        print("BENCHMARKS.md: tables " + ", ".join(t[0] for t in new_tables) + " replaced", flush=True)


if __name__ == "__main__":
    main()
