"""Filtering augmented documents with a pre-trained XMC model f0 (XDA paper, Eq. 2 and 3).

Definitions used here (the paper leaves p(.) informal):

* p(f0(x)) -- the normalised score distribution of f0 on x: f0 returns its top scores as a
  sparse row s (post-processed scores such as XR-Linear's l3-hinge / sigmoid outputs);
  negative scores are clipped to 0 and p_j = s_j / sum_i s_i over the returned labels, 0 for
  every other label.
* p(y) -- the label prior: training document frequency with additive smoothing alpha,
  p(y)_j = (n_j + alpha) / sum_i (n_i + alpha), so every label has positive mass.
* Diversity (Eq. 2): S_Div(x_aug) = KL(p(f0(x_aug)) || p(y)) = sum_j p_j log(p_j / p(y)_j).
  A document whose predictions look like the prior (generic text that f0 scores by
  popularity) has low S_Div; one whose predictions concentrate on rare labels has high
  S_Div. A row with no positive score has no distribution; its S_Div is 0 (same as prior).
* Consistency (Eq. 3): S_Con(x_aug, x) = |Top_k(f0(x_aug)) & Top_k(f0(x))| / k with
  k = |y|, the original's number of labels: does f0 still see the same labels after rewriting?

Only the top-k scores f0 returns are used, so both scores cost one ``predict`` call.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from ..metrics import top_k
from .configs import FilterConfig

logger = logging.getLogger(__name__)


class Scorer(Protocol):
    """Any xmc model: ``predict(texts, topk=...)`` returns CSR (n, L) scores."""

    def predict(self, inputs, *, topk: int | None = None, **kwargs) -> sp.csr_matrix: ...


def label_prior(label_counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """p(y): smoothed, normalised training frequencies, float64 (L,)."""
    counts = np.asarray(label_counts, dtype=np.float64) + smoothing
    total = counts.sum()
    if total <= 0:
        raise ValueError("label prior is undefined: all counts are zero and smoothing is 0")
    return counts / total


def score_distribution(scores: sp.spmatrix) -> sp.csr_matrix:
    """p(f0(x)) row by row: negative scores clipped to 0, each row divided by its sum. CSR (n, L)."""
    S = sp.csr_matrix(scores, dtype=np.float64, copy=True)
    S.data = np.maximum(S.data, 0.0)
    S.eliminate_zeros()
    sums = np.asarray(S.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(scale) @ S)


def diversity_scores(scores: sp.spmatrix, prior: np.ndarray) -> np.ndarray:
    """S_Div = KL(p(f0(x_aug)) || p(y)) per row (Eq. 2), float64 (n,).

    Args:
        scores: f0's CSR (n, L) scores of the augmented documents.
        prior: p(y), (L,), positive wherever a score can be.
    """
    P = score_distribution(scores)
    cols = P.indices
    terms = P.data * (np.log(P.data) - np.log(prior[cols]))
    rows = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
    return np.bincount(rows, weights=terms, minlength=P.shape[0])


def consistency_scores(aug_scores: sp.spmatrix, orig_scores: sp.spmatrix, ks: Sequence[int] | np.ndarray) -> np.ndarray:
    """S_Con = |Top_k(f0(x_aug)) & Top_k(f0(x))| / k per row (Eq. 3), float64 (n,).

    Args:
        aug_scores: CSR (n, L) scores of the augmented documents.
        orig_scores: CSR (n, L) scores of each augmented document's original (row-aligned).
        ks: k per row, the original's number of labels |y| (k = 0 gives 0).
    """
    ks = np.asarray(ks, dtype=np.int64)
    n = aug_scores.shape[0]
    if n == 0:
        return np.zeros(0)
    kmax = max(int(ks.max()), 1)
    a_idx, _ = top_k(aug_scores, kmax)
    o_idx, _ = top_k(orig_scores, kmax)
    valid = np.arange(kmax)[None, :] < ks[:, None]
    a_idx = np.where(valid & (a_idx >= 0), a_idx, -1)
    o_idx = np.where(valid & (o_idx >= 0), o_idx, -2)  # padding never matches the other side's padding
    hits = (a_idx[:, :, None] == o_idx[:, None, :]).any(axis=2).sum(axis=1)
    return np.divide(hits, ks, out=np.zeros(n), where=ks > 0)


def _cut(values: np.ndarray, threshold: float | None, quantile: float | None) -> tuple[np.ndarray, float | None]:
    if quantile is not None and len(values):
        threshold = float(np.quantile(values, quantile))
    if threshold is None:
        return np.ones(len(values), dtype=bool), None
    return values >= threshold, threshold


def keep_mask(consistency: np.ndarray, diversity: np.ndarray, config: FilterConfig) -> np.ndarray:
    """Bool (n,): which candidates pass both cuts (all of them when the filter is disabled).

    Quantiles are taken over all candidates, independently for the two scores.
    """
    if not config.enabled:
        return np.ones(len(consistency), dtype=bool)
    con_ok, con_t = _cut(consistency, config.min_consistency, config.consistency_quantile)
    div_ok, div_t = _cut(diversity, config.min_diversity, config.diversity_quantile)
    keep = con_ok & div_ok
    logger.info("filter: S_Con >= %s keeps %d, S_Div >= %s keeps %d, both %d of %d",
                con_t, con_ok.sum(), div_t, div_ok.sum(), keep.sum(), len(keep))
    return keep


def score_augmented(
    f0: Scorer,
    aug_texts: Sequence[str],
    orig_texts: Sequence[str],
    source_rows: np.ndarray,
    n_labels_per_source: np.ndarray,
    prior: np.ndarray,
    beam_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run f0 once on the originals and once on the candidates; return (S_Con, S_Div), each (n_aug,).

    Args:
        aug_texts: the n_aug candidates.
        orig_texts: the originals they came from (each scored once).
        source_rows: (n_aug,) index into ``orig_texts`` of each candidate's original.
        n_labels_per_source: (len(orig_texts),) |y| of each original.
        prior: p(y), (L,).
    """
    source_rows = np.asarray(source_rows, dtype=np.int64)
    ks = np.asarray(n_labels_per_source, dtype=np.int64)
    topk = max(int(ks.max()) if len(ks) else 1, 1)
    extra = {} if beam_size is None else {"beam_size": beam_size}
    orig = sp.csr_matrix(f0.predict(list(orig_texts), topk=topk, **extra))
    aug = sp.csr_matrix(f0.predict(list(aug_texts), topk=topk, **extra))
    consistency = consistency_scores(aug, orig[source_rows], ks[source_rows])
    diversity = diversity_scores(aug, prior)
    return consistency, diversity
