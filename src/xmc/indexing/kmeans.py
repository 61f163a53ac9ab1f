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
from sklearn.preprocessing import normalize

from .tree import ClusterChain

logger = logging.getLogger(__name__)


def n_tree_levels(n_labels: int, branching: int, max_leaf_size: int) -> int:
    """Levels of clusters above the labels so that leaves hold about ``max_leaf_size`` labels at most."""
    if n_labels <= max_leaf_size:
        return 1
    return max(1, math.ceil(math.log(n_labels / max_leaf_size) / math.log(branching)))


def hierarchical_kmeans(
    Z: sp.csr_matrix,
    *,
    branching: int = 16,
    max_leaf_size: int = 100,
    max_iter: int = 20,
    seed: int = 0,
    n_threads: int | None = None,
) -> ClusterChain:
    """Cluster the rows of ``Z`` (L x d label representations) into a balanced tree.

    Args:
        Z: label representations, CSR (L, d); rows are L2-normalised here.
        branching: children per node (a power of two; 2 = Parabel, 16 = PECOS default,
            wider = Bonsai-like shallow trees).
        max_leaf_size: the tree is deep enough that leaves hold about this many labels at most.
        max_iter: 2-means iterations per split (stops early when assignments are stable).
        seed: the random seed of the initial centroids; equal seeds give equal trees.
        n_threads: numba threads (default: all).

    Returns:
        The :class:`ClusterChain` whose last matrix maps labels to leaves.
    """
    if branching < 2 or branching & (branching - 1):
        raise ValueError(f"branching must be a power of two >= 2, got {branching}")
    Z = normalize(sp.csr_matrix(Z, dtype=np.float32), copy=True)
    n_labels = Z.shape[0]
    rng = np.random.default_rng(seed)
    splits_per_level = int(math.log2(branching))
    levels = n_tree_levels(n_labels, branching, max_leaf_size)
    # Never make more leaves than labels (tiny label sets).
    total_splits = min(levels * splits_per_level, max(1, int(math.floor(math.log2(max(n_labels, 2))))))
    node = np.zeros(n_labels, dtype=np.int64)
    n_nodes = 1
    assignments = []
    level_nodes_before = 1
    for split in range(total_splits):
        node = _balanced_binary_split(Z, node, n_nodes, rng, max_iter, n_threads)
        n_nodes *= 2
        last = split == total_splits - 1
        if (split + 1) % splits_per_level == 0 or last:
            shift = int(round(math.log2(n_nodes // level_nodes_before)))
            assignments.append(np.arange(n_nodes, dtype=np.int64) >> shift)
            level_nodes_before = n_nodes
    assignments.append(node)
    chain = ClusterChain.from_assignments(assignments)
    logger.info("label tree: level sizes %s", chain.level_sizes)
    return chain


def _balanced_binary_split(Z, node, n_nodes, rng, max_iter, n_threads):
    """Split every node in two balanced halves by spherical 2-means; returns new node ids (2*node + side)."""
    n_labels = Z.shape[0]
    order = np.argsort(node, kind="stable")
    sizes = np.bincount(node, minlength=n_nodes)
    starts = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    # Two distinct random members of each node as initial centroids.
    safe = np.maximum(sizes, 1)
    first = rng.integers(0, safe)
    second = (first + 1 + rng.integers(0, np.maximum(safe - 1, 1))) % safe
    c0 = Z[order[np.minimum(starts[:-1] + first, n_labels - 1)]]
    c1 = Z[order[np.minimum(starts[:-1] + second, n_labels - 1)]]
    side = np.full(n_labels, -1, dtype=np.int64)
    labels = np.arange(n_labels)
    threads = numba.get_num_threads() if n_threads is None else n_threads
    for _ in range(max_iter):
        diff = sp.csr_matrix(c0 - c1)
        score = _node_scores(
            Z.indptr, Z.indices, Z.data, order, starts,
            diff.indptr.astype(np.int64), diff.indices.astype(np.int64), diff.data, Z.shape[1], threads,
        )
        # Rank members of each node by score (ties: label id); the first half goes left.
        ranked = np.lexsort((labels, -score, node))
        rank = np.empty(n_labels, dtype=np.int64)
        rank[ranked] = np.arange(n_labels) - starts[node[ranked]]
        new_side = (rank >= (sizes[node] + 1) // 2).astype(np.int64)
        if np.array_equal(new_side, side):
            break
        side = new_side
        child = 2 * node + side
        sums = sp.csr_matrix(
            (np.ones(n_labels, dtype=np.float32), (child, labels)), shape=(2 * n_nodes, n_labels)
        ) @ Z
        centroids = normalize(sums)
        c0, c1 = centroids[0::2], centroids[1::2]
    return 2 * node + side


@numba.njit(cache=True, parallel=True)
def _node_scores(z_indptr, z_indices, z_data, order, starts, d_indptr, d_indices, d_data, n_features, n_threads):
    # score[l] = z_l . (c0 - c1) of l's node; the difference vector of each node
    # is scattered into a dense buffer once and reused for all of its labels.
    n_nodes = starts.shape[0] - 1
    score = np.zeros(order.shape[0], dtype=np.float64)
    for thread in numba.prange(n_threads):
        buf = np.zeros(n_features, dtype=np.float64)
        for p in range(thread, n_nodes, n_threads):
            for k in range(d_indptr[p], d_indptr[p + 1]):
                buf[d_indices[k]] = d_data[k]
            for s in range(starts[p], starts[p + 1]):
                l = order[s]
                acc = 0.0
                for k in range(z_indptr[l], z_indptr[l + 1]):
                    acc += buf[z_indices[k]] * z_data[k]
                score[l] = acc
            for k in range(d_indptr[p], d_indptr[p + 1]):
                buf[d_indices[k]] = 0.0
    return score
