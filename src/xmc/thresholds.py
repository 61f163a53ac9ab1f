"""Decision thresholds tuned on held-out data (never on test data).

A thresholded model (e.g. masked-bert, sigmoid outputs) trained briefly rarely puts a label above
0.5, so a fixed threshold predicts nothing. As Annif's ``optimize`` and napkinXC's thresholds do,
the threshold is instead chosen on a validation split: one global value maximising micro F1, and
optionally one per label (maximising that label's F1) for labels with enough validation
positives, the others keeping the global value.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _best_cut(scores: np.ndarray, hits: np.ndarray, n_true: int) -> tuple[float, float]:
    """(threshold, F1) over candidate lists: keep ``scores >= threshold``; F1 = 2 TP / (predicted + true).

    ``scores`` / ``hits``: each candidate's score and whether it is a true label; ``n_true``: all true
    labels (found or not). Ties are cut together; the threshold is a candidate's own score.
    """
    if not len(scores) or n_true == 0:
        return float("inf"), 0.0
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hits[order].astype(np.float64)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a cut may only fall after the last of equal scores
    tp = np.cumsum(h)[last_of_tie]
    predicted = np.flatnonzero(last_of_tie) + 1.0
    f1 = 2.0 * tp / (predicted + n_true)
    best = int(np.argmax(f1))
    return float(s[last_of_tie][best]), float(f1[best])


def tune_global(Y_true: sp.spmatrix, scores: sp.spmatrix) -> tuple[float, float]:
    """The threshold on the stored ``scores`` (n, L) that maximises micro F1 against ``Y_true`` (n, L).

    Only stored entries are candidates (e.g. each document's top-k): a threshold keeps the stored
    scores at or above it. Returns (threshold, micro F1 at it); (inf, 0) when nothing can be right.
    """
    S = sp.csr_matrix(scores)
    S.sort_indices()
    Y = sp.csr_matrix(Y_true, dtype=bool)
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    hits = np.asarray(Y[rows, S.indices]).ravel() if S.nnz else np.zeros(0, dtype=bool)
    return _best_cut(S.data.astype(np.float64), hits, int(Y.nnz))


def tune_per_label(Y_true: sp.spmatrix, scores: sp.spmatrix, global_threshold: float, *,
                   min_positives: int = 5) -> tuple[np.ndarray, int]:
    """(L,) thresholds: per label the one maximising its F1, where it has ``min_positives`` validation positives.

    Labels with fewer positives (too few to choose from) keep ``global_threshold``. Returns the
    thresholds and how many labels got their own.
    """
    S = sp.csc_matrix(scores)
    Y = sp.csc_matrix(Y_true, dtype=bool)
    L = S.shape[1]
    thresholds = np.full(L, global_threshold, dtype=np.float64)
    positives = np.diff(Y.indptr)
    own = 0
    for j in np.flatnonzero(positives >= min_positives):
        rows = S.indices[S.indptr[j]:S.indptr[j + 1]]
        truth = np.zeros(S.shape[0], dtype=bool)
        truth[Y.indices[Y.indptr[j]:Y.indptr[j + 1]]] = True
        thr, f1 = _best_cut(S.data[S.indptr[j]:S.indptr[j + 1]].astype(np.float64), truth[rows], int(positives[j]))
        if f1 > 0:
            thresholds[j] = thr
            own += 1
    return thresholds, own
