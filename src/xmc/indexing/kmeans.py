"""Hierarchical balanced spherical k-means over label representations.

Each binary split divides every node of the current depth into two halves
whose sizes differ by at most one (balanced 2-means, as in Parabel / PECOS),
and all nodes of a depth are split together with sparse matrix operations.
A tree level with branching factor B = 2^s is s consecutive binary splits.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np
import scipy.sparse as sp

from ..progress import progress_bar
from ..sparse_rows import l2_normalize_rows, unsigned_indices

from .tree import ClusterChain

logger = logging.getLogger(__name__)

# Nodes whose rows hold at most this many non-zeros are split on a compact copy (see _split_nodes).
LOCAL_BUDGET = 4_000_000


def n_binary_splits(n_labels: int, max_leaf_size: int) -> int:
    """Binary splits so that leaves hold at most ``max_leaf_size`` labels (and none is empty)."""
    depth = max(1, math.ceil(math.log2(max(n_labels, 1) / max_leaf_size))) if n_labels > max_leaf_size else 1
    return max(1, min(depth, int(math.floor(math.log2(max(n_labels, 2))))))


def tree_level_sizes(n_leaves: int, branching: int) -> list[int]:
    """Cluster counts per level, top first, for ``n_leaves`` (a power of two) leaf clusters.

    As in PECOS: levels are formed from the leaves upwards, each with ``branching`` times
    fewer nodes, until a level has at most ``branching`` nodes (the root's children).
    """
    shift = int(math.log2(branching))
    sizes = [n_leaves]
    while sizes[-1] > branching:
        sizes.append(max(1, sizes[-1] >> shift))
    return sizes[::-1]


def hierarchical_kmeans(
    Z: sp.csr_matrix,
    *,
    branching: int = 16,
    max_leaf_size: int = 100,
    max_iter: int = 20,
    seed: int = 0,
    n_threads: int | None = None,
    progress: bool = False,
) -> ClusterChain:
    """Cluster the rows of ``Z`` (L x d label representations) into a balanced tree.

    Args:
        Z: label representations, CSR (L, d); rows are L2-normalised here.
        branching: children per node (a power of two; 2 = Parabel, 16 = PECOS default,
            wider = Bonsai-like shallow trees).
        max_leaf_size: leaves hold at most this many labels: ``ceil(log2(L / max_leaf_size))``
            balanced binary splits make the leaves (as in Parabel / PECOS); the tree levels
            above them are grouped ``branching``-ary from the leaves up (see
            :func:`tree_level_sizes`).
        max_iter: 2-means iterations per split (stops early when assignments are stable).
        seed: the random seed of the initial centroids; equal seeds give equal trees.
        n_threads: numba threads (default: all).
        progress: show a progress bar over the binary splits (one per tree depth).

    Returns:
        The :class:`ClusterChain` whose last matrix maps labels to leaves.
    """
    if branching < 2 or branching & (branching - 1):
        raise ValueError(f"branching must be a power of two >= 2, got {branching}")
    Z = l2_normalize_rows(Z)
    n_labels = Z.shape[0]
    rng = np.random.default_rng(seed)
    total_splits = n_binary_splits(n_labels, max_leaf_size)
    node = np.zeros(n_labels, dtype=np.int64)
    n_nodes = 1
    for _ in progress_bar(range(total_splits), desc="k-means splits", disable=not progress):
        node = _balanced_binary_split(Z, node, n_nodes, rng, max_iter, n_threads)
        n_nodes *= 2
    chain = chain_from_leaves(node, n_nodes, branching)
    logger.info("label tree: level sizes %s", chain.level_sizes)
    return chain


def chain_from_leaves(leaf: np.ndarray, n_leaves: int, branching: int) -> ClusterChain:
    """The tree over ``n_leaves`` (a power of two) leaf clusters, ``leaf[l]`` holding label l.

    Leaf ids are binary codes (the path of binary splits), so the ancestor of a leaf k levels up
    is ``leaf >> k``; the levels above the leaves are those of :func:`tree_level_sizes`.
    """
    assignments = []
    above = 1
    for size in tree_level_sizes(n_leaves, branching):
        assignments.append(np.arange(size, dtype=np.int64) >> int(round(math.log2(size // above))))
        above = size
    assignments.append(np.asarray(leaf, dtype=np.int64))
    return ClusterChain.from_assignments(assignments)


def _balanced_binary_split(Z, node, n_nodes, rng, max_iter, n_threads):
    """Split every node in two balanced halves by spherical 2-means; returns new node ids (2*node + side)."""
    n_labels = Z.shape[0]
    order = np.argsort(node, kind="stable")  # members of each node, by label id
    sizes = np.bincount(node, minlength=n_nodes)
    starts = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    # Two distinct random members of each node as initial centroids.
    safe = np.maximum(sizes, 1)
    first = rng.integers(0, safe)
    second = (first + 1 + rng.integers(0, np.maximum(safe - 1, 1))) % safe
    threads = numba.get_num_threads() if n_threads is None else min(n_threads, numba.get_num_threads())
    # Largest nodes first, each to the thread with the least work so far (static, so the
    # result does not depend on scheduling; the work per node is deterministic anyway).
    nnz = np.diff(Z.indptr)[order]
    node_nnz = np.add.reduceat(nnz, starts[:-1]) if n_labels else np.zeros(n_nodes, dtype=np.int64)
    node_nnz[sizes == 0] = 0
    owner = np.zeros(n_nodes, dtype=np.int64)
    load = np.zeros(threads, dtype=np.int64)
    for p in np.argsort(-node_nnz, kind="stable"):
        t = int(np.argmin(load))
        owner[p] = t
        load[t] += node_nnz[p]
    side, iters = _split_nodes(
        Z.indptr.astype(np.int64), unsigned_indices(Z), Z.data, Z.shape[1], order, starts,
        first.astype(np.int64), second.astype(np.int64), owner, max_iter, threads, node_nnz, LOCAL_BUDGET,
    )
    logger.debug("2-means of %d nodes: %d iterations at most, %.1f on average",
                 n_nodes, iters.max(), iters[sizes > 1].mean() if (sizes > 1).any() else 0.0)
    return 2 * node + side


@numba.njit(cache=True)
def _stable_argsort(values):
    # numba's mergesort cannot be cached (recursive), so quicksort plus index order within ties.
    ranked = np.argsort(values)
    n = values.shape[0]
    a = 0
    while a < n:
        b = a + 1
        while b < n and values[ranked[b]] == values[ranked[a]]:
            b += 1
        if b - a > 1:
            ranked[a:b] = np.sort(ranked[a:b])
        a = b
    return ranked


# Written by hand because each node's 2-means must stop on its own: vectorising all nodes
# of a depth with SciPy (sparse centroid sums, normalise, difference) spent most of the
# time in Python-level sparse algebra and iterated until the slowest node converged.
@numba.njit(cache=True, parallel=True)
def _split_nodes(z_indptr, z_indices, z_data, n_features, order, starts, first, second, owner, max_iter, n_threads,
                 node_nnz, local_budget):
    """Balanced spherical 2-means inside every node: (each label's side (0 or 1), iterations per node).

    Per node: centroids start at two members; each iteration scores members by
    z . (c0 - c1) with the difference kept in a dense buffer, sends the better-scoring
    half (ties: smaller label id; odd sizes put the extra label left) to side 0,
    and recomputes the normalised centroid sums; it stops when no label changes side.

    A node whose rows hold at most ``local_budget`` non-zeros is first copied with its features
    renumbered 0..u-1 in order of first use (8 bytes per non-zero and thread for float32 values):
    its dense buffers are then the first u entries, which stay in cache, instead of u entries
    scattered over all features (at 3M labels and 4M features a mid-tree split took 5-7x the 1M
    time for 2.9x the non-zeros). Every sum runs over the same values in the same order on either
    path, so the sides are identical.
    """
    n_labels = order.shape[0]
    n_nodes = starts.shape[0] - 1
    side = np.zeros(n_labels, dtype=np.int64)
    iters = np.zeros(n_nodes, dtype=np.int64)
    max_local = 0  # the largest copied node's non-zeros and labels
    max_local_labels = 0
    for p in range(n_nodes):
        if node_nnz[p] <= local_budget:
            max_local = max(max_local, node_nnz[p])
            max_local_labels = max(max_local_labels, starts[p + 1] - starts[p])
    for thread in numba.prange(n_threads):
        diff = np.zeros(n_features, dtype=np.float32)
        s0 = np.zeros(n_features, dtype=np.float64)
        s1 = np.zeros(n_features, dtype=np.float64)
        fmap = np.full(n_features, -1, dtype=np.int32)  # a touched feature's local id; -1: untouched
        touched = np.empty(n_features, dtype=np.int64)
        loc_indptr = np.zeros(max_local_labels + 1, dtype=np.int64)
        loc_indices = np.empty(max_local, dtype=z_indices.dtype)
        loc_data = np.empty(max_local, dtype=z_data.dtype)
        for p in range(n_nodes):
            if owner[p] != thread:
                continue
            a, b = starts[p], starts[p + 1]
            m = b - a
            if m < 2:
                continue
            members = order[a:b]
            local = node_nnz[p] <= local_budget
            # Features of the node (the support of every centroid and difference), in order of first use.
            n_touched = 0
            q = 0
            for s in range(m):
                l = members[s]
                for k in range(z_indptr[l], z_indptr[l + 1]):
                    f = z_indices[k]
                    if fmap[f] < 0:
                        fmap[f] = n_touched
                        touched[n_touched] = f
                        n_touched += 1
                    if local:
                        loc_indices[q] = fmap[f]
                        loc_data[q] = z_data[k]
                        q += 1
                if local:
                    loc_indptr[s + 1] = q
            if local:
                _two_means(loc_indptr, loc_indices, loc_data, np.arange(m), first[p], second[p],
                           np.arange(n_touched), diff, s0, s1, max_iter, side, members, iters, p)
            else:
                _two_means(z_indptr, z_indices, z_data, members, first[p], second[p],
                           touched[:n_touched], diff, s0, s1, max_iter, side, members, iters, p)
            for t in range(n_touched):
                fmap[touched[t]] = -1
    return side, iters


@numba.njit(cache=True)
def _two_means(indptr, indices, data, rows, first, second, support, diff, s0, s1, max_iter, side, members, iters, p):
    """One node's 2-means over ``rows`` of a CSR triple (see :func:`_split_nodes`); writes ``side`` of
    ``members`` and ``iters[p]``, and leaves the dense buffers zeroed. ``support``: the buffer entries
    of the node's features, in order of first use (the norms are summed in that order)."""
    m = rows.shape[0]
    l0 = rows[first]
    l1 = rows[second]
    for k in range(indptr[l0], indptr[l0 + 1]):
        diff[indices[k]] += data[k]
    for k in range(indptr[l1], indptr[l1 + 1]):
        diff[indices[k]] -= data[k]
    score = np.empty(m, dtype=np.float64)
    cur = np.full(m, -1, dtype=np.int64)
    moved = np.empty(m, dtype=np.int64)
    half = (m + 1) // 2
    for it in range(max_iter):
        iters[p] = it + 1
        for s in range(m):
            l = rows[s]
            acc = 0.0
            for k in range(indptr[l], indptr[l + 1]):
                acc += diff[indices[k]] * data[k]
            score[s] = -acc
        ranked = _stable_argsort(score)
        n_moved = 0
        for r in range(m):
            new = 0 if r < half else 1
            s = ranked[r]
            if cur[s] != new:
                cur[s] = new
                moved[n_moved] = s
                n_moved += 1
        if n_moved == 0:
            break
        # Centroid sums are updated by the labels that moved only (all of them on the
        # first pass): after a few iterations few labels move.
        for q in range(n_moved):
            s = moved[q]
            l = rows[s]
            dst = s0 if cur[s] == 0 else s1
            src = s1 if cur[s] == 0 else s0
            for k in range(indptr[l], indptr[l + 1]):
                dst[indices[k]] += data[k]
                if it > 0:
                    src[indices[k]] -= data[k]
        n0 = 0.0
        n1 = 0.0
        for f in support:
            n0 += s0[f] * s0[f]
            n1 += s1[f] * s1[f]
        n0 = 1.0 / math.sqrt(n0) if n0 > 0.0 else 0.0
        n1 = 1.0 / math.sqrt(n1) if n1 > 0.0 else 0.0
        for f in support:
            diff[f] = s0[f] * n0 - s1[f] * n1
    for s in range(m):
        side[members[s]] = cur[s]
    for f in support:
        diff[f] = 0.0
        s0[f] = 0.0
        s1[f] = 0.0
