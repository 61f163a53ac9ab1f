"""XR-Linear: solvers, label tree, negatives, beam search, masking, ensembles, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from xmc.datasets.synthetic import make_corpus
from xmc.errors import ConfigError, ModelFormatError
from xmc.indexing.kmeans import hierarchical_kmeans
from xmc.indexing.label_repr import pifa
from xmc.indexing.tree import ClusterChain
from xmc.ranker.hierarchy import HierarchicalLinear, LinearTrainConfig
from xmc.ranker.negatives import negative_indicator, teacher_forced, topb_to_indicator
from xmc.ranker.solvers import LOSS_LOGISTIC, LOSS_SQUARED_HINGE, train_children
from xmc.models.xr_linear import XRLinear, XRLinearConfig


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_train=600, n_test=150, n_labels=60, seed=3)


@pytest.fixture(scope="module")
def tfidf_problem(corpus):
    model = XRLinear(XRLinearConfig.from_dict({"features": {"min_df": 1}}))
    model.fit(corpus.train, progress=False)
    X = model.featurizer_.transform(corpus.train.input_texts(model.config.features.fields))
    Xt = model.featurizer_.transform(corpus.test.input_texts(model.config.features.fields))
    return X, corpus.train.Y, Xt


def _solve_one(X, y, loss, C=1.0):
    """Weights (d + 1,) of one binary problem on all rows of X via train_children."""
    X = sp.csr_matrix(X, dtype=np.float32)
    n, d = X.shape
    pos = sp.csc_matrix(np.asarray(y, dtype=np.float32)[:, None])
    neg = sp.csc_matrix(np.ones((n, 1), dtype=np.float32))
    sq = np.asarray(X.multiply(X).sum(1), dtype=np.float64).ravel()
    ptr, idx, val, _ = train_children(
        X.indptr.astype(np.int64), X.indices, X.data, d, sq, 1.0,
        np.array([0]), np.array([0]), neg.indptr.astype(np.int64), neg.indices,
        pos.indptr.astype(np.int64), pos.indices, loss, C, 1e-6, 5000, 0.0, 0, 2,
    )
    w = np.zeros(d + 1)
    w[idx] = val
    return w


@pytest.mark.parametrize("loss", ["squared-hinge", "logistic"])
def test_solver_matches_liblinear(loss):
    rng = np.random.default_rng(0)
    X = sp.random(300, 40, density=0.2, random_state=1, format="csr", dtype=np.float32)
    y = (X @ rng.normal(size=40) > 0.05).astype(int)
    if loss == "squared-hinge":
        ref = LinearSVC(C=0.5, loss="squared_hinge", dual=True, tol=1e-8, max_iter=100000).fit(X, y)
        w = _solve_one(X, y, LOSS_SQUARED_HINGE, C=0.5)
    else:
        ref = LogisticRegression(C=0.5, solver="liblinear", tol=1e-10, max_iter=100000).fit(X, y)
        w = _solve_one(X, y, LOSS_LOGISTIC, C=0.5)
    expected = np.r_[ref.coef_.ravel(), ref.intercept_]
    np.testing.assert_allclose(w, expected, atol=1e-4)


@pytest.mark.parametrize("d, density", [(500, 0.05), (5000, 0.005)])
def test_compact_parent_copies_give_the_same_weights(d, density):
    # Small parents are solved on a per-thread copy with renumbered features; the weights
    # must equal those of the path that reads the shared matrix directly. That path collects
    # the weights by a scan of all d features when the parent's rows hold more non-zeros than
    # that (d=500: ~3,000 non-zeros per parent), else through the rows' features (d=5000).
    X = sp.random(200, d, density=density, random_state=2, format="csr", dtype=np.float32)
    rng = np.random.default_rng(1)
    Y = sp.csc_matrix((rng.random((200, 6)) < 0.2).astype(np.float32))
    neg = sp.csc_matrix((rng.random((200, 2)) < 0.6).astype(np.float32) + sp.csc_matrix(Y @ np.kron(np.eye(2), np.ones((3, 1)))))
    neg.data[:] = 1.0
    neg.sort_indices()
    Y = Y.multiply(sp.csc_matrix(neg @ np.kron(np.eye(2), np.ones((1, 3))))).tocsc()
    Y.sort_indices()
    sq = np.asarray(X.multiply(X).sum(1), dtype=np.float64).ravel()
    args = (X.indptr.astype(np.int64), X.indices.astype(np.uint32), X.data, d, sq, 1.0,
            np.arange(6), np.array([0, 0, 0, 1, 1, 1]), neg.indptr.astype(np.int64), neg.indices.astype(np.int32),
            Y.indptr.astype(np.int64), Y.indices.astype(np.int32), LOSS_SQUARED_HINGE, 1.0, 0.1, 50, 0.01, 0, 2)
    direct = train_children(*args, 0)
    compact = train_children(*args, 10**6)
    for a, b in zip(direct, compact):
        np.testing.assert_array_equal(a, b)
    assert len(direct[2]) > 0


def test_tree_invariants_and_determinism():
    Z = sp.random(1000, 300, density=0.05, random_state=0, format="csr", dtype=np.float32)
    chain = hierarchical_kmeans(Z, branching=4, max_leaf_size=40, seed=7)
    # 1000 / 40 = 25 -> ceil(log2 25) = 5 binary splits = 32 leaves (<= 40 labels each),
    # grouped 4-ary from the leaves up as in PECOS: 32 -> 8 -> 2 clusters.
    assert chain.level_sizes == [2, 8, 32, 1000]
    assert chain.leaf_sizes().max() <= 40
    for m in chain.matrices:  # every node (and label) in exactly one parent
        assert np.all(np.diff(sp.csr_matrix(m).indptr) == 1)
    for i in range(len(chain)):  # balanced: sibling sizes differ by at most one label
        sizes = np.asarray(chain.label_to_level(i).sum(axis=0)).ravel()
        assert sizes.max() - sizes.min() <= 1, (i, sizes.min(), sizes.max())
    again = hierarchical_kmeans(Z, branching=4, max_leaf_size=40, seed=7)
    assert all((a != b).nnz == 0 for a, b in zip(chain.matrices, again.matrices))
    other = hierarchical_kmeans(Z, branching=4, max_leaf_size=40, seed=8)
    assert any((a != b).nnz for a, b in zip(chain.matrices, other.matrices))


@pytest.mark.parametrize("budget", [0, 2_000])
def test_kmeans_compact_node_copies_give_the_same_tree(monkeypatch, budget):
    # Splitting a node on a copy with compact feature ids must not change a single side: the sums run
    # over the same values in the same order. Budget 2,000 mixes both paths (the upper nodes are
    # larger), 0 copies none; the default budget copies every node of a problem this small.
    from xmc.indexing import kmeans

    Z = sp.random(2000, 5000, density=0.01, random_state=1, format="csr", dtype=np.float32)
    Z.data **= 4  # uneven weights, so that a changed summation order would show in the scores
    copied = hierarchical_kmeans(Z, branching=4, max_leaf_size=20, seed=3)
    monkeypatch.setattr(kmeans, "LOCAL_BUDGET", budget)
    direct = hierarchical_kmeans(Z, branching=4, max_leaf_size=20, seed=3)
    assert all((a != b).nnz == 0 for a, b in zip(copied.matrices, direct.matrices))


def test_kmeans_separates_clear_clusters():
    # Two groups of labels over disjoint features must end up in different halves.
    Z = sp.csr_matrix(np.vstack([np.tile([1, 1, 0, 0], (4, 1)), np.tile([0, 0, 1, 1], (4, 1))]).astype(np.float32))
    chain = hierarchical_kmeans(Z, branching=2, max_leaf_size=4, seed=0)
    leaf = sp.csr_matrix(chain[-1]).indices
    assert len(set(leaf[:4])) == 1 and len(set(leaf[4:])) == 1 and leaf[0] != leaf[4]


def test_chain_save_load_roundtrip(tmp_path):
    chain = ClusterChain.from_assignments([np.array([0, 0]), np.array([0, 1, 1]), np.array([2, 0, 1, 2, 0])])
    chain.save(tmp_path / "tree")
    loaded = ClusterChain.load(tmp_path / "tree")
    assert loaded.level_sizes == [2, 3, 5]
    assert all((a != b).nnz == 0 for a, b in zip(chain.matrices, loaded.matrices))


def test_negative_sets_by_hand():
    # 4 labels in 2 clusters: {0, 1} -> cluster 0, {2, 3} -> cluster 1.
    C = sp.csc_matrix(np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32))
    Y = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0]], dtype=np.float32))
    tfn = teacher_forced(Y, C).toarray()
    np.testing.assert_array_equal(tfn, [[1, 0], [0, 1], [1, 1]])
    # The matcher's top-1 cluster: doc 0 -> 1 (wrong), doc 1 -> 1, doc 2 -> 0.
    matcher = np.array([[1], [1], [0]])
    man = negative_indicator("man", Y, C, matcher).toarray()
    np.testing.assert_array_equal(man, [[0, 1], [0, 1], [1, 0]])
    both = negative_indicator("tfn+man", Y, C, matcher).toarray()
    np.testing.assert_array_equal(both, [[1, 1], [0, 1], [1, 1]])
    np.testing.assert_array_equal(topb_to_indicator(np.array([[1, -1], [0, 1]]), 2).toarray(), [[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="matcher"):
        negative_indicator("man", Y, C, None)


def _exhaustive_scores(model: HierarchicalLinear, X: sp.csr_matrix) -> np.ndarray:
    """Product of l3-hinge transformed scores along every label's path, for all labels."""
    Xb = sp.hstack([X, np.full((X.shape[0], 1), model.bias, dtype=np.float32)], format="csr")
    path = np.ones((X.shape[0], 1))
    for W, C in zip(model.weights, model.chain.matrices):
        s = (Xb @ W).toarray()
        s = np.exp(-np.maximum(0.0, 1.0 - s) ** 3)
        path = (path @ C.T.toarray()) * s
    return path


def test_beam_search_equals_exhaustive_when_beam_covers_all(tfidf_problem):
    X, Y, Xt = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=4, max_leaf_size=5, seed=0)
    model = HierarchicalLinear.fit(X, Y, chain)
    L = Y.shape[1]
    beam = max(chain.level_sizes[:-1])
    got = model.predict(Xt, beam_size=beam, topk=L).toarray()
    expected = _exhaustive_scores(model, Xt)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A narrow beam returns a subset of the exhaustive top labels' scores.
    narrow = model.predict(Xt, beam_size=1, topk=3)
    rows, cols = narrow.nonzero()
    np.testing.assert_allclose(narrow[rows, cols].A1, expected[rows, cols], rtol=1e-5)


def test_masked_prediction_equals_filtering(tfidf_problem):
    X, Y, Xt = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=4, max_leaf_size=5, seed=0)
    model = HierarchicalLinear.fit(X, Y, chain)
    L = Y.shape[1]
    rng = np.random.default_rng(0)
    mask = sp.csr_matrix((rng.random((Xt.shape[0], L)) < 0.3).astype(np.float32))
    beam = max(chain.level_sizes[:-1])
    masked = model.predict(Xt, beam_size=beam, topk=L, selected_outputs=mask)
    filtered = model.predict(Xt, beam_size=beam, topk=L).multiply(mask)
    np.testing.assert_allclose(masked.toarray(), filtered.toarray(), rtol=1e-6)
    # With a narrow beam, masked search still never leaves the mask.
    narrow = model.predict(Xt, beam_size=2, topk=5, selected_outputs=mask)
    assert narrow.multiply(mask).nnz == narrow.nnz


def test_man_training_runs_and_learns(tfidf_problem, corpus):
    X, Y, Xt = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=2, max_leaf_size=8, seed=0)
    scores = {}
    for scheme in ("tfn", "tfn+man"):
        model = HierarchicalLinear.fit(X, Y, chain, LinearTrainConfig(negatives=scheme))
        top1 = model.predict(Xt, topk=1)
        scores[scheme] = top1.multiply(corpus.test.Y).nnz / Xt.shape[0]
    assert scores["tfn"] > 0.5 and scores["tfn+man"] > 0.5


def test_model_save_load_identical_predictions(tmp_path, corpus):
    config = XRLinearConfig.from_dict({
        "features": {"min_df": 1},
        "indexers": [{"branching": 2, "max_leaf_size": 10, "seed": 0}, {"label_repr": "pifa+text", "seed": 1}],
        "predict": {"topk": 5},
    })
    model = XRLinear(config).fit(corpus.train, progress=False)
    texts = corpus.test.input_texts(config.features.fields)
    before = model.predict(texts)
    model.save(tmp_path / "model")
    loaded = XRLinear.load(tmp_path / "model")
    after = loaded.predict(texts)
    assert (before != after).nnz == 0
    mapped = XRLinear.load(tmp_path / "model", mmap=True)
    assert isinstance(mapped.trees_[0]._kernel[-1][4].base, np.memmap)  # the weights are mapped, not read
    assert (mapped.predict(texts) != before).nnz == 0
    assert (mapped.predict(texts[:3], topk=2, beam_size=1) != model.predict(texts[:3], topk=2, beam_size=1)).nnz == 0
    assert loaded.labels_ == model.labels_ and loaded.config == model.config
    assert not any(p.name.endswith((".pkl", ".pickle")) for p in (tmp_path / "model").rglob("*"))
    # An ensemble averages its members' scores.
    members = [tree.predict(model.transform(texts), topk=5) for tree in model.trees_]
    mean = (members[0] + members[1]) / 2
    top = before.toarray()
    np.testing.assert_allclose(top[top > 0], mean.toarray()[top > 0], rtol=1e-6)


def test_threshold_and_accuracy(corpus):
    model = XRLinear(XRLinearConfig.from_dict({"features": {"min_df": 1}})).fit(corpus.train, progress=False)
    scores = model.predict(corpus.test, topk=5)
    assert scores.multiply(corpus.test.Y).nnz / len(corpus.test) > 0.6  # well above chance (1/60)
    high = model.predict(corpus.test, topk=5, threshold=0.5)
    assert high.nnz < scores.nnz and (high.data >= 0.5).all()


def test_unknown_config_key_is_rejected_with_its_name():
    with pytest.raises(ConfigError, match="'beam_sise'"):
        XRLinearConfig.from_dict({"predict": {"beam_sise": 3}})
    with pytest.raises(ConfigError, match="branching"):
        XRLinearConfig.from_dict({"indexers": [{"branching": 3}]})
    with pytest.raises(ConfigError, match="negatives"):
        XRLinearConfig.from_dict({"train": {"negatives": "random"}})
    assert XRLinearConfig.from_dict(XRLinearConfig().to_dict()) == XRLinearConfig()


def test_load_rejects_another_kind_of_model(tmp_path):
    from xmc.models.persistence import write_manifest

    write_manifest(str(tmp_path), "gudn", {})
    with pytest.raises(ModelFormatError, match="holds a 'gudn' model, not 'xr-linear'"):
        XRLinear.load(tmp_path)


def _random_layer(rng, n, d, n_children, n_parents):
    """Random rows X (n, d), weights W (d + 1, n_children) of both signs, and an uneven tree level:
    each child's parent (every parent has one or more) and the (n_children, n_parents) indicator."""
    X = sp.random(n, d, density=0.3, format="csr", dtype=np.float32, random_state=1)
    X.sort_indices()
    W = sp.random(d + 1, n_children, density=0.4, format="csc", dtype=np.float32, random_state=2)
    W.data -= 0.5
    parent_of = rng.permutation(np.r_[np.arange(n_parents), rng.integers(0, n_parents, n_children - n_parents)])
    C = sp.csc_matrix((np.ones(n_children), (np.arange(n_children), parent_of)), shape=(n_children, n_parents))
    return X, W, parent_of, C


@pytest.mark.parametrize("per_entry", [False, True], ids=["grouped", "per-entry"])
@pytest.mark.parametrize("post,size", [
    *((post, size) for size in [(23, 5, 3), (600, 200, 2)] for post in ["l3-hinge", "sigmoid", "noop"]),
    ("l3-hinge", (70_010, 70_000, 3)),  # 32-bit parent ids: one more compiled signature, so one case
    ("noop", (900, 300, 2)),  # 300 parents: 16-bit parent ids (8-bit up to 256 parents)
    ("l3-hinge", (600, 2, 2)),  # parents of ~300 children: 16-bit child positions (8-bit elsewhere)
], ids=[f"{g}-{p}" for g in ["few-groups", "many-groups"] for p in ["l3-hinge", "sigmoid", "noop"]]
    + ["32-bit-parents", "16-bit-parents", "16-bit-children"])
def test_beam_step_matches_dense_scoring(post, size, per_entry):
    """One beam step equals dense scoring of the beam's children, with uneven, non-contiguous
    children per parent, -1 padded beams and a mask, with the weights stored by (feature, parent)
    group or per entry. With many parents and a narrow beam, the kernel binary-searches the beam's
    parents among a feature's groups instead of scanning them. The layout converts back to the
    CSC weights it was built from."""
    from xmc.ranker.beam import POST_PROCESSORS, LayerWeights, beam_step

    rng = np.random.default_rng(0)
    n_children, n_parents, b = size
    n, d, out_k = 30, 40, 4
    X, W, parent_of, C = _random_layer(rng, n, d, n_children, n_parents)
    parent_ids = np.stack([rng.choice(n_parents, b, replace=False) for _ in range(n)])
    parent_ids[::4, -1] = -1
    parent_scores = rng.random((n, b)).astype(np.float32)
    mask = sp.csr_matrix(rng.random((n, n_children)) < 0.7)
    mask.sort_indices()
    bias = 1.0
    raw = (sp.hstack([X, np.full((n, 1), bias, dtype=np.float32)]) @ W).toarray().astype(np.float64)
    transform = {"l3-hinge": lambda s: np.exp(-np.maximum(0.0, 1.0 - s) ** 3),
                 "sigmoid": lambda s: 1.0 / (1.0 + np.exp(-s)), "noop": lambda s: s}[post]
    layer = LayerWeights.build(W, C, per_entry=per_entry)
    assert (len(layer.group_start) == 0) == per_entry
    if not per_entry:  # the checks of a loaded layer follow its group pointers too
        bad = LayerWeights(**{**layer.__dict__, "group_start": layer.group_start + np.uint32(1)})
        with pytest.raises(ValueError, match="group_start"):
            bad.check(W.shape, C)
    auto = LayerWeights.build(W, C)  # per entry where groups average under 1.5 weights
    n_groups = len((LayerWeights.build(W, C, per_entry=False) if per_entry else layer).group_parent)
    assert (len(auto.group_start) == 0) == (2 * W.nnz < 3 * n_groups)
    assert layer.group_parent.dtype == (np.uint8 if n_parents <= 256 else
                                        np.uint16 if n_parents <= 1 << 16 else np.uint32)
    assert layer.entry_child.dtype == (np.uint8 if np.bincount(parent_of).max() <= 256 else np.uint16)
    back = layer.csc(W.shape)
    W.sort_indices()
    assert back.has_sorted_indices and np.array_equal(back.indptr, W.indptr)
    assert np.array_equal(back.indices, W.indices) and np.array_equal(back.data, W.data)
    def step(row_order):
        return beam_step(
            X.indptr.astype(np.int64), X.indices.astype(np.uint32), X.data, d, bias,
            *layer.arrays(), parent_ids, parent_scores,
            mask.indptr.astype(np.int64), mask.indices.astype(np.int64), True,
            out_k, POST_PROCESSORS[post], 2, row_order,
        )

    ids, scores = step(rng.permutation(n))
    in_order = step(np.arange(n))  # the order rows are scored in changes nothing, to the bit
    np.testing.assert_array_equal(in_order[0], ids)
    np.testing.assert_array_equal(in_order[1], scores)
    for r in range(n):
        expected = {}
        for t, p in enumerate(parent_ids[r]):
            if p < 0:
                continue
            for c in np.flatnonzero((parent_of == p) & mask[r].toarray().ravel()):
                s = transform(raw[r, c])
                expected[c] = s if post == "noop" else s * parent_scores[r, t]
        best = sorted(expected, key=lambda c: (-np.float32(expected[c]), c))[:out_k]
        kept = ids[r][ids[r] >= 0]
        np.testing.assert_array_equal(kept, best)
        np.testing.assert_allclose(scores[r][: len(kept)], [expected[c] for c in best], rtol=1e-5)
        assert np.all(scores[r][len(kept):] == -np.inf)


def test_integer_weights_by_hand():
    """Each child's weights become integers in units of max |w| / 127 (int8) or / 32767 (int16);
    weights that round to 0 are dropped; an empty column keeps scale 1."""
    from xmc.ranker.beam import LayerWeights

    W = sp.csc_matrix(np.array([[0.5, 0.0, 0.0], [-1.0, 2.0, 0.0], [0.26, 0.0, 0.0], [0.003, 0.0, 0.0]],
                               dtype=np.float32))
    C = sp.csc_matrix(np.ones((3, 1)))
    layer = LayerWeights.build(W, C, value_type="int8")
    assert layer.entry_value.dtype == np.int8
    np.testing.assert_array_equal(layer.child_scale, np.float32([1 / 127, 2 / 127, 1]))
    # 0.5 * 127 = 63.5 rounds to even 64; 0.26 * 127 = 33.02; 0.003 * 127 = 0.38 rounds to 0
    expected = np.float32([[64 / 127, 0, 0], [-1, 2, 0], [33 / 127, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(layer.csc(W.shape).toarray(), expected, rtol=1e-6)
    assert layer.csc(W.shape).nnz == 4
    wide = LayerWeights.build(W, C, value_type="int16")
    assert np.abs(wide.csc(W.shape).toarray() - W.toarray()).max() <= 2 / 32767 / 2 + 1e-9


@pytest.mark.parametrize("value_type", ["int16", "int8"])
def test_beam_step_with_integer_weights_scores_the_rounded_weights(value_type):
    """With integer weights the kernel's scores are the dense scores of the rounded weights (what
    :meth:`LayerWeights.csc` returns), and each rounded weight is within half a step of the trained one."""
    from xmc.ranker.beam import POST_PROCESSORS, LayerWeights, beam_step

    rng = np.random.default_rng(0)
    n, d, n_children, n_parents, b = 20, 40, 120, 30, 3
    X, W, parent_of, C = _random_layer(rng, n, d, n_children, n_parents)
    layer = LayerWeights.build(W, C, value_type=value_type)
    rounded = layer.csc(W.shape)
    step = np.abs(W).max(axis=0).toarray().ravel() / np.iinfo(value_type).max
    assert (np.abs((rounded - W).toarray()) <= step / 2 + 1e-7).all()  # + float32 rounding of q * scale
    parent_ids = np.stack([rng.choice(n_parents, b, replace=False) for _ in range(n)])
    ids, scores = beam_step(X.indptr.astype(np.int64), X.indices.astype(np.uint32), X.data, d, 1.0,
                            *layer.arrays(), parent_ids, np.ones((n, b), dtype=np.float32),
                            np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), False,
                            5, POST_PROCESSORS["noop"], 2, np.arange(n))
    raw = (sp.hstack([X, np.ones((n, 1), dtype=np.float32)]) @ rounded).toarray()
    for r in range(n):
        candidates = np.flatnonzero(np.isin(parent_of, parent_ids[r]))
        best = candidates[np.argsort(-raw[r, candidates], kind="stable")][:5]
        np.testing.assert_allclose(scores[r], raw[r, best], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(raw[r, ids[r]], raw[r, best], rtol=1e-5, atol=1e-6)


def test_integer_weights_save_load_and_narrowing_a_trained_model(tmp_path, corpus):
    """Training with int8 weights equals rounding the float32 model afterwards (tfn negatives); the
    int8 model saves and loads with its dtype and predictions; widening is refused; a directory
    written before the scales existed loads as float32."""
    def model_with(**train):
        return XRLinear(XRLinearConfig.from_dict({
            "features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}],
            "train": {"weight_threshold": 0.05, **train}})).fit(corpus.train, progress=False)

    full, small = model_with(weight_dtype="float32"), model_with(weight_dtype="int8")
    narrowed = full.pruned(weight_dtype="int8")
    assert narrowed.config.train.weight_dtype == "int8" and full.trees_[0].weight_dtype == "float32"
    for Wn, Ws in zip(narrowed.trees_[0].weights, small.trees_[0].weights):
        assert (Wn != Ws).nnz == 0
    expected = small.predict(corpus.test)
    assert (narrowed.predict(corpus.test) != expected).nnz == 0
    small.save(tmp_path / "int8")
    loaded = XRLinear.load(tmp_path / "int8")
    assert loaded.trees_[0].weight_dtype == "int8" and loaded.config.train.weight_dtype == "int8"
    assert (loaded.predict(corpus.test) != expected).nnz == 0
    assert np.load(tmp_path / "int8" / "tree-0" / "layer-1" / "entry_value.npy").dtype == np.int8
    with pytest.raises(ConfigError, match="wider than the model's int8"):
        loaded.pruned(weight_dtype="float32")
    full.save(tmp_path / "old")
    for layer in (tmp_path / "old" / "tree-0").glob("layer-*"):
        (layer / "child_scale.npy").unlink()
    old = XRLinear.load(tmp_path / "old")
    assert old.config.train.weight_dtype == "float32"
    assert (old.predict(corpus.test) != full.predict(corpus.test)).nnz == 0


def test_shipped_xr_linear_configs_load():
    """Every configs/xr-linear*.json is a valid config (a renamed key would fail here, not in a benchmark)."""
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("xr-linear*.json"))
    assert len(paths) >= 5
    for path in paths:
        config = XRLinearConfig.from_json(path)
        assert config.indexers, path
    # The benchmarks train configs/xr-linear.json as "the default": it must be what XRLinearConfig() is.
    assert XRLinearConfig.from_json(paths[0].with_name("xr-linear.json")) == XRLinearConfig()


@pytest.mark.parametrize("normalize", [True, False])
def test_dataset_features_are_l2_normalised_in_fit_and_predict(normalize, tmp_path):
    """Features that come with a dataset (XC files) are row-normalised when configured, in both
    training and prediction, and so is a matrix passed to predict directly (it scored raw rows before);
    a model trained by fit_matrix takes its matrices as given."""
    from xmc.data import LabelVocabulary, XMCDataset
    from xmc.sparse_rows import l2_normalize_rows as l2  # equals sklearn's normalize: test_sparse_rows

    rng = np.random.default_rng(0)
    n, d, L = 120, 30, 6
    Y = sp.csr_matrix((rng.random((n, L)) < 0.3).astype(np.float32))
    X = sp.csr_matrix((Y @ rng.random((L, d)) + rng.random((n, d)) * (rng.random((n, d)) < 0.2)) * rng.integers(1, 5, (n, 1)),
                      dtype=np.float32)
    data = XMCDataset(ids=[str(i) for i in range(n)], texts=[""] * n, Y=Y,
                      labels=LabelVocabulary(str(j) for j in range(L)), X=X)
    config = {"indexers": [{"branching": 2, "max_leaf_size": 2}], "normalize_data_features": normalize}
    model = XRLinear(XRLinearConfig.from_dict(config)).fit(data, progress=False)
    expected_X = l2(X) if normalize else X
    reference = XRLinear(XRLinearConfig.from_dict(config)).fit_matrix(expected_X, Y, progress=False)
    np.testing.assert_allclose(model.predict(data, topk=3).toarray(), reference.predict(expected_X, topk=3).toarray(),
                               rtol=1e-6)
    np.testing.assert_allclose(model.predict(data, topk=3).toarray(), model.predict(expected_X, topk=3).toarray(),
                               rtol=1e-6)
    model.save(tmp_path / "m")
    for fitted in (model, XRLinear.load(tmp_path / "m")):
        assert fitted.normalizes_features_ is normalize
        if normalize:  # a row's scale is lost in normalisation: rows ten times as long score the same
            np.testing.assert_allclose(fitted.predict(X * 10, topk=3).toarray(), model.predict(data, topk=3).toarray(),
                                       rtol=1e-5)
    assert reference.normalizes_features_ is False
    raw = reference.predict(X, topk=3)
    np.testing.assert_array_equal(raw.toarray(), reference.predict(X * 1.0, topk=3).toarray())
    with pytest.raises(ValueError, match="not finite"):
        model.predict(sp.csr_matrix(np.full((1, d), np.nan, dtype=np.float32)))
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(sp.csr_matrix(np.ones((1, d), dtype=np.complex64)))


def test_prediction_in_chunks_equals_one_pass(corpus, monkeypatch):
    """predict() runs in row chunks behind its progress bar: same scores as one pass, masks sliced along."""
    import xmc.models.xr_linear as xr

    config = XRLinearConfig.from_dict({"features": {"min_df": 1},
                                       "indexers": [{"branching": 2, "max_leaf_size": 10, "seed": 0}, {"seed": 1}]})
    model = XRLinear(config).fit(corpus.train, progress=False)
    rng = np.random.default_rng(0)
    selected = sp.csr_matrix((rng.random(corpus.test.Y.shape) < 0.3).astype(np.float32))
    whole = model.predict(corpus.test, topk=5)
    whole_selected = model.predict(corpus.test, topk=5, selected_outputs=selected)
    monkeypatch.setattr(xr, "_PREDICT_CHUNK", 7)  # 150 documents: 22 chunks, the last one short
    assert (model.predict(corpus.test, topk=5, progress=True) != whole).nnz == 0
    assert (model.predict(corpus.test, topk=5, selected_outputs=selected) != whole_selected).nnz == 0
    with pytest.raises(ValueError, match="rows"):
        model.predict(corpus.test, selected_outputs=selected[:-1])


def test_older_layer_directories_still_load(tmp_path, tfidf_problem):
    """Formats 1 (one layer-i.npz per layer), 2 (layer-i/ with the column arrays beside the
    feature-major ones) and 3 (the kernel's pointer and children arrays as they are in memory) load
    and predict like the model that wrote them."""
    from xmc.ranker.beam import LayerWeights

    X, Y, Xt = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=2, max_leaf_size=4)
    model = HierarchicalLinear.fit(X, Y, chain)
    expected = model.predict(Xt, topk=3)
    v1, v2, v3 = tmp_path / "v1", tmp_path / "v2", tmp_path / "v3"
    model.save(v3)
    for i in range(len(model.weights)):
        layer = LayerWeights(*model._layer_arrays(i))
        for name in ("feat_group_counts", "group_entry_counts"):
            (v3 / f"layer-{i}" / f"{name}.npy").unlink()
        for name in ("feat_groups", "group_start", "child_indptr", "child_ids"):
            np.save(v3 / f"layer-{i}" / f"{name}.npy", getattr(layer, name))
    for mmap in (False, True):
        assert (HierarchicalLinear.load(v3, mmap=mmap).predict(Xt, topk=3) != expected).nnz == 0
    for old in (v1, v2):
        chain.save(old / "tree")
    for i, W in enumerate(model.weights):
        sp.save_npz(v1 / f"layer-{i}.npz", W, compressed=False)
        (v2 / f"layer-{i}").mkdir()
        np.save(v2 / f"layer-{i}" / "col_indptr.npy", W.indptr.astype(np.int64))
        np.save(v2 / f"layer-{i}" / "col_rows.npy", W.indices.view(np.uint32))
        np.save(v2 / f"layer-{i}" / "col_values.npy", W.data)
    meta = {"layers": len(model.weights), "bias": model.bias, "n_features": model.n_features}
    (v1 / "layers.json").write_text(json.dumps(meta))
    (v2 / "layers.json").write_text(json.dumps({**meta, "layout": "kernel",
                                                "shapes": [list(W.shape) for W in model.weights]}))
    for old in (v1, v2):
        for mmap in (False, True):
            assert (HierarchicalLinear.load(old, mmap=mmap).predict(Xt, topk=3) != expected).nnz == 0


@pytest.mark.parametrize("per_entry", [False, True])
def test_saved_pointers_are_narrow_counts_and_load_back_equal(tmp_path, tfidf_problem, per_entry):
    """A layer's two pointer arrays are written as counts in the narrowest unsigned type (one byte
    here) and rebuilt on loading to the very arrays the kernel had, for grouped and per-entry layers."""
    from xmc.ranker.beam import LayerWeights

    X, Y, Xt = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=2, max_leaf_size=4)
    model = HierarchicalLinear.fit(X, Y, chain)
    for i, W in enumerate(model.weights):  # the layout the test asks for, built from the same weights
        model._kernel[i] = LayerWeights.build(W, chain[i], per_entry=per_entry).arrays()
    model.save(tmp_path / "m")
    for mmap in (False, True):
        loaded = HierarchicalLinear.load(tmp_path / "m", mmap=mmap)
        for i in range(len(model.weights)):
            for a, b in zip(model._layer_arrays(i), loaded._layer_arrays(i)):
                assert a.dtype == b.dtype and np.array_equal(a, b)
    counts = np.load(tmp_path / "m" / "layer-1" / "feat_group_counts.npy")
    group_counts = np.load(tmp_path / "m" / "layer-1" / "group_entry_counts.npy")
    assert counts.dtype == np.uint8 and len(counts) == model.n_features + 1
    assert len(group_counts) == (0 if per_entry else len(model._layer_arrays(1)[2]))
    assert group_counts.dtype == np.uint8
    assert (loaded.predict(Xt, topk=3) != model.predict(Xt, topk=3)).nnz == 0


def test_saved_layers_hold_each_weight_once(tmp_path, tfidf_problem):
    """A saved layer is the beam kernel's layout only; the CSC weights derived from it after
    loading equal the trained ones bit for bit."""
    X, Y, _ = tfidf_problem
    chain = hierarchical_kmeans(pifa(X, Y), branching=2, max_leaf_size=4)
    model = HierarchicalLinear.fit(X, Y, chain)
    trained = [W.copy() for W in model.weights]
    model.save(tmp_path / "m")
    for i, W in enumerate(trained):
        files = sorted(p.name for p in (tmp_path / "m" / f"layer-{i}").iterdir())
        assert files == sorted(f"{name}.npy" for name in ("feat_group_counts", "group_entry_counts", "group_parent",
                                                         "entry_child", "entry_value", "child_scale"))
        assert len(np.load(tmp_path / "m" / f"layer-{i}" / "entry_value.npy")) == W.nnz
    for W, V in zip(trained, HierarchicalLinear.load(tmp_path / "m").weights):
        assert (W != V).nnz == 0 and np.array_equal(W.indices, V.indices) and np.array_equal(W.data, V.data)


def test_concurrent_predictions_from_python_threads_equal_sequential_ones(corpus):
    """Each calling thread gets its own kernel row buffers: threads never corrupt each other's scores."""
    from concurrent.futures import ThreadPoolExecutor

    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]})
    model = XRLinear(config).fit(corpus.train, progress=False)
    expected = model.predict(corpus.test, topk=5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: model.predict(corpus.test, topk=5), range(8)))
    assert all((r != expected).nnz == 0 for r in results)


@pytest.mark.parametrize("weight_dtype", ["float32", "int8"])
def test_pruning_a_float32_model_equals_training_it_at_that_threshold(corpus, weight_dtype):
    """Pruning a float32 model (and rounding it to ``weight_dtype``) gives the model trained with
    those settings, bit for bit: the solvers threshold the float weights, and a classifier's scale
    is its largest weight, which no threshold below it removes."""
    def model_at(threshold, dtype):
        return XRLinear(XRLinearConfig.from_dict({
            "features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}],
            "train": {"weight_threshold": threshold, "weight_dtype": dtype}})).fit(corpus.train, progress=False)

    low, high = model_at(0.01, "float32"), model_at(0.2, weight_dtype)
    pruned = low.pruned(0.2, weight_dtype=weight_dtype)
    for tree_p, tree_h, tree_l in zip(pruned.trees_, high.trees_, low.trees_):
        for Wp, Wh, Wl in zip(tree_p.weights, tree_h.weights, tree_l.weights):
            assert Wp.nnz == Wh.nnz < Wl.nnz
            assert (Wp != Wh).nnz == 0
    assert pruned.config == high.config and low.config.train.weight_threshold == 0.01
    assert (pruned.predict(corpus.test) != high.predict(corpus.test)).nnz == 0
    with pytest.raises(ConfigError, match="below the 0.2"):
        pruned.pruned(0.1)


def test_pifa_with_normalised_label_rows_by_hand():
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32))
    Y = sp.csr_matrix(np.array([[1, 1], [0, 1], [0, 1]], dtype=np.float32))
    # Label 1: documents 0, 1, 2 weighted 1/sqrt(2), 1, 1 -> (1/sqrt2 + 1, 2) before normalising.
    v = np.array([1 / np.sqrt(2) + 1, 2.0])
    np.testing.assert_allclose(pifa(X, Y, normalize_labels=True).toarray()[1], v / np.linalg.norm(v), rtol=1e-6)
    np.testing.assert_allclose(pifa(X, Y).toarray()[1], np.array([2.0, 2.0]) / np.sqrt(8), rtol=1e-6)
    # A label's only document: the weight cancels in the normalisation.
    np.testing.assert_allclose(pifa(X, Y, normalize_labels=True).toarray()[0], [1.0, 0.0])


# ---- size-aware defaults ("auto") ---------------------------------------------------
def test_auto_rules_at_their_boundaries():
    from xmc.models.xr_linear import auto_pifa_normalize_labels, auto_trees_per_indexer
    from xmc.ranker.hierarchy import LabelSpace, auto_C, auto_weight_threshold

    assert [auto_weight_threshold(n) for n in (1, 8191, 8192, 10**6)] == [0.05, 0.05, 0.1, 0.1]
    # few labels with many training documents each: bibtex (159, median 54), not the demo corpus (200,
    # median 9) nor EURLEX57K's 1,000 most frequent labels (median 83)
    assert [auto_C(LabelSpace(n, m)) for n, m in ((159, 54), (1, 20), (511, 20), (511, 10**6))] == [0.5] * 4
    assert [auto_C(LabelSpace(n, m)) for n, m in ((200, 9), (511, 19.5), (512, 20), (1000, 83), (4271, 7),
                                                  (10**6, 10**6))] == [1.0] * 6
    assert [auto_pifa_normalize_labels(n) for n in (1, 49_999, 50_000, 10**7)] == [False] * 4
    assert [auto_trees_per_indexer(n, 1) for n in (1, 49_999, 50_000, 499_999, 500_000, 10**6)] == [1, 1, 2, 2, 1, 1]
    assert auto_trees_per_indexer(100_000, 2) == 1  # a configured ensemble is left as it is


def test_label_space_counts_documents_per_label_by_hand():
    from xmc.ranker.hierarchy import LabelSpace

    # label 0: documents 0, 1, 2 (listed twice in document 0); label 1: document 1 (an explicit zero
    # in document 2 does not count); labels 2 and 3: none -> counts 3, 1, 0, 0, median 0.5
    Y = sp.csr_matrix((np.array([1, 1, 1, 1, 1, 0], dtype=np.float32), np.array([0, 0, 0, 1, 0, 1]),
                       np.array([0, 2, 4, 6])), shape=(3, 4))
    space = LabelSpace.of(Y)
    assert space == LabelSpace(4, 0.5) and str(space) == "4 labels, median 0.5 training documents per label"
    assert Y.nnz == 6 and Y.data[-1] == 0  # the caller's matrix is left as it was
    assert LabelSpace.of(sp.csr_matrix((5, 0))) == LabelSpace(0, 0.0)
    explicit = LinearTrainConfig(C=1.0, weight_threshold=0.1)
    assert explicit.resolved_for(None) is explicit  # nothing "auto": the labels are not read
    assert LinearTrainConfig(C="auto", weight_threshold=0.1).resolved_for(Y).C == 1.0  # median 0.5


def test_resolved_config_expands_seeds_and_keeps_explicit_values():
    from xmc.ranker.hierarchy import LabelSpace

    auto = XRLinearConfig()
    config, chosen = auto.resolved(LabelSpace(100_000, 3))
    assert chosen == {"train.weight_threshold": 0.1, "train.C": 1.0, "indexers.pifa_normalize_labels": False,
                      "trees_per_indexer": 2}
    assert auto.resolved(LabelSpace(159, 54))[1]["train.C"] == 0.5 and auto.resolved(LabelSpace(159, 54))[0].train.C == 0.5
    assert auto.resolved(LabelSpace(200, 9))[0].train.C == 1.0  # few labels, each with few documents
    assert [(ix.seed, ix.pifa_normalize_labels) for ix in config.indexers] == [(0, False), (1, False)]
    assert config.trees_per_indexer == 1
    assert auto.trees_per_indexer == "auto" and len(auto.indexers) == 1  # the requested config is untouched
    assert config.resolved(LabelSpace(100_000, 3)) == (config, {})  # resolving twice changes nothing
    explicit = XRLinearConfig.from_dict({"trees_per_indexer": 3, "train": {"weight_threshold": 0.2, "C": 2.0},
                                         "indexers": [{"seed": 5, "pifa_normalize_labels": False},
                                                      {"seed": 9, "branching": 4, "pifa_normalize_labels": True}]})
    config, chosen = explicit.resolved(LabelSpace(10, 100))
    assert chosen == {} and config.train.weight_threshold == 0.2 and config.train.C == 2.0
    assert [(ix.seed, ix.branching) for ix in config.indexers] == [(5, 16), (6, 16), (7, 16), (9, 4), (10, 4), (11, 4)]
    assert [ix.pifa_normalize_labels for ix in config.indexers] == [False] * 3 + [True] * 3
    with pytest.raises(ConfigError, match="trees_per_indexer"):
        XRLinearConfig.from_dict({"trees_per_indexer": 0})
    with pytest.raises(ConfigError, match="weight_threshold"):
        XRLinearConfig.from_dict({"train": {"weight_threshold": "big"}})


def test_trees_per_indexer_equals_the_expanded_ensemble_and_its_saved_config_retrains_it(tmp_path, tfidf_problem,
                                                                                          monkeypatch):
    import xmc.models.xr_linear as xr

    X, Y, Xt = tfidf_problem
    calls = []
    monkeypatch.setattr(xr, "pifa", lambda *a, **k: calls.append(k["normalize_labels"]) or pifa(*a, **k))
    indexer = {"branching": 4, "max_leaf_size": 8}
    two = XRLinear(XRLinearConfig.from_dict({"indexers": [indexer], "trees_per_indexer": 2}))
    two.fit_matrix(X, Y, progress=False)
    assert calls == [False]  # both trees cluster one label representation, unweighted below 50,000 labels
    assert [ix.seed for ix in two.config.indexers] == [0, 1] and two.config.train.weight_threshold == 0.05
    fixed = {**indexer, "pifa_normalize_labels": False}  # what "auto" picks for 60 labels
    listed = XRLinear(XRLinearConfig.from_dict({"indexers": [fixed, {**fixed, "seed": 1}],
                                                "train": {"weight_threshold": 0.05}})).fit_matrix(X, Y, progress=False)
    a, b = two.predict(Xt, topk=5), listed.predict(Xt, topk=5)
    assert (a != b).nnz == 0 and a.nnz > 0
    two.save(tmp_path / "m")
    again = XRLinear(XRLinear.load(tmp_path / "m").config).fit_matrix(X, Y, progress=False)
    assert (again.predict(Xt, topk=5) != a).nnz == 0


def test_hierarchical_linear_resolves_auto_and_the_layer_trainer_refuses_it(tfidf_problem):
    from xmc.ranker.hierarchy import SolverRows, train_layer

    from xmc.ranker.hierarchy import LabelSpace

    X, Y, _ = tfidf_problem
    # 60 labels, median 13 documents each: "auto" is threshold 0.05 and C 1; the 13 labels with 32 or
    # more documents alone: C 0.5
    head = Y[:, np.flatnonzero(np.asarray((Y > 0).sum(axis=0)).ravel() >= 32)]
    assert LabelSpace.of(Y) == LabelSpace(60, 13.0) and LabelSpace.of(head) == LabelSpace(13, 64.0)
    for labels, C in ((Y, 1.0), (head, 0.5)):
        chain = ClusterChain.flat(labels.shape[1])
        auto = HierarchicalLinear.fit(X, labels, chain, LinearTrainConfig(weight_threshold="auto", C="auto"))
        fixed = HierarchicalLinear.fit(X, labels, chain, LinearTrainConfig(weight_threshold=0.05, C=C))
        assert (auto.weights[0] != fixed.weights[0]).nnz == 0
        other = HierarchicalLinear.fit(X, labels, chain, LinearTrainConfig(weight_threshold=0.05, C=1.5 - C))
        assert (other.weights[0] != fixed.weights[0]).nnz > 0  # C does reach the solver
    with pytest.raises(ValueError, match="resolved first"):
        train_layer(SolverRows.from_csr(X), Y, np.ones((X.shape[0], 1)), np.arange(1), np.zeros(1, dtype=np.int64),
                    LinearTrainConfig(weight_threshold="auto"), 1)
    with pytest.raises(ValueError, match="resolved first"):
        train_layer(SolverRows.from_csr(X), Y, np.ones((X.shape[0], 1)), np.arange(1), np.zeros(1, dtype=np.int64),
                    LinearTrainConfig(C="auto"), 1)


def test_fit_progress_false_silences_the_tfidf_bar_too(corpus, monkeypatch):
    import xmc.features.tfidf as tfidf
    from xmc.progress import is_quiet

    seen = []

    def recording_bar(iterable, **kwargs):
        seen.append(bool(kwargs.get("disable")) or is_quiet())  # silenced either way
        return iterable

    monkeypatch.setattr(tfidf, "progress_bar", recording_bar)
    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]})
    XRLinear(config).fit(corpus.train, progress=False)
    XRLinear(config).fit(corpus.train, progress=True)
    assert seen[0] is True and seen[-1] is False  # the TF-IDF fit bar of each call


def test_one_row_is_searched_by_a_team_of_one_and_scores_as_in_a_batch(tfidf_problem, monkeypatch):
    """A parallel region wakes its whole team whatever its work: one row needs one thread. The team
    is numba's thread-local setting, put back afterwards; the scores are those of the batch's row."""
    import numba

    import xmc.ranker.hierarchy as hierarchy

    X, Y, Xt = tfidf_problem
    model = HierarchicalLinear.fit(X, Y, hierarchical_kmeans(pifa(X, Y), branching=4, max_leaf_size=5, seed=0))
    batch = model.predict(Xt, topk=5)
    kernel, teams = hierarchy.beam_step, []

    def recording(*args):
        teams.append((numba.get_num_threads(), args[-2]))  # the team, and the row split it is given
        return kernel(*args)

    monkeypatch.setattr(hierarchy, "beam_step", recording)
    before = numba.get_num_threads()
    rows = [model.predict(Xt[i], topk=5) for i in range(Xt.shape[0])]
    assert set(teams) == {(1, 1)} and numba.get_num_threads() == before
    assert (sp.vstack(rows, format="csr") != batch).nnz == 0
    teams.clear()
    model.predict(Xt[:3], topk=5, n_threads=2)
    assert set(teams) == {(min(2, numba.config.NUMBA_NUM_THREADS),) * 2} and numba.get_num_threads() == before


def test_prediction_options_are_checked_and_capped_at_the_label_count(corpus):
    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]})
    model = XRLinear(config).fit(corpus.train, progress=False)
    L = len(model.labels_)
    for options, message in (({"beam_size": 0}, "beam_size must be a whole number >= 1"),  # crashed the kernel
                             ({"topk": 0}, "topk must be"), ({"topk": -1}, "topk must be"), ({"topk": 2.5}, "topk must be"),
                             ({"topk": True}, "topk must be"), ({"threshold": float("nan")}, "threshold must be a finite"),
                             ({"threshold": "0.1"}, "threshold must be a finite")):
        with pytest.raises(ConfigError, match=message):
            model.predict(corpus.test, **options)
    # Beyond the label count a top-k or a beam changes nothing, but their (n, k) buffers would not fit.
    every = model.predict(corpus.test, topk=L, beam_size=L)
    huge = model.predict(corpus.test, topk=10**20, beam_size=10**11)
    assert every.shape == huge.shape and (every != huge).nnz == 0 and every.getnnz(axis=1).max() == L
    assert (model.predict(corpus.test, topk=3.0) != model.predict(corpus.test, topk=3)).nnz == 0
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType, not a string"):
        model.predict(["wine", None])


def test_a_threshold_that_removes_every_weight_is_refused(corpus):
    config = XRLinearConfig.from_dict({"features": {"min_df": 1}, "train": {"weight_threshold": 100}})
    with pytest.raises(ConfigError, match=r"train.weight_threshold=100 removed every weight"):
        XRLinear(config).fit(corpus.train, progress=False)
    model = XRLinear(XRLinearConfig.from_dict({"features": {"min_df": 1}})).fit(corpus.train, progress=False)
    assert model.trees_[0].n_weights() == sum(W.nnz for W in model.trees_[0].weights) > 0
    with pytest.raises(ConfigError, match=r"weight_threshold=100 removed every weight"):
        model.pruned(100)


def test_tune_refuses_a_grid_whose_every_candidate_has_no_weights(corpus):
    """tune wrote a config that `xmc train` then refused, and exited 0."""
    from xmc.tuning import tune

    base = XRLinearConfig.from_dict({"features": {"min_df": 1}})
    with pytest.raises(ConfigError, match="every candidate of the grid removed every weight"):
        tune(corpus.train, {"train.weight_threshold": [100, 200]}, config=base, folds=2, progress=False)
    # one trainable candidate is enough, and it is the one chosen
    result = tune(corpus.train, {"train.weight_threshold": [100, 0.1]}, config=base, folds=2, progress=False)
    assert result.config.train.weight_threshold == 0.1
