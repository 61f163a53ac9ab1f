"""Choose XR-Linear settings on a validation split of the training set (never on test).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/validate_xr_linear.py \
        --variants base,man,wide64 --threads 1 --json /tmp/xrl_valid.jsonl

The train matrices of ``bench_xr_linear.py`` (EURLEX57K's cached TF-IDF, or bibtex with
``--dataset bibtex``) are split with ``numpy.random.default_rng(seed).permutation`` into 90%
train / 10% validation (the rule of ``xmc.data.split.train_valid_split``), or with ``--folds K``
into K folds whose validation scores are averaged (small data sets: bibtex's 10% is 488
documents, too few to tell settings apart). Each variant is ``configs/xr-linear.json`` with the
overrides listed in ``VARIANTS``; every trained model is also scored with prediction-time
alternatives (beam 20, sigmoid post-processor), which cost no retraining. Rows are appended
to ``--json`` as they finish, so variants can run as separate (parallel) processes;
``--from-json`` prints the table of all saved rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)

import bench_xr_linear  # noqa: E402

# name -> (description, overrides of configs/xr-linear.json). Every variant states its weight
# threshold, and builds one tree per indexer entry unless it says otherwise, so the rows stay what
# they say when the shipped default changes ("auto" is the shipped default as it is).
_PECOS = {"weight_threshold": 0.1}
_ONE_TREE_EACH = {"trees_per_indexer": 1}
VARIANTS: dict[str, tuple[str, dict]] = {
    "auto": ("the shipped default (weight threshold and tree count chosen by the label count)",
             {"trees_per_indexer": "auto"}),
    "auto-C1": ("the shipped default with C=1 (PECOS's)", {"trees_per_indexer": "auto", "train": {"C": 1.0}}),
    "auto-C0.5": ("the shipped default with C=0.5", {"trees_per_indexer": "auto", "train": {"C": 0.5}}),
    "auto-C0.7": ("the shipped default with C=0.7", {"trees_per_indexer": "auto", "train": {"C": 0.7}}),
    "auto-C0.35": ("the shipped default with C=0.35", {"trees_per_indexer": "auto", "train": {"C": 0.35}}),
    "auto-C1.5": ("the shipped default with C=1.5", {"trees_per_indexer": "auto", "train": {"C": 1.5}}),
    "auto-C2": ("the shipped default with C=2", {"trees_per_indexer": "auto", "train": {"C": 2.0}}),
    "auto-C4": ("the shipped default with C=4", {"trees_per_indexer": "auto", "train": {"C": 4.0}}),
    "base": ("PECOS defaults: 16-ary tree, leaves <= 100, tfn, weight threshold 0.1", {"train": _PECOS}),
    "man": ("base + negatives tfn+man (model's own beam, b=10)", {"train": {**_PECOS, "negatives": "tfn+man"}}),
    "wide64": ("base with one 64-way level over leaves <= 100 (Bonsai-like shallow tree)",
               {"indexers": [{"branching": 64}], "train": _PECOS}),
    "wide64-man": ("wide64 + tfn+man",
                   {"indexers": [{"branching": 64}], "train": {**_PECOS, "negatives": "tfn+man"}}),
    "thr0.05": ("base with weight threshold 0.05 (configs/xr-linear-balanced.json)", {"train": {"weight_threshold": 0.05}}),
    "thr0.02": ("base with weight threshold 0.02 (configs/xr-linear-accurate.json)", {"train": {"weight_threshold": 0.02}}),
    "thr0.01": ("base with weight threshold 0.01", {"train": {"weight_threshold": 0.01}}),
    "wide64-thr0.05": ("wide64 + weight threshold 0.05",
                       {"indexers": [{"branching": 64}], "train": {"weight_threshold": 0.05}}),
    "leaf50": ("base with leaves <= 50 labels", {"indexers": [{"max_leaf_size": 50}], "train": _PECOS}),
    "flat": ("base without a tree (one-vs-all)", {"indexers": [{"branching": 1}], "train": _PECOS}),
    "C0.35": ("base with C=0.35", {"train": {**_PECOS, "C": 0.35}}),
    "C0.5": ("base with C=0.5", {"train": {**_PECOS, "C": 0.5}}),
    "C0.5-thr0.02": ("base with C=0.5 and weight threshold 0.02 (configs/xr-linear-small-data.json)",
                     {"train": {"C": 0.5, "weight_threshold": 0.02}}),
    "pifa-l2": ("base with PIFA over L2-normalised label rows (PECOS's normalized_Y)",
                {"indexers": [{"pifa_normalize_labels": True}], "train": _PECOS}),
    # base resolves pifa_normalize_labels "auto" by the label count (True from 50,000 labels), so
    # from there on the binary weighting needs its own row.
    "pifa-binary": ("base with PIFA over the binary label rows (pifa_normalize_labels false)",
                    {"indexers": [{"pifa_normalize_labels": False}], "train": _PECOS}),
    "pifa-l2-thr0.05": ("pifa-l2 with weight threshold 0.05",
                        {"indexers": [{"pifa_normalize_labels": True}], "train": {"weight_threshold": 0.05}}),
    "pifa-l2-C0.5": ("pifa-l2 with C=0.5",
                     {"indexers": [{"pifa_normalize_labels": True}], "train": {**_PECOS, "C": 0.5}}),
    "pifa-l2-C0.5-thr0.05": ("pifa-l2 with C=0.5 and weight threshold 0.05",
                             {"indexers": [{"pifa_normalize_labels": True}],
                              "train": {"C": 0.5, "weight_threshold": 0.05}}),
    # The same algorithm with other seeds (tree initialisation and solver order): the spread between
    # runs of one method, against which a difference between two methods is read.
    "seed1": ("base with seed 1 (clustering and solver)", {"indexers": [{"seed": 1}], "train": {**_PECOS, "seed": 1}}),
    "seed2": ("base with seed 2 (clustering and solver)", {"indexers": [{"seed": 2}], "train": {**_PECOS, "seed": 2}}),
    "ensemble2": ("base with 2 trees (seeds 0, 1), scores averaged",
                  {"indexers": [{"seed": 0}, {"seed": 1}], "train": _PECOS}),
    "pifa-l2-iter5": ("pifa-l2 with at most 5 2-means iterations per split",
                      {"indexers": [{"pifa_normalize_labels": True, "max_iter": 5}], "train": _PECOS}),
    "pifa-l2-iter10": ("pifa-l2 with at most 10 2-means iterations per split",
                       {"indexers": [{"pifa_normalize_labels": True, "max_iter": 10}], "train": _PECOS}),
    "iter5": ("base with at most 5 2-means iterations per split", {"indexers": [{"max_iter": 5}], "train": _PECOS}),
    **{f"{name}-seed{seed}": (f"{name} with seed {seed} (clustering and solver)",
                              {"indexers": [{**change, "seed": seed}], "train": {**_PECOS, "seed": seed}})
       for name, change in (("pifa-l2", {"pifa_normalize_labels": True}),
                            ("pifa-l2-iter5", {"pifa_normalize_labels": True, "max_iter": 5}))
       for seed in (1, 2)},
    "pifa-l2-ensemble2": ("pifa-l2 with 2 trees (seeds 0, 1), scores averaged",
                          {"indexers": [{"seed": 0, "pifa_normalize_labels": True},
                                        {"seed": 1, "pifa_normalize_labels": True}], "train": _PECOS}),
}
# Not an xmc variant: PECOS with its defaults (PIFA -> Indexer.gen -> XLinearModel.train) on the same splits.
PECOS_VARIANT = "pecos"
PREDICT_VARIANTS = {
    "beam10": {"beam_size": 10},
    "beam20": {"beam_size": 20},
    "sigmoid": {"beam_size": 10, "post_processor": "sigmoid"},
}


def apply_overrides(base: dict, overrides: dict) -> dict:
    cfg = copy.deepcopy(base)
    for key, value in overrides.items():
        if key == "indexers":
            while len(cfg["indexers"]) < len(value):  # more trees: copies of the first, then changed
                cfg["indexers"].append(copy.deepcopy(cfg["indexers"][0]))
            for indexer, change in zip(cfg["indexers"], value):
                indexer.update(change)
        elif isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def splits(n: int, valid_fraction: float, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_rows, valid_rows) pairs: one holdout split, or ``folds`` >= 2 folds."""
    from xmc.data.split import train_valid_rows

    if folds >= 2:
        parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
        return [(np.sort(np.concatenate(parts[:i] + parts[i + 1:])), np.sort(parts[i])) for i in range(folds)]
    return [train_valid_rows(n, valid_fraction, seed)]


def _pecos_fit_predict(Xtr, Ytr, threads: int):
    """PECOS with its defaults: a predict(X, beam_size, post_processor) callable (as xmc's)."""
    import peers

    model, chain, _ = peers.train_pecos(Xtr, Ytr, threads=threads)

    def predict(X, topk, beam_size=10, post_processor="l3-hinge"):
        return model.predict(sp.csr_matrix(X, dtype=np.float32), beam_size=beam_size, only_topk=topk,
                             post_processor=post_processor, threads=threads)
    return predict, [c.shape[0] for c in chain]


def run_variant(name: str, X, Y, valid_fraction: float, seed: int, threads: int, folds: int = 0,
                dataset: str = "eurlex57k", weight_dtypes: tuple[str, ...] = ("float32",),
                predict_variants: tuple[str, ...] = tuple(PREDICT_VARIANTS)) -> list[dict]:
    """Rows per (prediction variant, weight dtype): each trained xmc model is also scored with its
    weights stored as each of ``weight_dtypes`` (``XRLinear.pruned(weight_dtype=...)``, equal to
    training with that ``train.weight_dtype`` under tfn negatives; PECOS rows: float32 only)."""
    from xmc.metrics import evaluate, train_propensities
    from xmc.models.xr_linear import XRLinear, XRLinearConfig
    from xmc.ranker.beam import VALUE_TYPES

    if name == PECOS_VARIANT:
        description = "PECOS defaults (libpecos: PIFA, Indexer.gen, XLinearModel.train)"
        weight_dtypes = ("float32",)
    else:
        with open(os.path.join(_HERE, "..", "configs", "xr-linear.json")) as f:
            base = json.load(f)
        description, overrides = VARIANTS[name]
        config = XRLinearConfig.from_dict(apply_overrides(apply_overrides(base, _ONE_TREE_EACH), overrides))
        config.n_threads = threads
        # trained with the widest, then narrowed
        config.train.weight_dtype = max(weight_dtypes, key=lambda dt: np.dtype(VALUE_TYPES[dt]).itemsize)
    keys = ("P@1", "P@3", "P@5", "PSP@5")
    sums = {(pname, dt): dict.fromkeys(keys, 0.0) for pname in predict_variants for dt in weight_dtypes}
    train_s = 0.0
    parts = splits(X.shape[0], valid_fraction, folds, seed)
    for train_rows, valid_rows in parts:
        Xtr, Ytr, Xva, Yva = X[train_rows], Y[train_rows], X[valid_rows], Y[valid_rows]
        t0 = time.perf_counter()
        if name == PECOS_VARIANT:
            predict, levels = _pecos_fit_predict(Xtr, Ytr, threads)
            predicts = {"float32": predict}
        else:
            model = XRLinear(config).fit_matrix(Xtr, Ytr, progress=False)
            levels = model.trees_[0].chain.level_sizes
            predicts = {dt: model.pruned(weight_dtype=dt).predict for dt in weight_dtypes}
        train_s += (time.perf_counter() - t0) / len(parts)
        propensities = train_propensities(np.asarray(Ytr.sum(axis=0)).ravel(), n_docs=Ytr.shape[0])
        for (pname, dt), sum_ in sums.items():
            report = evaluate(Yva, predicts[dt](Xva, topk=10, **PREDICT_VARIANTS[pname]), propensities=propensities)
            for k in keys:
                sum_[k] += report[k] / len(parts)
    return [{
        "variant": name, "description": description, "predict": pname, "weight_dtype": dt, "dataset": dataset,
        "folds": max(folds, 1), "levels": levels, "train_s": train_s, "threads": threads, **sum_,
    } for (pname, dt), sum_ in sums.items()]


def table(rows: list[dict]) -> str:
    lines = ["| data (folds) | variant | prediction | P@1 | P@3 | P@5 | PSP@5 | train (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        data = f"{r.get('dataset', 'eurlex57k')} ({r.get('folds', 1)})"
        predict = r["predict"] + (f", {r['weight_dtype']}" if r.get("weight_dtype", "float32") != "float32" else "")
        lines.append(f"| {data} | {r['variant']}: {r['description']} | {predict} | {r['P@1']:.4f} | {r['P@3']:.4f} | "
                     f"{r['P@5']:.4f} | {r['PSP@5']:.4f} | {r['train_s']:.0f} ({r['threads']} thr.) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="base,man,wide64")
    ap.add_argument("--dataset", default="eurlex57k",
                    help="eurlex57k, bibtex, ave-* (plain XMC on title + description), demo / demo-N (xmc demo's corpus with N training documents), or synthetic-10k / synthetic-100k / synthetic-1m (bench_scale's "
                         "generated problems, training part only)")
    ap.add_argument("--valid-fraction", type=float, default=0.1)
    ap.add_argument("--folds", type=int, default=0, help="K >= 2: K-fold cross-validation instead of one split")
    ap.add_argument("--max-train-docs", type=int, default=0,
                    help="use only the first N training documents (how a setting depends on the data size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--predict", default=",".join(PREDICT_VARIANTS),
                    help=f"prediction variants to score each model with (of {', '.join(PREDICT_VARIANTS)})")
    ap.add_argument("--weight-dtypes", default="float32",
                    help="score each trained xmc model with its weights stored as each of these (e.g. float32,int16,int8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--json", default=None, help="append result rows here (JSON lines)")
    ap.add_argument("--from-json", default=None, help="only print the table of saved rows")
    args = ap.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return
    X, Y, _, _ = bench_xr_linear.load_dataset(args.dataset, args.cache_dir)
    dataset = args.dataset
    if args.max_train_docs:
        X, Y = X[:args.max_train_docs], Y[:args.max_train_docs]
        dataset = f"{dataset}[:{args.max_train_docs}]"
    for name in args.predict.split(","):
        if name not in PREDICT_VARIANTS:
            raise SystemExit(f"unknown prediction variant {name!r}; choose from {sorted(PREDICT_VARIANTS)}")
    for name in args.variants.split(","):
        if name not in VARIANTS and name != PECOS_VARIANT:
            raise SystemExit(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
        rows = run_variant(name, sp.csr_matrix(X, dtype=np.float32), sp.csr_matrix(Y), args.valid_fraction, args.seed,
                           args.threads, folds=args.folds, dataset=dataset,
                           weight_dtypes=tuple(args.weight_dtypes.split(",")),
                           predict_variants=tuple(args.predict.split(",")))
        print(table(rows), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
