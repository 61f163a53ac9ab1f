"""One step of beam search through a label tree, compiled with numba.

For every instance, the children of its beam's clusters are scored with the
layer's sparse weights, turned into path scores by the post-processor, and the
best ``out_k`` are kept. SciPy has no "multiply only at these (row, column)
pairs" product, and computing the full ``X @ W`` would waste the beam, so this
kernel computes only the beam's children, in one of two layouts of the weights
(see :class:`LayerWeights`), whichever touches fewer of them for the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

POST_PROCESSORS = {"l3-hinge": 0, "sigmoid": 1, "noop": 2}

# A feature-major (feature, parent) group is counted as this many column entries of
# the dot-product loop: its visit and its matched entries are scattered reads. Not
# tuned finely: on EURLEX57K models (weight thresholds 0.1 and 0.02) nearly every
# row is scored by feature at any value from 1 to 4.
GROUP_COST = 2.0

# What the beam kernel reads: a loaded layer with other dtypes is refused (LayerWeights.check).
_DTYPES = {
    "col_indptr": (np.dtype(np.int64),), "col_rows": (np.dtype(np.uint32), np.dtype(np.uint64)),
    "col_values": (np.dtype(np.float32),), "feat_groups": (np.dtype(np.int64),),
    "groups": (np.dtype(np.uint32), np.dtype(np.uint64)), "entry_child": (np.dtype(np.uint16), np.dtype(np.uint32)),
    "entry_value": (np.dtype(np.float32),), "child_indptr": (np.dtype(np.int64),), "child_ids": (np.dtype(np.int64),),
}


@dataclass(frozen=True)
class LayerWeights:
    """One layer's weights in the two layouts the beam kernel reads.

    The column layout (``col_*``: CSC, one column per child) suits rows whose
    candidates have short weight columns: the row is scattered into a dense buffer
    and dotted with each candidate's column. The feature layout (``feat_groups``,
    ``groups``, ``entry_*``) suits the rest: each feature's weights grouped by
    parent cluster, so a row visits only the groups of its beam's parents. This is
    PECOS's per-cluster chunking turned feature-major: a feature with few groups scans
    them (one lookup each, faster than a search per (feature, cluster) on EURLEX57K);
    one with many groups (a common feature in a large label space) binary-searches the
    beam's parents among them.
    """

    col_indptr: np.ndarray  # (K + 1,) int64
    col_rows: np.ndarray  # (nnz,) feature ids, unsigned
    col_values: np.ndarray  # (nnz,) float32
    feat_groups: np.ndarray  # (d + 2,) int64: feature f's groups are feat_groups[f]:feat_groups[f + 1]
    groups: np.ndarray  # (G + 1, 2) unsigned: group g's entries start at groups[g, 0]; its parent is groups[g, 1]
    entry_child: np.ndarray  # (nnz,) uint16/uint32 child's position among its parent's children
    entry_value: np.ndarray  # (nnz,) float32
    child_indptr: np.ndarray  # (P + 1,) int64: parent p's children are child_ids[child_indptr[p]:...]
    child_ids: np.ndarray  # (K,) int64

    @classmethod
    def build(cls, W: sp.csc_matrix, C: sp.spmatrix) -> "LayerWeights":
        """``W``: (d + 1, K) weights, bias row last; ``C``: (K, P) child -> parent indicator."""
        # Neither layout needs sorted indices: a child's position is its place in C's column.
        W = sp.csc_matrix(W, dtype=np.float32)
        C = sp.csc_matrix(C)
        widest = int(np.diff(C.indptr).max(initial=0))
        index = np.uint32 if W.nnz < 1 << 32 else np.uint64
        feat_groups, groups, entry_child, entry_value = _group_by_feature(
            W.indptr.astype(np.int64), W.indices, W.data, W.shape[0],
            C.indptr.astype(np.int64), C.indices.astype(np.int64),
            np.uint16 if widest <= 1 << 16 else np.uint32, index,
        )
        return cls(
            col_indptr=W.indptr.astype(np.int64),
            # Unsigned views, not copies: numba then skips negative-index wraparound.
            col_rows=W.indices.view(np.uint32 if W.indices.dtype == np.int32 else np.uint64),
            col_values=W.data,
            feat_groups=feat_groups,
            groups=groups,
            entry_child=entry_child,
            entry_value=entry_value,
            child_indptr=C.indptr.astype(np.int64),
            child_ids=C.indices.astype(np.int64),
        )

    def csc(self, shape: tuple[int, int]) -> sp.csc_matrix:
        """The weights (d + 1, K) as CSC over the column arrays (no copy of values or rows)."""
        index = np.int32 if self.col_rows.dtype == np.uint32 else np.int64
        # Only the small (K + 1,) pointer array is converted; SciPy wants both index arrays alike.
        return sp.csc_matrix((self.col_values, self.col_rows.view(index), self.col_indptr.astype(index)),
                             shape=tuple(shape), copy=False)

    def check(self, shape: tuple[int, int], chain_matrix: sp.spmatrix) -> None:
        """Raise ValueError unless every index the beam kernel follows stays in range.

        The kernel reads without bounds checks, so arrays loaded from a model directory (someone
        else's, possibly) are checked here first: vectorised passes over each array, no rebuild.
        ``shape``: (d + 1, K) of the weights; ``chain_matrix``: the tree's (K, P) child -> parent level.
        """
        n_rows, n_cols = (int(x) for x in shape)
        C = sp.csc_matrix(chain_matrix)
        for name, allowed in _DTYPES.items():  # another dtype would make numba compile, or misread, a kernel
            if getattr(self, name).dtype not in allowed:
                raise ValueError(f"{name}: dtype {getattr(self, name).dtype} is not one of {', '.join(map(str, allowed))}")

        def pointers(a, last, name):
            a = np.asarray(a)
            if a.ndim != 1 or len(a) == 0 or a[0] != 0 or a[-1] != last or (len(a) > 1 and (np.diff(a) < 0).any()):
                raise ValueError(f"{name}: not a pointer array from 0 to {last}")

        nnz = len(self.col_rows)
        if len(self.col_indptr) != n_cols + 1 or len(self.col_values) != nnz:
            raise ValueError("column arrays do not match the layer's shape")
        pointers(self.col_indptr, nnz, "col_indptr")
        if nnz and int(self.col_rows.max()) >= n_rows:
            raise ValueError("col_rows: a feature id out of range")
        if self.groups.ndim != 2 or self.groups.shape[1] != 2 or len(self.feat_groups) != n_rows + 1:
            raise ValueError("feature layout arrays do not match the layer's shape")
        n_groups, n_entries = len(self.groups) - 1, len(self.entry_child)
        pointers(self.feat_groups, n_groups, "feat_groups")
        pointers(self.groups[:, 0], n_entries, "groups")
        if len(self.entry_value) != n_entries or n_entries != nnz:
            raise ValueError("entry arrays do not match the column arrays")
        if not (np.array_equal(self.child_indptr, C.indptr) and np.array_equal(self.child_ids, C.indices)):
            raise ValueError("the children arrays differ from the tree")
        parents = self.groups[:-1, 1].astype(np.int64)
        if n_groups and int(parents.max()) >= C.shape[1]:
            raise ValueError("groups: a parent id out of range")
        widths = np.diff(C.indptr)[parents]
        if n_entries and (self.entry_child.astype(np.int64) >= np.repeat(widths, np.diff(self.groups[:, 0].astype(np.int64)))).any():
            raise ValueError("entry_child: a child position out of range")

    def arrays(self) -> tuple:
        return (
            self.col_indptr, self.col_rows, self.col_values,
            self.feat_groups, self.groups, self.entry_child, self.entry_value,
            self.child_indptr, self.child_ids,
        )


@numba.njit(cache=True)
def _group_by_feature(w_indptr, w_rows, w_values, n_rows, ch_indptr, ch_ids, child_type, index_type):
    """Transpose CSC weights to feature-major, grouped by parent (see :class:`LayerWeights`).

    A counting sort over the children in (parent, position) order, so each feature's entries
    arrive grouped by parent. Written by hand because SciPy's transpose can neither group nor
    emit narrow types, and its int32 temporaries cost more than the result for large layers.
    """
    n_parents = ch_indptr.shape[0] - 1
    n_entries = np.zeros(n_rows + 1, dtype=np.int64)
    n_groups = np.zeros(n_rows + 1, dtype=np.int64)
    last_parent = np.full(n_rows, -1, dtype=np.int64)
    for p in range(n_parents):
        for q in range(ch_indptr[p], ch_indptr[p + 1]):
            c = ch_ids[q]
            for k in range(w_indptr[c], w_indptr[c + 1]):
                f = w_rows[k]
                n_entries[f + 1] += 1
                if last_parent[f] != p:
                    last_parent[f] = p
                    n_groups[f + 1] += 1
    for f in range(n_rows):
        n_entries[f + 1] += n_entries[f]
        n_groups[f + 1] += n_groups[f]
    total = n_entries[n_rows]
    groups = np.zeros((n_groups[n_rows] + 1, 2), dtype=index_type)
    groups[n_groups[n_rows], 0] = total
    entry_child = np.empty(total, dtype=child_type)
    entry_value = np.empty(total, dtype=np.float32)
    next_entry = n_entries[:-1].copy()
    next_group = n_groups[:-1].copy()
    last_parent[:] = -1
    for p in range(n_parents):
        for q in range(ch_indptr[p], ch_indptr[p + 1]):
            c = ch_ids[q]
            for k in range(w_indptr[c], w_indptr[c + 1]):
                f = w_rows[k]
                e = next_entry[f]
                if last_parent[f] != p:
                    last_parent[f] = p
                    g = next_group[f]
                    groups[g, 0] = e
                    groups[g, 1] = p
                    next_group[f] = g + 1
                entry_child[e] = q - ch_indptr[p]
                entry_value[e] = w_values[k]
                next_entry[f] = e + 1
    return n_groups, groups, entry_child, entry_value


@numba.njit(cache=True, inline="always")
def _transform(score, post):
    if post == 0:
        h = max(0.0, 1.0 - score)
        return math.exp(-h * h * h)
    if post == 1:
        return 1.0 / (1.0 + math.exp(-score))
    return score


@numba.njit(cache=True, inline="always")
def _search_cost(n_groups, n_beam):
    """Group reads of finding ``n_beam`` parents by binary search among ``n_groups`` sorted groups."""
    steps = 1
    while (1 << steps) <= n_groups:
        steps += 1
    return n_beam * steps


@numba.njit(cache=True, inline="always")
def _add_feature(f, xv, acc, beam_pos, widest, feat_groups, groups, entry_child, entry_value,
                 beam_parents, n_beam):
    """Add feature ``f``'s weights (times ``xv``) to the children of the beam's parents.

    A feature's groups are sorted by parent. When it has few groups they are all scanned (one
    lookup each); when it has many (large label spaces: a common feature has weights under
    thousands of clusters) each beam parent is binary-searched instead, as PECOS's chunked
    layers do. Each (feature, parent) pair adds to its own children once either way, so the
    scores are bit-identical.
    """
    lo, hi = feat_groups[f], feat_groups[f + 1]
    if hi - lo <= _search_cost(hi - lo, n_beam):
        for g in range(lo, hi):
            t = beam_pos[groups[g, 1]]
            if t >= 0:
                base = np.uint64(t * widest)
                for e in range(groups[g, 0], groups[g + 1, 0]):
                    acc[base + entry_child[e]] += xv * entry_value[e]
        return
    for i in range(n_beam):
        p = beam_parents[i]
        a, z = lo, hi
        while a < z:
            mid = (a + z) // 2
            if groups[mid, 1] < p:
                a = mid + 1
            else:
                z = mid
        if a < hi and groups[a, 1] == p:
            base = np.uint64(beam_pos[p] * widest)
            for e in range(groups[a, 0], groups[a + 1, 0]):
                acc[base + entry_child[e]] += xv * entry_value[e]


@numba.njit(cache=True, parallel=True)
def beam_step(
    x_indptr, x_indices, x_data, n_features, bias,
    col_indptr, col_rows, col_values,
    feat_groups, groups, entry_child, entry_value,
    child_indptr, child_ids,
    parent_ids, parent_scores,
    mask_indptr, mask_indices, use_mask,
    out_k, post, n_threads, scratch, group_cost=GROUP_COST,
):
    """Score the children of each row's beam and keep the best ``out_k``.

    Args:
        x_*: instance features, CSR (n, n_features) with sorted indices.
        bias: value of the constant bias feature (weight row ``n_features``).
        col_* .. child_*: the layer, as :meth:`LayerWeights.arrays`.
        parent_ids, parent_scores: (n, b) beam of the previous level, -1 padded.
        mask_*: CSR (n, K_children) of allowed children per row (``use_mask``).
        out_k: beam width to keep.
        scratch: float32 (>= n_threads, n_features + 1), all zeros, and all zeros again on return:
            each thread's dense row buffer for the column loop. Kept by the caller across calls,
            since zeroing it here (8 MB at 2M features) cost more per call than scoring one document.
        post: post-processor code (see ``POST_PROCESSORS``); l3-hinge and
            sigmoid multiply the parent's path score, noop keeps raw child scores.
        group_cost: a row is scored by feature when ``group_cost`` times its feature groups
            is below its candidates' column entries, else by column (0: always by feature,
            ``inf``: always by column; both give the same scores).

    Returns:
        (ids, scores), each (n, out_k), best first, ties by smaller id, -1 / -inf padded.
    """
    n, b = parent_ids.shape
    n_parents = child_indptr.shape[0] - 1
    n_children = child_ids.shape[0]
    widest = 1
    for p in range(n_parents):
        widest = max(widest, child_indptr[p + 1] - child_indptr[p])
    out_ids = np.full((n, out_k), -1, dtype=np.int64)
    out_scores = np.full((n, out_k), -np.inf, dtype=np.float32)
    for thread in numba.prange(n_threads):
        buf = scratch[thread]
        acc = np.zeros(widest * b, dtype=np.float64)  # beam slot t's children at t * widest + position
        beam_pos = np.full(n_parents, -1, dtype=np.int64)
        beam_parents = np.empty(b, dtype=np.int64)
        allowed = np.zeros(n_children if use_mask else 1, dtype=np.bool_)
        top_ids = np.empty(out_k, dtype=np.int64)
        top_scores = np.empty(out_k, dtype=np.float32)
        for r in range(thread, n, n_threads):
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = True
            # Both loops' costs: the candidates' column lengths, or the row's feature groups.
            by_column = 0
            n_beam = 0
            for t in range(b):
                p = parent_ids[r, t]
                if p < 0:
                    continue
                beam_pos[p] = t
                beam_parents[n_beam] = p
                n_beam += 1
                for j in range(child_indptr[p + 1] - child_indptr[p]):
                    acc[t * widest + j] = 0.0
                    c = child_ids[child_indptr[p] + j]
                    if not use_mask or allowed[c]:
                        by_column += col_indptr[c + 1] - col_indptr[c]
            n_groups = feat_groups[n_features + 1] - feat_groups[n_features]
            by_feature = min(n_groups, _search_cost(n_groups, n_beam))
            for k in range(x_indptr[r], x_indptr[r + 1]):
                f = x_indices[k]
                n_groups = feat_groups[f + 1] - feat_groups[f]
                by_feature += min(n_groups, _search_cost(n_groups, n_beam))
            if group_cost * by_feature < by_column:
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    _add_feature(x_indices[k], x_data[k], acc, beam_pos, widest,
                                 feat_groups, groups, entry_child, entry_value, beam_parents, n_beam)
                _add_feature(n_features, bias, acc, beam_pos, widest,
                             feat_groups, groups, entry_child, entry_value, beam_parents, n_beam)
            else:
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    buf[x_indices[k]] = x_data[k]
                buf[n_features] = bias
                for t in range(b):
                    p = parent_ids[r, t]
                    if p < 0:
                        continue
                    for j in range(child_indptr[p + 1] - child_indptr[p]):
                        c = child_ids[child_indptr[p] + j]
                        if use_mask and not allowed[c]:
                            continue
                        s = 0.0
                        for k in range(col_indptr[c], col_indptr[c + 1]):
                            s += buf[col_rows[k]] * col_values[k]
                        acc[t * widest + j] = s
                for k in range(x_indptr[r], x_indptr[r + 1]):
                    buf[x_indices[k]] = 0.0
                buf[n_features] = 0.0
            # Keep the best out_k by insertion into a sorted list (score desc, id asc):
            # out_k is small, so this beats sorting all b * widest candidates.
            kept = 0
            for t in range(b):
                p = parent_ids[r, t]
                if p < 0:
                    continue
                beam_pos[p] = -1
                for j in range(child_indptr[p + 1] - child_indptr[p]):
                    c = child_ids[child_indptr[p] + j]
                    if use_mask and not allowed[c]:
                        continue
                    s = _transform(acc[t * widest + j], post)
                    s = np.float32(s if post == 2 else s * parent_scores[r, t])
                    if kept == out_k and (s < top_scores[kept - 1] or (s == top_scores[kept - 1] and c > top_ids[kept - 1])):
                        continue
                    pos = kept if kept < out_k else out_k - 1
                    while pos > 0 and (top_scores[pos - 1] < s or (top_scores[pos - 1] == s and top_ids[pos - 1] > c)):
                        top_scores[pos] = top_scores[pos - 1]
                        top_ids[pos] = top_ids[pos - 1]
                        pos -= 1
                    top_scores[pos] = s
                    top_ids[pos] = c
                    if kept < out_k:
                        kept += 1
            for j in range(kept):
                out_ids[r, j] = top_ids[j]
                out_scores[r, j] = top_scores[j]
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = False
    return out_ids, out_scores
