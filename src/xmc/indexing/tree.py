"""The label tree as data: a chain of sparse child -> parent indicator matrices.

``chain[0]`` has shape (K_1, 1) and maps the first level's clusters to the
root; ``chain[i]`` has shape (K_{i+1}, K_i); the last matrix has shape
(L, K_last) and maps labels to leaf clusters. Every row holds exactly one 1.
Mapping labels to the clusters of level i is a product of matrices, e.g.
``Y @ chain[-1]`` gives the (n, K_last) instance-to-leaf-cluster counts.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ModelFormatError


class ClusterChain:
    """A label tree stored as a list of CSC indicator matrices (see module docstring).

    Args:
        matrices: the chain, root first; each a (children x parents) 0/1 matrix.
    """

    def __init__(self, matrices: Sequence[sp.spmatrix]):
        self.matrices = [sp.csc_matrix(m, dtype=np.float32) for m in matrices]
        if not self.matrices:
            raise ValueError("a cluster chain needs at least one matrix")
        if self.matrices[0].shape[1] != 1:
            raise ValueError(f"chain[0] must have one parent column (the root), got shape {self.matrices[0].shape}")
        for i in range(1, len(self.matrices)):
            if self.matrices[i].shape[1] != self.matrices[i - 1].shape[0]:
                raise ValueError(
                    f"chain[{i}] has {self.matrices[i].shape[1]} parents but level {i} has "
                    f"{self.matrices[i - 1].shape[0]} clusters"
                )
        for i, m in enumerate(self.matrices):
            per_child = np.diff(sp.csr_matrix(m).indptr)
            if not np.all(per_child == 1):
                raise ValueError(f"chain[{i}]: every child must have exactly one parent")

    def __len__(self) -> int:
        return len(self.matrices)

    def __getitem__(self, i: int) -> sp.csc_matrix:
        return self.matrices[i]

    @property
    def n_labels(self) -> int:
        return self.matrices[-1].shape[0]

    @property
    def level_sizes(self) -> list[int]:
        """Number of nodes on each level below the root, labels last."""
        return [m.shape[0] for m in self.matrices]

    def parents(self, i: int) -> np.ndarray:
        """Parent id of every child of ``chain[i]``, shape (K_{i+1},)."""
        return sp.csr_matrix(self.matrices[i]).indices.astype(np.int64)

    def label_to_level(self, level: int) -> sp.csc_matrix:
        """(L, K_level) indicator of each label's ancestor at ``level`` (0 = first level below root).

        ``level = len(chain) - 1`` gives the identity on labels.
        """
        mapping = sp.identity(self.n_labels, dtype=np.float32, format="csr")
        for i in range(len(self.matrices) - 1, level, -1):
            mapping = mapping @ self.matrices[i]
        return sp.csc_matrix(mapping)

    def leaf_sizes(self) -> np.ndarray:
        """Number of labels in each leaf cluster, shape (K_last,)."""
        return np.asarray(self.matrices[-1].sum(axis=0)).ravel().astype(np.int64)

    # ---- persistence: a JSON file plus one .npz per level ----------------------
    def save(self, directory: str | os.PathLike) -> None:
        os.makedirs(directory, exist_ok=True)
        for i, m in enumerate(self.matrices):
            sp.save_npz(os.path.join(directory, f"chain-{i}.npz"), m, compressed=False)
        with open(os.path.join(directory, "chain.json"), "w", encoding="utf-8") as fh:
            json.dump({"levels": len(self.matrices), "level_sizes": self.level_sizes}, fh)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClusterChain":
        meta_path = os.path.join(directory, "chain.json")
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
            matrices = [sp.load_npz(os.path.join(directory, f"chain-{i}.npz")) for i in range(meta["levels"])]
            for m in matrices:
                sp.csc_matrix(m).check_format(full_check=True)  # indices in range before any kernel reads them
            return cls(matrices)
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{directory}: cannot read cluster chain ({exc})") from exc

    @classmethod
    def flat(cls, n_labels: int) -> "ClusterChain":
        """The one-level tree: every label a child of the root (one-vs-all)."""
        return cls([sp.csc_matrix(np.ones((n_labels, 1), dtype=np.float32))])

    @classmethod
    def from_assignments(cls, assignments: Sequence[np.ndarray]) -> "ClusterChain":
        """Build the chain from node ids: ``assignments[i][j]`` is the parent (at level i) of node j at level i+1."""
        matrices = []
        n_parents = 1
        for parent in assignments:
            parent = np.asarray(parent, dtype=np.int64)
            matrices.append(
                sp.csc_matrix(
                    (np.ones(len(parent), dtype=np.float32), (np.arange(len(parent)), parent)),
                    shape=(len(parent), n_parents),
                )
            )
            n_parents = len(parent)
        return cls(matrices)
