"""Accuracy against prediction time and model size: XR-Linear's weight threshold and beam, xmc and PECOS.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_tradeoff.py --datasets bibtex,eurlex57k --seeds 0,1,2 --write
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_tradeoff.py --datasets synthetic-100k --write

Each method trains once per label-tree seed (``--seeds``: xmc's indexer seed, PECOS's
``Indexer.gen`` seed), in its own fresh process (``measure.run_in_subprocess``), at the lowest
weight threshold of the sweep, with its defaults otherwise (xmc: ``XRLinearConfig()``; PECOS: its
README pipeline, PIFA -> ``Indexer.gen`` -> ``XLinearModel.train``). ``--xmc-trees auto,2`` (the
default) sweeps xmc's default model and a series with two trees (``trees_per_indexer`` 2: seeds 0
and 1, scores averaged; skipped where the default already has two, from 50,000 labels); every
series is a curve xmc offers, so a PECOS point is compared with all of them. Every higher threshold is
that model pruned (``XRLinear.pruned``; for PECOS the same rule, ``|w| <= t`` dropped, applied to
every layer's W): both libraries apply the threshold to each classifier after solving it, so the
pruned model is the model trained at that threshold (tested for xmc in
``tests/test_xr_linear.py``; ``--check-pruning`` checks PECOS against a model trained at 0.1).
xmc's model is trained with float32 weights and each point rounded to the default's int8 as it is
pruned, which equals training int8 at that threshold.
Each pruned model is saved, its size on disk measured, reloaded (PECOS: its predict-only C++
path) and timed over the whole test set, one batch call per beam size (median of ``--repeats``
calls after a warm-up), top-10, ``--threads`` threads. A point's accuracy is the mean over the seeds
(one tree is one draw of the clustering, which moves P@1 by a few tenths on EURLEX57K), its
prediction time the median; each seed's figures stay in the JSON.

A PECOS point is *dominated* when an xmc point (of any series) has at least its P@1, P@5 and
PSP@5 at no more prediction time (or no larger model); the table says for every PECOS point whether it is, and
the figure plots P@1 and PSP@5 against both.

Results are kept as JSON in ``--results-dir`` (``benchmarks/results/tradeoff``, committed); ``--write``
rebuilds the ``tradeoff`` section of BENCHMARKS.md and its figure (``docs/tradeoff.png``) from all of
them (a data set without a file keeps its table as written).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import markdown_section  # noqa: E402
import measure  # noqa: E402
import peers  # noqa: E402

THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.2)
BEAMS = (5, 10, 20)
SECTION, TITLE = "tradeoff", "XR-Linear: accuracy against prediction time and model size"


def sweep_xmc(X_train, Y_train, X_test, *, thresholds, beams, threads=2, repeats=3, config=None, topk=10,
              seed=0) -> dict:
    """Train xmc once at min(thresholds) with label-tree seed ``seed``; per threshold: prune, save,
    size, reload, time each beam."""
    from xmc.models.xr_linear import XRLinear

    import bench_xr_linear

    from xmc.models.xr_linear import XRLinearConfig

    config = {**(config or {}), "indexers": [{"seed": seed}]}
    # Trained with float32 weights and rounded per point to the config's weight_dtype: pruning then
    # rounding a float32 model is the model trained with both settings (tests/test_xr_linear.py);
    # pruning already-rounded weights is not (a weight within half a step of t may fall either way).
    weight_dtype = XRLinearConfig.from_dict(config).train.weight_dtype
    config["train"] = {**config.get("train", {}), "weight_threshold": min(thresholds), "weight_dtype": "float32"}
    model, train_s = bench_xr_linear.train_xmc(X_train, Y_train, config=config, threads=threads)
    X_test = peers._csr32(X_test)
    points = []
    tmp = tempfile.mkdtemp(prefix="bench_tradeoff_xmc_")
    try:
        for t in sorted(thresholds):
            path = os.path.join(tmp, f"t{t:g}")
            model.pruned(t, weight_dtype=weight_dtype).save(path)
            size = peers._path_bytes(path)
            loaded = XRLinear.load(path)
            loaded.predict(X_test[:2], topk=topk)  # warm-up: numba's cached code, kernel arrays
            for b in beams:
                scores = loaded.predict(X_test, topk=topk, beam_size=b)
                predict_s = peers.median_call_seconds(lambda: loaded.predict(X_test, topk=topk, beam_size=b), repeats)
                points.append({"threshold": t, "beam": b, "predict_s": predict_s, "model_bytes": size,
                               "scores": scores})
            del loaded
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"train_s": train_s, "points": points}


def _pecos_prune(model, threshold: float) -> None:
    """PECOS's own threshold rule (``|w| <= t`` dropped) applied to every layer in place."""
    for layer in model.model.model_chain:
        W = layer.W  # the scipy matrix PECOS saves (``pW.buf``), edited in place: W has no setter
        W.data[np.abs(W.data) <= threshold] = 0.0
        W.eliminate_zeros()


def sweep_pecos(X_train, Y_train, X_test, *, thresholds, beams, threads=2, repeats=3, topk=10,
                check_pruning=False, seed=0) -> dict:
    """PECOS trained once at min(thresholds) (``Indexer.gen`` seed ``seed``) and pruned, as :func:`sweep_xmc`."""
    from pecos.xmc.xlinear.model import XLinearModel

    X_test = peers._csr32(X_test)
    model, chain, times = peers.train_pecos(X_train, Y_train, threads=threads, indexer_kwargs={"seed": seed},
                                            train_kwargs={"threshold": min(thresholds)})
    train_s = times[3] - times[0]
    points, check = [], None
    tmp = tempfile.mkdtemp(prefix="bench_tradeoff_pecos_")
    try:
        full = os.path.join(tmp, "full")
        model.save(full)
        if check_pruning:
            direct = XLinearModel.train(peers._csr32(X_train), peers._binary_csr(Y_train).tocsc(), C=chain,
                                        threads=threads, threshold=0.1)  # same tree: only the threshold differs
        del model
        for t in sorted(thresholds):
            pruned = XLinearModel.load(full)
            _pecos_prune(pruned, t)
            if check_pruning and t == 0.1:
                pairs = zip(pruned.model.model_chain, direct.model.model_chain)
                check = all((sp.csc_matrix(a.W) != sp.csc_matrix(b.W)).nnz == 0 for a, b in pairs)
            path = os.path.join(tmp, f"t{t:g}")
            pruned.save(path)
            del pruned
            size = peers._path_bytes(path)
            fast = XLinearModel.load(path, is_predict_only=True)
            fast.predict(X_test[:2], beam_size=beams[0], only_topk=topk, threads=threads)
            for b in beams:
                kw = dict(beam_size=b, only_topk=topk, threads=threads)
                scores = fast.predict(X_test, **kw).tocsr()
                predict_s = peers.median_call_seconds(lambda: fast.predict(X_test, **kw), repeats)
                points.append({"threshold": t, "beam": b, "predict_s": predict_s, "model_bytes": size,
                               "scores": peers._keep_topk(scores, topk)})
            del fast
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"train_s": train_s, "points": points, "pruning_equals_training": check}


def run_dataset(name: str, args) -> dict:
    from xmc.metrics import ranking_report, train_propensities

    import bench_xr_linear

    X, Y, Xt, Yt = bench_xr_linear.load_dataset(name, args.cache_dir)
    counts = np.asarray(sp.csr_matrix(Y).astype(bool).sum(axis=0)).ravel()
    prop = train_propensities(counts, Y.shape[0], Yt.shape[1], A=0.55, B=1.5)
    result = {"dataset": name, "train_docs": X.shape[0], "test_docs": Xt.shape[0], "labels": Y.shape[1],
              "date": datetime.date.today().isoformat(), "load_before": os.getloadavg()[0],
              "machine": f"{os.cpu_count()} cores", "command": "python " + " ".join(map(shlex.quote, sys.argv)),
              "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = measure.save_inputs(os.path.join(tmp, "inputs.npz"), X, Y, Xt)
        kw = dict(thresholds=tuple(args.thresholds), beams=tuple(args.beams), threads=args.threads,
                  repeats=args.repeats)
        from xmc.models.xr_linear import auto_trees_per_indexer

        default_trees = auto_trees_per_indexer(Y.shape[1], 1)
        runs = [(series_name(t), "bench_tradeoff:sweep_xmc", {"config": {} if t == "auto" else {"trees_per_indexer": t}})
                for t in args.xmc_trees if t == "auto" or t != default_trees or "auto" not in args.xmc_trees]
        runs.append(("pecos", "bench_tradeoff:sweep_pecos", {"check_pruning": args.check_pruning}))
        for method, fn, extra in runs:
            per_seed = []
            for seed in args.seeds:
                print(f"=== {name}: {method}, label-tree seed {seed}", flush=True)
                out = measure.run_in_subprocess(fn, inputs, timeout=args.timeout, seed=seed, **kw, **extra)
                if "error" in out:
                    raise SystemExit(f"{name} {method} seed {seed}: {out['error']}\n{out.get('traceback', '')}")
                for p in out["points"]:
                    rep = ranking_report(Yt, p.pop("scores"), ks=(1, 3, 5), propensities=prop)
                    p.update({k: rep[k] for k in _METRICS})
                    p["ms_per_1k"] = 1000.0 * p["predict_s"] / Xt.shape[0] * 1000.0
                out = {k: v for k, v in out.items() if k == "points" or isinstance(v, (int, float, bool, str, type(None)))}
                print(json.dumps({k: v for k, v in out.items() if k != "points"}), flush=True)
                per_seed.append(out)
            result["methods"][method] = over_seeds(per_seed, args.seeds)
    result["seeds"] = list(args.seeds)
    result["load_after"] = os.getloadavg()[0]
    return result


_KEYS = ("P@1", "P@5", "PSP@5")
_METRICS = ("P@1", "P@3", "P@5", "PSP@5")


def over_seeds(runs: list[dict], seeds: list[int]) -> dict:
    """One method's sweeps with different label-tree seeds as one curve: per (threshold, beam) the
    mean of each metric (one tree is one draw: its seed moves P@1 by a few tenths), the median
    prediction time and the mean model size; every seed's figures are kept under ``per_seed``."""
    points = []
    for i, first in enumerate(runs[0]["points"]):
        same = [r["points"][i] for r in runs]
        assert all((p["threshold"], p["beam"]) == (first["threshold"], first["beam"]) for p in same)
        point = {"threshold": first["threshold"], "beam": first["beam"],
                 **{k: float(np.mean([p[k] for p in same])) for k in _METRICS},
                 "ms_per_1k": float(np.median([p["ms_per_1k"] for p in same])),
                 "predict_s": float(np.median([p["predict_s"] for p in same])),
                 "model_bytes": float(np.mean([p["model_bytes"] for p in same]))}
        if len(runs) > 1:
            point["per_seed"] = {str(s): {k: p[k] for k in (*_METRICS, "ms_per_1k", "model_bytes")}
                                 for s, p in zip(seeds, same)}
        points.append(point)
    out = {k: v for k, v in runs[0].items() if k != "points"}
    out["train_s"] = float(np.median([r["train_s"] for r in runs]))
    out["points"] = points
    return out


def series_name(trees: int | str) -> str:
    """The method name of an xmc series: ``xmc`` for the default model, else ``xmc-<n>trees``."""
    return "xmc" if trees == "auto" else f"xmc-{trees}trees"


def xmc_points(result: dict) -> list[dict]:
    """Every xmc point of a result, each tagged with its series."""
    return [{**p, "series": m} for m, data in result["methods"].items() if m.startswith("xmc")
            for p in data["points"]]


def dominated_by(point: dict, others: list[dict], cost: str) -> dict | None:
    """The cheapest ``others`` point at least as accurate (every metric of _KEYS) at no more ``cost``."""
    ok = [o for o in others if o[cost] <= point[cost] and all(o[k] >= point[k] for k in _KEYS)]
    return min(ok, key=lambda o: o[cost]) if ok else None


def _seeds_note(result: dict) -> str:
    """How many label trees each point averages, and how far apart their P@1 lay."""
    seeds = result.get("seeds", [0])
    if len(seeds) == 1:
        return f" One label tree per method (seed {seeds[0]})."
    spread = ", ".join(
        f"{m} {np.mean([max(v['P@1'] for v in p['per_seed'].values()) - min(v['P@1'] for v in p['per_seed'].values()) for p in data['points']]) * 100:.2f}"
        for m, data in result["methods"].items())
    return (f" Each method trained once per label-tree seed ({', '.join(map(str, seeds))}; xmc's two-tree series"
            f" uses trees s and s + 1); accuracy is the mean over the seeds, prediction time the median, train"
            f" time the median. P@1 spread between seeds (max - min, mean over a series' points): {spread}.")


def _defaults_line(result: dict) -> list[str]:
    """Part 1 of issue 23 in one line: xmc's default point against PECOS's (threshold 0.1, beam 10)."""
    from xmc.ranker.hierarchy import auto_weight_threshold

    def at(method: str, threshold: float) -> dict | None:
        pts = result["methods"].get(method, {}).get("points", [])
        return next((p for p in pts if p["beam"] == 10 and abs(p["threshold"] - threshold) < 1e-12), None)

    mine, theirs = at("xmc", auto_weight_threshold(result["labels"])), at("pecos", 0.1)
    if mine is None or theirs is None:
        return []
    diffs = ", ".join(f"{k} {100 * (mine[k] - theirs[k]):+.2f}" for k in _METRICS)
    return ["", f"Defaults (xmc: threshold {mine['threshold']:g}, beam 10; PECOS: 0.1, beam 10), xmc minus PECOS: "
                f"{diffs}; prediction time {mine['ms_per_1k'] / theirs['ms_per_1k']:.2f}x, model "
                f"{mine['model_bytes'] / theirs['model_bytes']:.2f}x."]


def dataset_table(result: dict) -> list[str]:
    pecos = result["methods"]["pecos"]
    xmc_all = xmc_points(result)
    trained = ", ".join(f"{m} {data['train_s']:.1f} s" for m, data in result["methods"].items() if m.startswith("xmc"))
    lines = [f"### {result['dataset']}", "",
             f"Train {result['train_docs']:,}, test {result['test_docs']:,}, {result['labels']:,} labels. "
             f"Date: {result['date']}. Load average {result['load_before']:.1f} before, {result['load_after']:.1f} "
             f"after. Training once at threshold {min(p['threshold'] for p in pecos['points']):g}: "
             f"{trained}, PECOS {pecos['train_s']:.1f} s."
             + ("" if pecos.get("pruning_equals_training") is None else
                f" PECOS pruned to 0.1 equals PECOS trained at 0.1: {pecos['pruning_equals_training']}.")
             + _seeds_note(result)
             + f" Command: `{result['command']}`", "",
             "| method | threshold | beam | P@1 | P@3 | P@5 | PSP@5 | predict (ms / 1k docs) | model (MB) | "
             "PECOS point dominated by xmc (time) | (size) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for method, data in result["methods"].items():
        for p in data["points"]:
            dom_t = dom_s = ""
            if method == "pecos":
                for cost, col in (("ms_per_1k", "t"), ("model_bytes", "s")):
                    d = dominated_by(p, xmc_all, cost)
                    text = f"yes: {d['series']} {d['threshold']:g} / beam {d['beam']}" if d else "**no**"
                    dom_t, dom_s = (text, dom_s) if col == "t" else (dom_t, text)
            lines.append(f"| {method} | {p['threshold']:g} | {p['beam']} | {100 * p['P@1']:.2f} | {100 * p['P@3']:.2f} | "
                         f"{100 * p['P@5']:.2f} | {100 * p['PSP@5']:.2f} | {p['ms_per_1k']:.0f} | "
                         f"{p['model_bytes'] / 2**20:.1f} | {dom_t} | {dom_s} |")
    lines += _defaults_line(result)
    n = len(pecos["points"])
    n_t = sum(dominated_by(p, xmc_all, "ms_per_1k") is not None for p in pecos["points"])
    n_s = sum(dominated_by(p, xmc_all, "model_bytes") is not None for p in pecos["points"])
    lines += ["", f"PECOS points dominated by an xmc point: {n_t} of {n} at no more prediction time, "
                  f"{n_s} of {n} at no larger model."]
    return lines


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 7), squeeze=False)
    for col, result in enumerate(results):
        for row, (cost, label, scale) in enumerate((("ms_per_1k", "predict (ms / 1k docs)", 1.0),
                                                    ("model_bytes", "model (MB)", 2**-20))):
            ax = axes[row][col]
            styles = {"xmc": "o-", "pecos": "s--"}
            for method in result["methods"]:
                style = styles.get(method, "^-")
                pts = [p for p in result["methods"][method]["points"] if p["beam"] == 10]
                ax.plot([p[cost] * scale for p in pts], [100 * p["P@1"] for p in pts], style, label=f"{method} P@1")
                ax.plot([p[cost] * scale for p in pts], [100 * p["PSP@5"] for p in pts], style, alpha=0.5,
                        label=f"{method} PSP@5")
                for p in pts:
                    ax.annotate(f"{p['threshold']:g}", (p[cost] * scale, 100 * p["P@1"]), fontsize=6)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_title(f"{result['dataset']} (beam 10)", fontsize=9)
            if col == 0:
                ax.set_ylabel("P@1 / PSP@5 (%)")
            ax.legend(fontsize=6)
    fig.text(0.01, 0.005, "Generated by xmc benchmarks/bench_tradeoff.py; labels: weight threshold.", fontsize=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def render(results_dir: str, notes: str, section: str = SECTION) -> str:
    """The section's text from every JSON in ``results_dir``; its figure is ``docs/<section>.png``."""
    files = sorted(f for f in os.listdir(results_dir) if f.endswith(".json"))
    results = [json.load(open(os.path.join(results_dir, f))) for f in files]
    plot(results, os.path.join(_ROOT, "docs", f"{section}.png"))
    lines = [__doc__.split("\n\n", 2)[2].strip().replace("\n", " "), "",
             f"![accuracy against prediction time and model size](docs/{section}.png)", ""]
    if notes:
        lines += [notes, ""]
    for result in results:
        lines += dataset_table(result) + [""]
    return "\n".join(lines).rstrip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="bibtex")
    ap.add_argument("--thresholds", type=lambda s: [float(x) for x in s.split(",")], default=list(THRESHOLDS))
    ap.add_argument("--beams", type=lambda s: [int(x) for x in s.split(",")], default=list(BEAMS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--xmc-trees", type=lambda s: [x if x == "auto" else int(x) for x in s.split(",")],
                    default=["auto", 2], help="one xmc series per tree count (trees_per_indexer); auto: the default")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0],
                    help="label-tree seeds (xmc's indexer seed, PECOS's Indexer.gen seed): each method is trained "
                         "once per seed and its accuracy averaged over them")
    ap.add_argument("--check-pruning", action="store_true", help="also train PECOS at 0.1 and compare weights")
    ap.add_argument("--timeout", type=float, default=7200.0)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--results-dir", default=None,
                    help="where each data set's JSON is kept (committed: --write plots every data set from them); "
                         "default benchmarks/results/<--section>, so a section is never rebuilt from another's files")
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    ap.add_argument("--section", default=SECTION,
                    help="the BENCHMARKS.md section (and docs/<section>.png) that --write rebuilds: a sweep kept in "
                         "its own --results-dir (a denser grid, say) gets its own section beside the main one")
    ap.add_argument("--title", default="", help="the heading of a --section other than the main one")
    ap.add_argument("--notes", default="")
    args = ap.parse_args(argv)
    args.results_dir = args.results_dir or os.path.join(_HERE, "results", args.section)
    os.makedirs(args.results_dir, exist_ok=True)
    for name in [d for d in args.datasets.split(",") if d]:
        result = run_dataset(name, args)
        with open(os.path.join(args.results_dir, f"{name}.json"), "w") as f:
            json.dump(result, f)
        print("\n".join(dataset_table(result)), flush=True)
    if args.write:
        # A data set without a JSON file keeps its table as written (the figure shows the files only).
        body = markdown_section.keep_missing_subsections(render(args.results_dir, args.notes, args.section),
                                                         markdown_section.read_section(args.section))
        title = TITLE if args.section == SECTION else f"{TITLE}: {args.title or args.section}"
        markdown_section.write_section(args.section, body, title)


if __name__ == "__main__":
    main()
