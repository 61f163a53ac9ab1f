"""Row-wise L2 normalisation of sparse matrices for the XR-Linear path, and column ids as the kernels read them.

Written here rather than taken from ``sklearn.preprocessing.normalize`` because importing
scikit-learn (which pulls in pandas and scipy.stats) costs about 1.3 s and 100 MB of RSS on
this machine: more than XR-Linear's whole fit on bibtex. A model trained or served on given
feature matrices (XC files) then never imports scikit-learn; TF-IDF on raw text still does.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["csr32", "l2_normalize_rows", "unsigned_indices"]


def csr32(M) -> sp.csr_matrix:
    """``M`` as a float32 CSR matrix with sorted indices, the form the XR-Linear kernels read;
    ``M`` itself when it already is one (a served document's row then skips scipy's constructor
    checks), otherwise a new matrix that may share ``M``'s arrays."""
    if isinstance(M, sp.csr_matrix) and M.dtype == np.float32 and M.has_sorted_indices:
        return M
    X = sp.csr_matrix(M, dtype=np.float32)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return X


def unsigned_indices(M: sp.csr_matrix | sp.csc_matrix) -> np.ndarray:
    """``M.indices`` as uint32, the type the numba kernels index with (numba then skips the
    negative-index wraparound on every access). Indices are non-negative, so int32 ones are
    reinterpreted without a copy (at 1M documents a copy was 120 MB of XR-Linear's training peak)."""
    if M.indices.dtype == np.int32:
        return M.indices.view(np.uint32)
    return M.indices.astype(np.uint32)


def l2_normalize_rows(M, dtype=np.float32, *, copy: bool = True) -> sp.csr_matrix:
    """A CSR matrix (``dtype``) whose rows have unit L2 norm; all-zero rows stay zero.

    Accepts anything ``scipy.sparse.csr_matrix`` accepts (sparse or dense); never modifies ``M``
    unless ``copy=False`` and ``M`` is already CSR of ``dtype`` (then it is normalised in place).
    """
    X = sp.csr_matrix(M, dtype=dtype, copy=copy)
    X.sum_duplicates()
    _scale_rows_to_unit_norm(X.indptr, X.data)
    return X


@numba.njit(cache=True)
def _scale_rows_to_unit_norm(indptr, data):
    # A loop rather than NumPy expressions: those built four (nnz,) temporaries (row ids, the values
    # in float64, their squares, the repeated norms), which made PIFA's row normalisation the peak
    # of XR-Linear's training memory. Same arithmetic: float64 sums in order, one division in
    # the data's dtype, so the results are bit-identical.
    scale = np.empty(1, dtype=data.dtype)
    for r in range(indptr.shape[0] - 1):
        total = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            v = np.float64(data[k])
            total += v * v
        scale[0] = math.sqrt(total) if total > 0.0 else 1.0
        for k in range(indptr[r], indptr[r + 1]):
            data[k] = data[k] / scale[0]


def drop_below(scores: sp.spmatrix, threshold) -> sp.csr_matrix:
    """``scores`` (CSR) without the stored entries below ``threshold`` (a number, or one per column).

    Only stored entries are compared: ``scores >= threshold`` on the whole matrix makes every
    implicit zero True when the threshold is <= 0, a dense (n, L) mask (and scipy's efficiency warning).
    """
    S = sp.csr_matrix(scores, copy=True)
    thr = np.asarray(threshold, dtype=np.float64)
    keep = S.data >= (thr if thr.ndim == 0 else thr.ravel()[S.indices])
    S.data[~keep] = 0
    S.eliminate_zeros()
    return S

