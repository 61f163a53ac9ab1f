"""How much does the label tree's clustering matter? The same linear solver on different label trees.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/compare_label_trees.py --dataset synthetic-10k \
        --trees xmc:0,xmc:1,pecos:0,pecos:1,random:0,random:1,topic:0 --json /tmp/trees.jsonl

A 10% validation split of the training set (never test; the rule of ``validate_xr_linear.py``).
One label representation for every clustered tree, PIFA with PECOS's document weighting
(``xmc.indexing.label_repr.pifa(normalize_labels=True)``, equal to PECOS's to 6e-8), so that
only the clustering differs:

* ``xmc:S`` -- ``xmc.indexing.kmeans.hierarchical_kmeans`` with seed S (xmc's default tree);
* ``pecos:S`` -- ``pecos.xmc.Indexer.gen`` with seed S (PECOS's default tree);
* ``random:S`` -- labels dealt to the same number of equal leaves by a random permutation;
* ``topic:S`` -- the generated problems only: leaves filled topic by topic from the
  generator's hidden topics (an oracle for the structure the generator plants).

Every tree has xmc's default shape (leaves of <= 100 labels, 16-ary above them) and is trained by
xmc's solver with the default settings (weight threshold 0.1, solver seed 0), then scored with
beam 10 and the l3-hinge post-processor. The trees differ; nothing else does.
"""

from __future__ import annotations

import argparse
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


def leaf_tree(leaf_order: np.ndarray, n_labels: int, max_leaf_size: int = 100, branching: int = 16):
    """A tree of xmc's default shape whose leaves are consecutive runs of ``leaf_order``."""
    from xmc.indexing.kmeans import chain_from_leaves, n_binary_splits

    n_leaves = 2 ** n_binary_splits(n_labels, max_leaf_size)
    rank = np.empty(n_labels, dtype=np.int64)
    rank[leaf_order] = np.arange(n_labels)
    return chain_from_leaves(rank * n_leaves // n_labels, n_leaves, branching)


def build_tree(kind: str, seed: int, Z: sp.csr_matrix, topics: np.ndarray | None, threads: int):
    from pecos.xmc import Indexer

    from xmc.indexing.kmeans import hierarchical_kmeans
    from xmc.indexing.tree import ClusterChain

    n_labels = Z.shape[0]
    if kind == "xmc":
        return hierarchical_kmeans(Z, seed=seed, n_threads=threads)
    if kind == "pecos":
        return ClusterChain([sp.csc_matrix(c) for c in Indexer.gen(Z, threads=threads, seed=seed)])
    rng = np.random.default_rng(seed)
    if kind == "random":
        return leaf_tree(rng.permutation(n_labels), n_labels)
    if kind == "topic":
        return leaf_tree(np.lexsort((rng.random(n_labels), topics)), n_labels)
    raise SystemExit(f"unknown tree {kind!r}: choose from xmc, pecos, random, topic")


def main(argv=None) -> None:
    from xmc.data.split import train_valid_rows
    from xmc.indexing.label_repr import pifa
    from xmc.metrics import evaluate, train_propensities
    from xmc.ranker.hierarchy import HierarchicalLinear, LinearTrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic-10k", help="as validate_xr_linear.py: eurlex57k, bibtex, synthetic-*")
    ap.add_argument("--trees", default="xmc:0,pecos:0,random:0", help="comma-separated KIND:SEED")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--json", default=None, help="append result rows here (JSON lines)")
    args = ap.parse_args(argv)
    runs = [(kind, int(seed)) for kind, seed in (t.split(":") for t in args.trees.split(","))]
    topics = None
    if args.dataset.startswith("synthetic-"):
        problem = bench_xr_linear.synthetic_problem(args.dataset)
        X, Y, topics = problem.X_train, problem.Y_train, problem.label_topic
    elif any(kind == "topic" for kind, _ in runs):
        raise SystemExit("topic trees need a generated data set (synthetic-*)")
    else:
        X, Y, _, _ = bench_xr_linear.load_dataset(args.dataset, args.cache_dir)
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sort_indices()
    Y = sp.csr_matrix(Y, dtype=np.float32)
    train, valid = train_valid_rows(X.shape[0], 0.1, 0)
    Xtr, Ytr, Xva, Yva = X[train], Y[train], X[valid], Y[valid]
    Z = pifa(Xtr, Ytr, normalize_labels=True)
    propensities = train_propensities(np.asarray(Ytr.sum(axis=0)).ravel(), n_docs=Ytr.shape[0])
    for kind, seed in runs:
        t0 = time.perf_counter()
        chain = build_tree(kind, seed, Z, topics, args.threads)
        t1 = time.perf_counter()
        model = HierarchicalLinear.fit(Xtr, Ytr, chain, LinearTrainConfig(weight_threshold=0.1), n_threads=args.threads)
        scores = model.predict(Xva, beam_size=10, topk=10, post_processor="l3-hinge", n_threads=args.threads)
        report = evaluate(Yva, scores, propensities=propensities)
        row = {"dataset": args.dataset, "tree": kind, "seed": seed,
               **{k: round(100 * report[k], 2) for k in ("P@1", "P@3", "P@5", "PSP@5")},
               "tree_s": round(t1 - t0, 1), "total_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
