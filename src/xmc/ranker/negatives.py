"""Negative sampling for the per-cluster classifiers: which instances train the children of a cluster.

For a layer whose parents are the clusters of one tree level, an instance
trains the children of parent cluster p when the (n, K_parent) indicator
matrix returned here has a 1 at (i, p):

- ``tfn`` (teacher forcing): the clusters holding one of the instance's
  labels, ``binarize(Y_children @ C)``;
- ``man`` (matcher-aware): the matcher's top-b clusters for the instance;
- ``tfn+man``: their union.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SCHEMES = ("tfn", "man", "tfn+man")


def binarize(M: sp.spmatrix) -> sp.csr_matrix:
    """0/1 float32 CSR with the sparsity pattern of ``M`` (explicit zeros dropped)."""
    M = sp.csr_matrix(M, dtype=np.float32, copy=True)
    M.eliminate_zeros()
    M.data[:] = 1.0
    return M


def teacher_forced(Y_children: sp.csr_matrix, chain_matrix: sp.spmatrix) -> sp.csr_matrix:
    """(n, K_parent) indicator of the parents of each instance's positive children."""
    return binarize(Y_children @ chain_matrix)


def topb_to_indicator(ids: np.ndarray, n_clusters: int) -> sp.csr_matrix:
    """(n, n_clusters) indicator from an (n, b) array of cluster ids padded with -1."""
    rows, cols = np.nonzero(ids >= 0)
    return binarize(sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, ids[rows, cols])), shape=(ids.shape[0], n_clusters)
    ))


def negative_indicator(
    scheme: str, Y_children: sp.csr_matrix, chain_matrix: sp.spmatrix, matcher_ids: np.ndarray | None
) -> sp.csr_matrix:
    """The (n, K_parent) instance-to-parent-cluster training indicator for ``scheme``.

    Args:
        scheme: ``tfn``, ``man`` or ``tfn+man``.
        Y_children: (n, K_children) 0/1 targets of the layer.
        chain_matrix: (K_children, K_parent) child -> parent indicator.
        matcher_ids: (n, b) top-b parent clusters predicted by the matcher (-1 padded);
            required for ``man`` and ``tfn+man``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown negative sampling scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    n_parents = chain_matrix.shape[1]
    if scheme == "tfn" or n_parents == 1:
        # With a single parent (the root) every instance trains every child whatever the scheme.
        return teacher_forced(Y_children, chain_matrix) if n_parents > 1 else binarize(np.ones((Y_children.shape[0], 1)))
    if matcher_ids is None:
        raise ValueError(f"negative sampling {scheme!r} needs the matcher's top clusters")
    man = topb_to_indicator(matcher_ids, n_parents)
    if scheme == "man":
        return man
    return binarize(teacher_forced(Y_children, chain_matrix) + man)
