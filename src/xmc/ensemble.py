"""Ensembles: average the score matrices of several models."""

from __future__ import annotations

from typing import Sequence

import scipy.sparse as sp

from .metrics.topk import top_k, topk_to_csr


def average_scores(scores: Sequence[sp.csr_matrix], topk: int | None = None) -> sp.csr_matrix:
    """Mean of (n, L) score matrices; a label missing from one member's top-k counts 0 there.

    Args:
        scores: the members' CSR score matrices, all of one shape.
        topk: keep only the best ``topk`` averaged scores per row (None keeps all).
    """
    if not scores:
        raise ValueError("average_scores needs at least one score matrix")
    shape = scores[0].shape
    for s in scores:
        if s.shape != shape:
            raise ValueError(f"score matrices differ in shape: {shape} vs {s.shape}")
    mean = sp.csr_matrix(sum(sp.csr_matrix(s) for s in scores) / len(scores))
    if topk is None:
        return mean
    ids, values = top_k(mean, topk)
    return topk_to_csr(ids, values, shape[1])
