"""Thresholds tuned on validation data: micro-F1 and per-label optima by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.thresholds import tune_global, tune_per_label


def test_global_threshold_maximises_micro_f1_by_hand():
    # stored scores 0.9 (true), 0.8 (false), 0.6 (true), 0.3 (true), 0.2 (false); 4 true labels in all
    scores = sp.csr_matrix(np.array([[0.9, 0.8, 0.0], [0.6, 0.0, 0.2], [0.0, 0.3, 0.0]]))
    truth = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]]))
    # cuts: >=0.9: 2*1/(1+4)=0.4; >=0.8: 2/6; >=0.6: 4/7; >=0.3: 6/8=0.75; >=0.2: 6/9
    threshold, f1 = tune_global(truth, scores)
    assert threshold == pytest.approx(0.3) and f1 == pytest.approx(0.75)


def test_tied_scores_are_cut_together():
    scores = sp.csr_matrix(np.array([[0.5, 0.5]]))
    truth = sp.csr_matrix(np.array([[1, 0]]))
    threshold, f1 = tune_global(truth, scores)  # both or neither: 2*1/(2+1)
    assert threshold == 0.5 and f1 == pytest.approx(2 / 3)


def test_no_true_label_among_candidates():
    threshold, f1 = tune_global(sp.csr_matrix((2, 3)), sp.csr_matrix(np.array([[0.4, 0, 0], [0, 0, 0.1]])))
    assert f1 == 0.0 and threshold == float("inf")


def test_per_label_thresholds_with_global_fallback():
    # label 0: positives score 0.9, 0.7, 0.4 and a negative 0.6 -> best cut 0.4 (F1 6/7 vs 0.7 cut: 4/5)
    # label 1: one positive only -> keeps the global 0.55
    scores = sp.csr_matrix(np.array([[0.9, 0.2], [0.7, 0.0], [0.6, 0.8], [0.4, 0.0]]))
    truth = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 0], [1, 0]]))
    thresholds, own = tune_per_label(truth, scores, 0.55, min_positives=2)
    assert own == 1
    np.testing.assert_allclose(thresholds, [0.4, 0.55])
