"""Set-based (thresholded) classification metrics: micro/macro P, R, F1.

``Y_true`` is a sparse ``(n, L)`` ground truth and ``Y_pred`` a sparse
``(n, L')`` prediction with ``L' <= L`` (as in :mod:`xmc.metrics.ranking`, the
truth columns ``>= L'`` are labels the model cannot predict: ``Y_pred`` is
padded with empty columns, so they count as false negatives).  Both matrices
are read as binary: every stored non-zero entry is a positive.

Per label ``l``: ``tp_l`` = documents with ``l`` both true and predicted,
``pred_l`` = documents predicted ``l``, ``true_l`` = documents truly ``l``.

* Micro: ``P = sum tp / sum pred``, ``R = sum tp / sum true``,
  ``F1 = 2PR / (P + R)``; 0 where a denominator is 0.
* Macro: per label ``P_l = tp_l / pred_l`` (0 when the label is never
  predicted), ``R_l = tp_l / true_l`` (0 when it never occurs in the truth),
  ``F1_l = 2 tp_l / (pred_l + true_l)``; the macro values are the plain means
  of ``P_l``, ``R_l`` and ``F1_l`` (macro-F1 is the mean of per-label F1, not
  the F1 of macro-P and macro-R).  By default the mean runs over the labels
  that occur in the truth *or* in the predictions (labels absent from both are
  ignored); with ``labels=`` it runs over exactly those labels.  (napkinxc's
  ``macro_f1_measure`` instead averages over ``range(max_label + 1)``.)

Everything is computed from column sums (``np.bincount`` of the CSR column
indices and of the element-wise product), no Python loop over rows or labels.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["micro_prf", "macro_prf", "threshold_scores", "label_counts"]


def _binary(Y, n_cols: int | None = None) -> sp.csr_matrix:
    """Binary CSR pattern of ``Y`` (stored non-zeros -> 1), optionally padded to ``n_cols``."""
    if not sp.issparse(Y):
        Y = sp.csr_matrix(np.asarray(Y))
    Y = sp.csr_matrix(Y, copy=True)
    Y.eliminate_zeros()
    Y.sum_duplicates()
    Y.data = np.ones_like(Y.data, dtype=np.float32)
    if n_cols is not None and n_cols != Y.shape[1]:
        Y = sp.csr_matrix((Y.data, Y.indices, Y.indptr), shape=(Y.shape[0], n_cols))
    return Y


def _aligned(Y_true, Y_pred) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    T = _binary(Y_true)
    if Y_pred.shape[0] != T.shape[0]:
        raise ValueError(f"Y_true has {T.shape[0]} rows but Y_pred has {Y_pred.shape[0]}")
    if Y_pred.shape[1] > T.shape[1]:
        raise ValueError(
            f"Y_pred has {Y_pred.shape[1]} columns, more than Y_true's {T.shape[1]}"
        )
    return T, _binary(Y_pred, T.shape[1])


def label_counts(Y_true, Y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label confusion counts.

    Args:
        Y_true: sparse ``(n, L)`` ground truth.
        Y_pred: sparse ``(n, L')`` binary predictions, ``L' <= L``.

    Returns:
        ``(tp, n_pred, n_true)``, three int64 arrays of shape ``(L,)``.
    """
    T, P = _aligned(Y_true, Y_pred)
    L = T.shape[1]
    tp = np.bincount(T.multiply(P).tocsr().indices, minlength=L).astype(np.int64)
    n_pred = np.bincount(P.indices, minlength=L).astype(np.int64)
    n_true = np.bincount(T.indices, minlength=L).astype(np.int64)
    return tp, n_pred, n_true


def _safe_div(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _micro(tp, n_pred, n_true) -> tuple[float, float, float]:
    s_tp, s_pred, s_true = float(tp.sum()), float(n_pred.sum()), float(n_true.sum())
    p = s_tp / s_pred if s_pred > 0 else 0.0
    r = s_tp / s_true if s_true > 0 else 0.0
    f1 = 2 * s_tp / (s_pred + s_true) if s_pred + s_true > 0 else 0.0
    return p, r, f1


def _macro(tp, n_pred, n_true, labels=None) -> tuple[float, float, float]:
    if labels is None:
        labels = np.nonzero((n_true > 0) | (n_pred > 0))[0]
    else:
        labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size == 0:
        return 0.0, 0.0, 0.0
    tp, n_pred, n_true = tp[labels], n_pred[labels], n_true[labels]
    p = _safe_div(tp, n_pred).mean()
    r = _safe_div(tp, n_true).mean()
    f1 = _safe_div(2 * tp, n_pred + n_true).mean()
    return float(p), float(r), float(f1)


def micro_prf(Y_true: sp.spmatrix, Y_pred: sp.spmatrix) -> tuple[float, float, float]:
    """Micro-averaged precision, recall and F1.

    Args:
        Y_true: sparse ``(n, L)`` ground truth.
        Y_pred: sparse ``(n, L')`` binary predictions, ``L' <= L`` (missing
            columns count as never predicted).

    Returns:
        ``(precision, recall, f1)`` as floats in ``[0, 1]`` (0 on a zero denominator).
    """
    return _micro(*label_counts(Y_true, Y_pred))


def macro_prf(Y_true: sp.spmatrix, Y_pred: sp.spmatrix,
              labels: np.ndarray | None = None) -> tuple[float, float, float]:
    """Macro-averaged precision, recall and F1 (means of the per-label values).

    Args:
        Y_true: sparse ``(n, L)`` ground truth.
        Y_pred: sparse ``(n, L')`` binary predictions, ``L' <= L``.
        labels: optional label indices (into ``[0, L)``) to average over;
            default: every label that occurs in ``Y_true`` or in ``Y_pred``.

    Returns:
        ``(precision, recall, f1)``; a label never predicted has precision 0,
        a label absent from the truth has recall 0; 0.0 when no label is averaged.
    """
    return _macro(*label_counts(Y_true, Y_pred), labels=labels)


def threshold_scores(scores: sp.spmatrix | np.ndarray,
                     threshold: float | np.ndarray = 0.5) -> sp.csr_matrix:
    """Binary predictions ``score >= threshold``.

    Args:
        scores: sparse or dense ``(n, L')`` scores.  For a sparse matrix only
            stored entries can be predicted (an implicit zero never is, even
            with a threshold <= 0).
        threshold: a scalar or a ``(L',)`` array of per-label thresholds.

    Returns:
        float32 CSR ``(n, L')`` with value 1 at every predicted (row, label),
        column indices sorted.
    """
    thr = np.asarray(threshold, dtype=np.float64)
    if np.isnan(thr).any():  # NaN keeps nothing: every thresholded figure would read 0
        raise ValueError("threshold must not be NaN")
    if sp.issparse(scores):
        S = sp.csr_matrix(scores)
        if thr.ndim == 0:
            keep = S.data >= thr
        else:
            thr = thr.ravel()
            if thr.shape[0] != S.shape[1]:
                raise ValueError(f"threshold has {thr.shape[0]} entries, expected {S.shape[1]}")
            keep = S.data >= thr[S.indices]
        row_of = np.repeat(np.arange(S.shape[0], dtype=np.int64), np.diff(S.indptr))
        out = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (row_of[keep], S.indices[keep])),
            shape=S.shape,
        )
    else:
        S = np.asarray(scores)
        if S.ndim != 2:
            raise ValueError(f"scores must be 2-d, got shape {S.shape}")
        if thr.ndim != 0:
            thr = thr.ravel()
            if thr.shape[0] != S.shape[1]:
                raise ValueError(f"threshold has {thr.shape[0]} entries, expected {S.shape[1]}")
        out = sp.csr_matrix((S >= thr).astype(np.float32))
    out.sum_duplicates()
    return out
