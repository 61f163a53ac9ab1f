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
    wr_indptr, wr_indices, wr_data,
    ch_indptr, ch_indices,
    parent_ids, parent_scores,
    mask_indptr, mask_indices, use_mask,
    out_k, post, n_threads,
):
    """Score the children of each row's beam and keep the best ``out_k``.

    Args:
        x_*: instance features, CSR (n, n_features).
        bias: value of the constant bias feature (weight row ``n_features``).
        w_*: layer weights, CSC (n_features + 1, K_children).
        wr_*: the same weights as CSR (feature-major).
        ch_*: CSC of the child -> parent indicator: column p lists p's children.
        parent_ids, parent_scores: (n, b) beam of the previous level, -1 padded.
        mask_*: CSR (n, K_children) of allowed children per row (``use_mask``).
        out_k: beam width to keep.
        post: post-processor code (see ``POST_PROCESSORS``); l3-hinge and
            sigmoid multiply the parent's path score, noop keeps raw child scores.

    Each row's candidate scores are computed by whichever of two loops touches
    fewer weights: dotting each candidate's weight column with the row scattered
    into a dense buffer (cost: the candidates' column sizes), or walking the
    weight rows of the row's own features and keeping the candidates' entries
    (cost: those rows' sizes; far cheaper for the wide upper levels).

    Returns:
        (ids, scores), each (n, out_k), best first, ties by smaller id, -1 / -inf padded.
    """
    n = parent_ids.shape[0]
    n_children = w_indptr.shape[0] - 1
    out_ids = np.full((n, out_k), -1, dtype=np.int64)
    out_scores = np.full((n, out_k), -np.inf, dtype=np.float32)
    max_cand = 0
    for p in range(ch_indptr.shape[0] - 1):
        max_cand = max(max_cand, ch_indptr[p + 1] - ch_indptr[p])
    max_cand = max(1, max_cand * parent_ids.shape[1])
    for thread in numba.prange(n_threads):
        buf = np.zeros(n_features + 1, dtype=np.float32)
        acc = np.zeros(n_children, dtype=np.float64)
        slot = np.full(n_children, -1, dtype=np.int64)
        allowed = np.zeros(n_children if use_mask else 1, dtype=np.bool_)
        cand_ids = np.empty(max_cand, dtype=np.int64)
        cand_parent = np.empty(max_cand, dtype=np.float64)
        cand_scores = np.empty(max_cand, dtype=np.float64)
        for r in range(thread, n, n_threads):
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = True
            # Enumerate candidates and both loops' costs.
            m = 0
            direct_cost = 0
            for t in range(parent_ids.shape[1]):
                p = parent_ids[r, t]
                if p < 0:
                    continue
                for q in range(ch_indptr[p], ch_indptr[p + 1]):
                    c = ch_indices[q]
                    if use_mask and not allowed[c]:
                        continue
                    cand_ids[m] = c
                    cand_parent[m] = parent_scores[r, t]
                    direct_cost += w_indptr[c + 1] - w_indptr[c]
                    m += 1
            row_cost = wr_indptr[n_features + 1] - wr_indptr[n_features]
            for k in range(x_indptr[r], x_indptr[r + 1]):
                f = x_indices[k]
                row_cost += wr_indptr[f + 1] - wr_indptr[f]
            if row_cost < direct_cost:
                for j in range(m):
                    slot[cand_ids[j]] = j
                    acc[j] = 0.0
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    f = x_indices[k]
                    xv = x_data[k]
                    for e in range(wr_indptr[f], wr_indptr[f + 1]):
                        j = slot[wr_indices[e]]
                        if j >= 0:
                            acc[j] += xv * wr_data[e]
                for e in range(wr_indptr[n_features], wr_indptr[n_features + 1]):
                    j = slot[wr_indices[e]]
                    if j >= 0:
                        acc[j] += bias * wr_data[e]
                for j in range(m):
                    slot[cand_ids[j]] = -1
                    cand_scores[j] = acc[j]
            else:
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    buf[x_indices[k]] = x_data[k]
                buf[n_features] = bias
                for j in range(m):
                    c = cand_ids[j]
                    s = 0.0
                    for k in range(w_indptr[c], w_indptr[c + 1]):
                        s += buf[w_indices[k]] * w_data[k]
                    cand_scores[j] = s
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    buf[x_indices[k]] = 0.0
            for j in range(m):
                s = _transform(cand_scores[j], post)
                cand_scores[j] = s if post == 2 else s * cand_parent[j]
            if m > 0:
                # Stable sort on -score keeps smaller ids first among ties once ids are sorted.
                by_id = np.argsort(cand_ids[:m])
                ids_sorted = cand_ids[:m][by_id]
                scores_sorted = cand_scores[:m][by_id]
                best = np.argsort(-scores_sorted, kind="mergesort")
                for j in range(min(out_k, m)):
                    out_ids[r, j] = ids_sorted[best[j]]
                    out_scores[r, j] = scores_sorted[best[j]]
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = False
    return out_ids, out_scores
