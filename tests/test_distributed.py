"""Distributed XR-Linear: the task plan (in-process), and a 2-worker local Dask cluster.

The plan tests run the tasks in this process: every classifier is trained exactly once and the
assembled weights equal the single-process ones bit for bit. The cluster tests share one local
cluster (started once, about 4 s): distributed training, sharded prediction, the CLI against
the cluster's address, and a worker killed in the middle of a task.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.datasets.sparse import make_sparse_problem
from xmc.datasets.synthetic import make_corpus
from xmc.distributed.plan import CRASH_ONCE_ENV, assemble, materialise, plan, run_task
from xmc.errors import ConfigError
from xmc.indexing.kmeans import hierarchical_kmeans
from xmc.indexing.label_repr import pifa
from xmc.indexing.tree import ClusterChain
from xmc.models.xr_linear import XRLinear, XRLinearConfig
from xmc.ranker.hierarchy import HierarchicalLinear, LinearTrainConfig
from xmc.ranker.negatives import binarize

CONFIG = {"indexers": [{"branching": 4, "max_leaf_size": 10}], "n_threads": 1}


@pytest.fixture(scope="module")
def problem():
    p = make_sparse_problem(n_labels=400, n_train=1200, n_test=300, n_features=5000, seed=2)
    X = sp.csr_matrix(p.X_train, dtype=np.float32)
    return X, binarize(p.Y_train), sp.csr_matrix(p.X_test, dtype=np.float32)


@pytest.fixture(scope="module")
def chain(problem):
    X, Y, _ = problem
    return hierarchical_kmeans(pifa(X, Y), branching=4, max_leaf_size=10, seed=0)


def _same(A: sp.spmatrix, B: sp.spmatrix) -> bool:
    A, B = sp.csc_matrix(A), sp.csc_matrix(B)
    return (A.shape == B.shape and np.array_equal(A.indptr, B.indptr) and np.array_equal(A.indices, B.indices)
            and np.array_equal(A.data, B.data))


def _run_plan_here(X, Y, chain, config, n_workers):
    specs = plan(Y, chain, config, n_workers, row_weight=np.diff(X.indptr))
    results = [run_task(materialise(s, X, Y, config), n_threads=1) for s in specs]
    return specs, assemble(chain, X.shape[1], config, iter(results))


@pytest.mark.parametrize("n_workers", [1, 2, 8])
@pytest.mark.parametrize("loss", ["squared-hinge", "logistic"])
def test_plan_equals_single_process_bitwise(problem, chain, n_workers, loss):
    X, Y, _ = problem
    config = LinearTrainConfig(loss=loss, max_iter=20)
    single = HierarchicalLinear.fit(X, Y, chain, config, n_threads=1)
    specs, distributed = _run_plan_here(X, Y, chain, config, n_workers)
    assert len(specs) >= 1 + chain.level_sizes[0]  # the top task and at least one task per level-1 node
    if n_workers == 8:  # a finer split: some sub-trees were cut into their node task and their children's
        assert any(s.key.startswith("node-L1") for s in specs)
    for W1, W2 in zip(single.weights, distributed.weights):
        assert _same(W1, W2)


def test_flat_tree_is_split_into_chunks_of_the_label_layer(problem):
    X, Y, _ = problem
    flat = ClusterChain.flat(Y.shape[1])
    config = LinearTrainConfig(max_iter=3)
    specs, distributed = _run_plan_here(X[:400], Y[:400], flat, config, 2)
    assert len(specs) == 8 and all(s.rows is None for s in specs)  # every label trains on every row
    assert _same(HierarchicalLinear.fit(X[:400], Y[:400], flat, config, n_threads=1).weights[0],
                 distributed.weights[0])


def test_tasks_receive_only_the_rows_and_labels_below_their_node(problem, chain):
    X, Y, _ = problem
    specs = plan(Y, chain, LinearTrainConfig(), 4, row_weight=np.diff(X.indptr))
    trained = {}
    for spec in specs:
        if spec.key == "top":
            assert spec.rows is None and [p.layer for p in spec.parts] == [0]
            continue
        kind, level, node = spec.key.split("-")
        level, node = int(level[1:]), int(node)
        labels = sp.csc_matrix(chain.label_to_level(level - 1))[:, node].nonzero()[0]  # the labels below node
        assert np.array_equal(spec.labels, labels)
        rows = np.flatnonzero(np.asarray(Y[:, labels].sum(axis=1)).ravel() > 0)
        assert np.array_equal(spec.rows, rows)  # exactly the rows with a label below the node
        task = materialise(spec, X, Y, LinearTrainConfig())
        assert task.X.shape == (len(rows), X.shape[1]) and task.Y.shape == (len(rows), len(labels))
        assert spec.parts[0].layer == level and (kind == "subtree") == (len(spec.parts) > 1)
        for part in spec.parts:
            for c in part.children:
                trained[part.layer, int(c)] = trained.get((part.layer, int(c)), 0) + 1
    # every classifier below the root layer exactly once
    assert sorted(trained) == [(j, c) for j in range(1, len(chain)) for c in range(chain.level_sizes[j])]
    assert set(trained.values()) == {1}
    # together the tasks below the root receive far fewer rows than a copy of X each
    assert sum(len(s.rows) for s in specs if s.rows is not None) < 0.5 * (len(specs) - 1) * X.shape[0]


def test_plan_refuses_matcher_aware_negatives(problem, chain):
    _, Y, _ = problem
    with pytest.raises(ConfigError, match="tfn"):
        plan(Y, chain, LinearTrainConfig(negatives="tfn+man"), 2)


def test_assemble_refuses_missing_classifiers(problem, chain):
    X, Y, _ = problem
    config = LinearTrainConfig(max_iter=5)
    specs = plan(Y, chain, config, 2)
    results = [run_task(materialise(s, X, Y, config), n_threads=1) for s in specs[:-1]]
    with pytest.raises(RuntimeError, match="classifiers"):
        assemble(chain, X.shape[1], config, iter(results))


# ---- on a 2-worker local cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("distributed")
    from xmc.distributed import DaskEngine

    with DaskEngine(workers=2, threads_per_worker=1) as eng:
        yield eng


@pytest.fixture(scope="module")
def single_model(problem):
    X, Y, _ = problem
    return XRLinear(XRLinearConfig.from_dict(CONFIG)).fit_matrix(X, Y, progress=False)


def test_distributed_training_equals_single_process(engine, problem, single_model):
    X, Y, _ = problem
    assert engine.n_workers == 2
    model = XRLinear(XRLinearConfig.from_dict(CONFIG)).fit_matrix(X, Y, progress=False, engine=engine)
    for W1, W2 in zip(single_model.trees_[0].weights, model.trees_[0].weights):
        assert _same(W1, W2)


def test_sharded_prediction_equals_single_process(engine, problem, single_model, tmp_path):
    _, _, X_test = problem
    single_model.save(tmp_path / "m")
    expected = single_model.predict(X_test, topk=5, beam_size=4)
    got = engine.predict(tmp_path / "m", X_test, shard_size=70, topk=5, beam_size=4)  # 5 shards, one short
    assert _same(expected, got)


def test_sharded_prediction_of_texts_featurises_on_the_workers(engine, tmp_path):
    corpus = make_corpus(n_train=120, n_test=50, n_labels=12, seed=1)
    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 4}]})
    model = XRLinear(config).fit(corpus.train, progress=False)
    model.save(tmp_path / "text-model")
    assert _same(model.predict(corpus.test), engine.predict(tmp_path / "text-model", corpus.test, shard_size=40))


def test_a_worker_killed_mid_training_is_retried_with_the_same_result(engine, problem, single_model, tmp_path):
    """The first task to finish a layer kills its worker process (os._exit) before returning; the
    scheduler reruns it on a live worker (the nanny restarts the dead one) and the model is the same."""
    X, Y, _ = problem
    flag = str(tmp_path / "crashed")
    # lambdas travel by value (a bound os.environ method would carry a copy of the environment)
    engine.client.run(lambda: os.environ.update({CRASH_ONCE_ENV: flag}))
    try:
        model = XRLinear(XRLinearConfig.from_dict(CONFIG)).fit_matrix(X, Y, progress=False, engine=engine)
    finally:
        engine.client.run(lambda: os.environ.pop(CRASH_ONCE_ENV, None))
    assert os.path.exists(flag)  # a worker did die
    for W1, W2 in zip(single_model.trees_[0].weights, model.trees_[0].weights):
        assert _same(W1, W2)
    engine.client.wait_for_workers(2, timeout=60)


def test_cli_train_and_predict_on_the_cluster(engine, tmp_path, capsys):
    from xmc.cli.main import main

    address = engine.client.scheduler.address
    data = tmp_path / "data"
    assert main(["data", "generate", "--labels", "120", "--out", str(data)]) == 0
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    common = ["--model", "xr-linear", "--train", str(data / "train.txt"), "--config", str(tmp_path / "c.json")]
    assert main(["train", *common, "--out", str(tmp_path / "m1")]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "m2"), "--engine", "dask", "--address", address]) == 0
    for name in sorted(os.listdir(tmp_path / "m1" / "tree-0" / "layer-0")):
        assert (tmp_path / "m1" / "tree-0" / "layer-0" / name).read_bytes() == \
            (tmp_path / "m2" / "tree-0" / "layer-0" / name).read_bytes()
    test = str(data / "test.txt")
    assert main(["predict", "--model", str(tmp_path / "m1"), "--input", test, "--out", str(tmp_path / "p1")]) == 0
    assert main(["predict", "--model", str(tmp_path / "m2"), "--input", test, "--out", str(tmp_path / "p2"),
                 "--engine", "dask", "--address", address]) == 0
    assert (tmp_path / "p1").read_bytes() == (tmp_path / "p2").read_bytes()


def test_cli_refuses_engine_options_that_cannot_apply(tmp_path, capsys):
    from xmc.cli.main import main

    data = tmp_path / "data"
    assert main(["data", "generate", "--labels", "50", "--out", str(data)]) == 0
    base = ["train", "--train", str(data / "train.txt"), "--out", str(tmp_path / "m")]
    assert main([*base, "--model", "lightxml", "--engine", "dask"]) == 2
    assert "xr-linear only" in capsys.readouterr().err
    assert main([*base, "--model", "xr-linear", "--address", "tcp://127.0.0.1:1"]) == 2
    assert "--engine" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_without_dask_the_engine_says_how_to_install_it(monkeypatch):
    import sys

    from xmc.distributed import DaskEngine
    from xmc.errors import EngineError

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(EngineError, match=r"xmc\[distributed\]"):
        DaskEngine(workers=2)
