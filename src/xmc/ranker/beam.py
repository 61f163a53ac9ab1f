"""One step of beam search through a label tree, compiled with numba.

For every instance, the children of its beam's clusters are scored with the
layer's sparse weights, turned into path scores by the post-processor, and the
best ``out_k`` are kept. SciPy has no "multiply only at these (row, column)
pairs" product, and computing the full ``X @ W`` would waste the beam, so this
kernel scatters each row of X into a dense buffer once and dots it with the
sparse weight columns of the candidates (the scheme PECOS uses).
"""

from __future__ import annotations

import math

import numba
import numpy as np

POST_PROCESSORS = {"l3-hinge": 0, "sigmoid": 1, "noop": 2}


@numba.njit(cache=True, inline="always")
def _transform(score, post):
    if post == 0:
        h = max(0.0, 1.0 - score)
        return math.exp(-h * h * h)
    if post == 1:
        return 1.0 / (1.0 + math.exp(-score))
    return score


@numba.njit(cache=True, parallel=True)
def beam_step(
    x_indptr, x_indices, x_data, n_features, bias,
    w_indptr, w_indices, w_data,
    ch_indptr, ch_indices,
    parent_ids, parent_scores,
    mask_indptr, mask_indices, use_mask, n_children,
    out_k, post, n_threads,
):
    """Score the children of each row's beam and keep the best ``out_k``.

    Args:
        x_*: instance features, CSR (n, n_features).
        bias: value of the constant bias feature (weight row ``n_features``).
        w_*: layer weights, CSC (n_features + 1, K_children).
        ch_*: CSC of the child -> parent indicator: column p lists p's children.
        parent_ids, parent_scores: (n, b) beam of the previous level, -1 padded.
        mask_*: CSR (n, K_children) of allowed children per row (``use_mask``).
        out_k: beam width to keep.
        post: post-processor code (see ``POST_PROCESSORS``); l3-hinge and
            sigmoid multiply the parent's path score, noop keeps raw child scores.

    Returns:
        (ids, scores), each (n, out_k), best first, ties by smaller id, -1 / -inf padded.
    """
    n = parent_ids.shape[0]
    out_ids = np.full((n, out_k), -1, dtype=np.int64)
    out_scores = np.full((n, out_k), -np.inf, dtype=np.float32)
    max_cand = 0
    for p in range(ch_indptr.shape[0] - 1):
        max_cand = max(max_cand, ch_indptr[p + 1] - ch_indptr[p])
    max_cand *= parent_ids.shape[1]
    for thread in numba.prange(n_threads):
        buf = np.zeros(n_features + 1, dtype=np.float32)
        allowed = np.zeros(n_children if use_mask else 1, dtype=np.bool_)
        cand_ids = np.empty(max(max_cand, 1), dtype=np.int64)
        cand_scores = np.empty(max(max_cand, 1), dtype=np.float64)
        for r in range(thread, n, n_threads):
            for k in range(x_indptr[r], x_indptr[r + 1]):
                buf[x_indices[k]] = x_data[k]
            buf[n_features] = bias
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = True
            m = 0
            for t in range(parent_ids.shape[1]):
                p = parent_ids[r, t]
                if p < 0:
                    continue
                ps = parent_scores[r, t]
                for q in range(ch_indptr[p], ch_indptr[p + 1]):
                    c = ch_indices[q]
                    if use_mask and not allowed[c]:
                        continue
                    s = 0.0
                    for k in range(w_indptr[c], w_indptr[c + 1]):
                        s += buf[w_indices[k]] * w_data[k]
                    s = _transform(s, post)
                    if post != 2:
                        s *= ps
                    cand_ids[m] = c
                    cand_scores[m] = s
                    m += 1
            if m > 0:
                # Stable sort on -score keeps smaller ids first among ties once ids are sorted.
                by_id = np.argsort(cand_ids[:m])
                ids_sorted = cand_ids[:m][by_id]
                scores_sorted = cand_scores[:m][by_id]
                best = np.argsort(-scores_sorted, kind="mergesort")
                for j in range(min(out_k, m)):
                    out_ids[r, j] = ids_sorted[best[j]]
                    out_scores[r, j] = scores_sorted[best[j]]
            for k in range(x_indptr[r], x_indptr[r + 1]):
                buf[x_indices[k]] = 0.0
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = False
    return out_ids, out_scores
