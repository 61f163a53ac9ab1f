"""Ranking metrics at k for extreme multi-label classification.

All functions take the ground truth ``Y_true`` (sparse, ``n x L``; every stored
non-zero entry is a relevant label) and a score matrix ``scores`` (sparse or
dense, ``n x L'``) and return a ``dict`` mapping each requested ``k`` to a
Python ``float`` in ``[0, 1]``.  ``k`` may be a single int or a sequence of
ints; the result is always a dict (``precision_at_k(Y, S, 3) == {3: ...}``).

Conventions
-----------
Ranking: labels are ranked with :func:`xmc.metrics.topk.top_k` (score
descending, ties broken by the smaller label index; for sparse scores only
stored entries are predictions).

Unseen labels: ``scores`` may have fewer columns than ``Y_true``
(``L' <= L``).  The extra truth columns are labels the model cannot predict
(test labels never seen in training).  ``scores`` is treated as if padded with
empty columns: those labels are never predicted but still count as relevant,
so they lower R@k, nDCG@k and the PS metrics' ideal values.

With ``y_i`` the set of true labels of document ``i``, ``top_k(i)`` its ranked
predictions (possibly fewer than ``k``), ``n`` the number of documents and
``D(r) = 1 / log2(r + 1)`` the discount of rank ``r = 1, 2, ...``:

* ``P@k      = 1/n sum_i |top_k(i) ∩ y_i| / k`` — always divided by ``k``, even
  when a document has fewer than ``k`` predictions.
* ``R@k      = 1/n sum_i |top_k(i) ∩ y_i| / |y_i|``.
* ``nDCG@k   = 1/n sum_i DCG_i / IDCG_i`` with
  ``DCG_i = sum_{r<=k, l_r in y_i} D(r)`` and
  ``IDCG_i = sum_{r=1}^{min(k, |y_i|)} D(r)``.
* ``PSP@k``: with inverse propensities ``w_l = 1 / p_l``,
  ``PSP@k = sum_i sum_{l in top_k(i) ∩ y_i} w_l  /  sum_i best_i`` where
  ``best_i`` is the sum of the ``min(k, |y_i|)`` largest ``w_l`` over
  ``l in y_i`` (the value of the ideal ranking).  The common factor ``1/k``
  cancels.  This is the *normalised* PSP of the Extreme Classification
  Repository and of ``napkinxc.metrics.psprecision_at_k(normalize=True)``:
  a ratio of the summed (equivalently averaged) score to the summed ideal
  score, **not** the average of per-document ratios.
* ``PSnDCG@k = sum_i PSDCG_i / IDCG_i  /  sum_i PSIDCG_i / IDCG_i`` with
  ``PSDCG_i = sum_{r<=k, l_r in y_i} w_{l_r} D(r)``, ``PSIDCG_i`` the same
  for the ideal ranking (true labels by decreasing ``w``) and ``IDCG_i`` the
  unit-gain ideal DCG above; again the normalised ratio-of-sums form used by
  the XC Repository and ``napkinxc.metrics.psndcg_at_k``.

Documents with no true label contribute 0 to every metric (to the numerator
and, for the PS metrics, to the ideal) and are still counted in ``n``.  This
matches ``napkinxc.metrics`` with its default ``zero_division=0`` for R@k and
nDCG@k (P@k and PSP@k give 0 there anyway); tools that drop such documents
report higher numbers on data sets with label-less test documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from xmc.metrics.topk import top_k

__all__ = [
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "psprecision_at_k",
    "psndcg_at_k",
    "ranking_report",
]


# ----------------------------------------------------------------- helpers
def _normalize_ks(k: int | Sequence[int]) -> list[int]:
    """``k`` (one cut-off or several) as a list of ints >= 1; ValueError for anything else (1.5 was a
    TypeError about iteration, and a float item was truncated)."""
    def whole(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))

    if whole(k):
        ks = [int(k)]
    elif isinstance(k, (list, tuple, range, np.ndarray)) and all(whole(x) for x in k):
        ks = [int(x) for x in k]
    else:
        raise ValueError(f"k must be a whole number >= 1 or a sequence of them, got {k!r}")
    if not ks:
        raise ValueError("at least one k is required")
    for x in ks:
        if x < 1:
            raise ValueError(f"k must be >= 1, got {x}")
    return ks


def _canonical_truth(Y_true) -> sp.csr_matrix:
    """CSR with sorted unique column indices and no stored zeros (binary pattern)."""
    if not sp.issparse(Y_true):
        Y_true = sp.csr_matrix(np.asarray(Y_true))
    Y = sp.csr_matrix(Y_true, copy=True)
    Y.eliminate_zeros()
    Y.sum_duplicates()  # also sorts indices
    return Y


def _check_shapes(Y_true: sp.csr_matrix, scores) -> None:
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d, got shape {scores.shape}")
    if scores.shape[0] != Y_true.shape[0]:
        raise ValueError(f"Y_true has {Y_true.shape[0]} rows but scores has {scores.shape[0]}")
    if scores.shape[1] > Y_true.shape[1]:
        raise ValueError(
            f"scores has {scores.shape[1]} columns, more than Y_true's {Y_true.shape[1]}; "
            "scores may only have fewer columns (labels unseen in training)"
        )


def _hits(Y_true: sp.csr_matrix, indices: np.ndarray) -> np.ndarray:
    """Boolean ``(n, k)``: is ``indices[i, r]`` a true label of row ``i``?

    Vectorised membership test: search the keys ``row * L + col`` of the
    predictions in the sorted keys of the canonical CSR ``Y_true``.
    """
    n, k = indices.shape
    L = np.int64(Y_true.shape[1])
    true_rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(Y_true.indptr))
    true_keys = true_rows * L + Y_true.indices.astype(np.int64)  # sorted (canonical CSR)
    valid = indices >= 0
    query = np.arange(n, dtype=np.int64)[:, None] * L + np.where(valid, indices, 0)
    if true_keys.size == 0:
        return np.zeros((n, k), dtype=bool)
    pos = np.searchsorted(true_keys, query.ravel()).reshape(n, k)
    np.minimum(pos, true_keys.size - 1, out=pos)
    return valid & (true_keys[pos] == query)


def _discount(k: int) -> np.ndarray:
    """``D(r) = 1 / log2(r + 1)`` for ranks ``r = 1..k``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _inverse_propensities(propensities, L: int) -> np.ndarray:
    p = np.asarray(propensities, dtype=np.float64).ravel()
    if p.shape[0] != L:
        raise ValueError(
            f"propensities has {p.shape[0]} entries, expected one per truth label ({L}); "
            "labels unseen in training need a propensity too (e.g. jain_propensity of count 0)"
        )
    if np.any(~(p > 0)):
        raise ValueError("propensities must be > 0")
    return 1.0 / p


class _Ranked:
    """Top-k predictions of ``scores`` checked against ``Y_true``, computed once."""

    def __init__(self, Y_true, scores, max_k: int):
        self.Y = _canonical_truth(Y_true)
        if not sp.issparse(scores):
            scores = np.asarray(scores)
        _check_shapes(self.Y, scores)
        # Past the label count a ranking has no entries, so every cumulative column after it equals its
        # last: the buffers stop there (k = 10**8 on a 5-label file needed 24 GB) and _col reads them.
        self.max_k = max(1, min(max_k, self.Y.shape[1]))
        self.indices, _ = top_k(scores, self.max_k)
        self.hits = _hits(self.Y, self.indices)  # (n, max_k) bool
        self.n = self.Y.shape[0]
        self.n_true = np.diff(self.Y.indptr).astype(np.float64)  # |y_i|
        self.disc = _discount(self.max_k)
        # cum_hits[:, k-1] = hits in top-k; cum_dcg likewise.
        self.cum_hits = np.cumsum(self.hits, axis=1, dtype=np.float64)
        self.cum_dcg = np.cumsum(self.hits * self.disc, axis=1)
        self._idcg_table = np.concatenate(([0.0], np.cumsum(self.disc)))
        self._w = None

    def _col(self, k: int) -> int:
        """The column of the cumulative buffers that holds cut-off ``k``."""
        return min(k, self.max_k) - 1

    def _mean(self, per_doc: np.ndarray) -> float:
        return float(per_doc.sum() / self.n) if self.n else 0.0

    def idcg(self, k: int) -> np.ndarray:
        """Unit-gain ideal DCG per document (0 for documents with no label)."""
        m = np.minimum(self.n_true, k).astype(np.int64)
        return self._idcg_table[m]

    def precision(self, k: int) -> float:
        return self._mean(self.cum_hits[:, self._col(k)] / k)

    def recall(self, k: int) -> float:
        h = self.cum_hits[:, self._col(k)]
        return self._mean(np.divide(h, self.n_true, out=np.zeros_like(h), where=self.n_true > 0))

    def ndcg(self, k: int) -> float:
        d = self.cum_dcg[:, self._col(k)]
        idcg = self.idcg(k)
        return self._mean(np.divide(d, idcg, out=np.zeros_like(d), where=idcg > 0))

    # --- propensity scored
    def set_propensities(self, propensities) -> None:
        w = _inverse_propensities(propensities, self.Y.shape[1])
        self._w = w
        wk = np.where(self.indices >= 0, w[np.maximum(self.indices, 0)], 0.0)
        gain = np.where(self.hits, wk, 0.0)
        self.cum_psp = np.cumsum(gain, axis=1)
        self.cum_psdcg = np.cumsum(gain * self.disc, axis=1)
        # Ideal ranking: true labels sorted by decreasing inverse propensity.
        Yw = sp.csr_matrix((w[self.Y.indices], self.Y.indices, self.Y.indptr), shape=self.Y.shape)
        best_idx, _ = top_k(Yw, self.max_k)
        # Gains looked up in float64 (top_k's values are float32).
        best = np.where(best_idx >= 0, w[np.maximum(best_idx, 0)], 0.0)
        self.cum_best_psp = np.cumsum(best, axis=1)
        self.cum_best_psdcg = np.cumsum(best * self.disc, axis=1)

    def _require_w(self) -> None:
        if self._w is None:
            raise RuntimeError("propensities not set")

    @staticmethod
    def _ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else 0.0

    def psprecision(self, k: int) -> float:
        self._require_w()
        return self._ratio(self.cum_psp[:, self._col(k)].sum(), self.cum_best_psp[:, self._col(k)].sum())

    def psndcg(self, k: int) -> float:
        self._require_w()
        idcg = self.idcg(k)
        safe = np.where(idcg > 0, idcg, 1.0)
        num = self.cum_psdcg[:, self._col(k)] / safe
        den = self.cum_best_psdcg[:, self._col(k)] / safe
        return self._ratio(num.sum(), den.sum())


def _at_k(Y_true, scores, k, method: str, propensities=None) -> dict[int, float]:
    ks = _normalize_ks(k)
    r = _Ranked(Y_true, scores, max(ks))
    if propensities is not None:
        r.set_propensities(propensities)
    fn = getattr(r, method)
    return {kk: fn(kk) for kk in ks}


# -------------------------------------------------------------- public API
def precision_at_k(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
                   k: int | Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Precision at k, averaged over all ``n`` documents.

    Args:
        Y_true: ground truth, sparse ``(n, L)``; stored non-zeros are relevant.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``.
        k: one k or a sequence of ks.

    Returns:
        ``{k: P@k}`` for every requested k; ``P@k = hits in top-k / k``.
    """
    return _at_k(Y_true, scores, k, "precision")


def recall_at_k(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
                k: int | Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Recall at k, averaged over all ``n`` documents.

    Args:
        Y_true: ground truth, sparse ``(n, L)``.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``;
            truth labels in columns ``>= L'`` can never be recalled.
        k: one k or a sequence of ks.

    Returns:
        ``{k: R@k}``; ``R@k = hits in top-k / |y|`` (0 for a label-less document).
    """
    return _at_k(Y_true, scores, k, "recall")


def ndcg_at_k(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
              k: int | Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Normalised DCG at k, averaged over all ``n`` documents.

    Args:
        Y_true: ground truth, sparse ``(n, L)``.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``.
        k: one k or a sequence of ks.

    Returns:
        ``{k: nDCG@k}``; per document ``DCG / IDCG`` with discount
        ``1/log2(rank+1)`` and IDCG over ``min(k, |y|)`` ideal positions.
    """
    return _at_k(Y_true, scores, k, "ndcg")


def psprecision_at_k(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
                     k: int | Sequence[int] = (1, 3, 5), *,
                     propensities: np.ndarray) -> dict[int, float]:
    """Normalised propensity-scored precision at k.

    Args:
        Y_true: ground truth, sparse ``(n, L)``.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``.
        k: one k or a sequence of ks.
        propensities: ``(L,)`` propensities ``p_l > 0`` of every truth label
            (e.g. :func:`xmc.metrics.jain_propensity`); the gain of a hit is
            ``1 / p_l``.

    Returns:
        ``{k: PSP@k}``: summed PS gain of the top-k hits divided by the summed
        best achievable gain (see the module docstring).
    """
    return _at_k(Y_true, scores, k, "psprecision", propensities)


def psndcg_at_k(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
                k: int | Sequence[int] = (1, 3, 5), *,
                propensities: np.ndarray) -> dict[int, float]:
    """Normalised propensity-scored nDCG at k.

    Args:
        Y_true: ground truth, sparse ``(n, L)``.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``.
        k: one k or a sequence of ks.
        propensities: ``(L,)`` propensities ``p_l > 0`` of every truth label.

    Returns:
        ``{k: PSnDCG@k}`` (normalised by the ideal ranking, see the module docstring).
    """
    return _at_k(Y_true, scores, k, "psndcg", propensities)


def ranking_report(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray,
                   ks: Sequence[int] = (1, 3, 5),
                   propensities: np.ndarray | None = None) -> dict[str, float]:
    """All ranking metrics at every k, from a single top-k computation.

    Args:
        Y_true: ground truth, sparse ``(n, L)``.
        scores: predicted scores, sparse or dense ``(n, L')`` with ``L' <= L``.
        ks: the ks to report.
        propensities: optional ``(L,)`` label propensities; when given the
            ``PSP@k`` and ``PSnDCG@k`` keys are added.

    Returns:
        ``{"P@1": ..., "P@3": ..., "R@1": ..., "nDCG@1": ..., ["PSP@1": ...,
        "PSnDCG@1": ...]}``: keys grouped by metric (P, R, nDCG, PSP, PSnDCG),
        each in the order of ``ks``; values are floats in ``[0, 1]``.
    """
    ks = _normalize_ks(ks)
    r = _Ranked(Y_true, scores, max(ks))
    out: dict[str, float] = {}
    names = [("P", r.precision), ("R", r.recall), ("nDCG", r.ndcg)]
    if propensities is not None:
        r.set_propensities(propensities)
        names += [("PSP", r.psprecision), ("PSnDCG", r.psndcg)]
    for name, fn in names:
        for k in ks:
            out[f"{name}@{k}"] = fn(k)
    return out
