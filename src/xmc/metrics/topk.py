"""Vectorised top-k selection over score matrices.

Ranking convention used by every metric in :mod:`xmc.metrics`:

* Labels are ranked by score, highest first.
* **Ties are broken by the smaller label index first.**  The order is fully
  deterministic and does not depend on the storage order of a CSR row.
* For a sparse score matrix only *stored* entries are candidates (an explicitly
  stored 0 or negative score is a prediction, an implicit zero is not).  A row
  with fewer than ``k`` stored entries is padded with index ``-1`` and value
  ``-inf``.
* For a dense score matrix every column is a candidate; padding only happens
  when ``k`` exceeds the number of columns.
* NaN scores are not supported (their rank is unspecified).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["top_k", "topk_to_csr"]


def _check_k(k: int) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return k


def _rank_key(data: np.ndarray) -> np.ndarray:
    """Key whose ascending order is the descending order of ``data``."""
    if data.dtype.kind == "f":
        return -data
    return -data.astype(np.float64)


def _top_k_csr(scores: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = scores.shape[0]
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    if scores.nnz == 0 or n == 0:
        return out_idx, out_val
    if not scores.has_sorted_indices:
        # Stable sort below relies on ascending column order within a row to
        # break ties by the smaller label index.
        scores = scores.sorted_indices()
    indptr = scores.indptr.astype(np.int64, copy=False)
    row_len = np.diff(indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), row_len)
    # np.lexsort is stable: primary key row, secondary -score; equal scores keep
    # their (ascending column) storage order.
    order = np.lexsort((_rank_key(scores.data), rows))
    # ``order`` keeps rows grouped in the same place as the input, so the rank
    # of sorted position j inside its row is j - indptr[row].
    rank = np.arange(order.size, dtype=np.int64) - indptr[rows]
    keep = rank < k
    sel = order[keep]
    r, c = rows[keep], rank[keep]
    out_idx[r, c] = scores.indices[sel]
    out_val[r, c] = scores.data[sel]
    return out_idx, out_val


def _top_k_dense(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n, L = scores.shape
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_val = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or L == 0:
        return out_idx, out_val
    key = _rank_key(scores)
    if k >= L:
        # Stable full sort: ties keep ascending column order.
        order = np.argsort(key, axis=1, kind="stable")
        out_idx[:, :L] = order
        out_val[:, :L] = np.take_along_axis(scores, order, axis=1)
        return out_idx, out_val
    # k-th smallest key per row (= k-th largest score).
    part = np.argpartition(key, k - 1, axis=1)[:, k - 1]
    kth = np.take_along_axis(key, part[:, None], axis=1)  # (n, 1)
    better = key < kth
    n_better = better.sum(axis=1, keepdims=True)
    # Among the entries tied with the k-th value keep the smallest columns.
    tied = key == kth
    tied_rank = np.cumsum(tied, axis=1)
    chosen = better | (tied & (tied_rank <= (k - n_better)))
    # Exactly k chosen per row; nonzero walks row-major, so columns ascend.
    cols = np.nonzero(chosen)[1].reshape(n, k)
    sub = np.take_along_axis(key, cols, axis=1)
    order = np.argsort(sub, axis=1, kind="stable")
    out_idx[:] = np.take_along_axis(cols, order, axis=1)
    out_val[:] = np.take_along_axis(scores, out_idx, axis=1)
    return out_idx, out_val


def top_k(scores: sp.spmatrix | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` labels of every row, best first.

    Args:
        scores: score matrix, shape ``(n, L)``; a scipy sparse matrix (converted
            to CSR) or a dense 2-d ndarray.
        k: number of labels to keep, ``k >= 1``.

    Returns:
        ``(indices, values)``: ``indices`` int64 of shape ``(n, k)`` holding label
        (column) indices, ``values`` float32 of shape ``(n, k)`` holding their
        scores, both ordered best first.  Ties are broken by the smaller label
        index.  Rows with fewer than ``k`` candidates (stored entries for a
        sparse matrix, columns for a dense one) are padded with index ``-1``
        and value ``-inf``.

    Fully vectorised: one ``np.lexsort`` over the stored entries (sparse) or an
    ``np.argpartition`` plus a sort of the ``k`` survivors (dense).
    """
    k = _check_k(k)
    if sp.issparse(scores):
        return _top_k_csr(sp.csr_matrix(scores), k)
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-d, got shape {arr.shape}")
    return _top_k_dense(arr, k)


def topk_to_csr(indices: np.ndarray, values: np.ndarray, n_labels: int) -> sp.csr_matrix:
    """Pack a top-k result back into a sparse score matrix.

    Args:
        indices: int array ``(n, k)`` of label indices, ``-1`` marks padding.
        values: float array ``(n, k)`` of scores aligned with ``indices``.
        n_labels: number of columns ``L`` of the result; every non-padding
            index must be in ``[0, L)``.

    Returns:
        float32 CSR matrix of shape ``(n, L)`` with the non-padding entries
        (column indices sorted within each row).
    """
    indices = np.asarray(indices)
    values = np.asarray(values)
    if indices.ndim != 2 or indices.shape != values.shape:
        raise ValueError(
            f"indices and values must be 2-d of the same shape, got {indices.shape} and {values.shape}"
        )
    n = indices.shape[0]
    if indices.size and indices.max() >= n_labels:
        raise ValueError(f"label index {int(indices.max())} out of range for n_labels={n_labels}")
    # The CSR arrays are built directly and scipy's compiled routine sorts and merges each row, not
    # through scipy's COO -> CSR conversion: for the one-row result of a served document that
    # conversion was half of XR-Linear's whole prediction (BENCHMARKS.md, latency).
    valid = indices >= 0
    index_type = np.int32 if max(int(n_labels), indices.size) <= np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, dtype=index_type)
    np.cumsum(valid.sum(axis=1), out=indptr[1:])
    mat = sp.csr_matrix((values[valid].astype(np.float32), indices[valid].astype(index_type), indptr),
                        shape=(n, int(n_labels)))
    mat.sum_duplicates()  # sorts each row's labels; a repeated label is summed, as COO input is
    return mat
