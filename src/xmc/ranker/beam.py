"""One step of beam search through a label tree, compiled with numba.

For every instance, the children of its beam's clusters are scored with the
layer's sparse weights, turned into path scores by the post-processor, and the
best ``out_k`` are kept. SciPy has no "multiply only at these (row, column)
pairs" product, and computing the full ``X @ W`` would waste the beam, so this
kernel computes only the beam's children, from a feature-major layout of the
weights grouped by parent cluster (see :class:`LayerWeights`). Its cost is waiting on
memory, so it first collects the (feature, parent) groups a row needs, then adds their entries,
asking for both a few steps ahead (:mod:`xmc.ranker.prefetch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from .prefetch import prefetch

POST_PROCESSORS = {"l3-hinge": 0, "sigmoid": 1, "noop": 2}

# What the beam kernel reads: a loaded layer with other dtypes is refused (LayerWeights.check).
_DTYPES = {
    "feat_groups": (np.dtype(np.uint32), np.dtype(np.int64)), "group_start": (np.dtype(np.uint32), np.dtype(np.uint64)),
    "group_parent": (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)),
    "entry_child": (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)),
    "entry_value": (np.dtype(np.float32), np.dtype(np.int16), np.dtype(np.int8)),
    "child_indptr": (np.dtype(np.int64),), "child_ids": (np.dtype(np.int64),), "child_scale": (np.dtype(np.float32),),
}
# How a layer may store its weight values: as trained, or as integers times one scale per child.
VALUE_TYPES = {"float32": np.float32, "int16": np.int16, "int8": np.int8}


@dataclass(frozen=True)
class LayerWeights:
    """One layer's weights as the beam kernel reads them: feature-major, grouped by parent.

    Each feature's weights are grouped by parent cluster (groups sorted by parent), each entry
    naming its child by position among the parent's children, so a row visits only the groups
    of its beam's parents. Where groups hold little more than one weight (the label layers of
    large label spaces: a feature rarely has weights for two children of one leaf cluster), the
    group boundaries cost more than they save, and the layer is stored per entry instead:
    ``group_start`` is empty and group g is entry g (a parent's entries are then consecutive
    groups). This is PECOS's per-cluster chunking turned feature-major: a feature
    with few groups scans them (one lookup each); one with many groups (a common feature in a
    large label space) binary-searches the beam's parents among them.

    It is the only form a model keeps for prediction and writes to disk: it holds every weight
    once (the CSC matrix is derived from it on demand, :meth:`csc`), and a column-major copy
    for dot products per candidate was measured no faster on any data set (bibtex, EURLEX57K,
    generated 10k / 100k labels) while doubling the model.

    Integer values (``value_type`` int16 / int8 in :meth:`build`) are each child's weights rounded
    to a grid of ``max |w| / 127`` (int8) or ``/ 32767`` (int16): symmetric per-channel
    quantization, as PyTorch's ``quantize_per_channel``. The kernel sums the integers (times the
    features) and multiplies the child's sum by its scale once, so a score is exactly the dot
    product with the rounded weights. Float32 layers have a scale of 1, which changes nothing.
    """

    feat_groups: np.ndarray  # (d + 2,) uint32 / int64: feature f's groups are feat_groups[f]:feat_groups[f + 1]
    group_start: np.ndarray  # (G + 1,) unsigned: group g's entries are group_start[g]:group_start[g + 1]; or (0,): per entry
    group_parent: np.ndarray  # (G,) uint8 / uint16 / uint32: group g's parent cluster (G = nnz per entry)
    entry_child: np.ndarray  # (nnz,) uint8 / uint16 / uint32: the child's position among its parent's children
    entry_value: np.ndarray  # (nnz,) float32, or int16 / int8 in units of the child's scale
    child_indptr: np.ndarray  # (P + 1,) int64: parent p's children are child_ids[child_indptr[p]:...]
    child_ids: np.ndarray  # (K,) int64
    child_scale: np.ndarray  # (K,) float32: child child_ids[q]'s weights are entry_value * child_scale[q]

    @classmethod
    def build(cls, W: sp.csc_matrix, C: sp.spmatrix, per_entry: bool | None = None,
              value_type: str = "float32") -> "LayerWeights":
        """``W``: (d + 1, K) weights, bias row last; ``C``: (K, P) child -> parent indicator;
        ``per_entry``: store per entry (True), by group (False), or by :func:`_group_by_feature`'s rule (None);
        ``value_type``: a key of ``VALUE_TYPES`` (weights that round to 0 are dropped)."""
        # The weights need no sorted indices: a child's position is its place in C's column.
        W, scale = _quantized(sp.csc_matrix(W, dtype=np.float32), VALUE_TYPES[value_type])
        C = sp.csc_matrix(C)
        widest = int(np.diff(C.indptr).max(initial=0))
        w_indptr, c_indptr, c_ids = W.indptr.astype(np.int64), C.indptr.astype(np.int64), C.indices.astype(np.int64)
        # The narrowest unsigned type for ids 0..n-1: one byte per child position wherever a parent
        # has at most 256 children (every layer of the default trees: branching 16, leaves of at most
        # 100 labels), and per parent id up to 256 parents (up to ~25k labels). PECOS's CSC spends 4
        # bytes on a row index per weight; these narrow ids put xmc's bytes per weight under PECOS's.
        child_type, parent_type = (np.min_scalar_type(max(n - 1, 0)) for n in (widest, C.shape[1]))
        index_type = pointer_type(W.nnz, signed=False)
        mode = -1 if per_entry is None else int(bool(per_entry))
        feat_groups, group_start, group_parent, entry_child, entry_value = _group_by_feature(
            w_indptr, W.indices, W.data, W.shape[0], c_indptr, c_ids, child_type, parent_type, index_type, mode)
        feat_groups = feat_groups.astype(pointer_type(int(feat_groups[-1]), signed=True))
        return cls(feat_groups=feat_groups, group_start=group_start, group_parent=group_parent,
                   entry_child=entry_child, entry_value=entry_value,
                   child_indptr=c_indptr, child_ids=c_ids, child_scale=scale[c_ids])

    @property
    def value_type(self) -> str:
        return self.entry_value.dtype.name

    def csc(self, shape: tuple[int, int]) -> sp.csc_matrix:
        """The weights (d + 1, K) as CSC with sorted row indices: the matrix :meth:`build` was given,
        rounded to the stored grid where the values are integers (the weights the kernel scores with)."""
        indptr, rows, values = _columns_from_groups(
            self.feat_groups, self.group_start, self.group_parent, self.entry_child, self.entry_value,
            self.child_indptr, self.child_ids, self.child_scale, int(shape[1]),
            np.int32 if len(self.entry_value) < 1 << 31 else np.int64)  # SciPy wants both index arrays alike
        return sp.csc_matrix((values, rows, indptr.astype(rows.dtype)), shape=tuple(shape), copy=False)

    def check(self, shape: tuple[int, int], chain_matrix: sp.spmatrix) -> None:
        """Raise ValueError unless every index the beam kernel follows stays in range.

        The kernel reads without bounds checks, so arrays loaded from a model directory (someone
        else's, possibly) are checked here first: vectorised passes over each array, no rebuild.
        ``shape``: (d + 1, K) of the weights; ``chain_matrix``: the tree's (K, P) child -> parent level.
        """
        n_rows = int(shape[0])
        C = sp.csc_matrix(chain_matrix)
        for name, allowed in _DTYPES.items():  # another dtype would make numba compile, or misread, a kernel
            if getattr(self, name).dtype not in allowed:
                raise ValueError(f"{name}: dtype {getattr(self, name).dtype} is not one of {', '.join(map(str, allowed))}")

        def pointers(a, last, name):
            a = np.asarray(a)
            if a.ndim != 1 or len(a) == 0 or a[0] != 0 or a[-1] != last or (len(a) > 1 and (np.diff(a.astype(np.int64)) < 0).any()):
                raise ValueError(f"{name}: not a pointer array from 0 to {last}")

        if len(self.feat_groups) != n_rows + 1:
            raise ValueError("feat_groups does not match the layer's shape")
        n_groups, n_entries = len(self.group_parent), len(self.entry_child)
        pointers(self.feat_groups, n_groups, "feat_groups")
        if len(self.group_start):
            pointers(self.group_start, n_entries, "group_start")
        elif n_groups != n_entries:
            raise ValueError("group_parent: stored per entry, but not one parent per entry")
        if len(self.entry_value) != n_entries:
            raise ValueError("entry_value and entry_child differ in length")
        if not (np.array_equal(self.child_indptr, C.indptr) and np.array_equal(self.child_ids, C.indices)):
            raise ValueError("the children arrays differ from the tree")
        if self.child_scale.shape != self.child_ids.shape or not np.isfinite(self.child_scale).all():
            raise ValueError("child_scale: not one finite scale per child")
        if n_groups and int(self.group_parent.max()) >= C.shape[1]:
            raise ValueError("group_parent: a parent id out of range")
        widths = np.diff(C.indptr)[self.group_parent.astype(np.int64)]
        if len(self.group_start):
            widths = np.repeat(widths, np.diff(self.group_start.astype(np.int64)))
        if n_entries and (self.entry_child.astype(np.int64) >= widths).any():
            raise ValueError("entry_child: a child position out of range")

    def arrays(self) -> tuple:
        return (self.feat_groups, self.group_start, self.group_parent, self.entry_child, self.entry_value,
                self.child_indptr, self.child_ids, self.child_scale)


def pointer_type(last: int, *, signed: bool) -> type:
    """The dtype of a pointer array ending at ``last``: uint32 where it fits (half the size of 64-bit),
    else int64 for ``feat_groups`` (the kernel reads it as int64 either way) or uint64 for ``group_start``.
    Layers built here and layers rebuilt from a saved directory's counts both take it from this rule."""
    if last < (1 << 31 if signed else 1 << 32):
        return np.uint32
    return np.int64 if signed else np.uint64


def _quantized(W: sp.csc_matrix, value_type) -> tuple[sp.csc_matrix, np.ndarray]:
    """``W`` with each column's values as integers of ``value_type`` in units of the column's scale
    ``max |w| / (largest integer)``, and the (K,) float32 scales (1 for float32, which is kept).
    By hand because PyTorch's ``quantize_per_channel`` takes dense tensors and these are sparse columns."""
    scale = np.ones(W.shape[1], dtype=np.float32)
    if value_type == np.float32:
        return W, scale
    top = np.iinfo(value_type).max
    magnitudes = np.abs(W.data)
    filled = np.flatnonzero(np.diff(W.indptr))
    if len(filled):
        largest = np.maximum.reduceat(magnitudes, W.indptr[filled])
        scale[filled] = np.where(largest > 0, largest / np.float32(top), np.float32(1))
    # float32 temporaries only: a large layer's weights are counted in hundreds of millions
    np.divide(W.data, np.repeat(scale, np.diff(W.indptr)), out=magnitudes)
    values = np.clip(np.rint(magnitudes, out=magnitudes), -top, top).astype(value_type)
    W = sp.csc_matrix((values, W.indices.copy(), W.indptr.copy()), shape=W.shape)
    W.eliminate_zeros()  # in place: the index arrays are copies, the caller's matrix stays as it was
    return W, scale


@numba.njit(cache=True)
def _group_by_feature(w_indptr, w_rows, w_values, n_rows, ch_indptr, ch_ids, child_type, parent_type, index_type,
                      mode):
    """Transpose CSC weights to feature-major, grouped by parent (see :class:`LayerWeights`).

    A counting sort over the children in (parent, position) order, so each feature's entries
    arrive grouped by parent. ``mode`` 1: every entry is its own group (no ``group_start``);
    0: one group per (feature, parent); -1: per entry where groups would average under 1.5
    entries. Written by hand because SciPy's transpose can neither group nor emit narrow types,
    and its int32 temporaries cost more than the result for large layers.
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
    # Per entry when groups average under 1.5 weights: 25-30% smaller there (generated 100k
    # labels: -8% in all, same speed). At 2 weights per group (EURLEX57K's label layer) it would
    # still be 11% smaller, but the kernel then looks up the beam once per weight instead of once
    # per group: 40% slower prediction, measured.
    per_entry = mode == 1 or (mode == -1 and 2 * total < 3 * n_groups[n_rows])
    if per_entry:
        n_groups = n_entries.copy()
    group_start = np.zeros(0 if per_entry else n_groups[n_rows] + 1, dtype=index_type)
    if not per_entry:
        group_start[n_groups[n_rows]] = total
    group_parent = np.zeros(n_groups[n_rows], dtype=parent_type)
    entry_child = np.empty(total, dtype=child_type)
    entry_value = np.empty(total, dtype=w_values.dtype)
    next_entry = n_entries[:-1].copy()
    next_group = n_groups[:-1].copy()
    last_parent[:] = -1
    for p in range(n_parents):
        for q in range(ch_indptr[p], ch_indptr[p + 1]):
            c = ch_ids[q]
            for k in range(w_indptr[c], w_indptr[c + 1]):
                f = w_rows[k]
                e = next_entry[f]
                if per_entry or last_parent[f] != p:
                    last_parent[f] = p
                    g = next_group[f]
                    if not per_entry:
                        group_start[g] = e
                    group_parent[g] = p
                    next_group[f] = g + 1
                entry_child[e] = q - ch_indptr[p]
                entry_value[e] = w_values[k]
                next_entry[f] = e + 1
    return n_groups, group_start, group_parent, entry_child, entry_value


@numba.njit(cache=True)
def _columns_from_groups(feat_groups, group_start, group_parent, entry_child, entry_value,
                         child_indptr, child_ids, child_scale, n_cols, index_type):
    """The inverse of :func:`_group_by_feature`: CSC (indptr, rows, float32 values times the
    children's scales), rows sorted per column."""
    n_rows = feat_groups.shape[0] - 1
    grouped = group_start.shape[0] > 0
    indptr = np.zeros(n_cols + 1, dtype=np.int64)
    for f in range(n_rows):
        for g in range(np.int64(feat_groups[f]), np.int64(feat_groups[f + 1])):
            base = child_indptr[np.int64(group_parent[g])]
            first, end = (np.int64(group_start[g]), np.int64(group_start[g + 1])) if grouped else (g, g + 1)
            for e in range(first, end):
                indptr[child_ids[base + entry_child[e]] + 1] += 1
    for c in range(n_cols):
        indptr[c + 1] += indptr[c]
    rows = np.empty(indptr[n_cols], dtype=index_type)
    values = np.empty(indptr[n_cols], dtype=np.float32)
    fill = indptr[:-1].copy()
    for f in range(n_rows):  # features in order: each column's rows come out sorted
        for g in range(np.int64(feat_groups[f]), np.int64(feat_groups[f + 1])):
            base = child_indptr[np.int64(group_parent[g])]
            first, end = (np.int64(group_start[g]), np.int64(group_start[g + 1])) if grouped else (g, g + 1)
            for e in range(first, end):
                q = base + entry_child[e]
                c = child_ids[q]
                rows[fill[c]] = f
                values[fill[c]] = np.float32(entry_value[e]) * child_scale[q]
                fill[c] += 1
    return indptr, rows, values


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
def _collect_groups(f, xv, beam_pos, widest, feat_groups, group_parent, beam_parents, n_beam,
                    hit_group, hit_value, hit_base, n_hits):
    """Append feature ``f``'s groups under the beam's parents to the row's hits (group, ``xv``,
    offset of the parent's children in the accumulator); returns the new hit count.

    A feature's groups are sorted by parent. When it has few groups they are all scanned (one
    lookup each); when it has many (large label spaces: a common feature has weights under
    thousands of clusters) each beam parent is binary-searched instead, as PECOS's chunked
    layers do. Each (feature, parent) pair is collected once either way, so the scores are
    bit-identical.
    """
    lo, hi = np.int64(feat_groups[f]), np.int64(feat_groups[f + 1])
    if hi - lo <= _search_cost(hi - lo, n_beam):
        for g in range(lo, hi):
            t = beam_pos[group_parent[g]]
            if t >= 0:
                hit_group[n_hits], hit_value[n_hits], hit_base[n_hits] = g, xv, t * widest
                n_hits += 1
        return n_hits
    for i in range(n_beam):
        p = beam_parents[i]
        a, z = lo, hi
        while a < z:
            mid = (a + z) // 2
            if group_parent[mid] < p:
                a = mid + 1
            else:
                z = mid
        base = beam_pos[p] * widest
        while a < hi and group_parent[a] == p:  # one group, or a parent's entries when stored per entry
            hit_group[n_hits], hit_value[n_hits], hit_base[n_hits] = a, xv, base
            n_hits += 1
            a += 1
    return n_hits


# How far ahead the kernel prefetches (see xmc.ranker.prefetch), in features of the row and in hits:
# 4, 8 and 16 measured within 5% of each other on EURLEX57K's label layer, all 1.3-1.6x faster than none.
_AHEAD = 8


@numba.njit(cache=True, parallel=True)
def beam_step(
    x_indptr, x_indices, x_data, n_features, bias,
    feat_groups, group_start, group_parent, entry_child, entry_value,
    child_indptr, child_ids, child_scale,
    parent_ids, parent_scores,
    mask_indptr, mask_indices, use_mask,
    out_k, post, n_threads, row_order,
):
    """Score the children of each row's beam and keep the best ``out_k``.

    Args:
        x_*: instance features, CSR (n, n_features) with sorted indices.
        bias: value of the constant bias feature (weight row ``n_features``).
        feat_groups .. child_ids: the layer, as :meth:`LayerWeights.arrays`.
        parent_ids, parent_scores: (n, b) beam of the previous level, -1 padded.
        mask_*: CSR (n, K_children) of allowed children per row (``use_mask``).
        out_k: beam width to keep.
        post: post-processor code (see ``POST_PROCESSORS``); l3-hinge and
            sigmoid multiply the parent's path score, noop keeps raw child scores.
        row_order: (n,) int64, a permutation of the rows: the order they are scored in (rows
            with the same parents back to back read the same weights while they are cached).
            Any order gives the same results.

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
    grouped = group_start.shape[0] > 0
    most_per_parent = 1 if grouped else widest  # hits one feature can add per beam parent
    for thread in numba.prange(n_threads):
        acc = np.zeros(widest * b, dtype=np.float64)  # beam slot t's children at t * widest + position
        beam_pos = np.full(n_parents, -1, dtype=np.int64)
        beam_parents = np.empty(b, dtype=np.int64)
        allowed = np.zeros(n_children if use_mask else 1, dtype=np.bool_)
        top_ids = np.empty(out_k, dtype=np.int64)
        top_scores = np.empty(out_k, dtype=np.float32)
        hit_group = np.empty(1024, dtype=np.int64)
        hit_value = np.empty(1024, dtype=np.float32)
        hit_base = np.empty(1024, dtype=np.int64)
        for i_row in range(thread, n, n_threads):
            r = row_order[i_row]
            if use_mask:
                for k in range(mask_indptr[r], mask_indptr[r + 1]):
                    allowed[mask_indices[k]] = True
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
            # Two passes, so that the memory reads of many groups overlap: first collect the
            # groups under the beam (prefetching the groups of features ahead), then add their
            # entries (prefetching the entries of hits ahead).
            most = min((x_indptr[r + 1] - x_indptr[r] + 1) * n_beam * most_per_parent, group_parent.shape[0])
            if most > hit_group.shape[0]:
                hit_group, hit_value, hit_base = (np.empty(most, dtype=np.int64), np.empty(most, dtype=np.float32),
                                                  np.empty(most, dtype=np.int64))
            n_hits = 0
            first, end = x_indptr[r], x_indptr[r + 1]
            for k in range(first, end):
                if k + 2 * _AHEAD < end:
                    prefetch(feat_groups, x_indices[k + 2 * _AHEAD])
                if k + _AHEAD < end:
                    prefetch(group_parent, feat_groups[x_indices[k + _AHEAD]])
                n_hits = _collect_groups(x_indices[k], x_data[k], beam_pos, widest, feat_groups, group_parent,
                                         beam_parents, n_beam, hit_group, hit_value, hit_base, n_hits)
            n_hits = _collect_groups(n_features, bias, beam_pos, widest, feat_groups, group_parent,
                                     beam_parents, n_beam, hit_group, hit_value, hit_base, n_hits)
            for h in range(n_hits):
                if grouped:
                    if h + 2 * _AHEAD < n_hits:
                        prefetch(group_start, hit_group[h + 2 * _AHEAD])
                    if h + _AHEAD < n_hits:
                        ahead = group_start[hit_group[h + _AHEAD]]
                        prefetch(entry_child, ahead)
                        prefetch(entry_value, ahead)
                    g, xv, base = hit_group[h], hit_value[h], np.uint64(hit_base[h])
                    for e in range(group_start[g], group_start[g + 1]):
                        acc[base + entry_child[e]] += xv * entry_value[e]
                else:
                    if h + _AHEAD < n_hits:
                        prefetch(entry_child, hit_group[h + _AHEAD])
                        prefetch(entry_value, hit_group[h + _AHEAD])
                    g = hit_group[h]
                    acc[np.uint64(hit_base[h]) + entry_child[g]] += hit_value[h] * entry_value[g]
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
                    s = _transform(acc[t * widest + j] * child_scale[child_indptr[p] + j], post)
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
