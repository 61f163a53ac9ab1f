"""Tests of xmc.metrics: hand-computed golden values and a napkinxc cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.metrics import (
    evaluate,
    format_report,
    frequency_groups,
    group_report,
    jain_propensity,
    macro_prf,
    micro_prf,
    ndcg_at_k,
    precision_at_k,
    psndcg_at_k,
    psprecision_at_k,
    ranking_report,
    recall_at_k,
    threshold_scores,
    top_k,
    topk_to_csr,
)

LOG2_3 = math.log2(3)
I2 = 1 + 1 / LOG2_3  # unit-gain IDCG of 2 positions: 1/log2(2) + 1/log2(3)


# --------------------------------------------------------------------------
# The running example (4 documents, 5 truth labels, 4 score columns).
#
#   doc  true labels   stored scores (label: score)          ranking
#   0    {0, 2}        2: .8, 1: .8, 0: .9  (unsorted CSR)   0, 1, 2   (tie 1 vs 2 -> 1 first)
#   1    {1}           1: .2                                 1
#   2    {}            0: .5, 3: .4                          0, 3
#   3    {3, 4}        3: .7, 0: .1                          3, 0      (label 4 unseen: no score column)
#
# hits:  doc0 [1, 0, 1], doc1 [1], doc2 [0, 0], doc3 [1, 0]
# --------------------------------------------------------------------------
def _truth() -> sp.csr_matrix:
    rows = [0, 0, 1, 3, 3]
    cols = [0, 2, 1, 3, 4]
    return sp.csr_matrix((np.ones(5), (rows, cols)), shape=(4, 5))


def _scores() -> sp.csr_matrix:
    data = np.array([0.8, 0.8, 0.9, 0.2, 0.5, 0.4, 0.7, 0.1])
    indices = np.array([2, 1, 0, 1, 0, 3, 3, 0])
    indptr = np.array([0, 3, 4, 6, 8])
    S = sp.csr_matrix((data, indices, indptr), shape=(4, 4))
    assert not S.has_sorted_indices
    return S


# -------------------------------------------------------------------- top_k
def test_top_k_sparse_ties_and_padding():
    idx, val = top_k(_scores(), 3)
    assert idx.dtype == np.int64 and val.dtype == np.float32
    np.testing.assert_array_equal(idx, [[0, 1, 2], [1, -1, -1], [0, 3, -1], [3, 0, -1]])
    np.testing.assert_allclose(
        val, np.array([[0.9, 0.8, 0.8], [0.2, -np.inf, -np.inf], [0.5, 0.4, -np.inf], [0.7, 0.1, -np.inf]],
                      dtype=np.float32))


def test_top_k_sparse_explicit_zero_is_a_candidate_and_empty_rows():
    S = sp.csr_matrix((np.array([0.0, -1.0]), np.array([3, 1]), np.array([0, 2, 2])), shape=(2, 5))
    idx, val = top_k(S, 2)
    np.testing.assert_array_equal(idx, [[3, 1], [-1, -1]])
    np.testing.assert_array_equal(val, [[0.0, -1.0], [-np.inf, -np.inf]])


def test_top_k_dense_ties_smaller_index_first():
    D = np.array([[1.0, 3.0, 3.0, 2.0, 3.0],
                  [0.0, 0.0, 0.0, 0.0, 0.0],
                  [5.0, 4.0, 3.0, 2.0, 1.0]])
    idx, val = top_k(D, 2)
    # row 0: three-way tie at 3.0 straddles k=2 -> columns 1, 2 (not 4)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 1], [0, 1]])
    np.testing.assert_array_equal(val, [[3, 3], [0, 0], [5, 4]])
    idx, val = top_k(D, 7)  # k > L: padded
    np.testing.assert_array_equal(idx[0], [1, 2, 4, 3, 0, -1, -1])
    assert np.isneginf(val[:, 5:]).all()


def test_top_k_matches_bruteforce_with_ties():
    rng = np.random.default_rng(0)
    D = rng.integers(0, 4, size=(60, 30)).astype(np.float64)  # many ties
    D[rng.random(D.shape) < 0.5] = 0
    S = sp.csr_matrix(D)  # zeros not stored
    for k in (1, 5, 30, 40):
        idx_d, val_d = top_k(D, k)
        idx_s, _ = top_k(S, k)
        for i in range(D.shape[0]):
            ref = sorted(range(D.shape[1]), key=lambda c: (-D[i, c], c))[:k]
            np.testing.assert_array_equal(idx_d[i, : len(ref)], ref)
            ref_s = sorted(S[i].indices, key=lambda c: (-D[i, c], c))[:k]
            np.testing.assert_array_equal(idx_s[i, : len(ref_s)], ref_s)
            assert (idx_s[i, len(ref_s):] == -1).all()
        np.testing.assert_array_equal(val_d[idx_d >= 0], np.take_along_axis(D, np.maximum(idx_d, 0), 1)[idx_d >= 0])


def test_topk_to_csr_roundtrip():
    idx, val = top_k(_scores(), 2)
    M = topk_to_csr(idx, val, 4)
    assert M.shape == (4, 4)
    # doc0 keeps labels 0 (.9) and 1 (.8); doc1 only label 1
    np.testing.assert_allclose(M.toarray()[0], [0.9, 0.8, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(M.toarray()[1], [0, 0.2, 0, 0], rtol=1e-6)
    with pytest.raises(ValueError):
        topk_to_csr(idx, val, 2)


def test_topk_to_csr_equals_the_coo_construction():
    # padding anywhere in a row, unsorted ids, a duplicate (summed, as COO input sums it), explicit 0 scores
    rng = np.random.default_rng(0)
    idx = rng.integers(-1, 30, size=(50, 7))
    idx[3] = [5, -1, 5, 2, -1, -1, 0]
    idx[4] = -1
    val = rng.random((50, 7)).astype(np.float32)
    val[7, :3] = 0.0
    M = topk_to_csr(idx, val, 30)
    valid = idx >= 0
    ref = sp.csr_matrix((val[valid], (np.nonzero(valid)[0], idx[valid])), shape=(50, 30))
    ref.sort_indices()
    assert M.has_sorted_indices and M.dtype == np.float32 and M.shape == (50, 30)
    np.testing.assert_array_equal(M.indptr, ref.indptr)
    np.testing.assert_array_equal(M.indices, ref.indices)
    np.testing.assert_allclose(M.data, ref.data)
    np.testing.assert_allclose(M[3].toarray()[0, [0, 2, 5]], [val[3, 6], val[3, 3], val[3, 0] + val[3, 2]])
    assert M[4].nnz == 0 and topk_to_csr(np.zeros((0, 3), int), np.zeros((0, 3)), 5).shape == (0, 5)


def test_top_k_rejects_bad_k():
    with pytest.raises(ValueError):
        top_k(_scores(), 0)
    with pytest.raises(TypeError):
        top_k(_scores(), 1.5)


# ------------------------------------------------------------------ ranking
def test_precision_golden():
    Y, S = _truth(), _scores()
    p = precision_at_k(Y, S, (1, 2, 3, 5))
    assert list(p) == [1, 2, 3, 5]
    # P@1: hits at rank 1 = 1 + 1 + 0 + 1 -> 3/4
    assert p[1] == pytest.approx(3 / 4)
    # P@2: doc0 1/2 (the tie puts label 1, a miss, at rank 2), doc1 1/2, doc2 0, doc3 1/2 -> 1.5/4
    assert p[2] == pytest.approx(1.5 / 4)
    # P@3: doc0 2/3, doc1 1/3, doc2 0, doc3 1/3 -> (4/3)/4 = 1/3
    assert p[3] == pytest.approx(1 / 3)
    # P@5 (k > predictions, still divided by 5): 2/5 + 1/5 + 0 + 1/5 -> 0.8/4
    assert p[5] == pytest.approx(0.2)
    # a single int gives a one-entry dict
    assert precision_at_k(Y, S, 1) == {1: pytest.approx(0.75)}


def test_cut_offs_past_the_label_count_need_no_buffer_of_their_size():
    """k = 10**8 on a 5-label problem built (documents x k) arrays (24 GB); past L nothing changes but k."""
    from xmc.metrics.ranking import _Ranked

    Y, S = _truth(), _scores()
    L, huge = Y.shape[1], 10**6
    assert _Ranked(Y, S, huge).hits.shape == (Y.shape[0], L)
    report = ranking_report(Y, S, ks=(L, huge), propensities=PROP)
    assert report[f"P@{huge}"] == pytest.approx(report[f"P@{L}"] * L / huge)
    for metric in ("R", "nDCG", "PSP", "PSnDCG"):  # cumulative past L, with an ideal that stops at L too
        assert report[f"{metric}@{huge}"] == pytest.approx(report[f"{metric}@{L}"]), metric


def test_nan_thresholds_and_bounds_are_refused():
    """A NaN threshold kept nothing and NaN bounds made one empty group: every figure 0 without a word."""
    with pytest.raises(ValueError, match="NaN"):
        threshold_scores(_scores(), float("nan"))
    with pytest.raises(ValueError, match="finite"):
        frequency_groups(np.array([1, 5, 200]), bounds=(float("nan"),))
    with pytest.raises(ValueError, match="finite"):
        frequency_groups(np.array([1, 5, 200]), bounds=(1, float("inf")))


def test_recall_golden_unseen_label_hurts():
    Y, S = _truth(), _scores()
    r = recall_at_k(Y, S, [1, 3, 5])
    # R@1: doc0 1/2, doc1 1/1, doc2 0 (no label), doc3 1/2 -> 2/4
    assert r[1] == pytest.approx(0.5)
    # R@3: doc0 2/2, doc1 1, doc2 0, doc3 1/2 (label 4 has no score column) -> 2.5/4
    assert r[3] == pytest.approx(0.625)
    assert r[5] == pytest.approx(0.625)
    # Dropping the unseen label 4 from the truth would give doc3 1/1 -> 3/4.
    Y_seen = Y[:, :4]
    assert recall_at_k(Y_seen, S, 3)[3] == pytest.approx(0.75)


def test_ndcg_golden():
    Y, S = _truth(), _scores()
    d = ndcg_at_k(Y, S, (1, 3))
    # nDCG@1: doc0 1, doc1 1, doc2 0, doc3 1 -> 3/4
    assert d[1] == pytest.approx(0.75)
    # nDCG@3:
    #   doc0 DCG = 1/log2(2) + 1/log2(4) = 1.5, IDCG over min(3,2)=2 positions = I2
    #   doc1 DCG = 1, IDCG = 1
    #   doc2 0 (no true label)
    #   doc3 DCG = 1, IDCG = I2 (label 4 counts even though it cannot be predicted)
    assert d[3] == pytest.approx((1.5 / I2 + 1 + 0 + 1 / I2) / 4)


PROP = np.array([0.5, 0.25, 0.8, 1.0, 0.2])  # inverse: w = [2, 4, 1.25, 1, 5]


def test_psp_golden():
    Y, S = _truth(), _scores()
    psp = psprecision_at_k(Y, S, (1, 3), propensities=PROP)
    # @1: gained  doc0 w0=2, doc1 w1=4, doc2 0, doc3 w3=1               -> 7
    #     best    doc0 max(w0,w2)=2, doc1 4, doc2 0, doc3 max(w3,w4)=5  -> 11
    assert psp[1] == pytest.approx(7 / 11)
    # @3: gained  doc0 2+1.25, doc1 4, doc3 1      -> 8.25
    #     best    doc0 2+1.25, doc1 4, doc3 5+1    -> 13.25
    assert psp[3] == pytest.approx(8.25 / 13.25)


def test_psndcg_golden():
    Y, S = _truth(), _scores()
    v = psndcg_at_k(Y, S, 3, propensities=PROP)[3]
    # per document PSDCG / IDCG (unit-gain IDCG), summed; divided by the same for the ideal ranking
    #   doc0 gained (2*1 + 1.25/log2(4)) / I2 = 2.625/I2,  ideal (2 + 1.25/log2(3)) / I2
    #   doc1 gained 4/1,                                  ideal 4/1
    #   doc3 gained 1/I2,                                 ideal (5 + 1/log2(3)) / I2
    num = 2.625 / I2 + 4 + 1 / I2
    den = (2 + 1.25 / LOG2_3) / I2 + 4 + (5 + 1 / LOG2_3) / I2
    assert v == pytest.approx(num / den)


def test_documents_without_labels_count_in_n():
    Y = sp.csr_matrix(np.array([[1, 0], [0, 0]]))
    S = sp.csr_matrix(np.array([[0.9, 0.1], [0.9, 0.1]]))
    rep = ranking_report(Y, S, ks=(1,), propensities=np.array([0.5, 0.5]))
    # doc0 perfect, doc1 has no label: contributes 0 and is counted -> 1/2
    assert rep["P@1"] == pytest.approx(0.5)
    assert rep["R@1"] == pytest.approx(0.5)
    assert rep["nDCG@1"] == pytest.approx(0.5)
    # the PS metrics are ratios of sums: doc1 adds 0 to gain and to ideal -> 1
    assert rep["PSP@1"] == pytest.approx(1.0)
    assert rep["PSnDCG@1"] == pytest.approx(1.0)


def test_ranking_report_keys_and_consistency():
    Y, S = _truth(), _scores()
    rep = ranking_report(Y, S, ks=(1, 3, 5))
    assert list(rep) == ["P@1", "P@3", "P@5", "R@1", "R@3", "R@5", "nDCG@1", "nDCG@3", "nDCG@5"]
    rep = ranking_report(Y, S, ks=(1, 3, 5), propensities=PROP)
    assert {"PSP@1", "PSP@3", "PSP@5", "PSnDCG@1", "PSnDCG@3", "PSnDCG@5"} <= set(rep)
    assert rep["P@3"] == pytest.approx(precision_at_k(Y, S, 3)[3])
    assert rep["nDCG@5"] == pytest.approx(ndcg_at_k(Y, S, 5)[5])
    assert rep["PSP@3"] == pytest.approx(8.25 / 13.25)


def test_dense_scores_same_as_sparse_when_full():
    rng = np.random.default_rng(1)
    D = rng.random((30, 12))
    Y = sp.csr_matrix(rng.random((30, 15)) < 0.2)
    a = ranking_report(Y, D, ks=(1, 3, 5), propensities=np.full(15, 0.5))
    b = ranking_report(Y, sp.csr_matrix(D), ks=(1, 3, 5), propensities=np.full(15, 0.5))
    assert a == pytest.approx(b)


def test_shape_errors():
    Y, S = _truth(), _scores()
    with pytest.raises(ValueError):
        precision_at_k(Y[:, :3], S, 1)  # scores wider than truth
    with pytest.raises(ValueError):
        precision_at_k(Y[:3], S, 1)
    with pytest.raises(ValueError):
        psprecision_at_k(Y, S, 1, propensities=PROP[:4])  # one per truth label needed


# --------------------------------------------------------------- propensity
def test_jain_propensity_hand_example():
    # N = 100, A = 0.5, B = 1: C = (ln 100 - 1) * 2**0.5 = 3.605170 * 1.414214 = 5.098...
    C = (math.log(100) - 1) * math.sqrt(2)
    p = jain_propensity(np.array([0, 9]), 100, A=0.5, B=1.0)
    # N_l = 0: (0 + 1)^-0.5 = 1          -> p = 1 / (1 + C)
    # N_l = 9: (9 + 1)^-0.5 = 1/sqrt(10) -> p = 1 / (1 + C / sqrt(10))
    np.testing.assert_allclose(p, [1 / (1 + C), 1 / (1 + C / math.sqrt(10))])
    assert p[0] == pytest.approx(1 / 6.0988, rel=1e-4)


def test_jain_propensity_matches_napkinxc():
    nm = pytest.importorskip("napkinxc.metrics")
    rng = np.random.default_rng(2)
    Y = sp.csr_matrix(rng.random((500, 40)) < 0.1)
    counts = np.asarray(Y.sum(axis=0)).ravel()
    np.testing.assert_allclose(jain_propensity(counts, 500), nm.Jain_et_al_propensity(Y))
    np.testing.assert_allclose(jain_propensity(counts, 500, 0.6, 2.6), nm.Jain_et_al_propensity(Y, 0.6, 2.6))


# ----------------------------------------------------------- classification
#   doc  true       predicted (3 columns; truth has 5, label 3 unseen, label 4 absent everywhere)
#   0    {0, 1}     {0, 2}
#   1    {1}        {0, 1}
#   2    {3}        {1}
#   per label: tp   = [1, 1, 0, 0, 0]
#              pred = [2, 2, 1, 0, 0]
#              true = [1, 2, 0, 1, 0]
def _cls():
    Y = sp.csr_matrix((np.ones(4), ([0, 0, 1, 2], [0, 1, 1, 3])), shape=(3, 5))
    P = sp.csr_matrix((np.ones(5), ([0, 0, 1, 1, 2], [0, 2, 0, 1, 1])), shape=(3, 3))
    return Y, P


def test_micro_prf_hand():
    Y, P = _cls()
    p, r, f = micro_prf(Y, P)
    # P = 2/5, R = 2/4, F1 = 2*2/(5+4) = 4/9
    assert (p, r, f) == pytest.approx((0.4, 0.5, 4 / 9))


def test_macro_prf_hand():
    Y, P = _cls()
    # averaged over labels in truth or predictions: {0, 1, 2, 3} (label 4 ignored)
    #   P_l  = [1/2, 1/2, 0/1, 0 (never predicted)]      -> 1/4
    #   R_l  = [1/1, 1/2, 0 (not in truth), 0/1]          -> 1.5/4
    #   F1_l = 2tp/(pred+true) = [2/3, 2/4, 0/1, 0/1]     -> (7/6)/4 = 7/24
    assert macro_prf(Y, P) == pytest.approx((0.25, 0.375, 7 / 24))
    # explicit labels: exactly {0, 1}
    assert macro_prf(Y, P, labels=[0, 1]) == pytest.approx((0.5, 0.75, 7 / 12))
    # explicit labels including the absent label 4: it scores 0 everywhere
    assert macro_prf(Y, P, labels=[0, 1, 4]) == pytest.approx((1 / 3, 0.5, 7 / 18))


def test_threshold_scores():
    S = sp.csr_matrix(np.array([[0.6, 0.0, 0.5], [0.2, 0.9, 0.4]]))
    np.testing.assert_array_equal(threshold_scores(S).toarray(), [[1, 0, 1], [0, 1, 0]])
    thr = np.array([0.7, 0.5, 0.3])
    np.testing.assert_array_equal(threshold_scores(S, thr).toarray(), [[0, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(threshold_scores(S.toarray(), thr).toarray(), [[0, 0, 1], [0, 1, 1]])
    # implicit zeros of a sparse matrix are never predicted, even with threshold <= 0
    assert threshold_scores(S, -1.0).nnz == S.nnz
    with pytest.raises(ValueError):
        threshold_scores(S, np.array([0.1, 0.2]))


def test_evaluate_and_format_report():
    Y, S = _truth(), _scores()
    rep = evaluate(Y, S, ks=(1, 3), propensities=PROP, threshold=0.5)
    # thresholded at 0.5: doc0 {0, 1, 2}, doc2 {0}, doc3 {3}
    #   tp = doc0 {0, 2} + doc3 {3} = 3, pred = 5, true = 5 -> micro P = R = F1 = 3/5
    assert (rep["micro_p"], rep["micro_r"], rep["micro_f1"]) == pytest.approx((0.6, 0.6, 0.6))
    # macro over labels 0..4 (all occur): tp=[1,0,1,1,0] pred=[2,1,1,1,0] true=[1,1,1,1,1]
    #   P_l = [1/2, 0, 1, 1, 0] -> 2.5/5;  R_l = [1, 0, 1, 1, 0] -> 3/5
    #   F1_l = [2/3, 0, 1, 1, 0] -> (8/3)/5
    assert (rep["macro_p"], rep["macro_r"], rep["macro_f1"]) == pytest.approx((0.5, 0.6, 8 / 15))
    assert rep["P@1"] == pytest.approx(0.75)
    assert "micro_p" not in evaluate(Y, S)
    text = format_report(rep)
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "@1", "@3"]
    assert lines[1].split() == ["P", "75.00", "33.33"]
    assert "PSnDCG" in text and "micro" in text and "60.00" in text
    assert format_report({"time_s": 0.5}) == "time_s  50.00"


# ------------------------------------------------------------------- groups
def test_frequency_groups_buckets():
    counts = np.array([0, 1, 99, 100, 999, 1000, 9999, 10000, 50000, 5])
    g = frequency_groups(counts)
    assert [name for name, _ in g] == ["unseen", "[1,100)", "[100,1000)", "[1000,10000)", "[10000,inf)"]
    got = {name: idx.tolist() for name, idx in g}
    assert got == {
        "unseen": [0],
        "[1,100)": [1, 2, 9],
        "[100,1000)": [3, 4],
        "[1000,10000)": [5, 6],
        "[10000,inf)": [7, 8],
    }
    # no unseen label -> no unseen group; bounds[0] > 1 gives a "(0,b0)" group
    g = frequency_groups(np.array([3, 5, 50, 7]), bounds=(5, 50))
    assert [(n, i.tolist()) for n, i in g] == [("(0,5)", [0]), ("[5,50)", [1, 3]), ("[50,inf)", [2])]
    with pytest.raises(ValueError):
        frequency_groups(counts, bounds=(100, 10))


def test_group_report_hand():
    # truth 2 x 4, predictions 2 x 3, train counts for 3 labels (label 3 is unseen in training)
    #   doc0 true {0, 1} pred {0, 2};  doc1 true {2, 3} pred {2}
    #   tp = [1, 0, 1, 0], pred = [1, 0, 2, 0], true = [1, 1, 1, 1]
    Y = sp.csr_matrix((np.ones(4), ([0, 0, 1, 1], [0, 1, 2, 3])), shape=(2, 4))
    P = sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 2, 2])), shape=(2, 3))
    rep = group_report(Y, P, np.array([150, 2, 3]))
    by = {r["name"]: r for r in rep}
    assert [r["name"] for r in rep] == ["unseen", "[1,100)", "[100,1000)", "[1000,10000)", "[10000,inf)"]
    # unseen {3}: tp 0, pred 0, true 1 -> all 0
    assert by["unseen"]["n_labels"] == 1
    assert (by["unseen"]["micro_p"], by["unseen"]["micro_r"], by["unseen"]["macro_f1"]) == (0, 0, 0)
    # [1,100) {1, 2}: tp 1, pred 2, true 2 -> P = R = F1 = 1/2; macro F1 = (0/1 + 2/3)/2 = 1/3
    g = by["[1,100)"]
    assert g["n_labels"] == 2
    assert (g["micro_p"], g["micro_r"], g["micro_f1"], g["macro_f1"]) == pytest.approx((0.5, 0.5, 0.5, 1 / 3))
    # [100,1000) {0}: perfect
    g = by["[100,1000)"]
    assert (g["micro_p"], g["micro_r"], g["micro_f1"], g["macro_f1"]) == pytest.approx((1, 1, 1, 1))
    # empty buckets: n_labels 0 and NaN metrics
    assert by["[1000,10000)"]["n_labels"] == 0 and math.isnan(by["[1000,10000)"]["micro_f1"])


# ---------------------------------------------------------------- napkinxc
@pytest.mark.parametrize("min_labels", [1, 0])
def test_cross_check_napkinxc(min_labels):
    """P@k, R@k, nDCG@k, PSP@k and PSnDCG@k agree with napkinxc.metrics.

    Data chosen where the conventions coincide: continuous random scores (no
    ties: napkinxc ranks with an unstable argsort).  With ``min_labels=0``
    some documents have no true label; napkinxc (default zero_division=0)
    also counts them with 0, so the values still agree.  napkinxc's PS metrics take *inverse* propensities
    and (with normalize=True) use the same ratio-of-sums normalisation.  The
    scores have fewer columns than the truth (unseen labels), which napkinxc
    handles the same way since it only sees the predicted label ids.
    """
    nm = pytest.importorskip("napkinxc.metrics")
    rng = np.random.default_rng(42)
    n, L, L_pred, K = 300, 60, 50, 5
    # truth: 1..6 labels per document
    rows, cols = [], []
    for i in range(n):
        labs = rng.choice(L, size=rng.integers(min_labels, 7), replace=False)
        rows += [i] * len(labs)
        cols += labs.tolist()
    Y = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, L))
    # scores: 0..20 stored entries per row (some rows have fewer than K)
    rows, cols = [], []
    for i in range(n):
        labs = rng.choice(L_pred, size=rng.integers(0, 21), replace=False)
        rows += [i] * len(labs)
        cols += labs.tolist()
    S = sp.csr_matrix((rng.random(len(rows)) + 0.01, (rows, cols)), shape=(n, L_pred))
    counts = rng.integers(0, 200, size=L)
    prop = jain_propensity(counts, 1000)
    ks = list(range(1, K + 1))
    rep = ranking_report(Y, S, ks=ks, propensities=prop)

    Y_list = [Y[i].indices.tolist() for i in range(n)]
    checks = {
        "P": nm.precision_at_k(Y_list, S, k=K),
        "R": nm.recall_at_k(Y_list, S, k=K),
        "nDCG": nm.ndcg_at_k(Y_list, S, k=K),
        "PSP": nm.psprecision_at_k(Y_list, S, 1.0 / prop, k=K),
        "PSnDCG": nm.psndcg_at_k(Y_list, S, 1.0 / prop, k=K),
    }
    for name, ref in checks.items():
        ours = np.array([rep[f"{name}@{k}"] for k in ks])
        np.testing.assert_allclose(ours, ref, rtol=1e-9, err_msg=name)


def test_propensities_of_one_or_two_documents_are_one():
    from xmc.metrics import jain_propensity

    # log(N) - 1 < 0 below three documents: the formula's C would make p above 1 or negative.
    for n in (1, 2):
        assert np.array_equal(jain_propensity(np.array([0, 1, 2]), n), np.ones(3))
    p = jain_propensity(np.array([0, 1, 2]), 3)
    C = (np.log(3) - 1) * 2.5 ** 0.55
    np.testing.assert_allclose(p, 1 / (1 + C * np.exp(-0.55 * np.log(np.array([0, 1, 2]) + 1.5))))
    assert np.all((p > 0) & (p < 1))


def test_cut_offs_must_be_whole_numbers():
    Y, S = _truth(), _scores()
    for bad in (1.5, [1, 2.5], "3", True, []):
        with pytest.raises(ValueError):
            precision_at_k(Y, S, bad)
    assert precision_at_k(Y, S, np.int64(1)) == precision_at_k(Y, S, [1]) == precision_at_k(Y, S, (1,))
