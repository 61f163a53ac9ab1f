"""The large sparse XMC generator: determinism, shapes, long tail, hidden structure, learnability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.datasets.sparse import GeneratorConfigError, make_sparse_problem
from xmc.errors import XMCError

TINY = dict(n_labels=300, n_train=1500, n_test=300, n_features=5000, seed=3)


@pytest.fixture(scope="module")
def tiny():
    return make_sparse_problem(**TINY)


def _equal(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data))


def test_same_seed_same_data_other_seed_other_data(tiny):
    again = make_sparse_problem(**TINY)
    for name in ("X_train", "Y_train", "X_test", "Y_test"):
        assert _equal(getattr(tiny, name), getattr(again, name)), name
    assert np.array_equal(tiny.label_topic, again.label_topic)
    other = make_sparse_problem(**{**TINY, "seed": 4})
    assert not _equal(tiny.X_train, other.X_train)
    # train and test are independent draws, not copies
    assert not _equal(tiny.X_train[:300], tiny.X_test)


def test_shapes_dtypes_and_normalised_rows(tiny):
    assert tiny.X_train.shape == (1500, 5000) and tiny.X_test.shape == (300, 5000)
    assert tiny.Y_train.shape == (1500, 300) and tiny.Y_test.shape == (300, 300)
    for X in (tiny.X_train, tiny.X_test):
        assert sp.isspmatrix_csr(X) and X.dtype == np.float32 and X.indices.dtype == np.int32
        assert X.has_canonical_format and (X.data > 0).all()
        np.testing.assert_allclose(sp.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    for Y in (tiny.Y_train, tiny.Y_test):
        assert sp.isspmatrix_csr(Y) and Y.dtype == np.float32 and Y.has_canonical_format
        assert set(np.unique(Y.data)) == {1.0}
        per_doc = np.diff(Y.indptr)
        assert per_doc.min() >= 1 and per_doc.max() <= 5


def test_features_are_tf_idf_with_scikit_learns_smooth_idf_from_the_training_split(tiny):
    from sklearn.feature_extraction.text import TfidfTransformer

    plain = make_sparse_problem(**TINY, idf=False)  # the same draws, 1 + log(tf) only
    idf = TfidfTransformer(smooth_idf=True).fit(plain.X_train).idf_  # df from the training split only
    for X, P in ((tiny.X_train, plain.X_train), (tiny.X_test, plain.X_test)):
        assert np.array_equal(X.indptr, P.indptr) and np.array_equal(X.indices, P.indices)
        expected = sp.csr_matrix(P.multiply(idf[None, :]))
        expected = sp.csr_matrix(expected.multiply(1.0 / sp.linalg.norm(expected, axis=1)[:, None]))
        np.testing.assert_allclose(X.toarray(), expected.toarray(), rtol=1e-5, atol=1e-7)
    # the rarest feature of a row weighs more than its most common one
    row = tiny.X_train[0]
    df = np.bincount(tiny.X_train.indices, minlength=tiny.n_features)[row.indices]
    ratio = row.data / plain.X_train[0].data
    assert ratio[np.argmin(df)] > ratio[np.argmax(df)]


def test_long_tail_follows_the_zipf_popularity():
    p = make_sparse_problem(n_labels=2000, n_train=5000, n_test=0, n_features=20000, seed=1)
    counts = np.asarray(p.Y_train.sum(axis=0)).ravel()
    ranked = np.sort(counts)[::-1]
    # head: the most popular label is far above the median label; tail: many labels are rare
    assert ranked[0] > 50 * max(np.median(counts), 1)
    assert (counts <= 2).mean() > 0.5 and (counts == 0).mean() > 0.2
    # the top label ~ the most popular by construction (first-label draw ~ popularity, exponent 1)
    assert counts[np.argmax(p.label_popularity)] == ranked[0]
    # log-log slope of count vs rank over the head is close to -1 (Zipf exponent 1)
    r = np.arange(1, 101)
    slope = np.polyfit(np.log(r), np.log(ranked[:100]), 1)[0]
    assert -1.4 < slope < -0.6


def test_labels_of_a_document_share_its_topic(tiny):
    Y = tiny.Y_train
    topics = tiny.label_topic[Y.indices]
    rows = np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))
    first_topic = topics[Y.indptr[:-1]][rows]
    assert (topics == first_topic).all()


def test_bad_argument_is_one_clear_error():
    with pytest.raises(GeneratorConfigError, match="n_labels=0"):
        make_sparse_problem(n_labels=0)
    with pytest.raises(XMCError, match="n_topics=50 must be in"):
        make_sparse_problem(n_labels=10, n_topics=50)


def test_xr_linear_learns_it_far_above_chance(tiny):
    from xmc.metrics import precision_at_k
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    config = XRLinearConfig()
    config.n_threads = 1
    model = XRLinear(config).fit_matrix(tiny.X_train, tiny.Y_train, progress=False)
    p = precision_at_k(tiny.Y_test, model.predict(tiny.X_test, topk=5), k=(1, 5))
    chance_p1 = tiny.Y_test.sum() / tiny.Y_test.shape[0] / tiny.n_labels
    assert p[1] > 0.6 > 100 * chance_p1


def test_its_label_structure_is_what_a_clustered_tree_recovers():
    """A 2-means label tree beats the same tree with its labels shuffled: the planted structure
    is learnable from the features (without idf it was not, at scale: BENCHMARKS.md)."""
    from xmc.indexing.kmeans import hierarchical_kmeans
    from xmc.indexing.label_repr import pifa
    from xmc.indexing.tree import ClusterChain
    from xmc.metrics import precision_at_k
    from xmc.ranker.hierarchy import HierarchicalLinear, LinearTrainConfig

    p = make_sparse_problem(n_labels=2000, n_train=6000, n_test=3000, n_features=20000, seed=1)
    clustered = hierarchical_kmeans(pifa(p.X_train, p.Y_train), n_threads=1)
    leaves = clustered[len(clustered) - 1]
    shuffled = ClusterChain([clustered[i] for i in range(len(clustered) - 1)]
                            + [leaves[np.random.default_rng(0).permutation(leaves.shape[0])]])
    precision = {}
    for name, chain in (("clustered", clustered), ("shuffled", shuffled)):
        model = HierarchicalLinear.fit(p.X_train, p.Y_train, chain, LinearTrainConfig(weight_threshold=0.1), n_threads=1)
        precision[name] = precision_at_k(p.Y_test, model.predict(p.X_test, beam_size=10, topk=5, n_threads=1), k=(1, 5))
    assert precision["clustered"][1] > precision["shuffled"][1] + 0.01
    assert precision["clustered"][5] > precision["shuffled"][5] + 0.01


def test_cli_generate_writes_the_same_problem_and_never_replaces_unasked(tmp_path, capsys):
    from xmc.cli.main import main
    from xmc.data import read_dataset

    out = tmp_path / "gen"
    args = ["data", "generate", "--labels", "50", "--train-docs", "120", "--test-docs", "30", "--features", "400",
            "--seed", "5", "--out", str(out)]
    assert main(args) == 0
    expected = make_sparse_problem(n_labels=50, n_train=120, n_test=30, n_features=400, seed=5)
    train = read_dataset(out / "train.txt")
    test = read_dataset(out / "test.txt")
    assert _equal(train.X, expected.X_train) and (train.Y != expected.Y_train).nnz == 0
    assert _equal(test.X, expected.X_test) and (test.Y != expected.Y_test).nnz == 0
    before = (out / "train.txt").read_bytes()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err  # an existing output is kept
    assert main(args + ["--overwrite"]) == 0 and (out / "train.txt").read_bytes() == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(args[:-1] + [str(other), "--overwrite"]) == 2  # not a generated directory: never replaced
    assert (other / "notes.txt").read_text() == "mine"
    assert main(["data", "generate", "--labels", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--labels 0 must be in [1," in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["data", "generate", "--labels", "10", "--train-docs", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--train-docs 0 must be >= 1" in capsys.readouterr().err  # the flag, not the function's argument
