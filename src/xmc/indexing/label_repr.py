"""Label representations for semantic label indexing (PIFA, label-text embeddings, combinations)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..sparse_rows import l2_normalize_rows


def pifa(X: sp.csr_matrix, Y: sp.csr_matrix, *, normalize_labels: bool = False) -> sp.csr_matrix:
    """Positive Instance Feature Aggregation: v_l = normalise(sum of w_i x_i over label l's positives).

    Args:
        X: instance features, CSR (n, d).
        Y: labels, CSR (n, L).
        normalize_labels: weigh document i by w_i = 1 / sqrt(k_i), k_i its number of labels
            (the rows of the binary Y L2-normalised, PECOS's ``normalized_Y``), so a document
            with many labels pulls each of them less; otherwise w_i = 1.

    Returns:
        CSR (L, d) with L2-normalised rows (all-zero for labels without positives).
    """
    Y_bin = sp.csr_matrix(Y, dtype=np.float32, copy=True)
    Y_bin.data[:] = 1.0
    if normalize_labels:
        Y_bin = l2_normalize_rows(Y_bin)
    return l2_normalize_rows(sp.csr_matrix(Y_bin.T @ X, dtype=np.float32), copy=False)  # its own product


def combine(pifa_repr: sp.csr_matrix, text_repr: sp.csr_matrix, mode: str, text_weight: float = 0.5) -> sp.csr_matrix:
    """Combine two (L, *) label representations.

    ``mode="convex"``: normalise((1 - w) * pifa + w * text) (both must share the feature space);
    ``mode="concat"``: [(1 - w) * pifa || w * text], row-normalised.
    """
    a = l2_normalize_rows(sp.csr_matrix(pifa_repr, dtype=np.float32))
    b = l2_normalize_rows(sp.csr_matrix(text_repr, dtype=np.float32))
    if mode == "convex":
        if a.shape != b.shape:
            raise ValueError(f"convex combination needs equal shapes, got {a.shape} and {b.shape}")
        return l2_normalize_rows(sp.csr_matrix((1.0 - text_weight) * a + text_weight * b))
    if mode == "concat":
        return l2_normalize_rows(sp.hstack([(1.0 - text_weight) * a, text_weight * b], format="csr", dtype=np.float32))
    raise ValueError(f"unknown combination mode {mode!r}")
