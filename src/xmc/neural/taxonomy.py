"""Attribute taxonomies: which labels are relevant to a product category (the set M(x)).

Chen, Xia and Shinzato, "Extreme Multi-Label Classification with Label Masking for Product
Attribute Value Extraction": a product of category c can only carry the attribute-value
labels that the taxonomy lists for c. :class:`Taxonomy` turns categories into a sparse
(n, L) 0/1 mask, used by the masked loss in training and to restrict predictions.

Gaps are handled as documented, and counted in :class:`MaskStats`:

* a category unknown to the taxonomy falls back to its nearest known ancestor
  (``"A > B > C"`` -> ``"A > B"`` -> ``"A"``); an ancestor that the file does not list
  itself stands for the union of its listed descendants;
* a category with no known ancestor (or a missing category) gets every label;
* labels of the vocabulary that no category lists, and labels the file lists that the
  vocabulary lacks, are reported (:attr:`Taxonomy.uncovered_labels`, :attr:`Taxonomy.unknown_labels`).

Torch-free: the linear models use the same masks (``selected_outputs``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ..data.dataset import LabelVocabulary, XMCDataset
from ..data.readers import read_taxonomy
from ..errors import DataFormatError

logger = logging.getLogger(__name__)

SEPARATOR = ">"


def category_path(category: str | None) -> tuple[str, ...]:
    """``"A > B > C"`` -> ``("A", "B", "C")`` (spaces around the separator do not matter)."""
    if not category:
        return ()
    return tuple(part.strip() for part in category.split(SEPARATOR) if part.strip())


def _key(path: tuple[str, ...]) -> str:
    return " > ".join(path)


@dataclasses.dataclass
class MaskStats:
    """How the categories of one mask call were resolved.

    Attributes:
        n: products.
        exact: products whose category the taxonomy lists (or that is an ancestor of listed ones).
        parent_fallback: products whose category is unknown but an ancestor is known.
        all_labels: products with a missing category or no known ancestor (every label relevant).
        unknown_categories: the distinct unknown categories (sorted).
        positives_outside: true labels outside their product's mask (only when ``Y`` was given):
            these cannot be predicted by a masked model.
    """

    n: int = 0
    exact: int = 0
    parent_fallback: int = 0
    all_labels: int = 0
    unknown_categories: list = dataclasses.field(default_factory=list)
    positives_outside: int | None = None

    def summary(self) -> str:
        text = (f"{self.n} products: {self.exact} with a known category, {self.parent_fallback} fell back "
                f"to a parent category, {self.all_labels} to all labels")
        if self.positives_outside is not None:
            text += f"; {self.positives_outside} true labels outside the mask"
        return text


class Taxonomy:
    """Category -> relevant label ids, over a fixed label vocabulary.

    Args:
        relevant: category -> label names (as read from a taxonomy JSON file).
        labels: the model's label vocabulary; names it lacks are dropped and counted.
        source: file name, for messages.
    """

    def __init__(self, relevant: dict[str, Sequence[str]], labels: LabelVocabulary, source: str | None = None):
        self.labels = labels
        self.source = source
        self.unknown_labels: list[str] = []
        unknown: set[str] = set()
        # Normalised path -> sorted unique label ids; ancestors first get what the file says.
        by_path: dict[tuple[str, ...], np.ndarray] = {}
        for category, names in relevant.items():
            ids = []
            for name in names:
                j = labels.index.get(name)
                if j is None:
                    unknown.add(name)
                else:
                    ids.append(j)
            path = category_path(category)
            if not path:
                raise DataFormatError(source, None, "empty category name in the taxonomy")
            previous = by_path.get(path)
            merged = np.asarray(ids, dtype=np.int64) if previous is None else np.concatenate([previous, ids])
            by_path[path] = np.unique(merged)
        self.unknown_labels = sorted(unknown)
        self.listed = dict(by_path)
        # Ancestors not listed themselves stand for the union of their listed descendants.
        union: dict[tuple[str, ...], list[np.ndarray]] = {}
        for path, ids in by_path.items():
            for depth in range(1, len(path)):
                if path[:depth] not in by_path:
                    union.setdefault(path[:depth], []).append(ids)
        for path, parts in union.items():
            by_path[path] = np.unique(np.concatenate(parts))
        self.paths = by_path
        covered = np.zeros(len(labels), dtype=bool)
        for ids in by_path.values():
            covered[ids] = True
        self.uncovered_labels: list[str] = [labels.names[j] for j in np.flatnonzero(~covered)]
        if self.unknown_labels:
            logger.warning("%s: %d label(s) of the taxonomy are not in the model's vocabulary (ignored)",
                           source or "taxonomy", len(self.unknown_labels))
        if self.uncovered_labels:
            logger.warning("%s: %d label(s) of the vocabulary are relevant to no category (a masked model only "
                           "predicts them for products that fall back to all labels)",
                           source or "taxonomy", len(self.uncovered_labels))

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike, labels: LabelVocabulary) -> "Taxonomy":
        """Read a JSON object ``{category: [label, ...]}``.

        Raises:
            DataFormatError: the file is missing, not JSON, not an object, a category maps to
                something other than a list of strings, or a category name is empty
                (the message names the file and, where it can, the line).
        """
        if not os.path.exists(path):
            raise DataFormatError(path, None, "taxonomy file not found")
        if os.path.isdir(path):
            raise DataFormatError(path, None, "is a directory, expected a taxonomy JSON file")
        return cls(read_taxonomy(path), labels, source=os.fspath(path))

    @classmethod
    def from_data(cls, data: XMCDataset) -> "Taxonomy":
        """The labels seen with each category in ``data`` (the taxonomy derived from training data)."""
        if data.categories is None:
            raise ValueError(f"{data.source or 'data'}: no 'category' field; cannot derive a taxonomy")
        codes, inverse = np.unique(np.asarray([_key(category_path(c)) for c in data.categories], dtype=object),
                                   return_inverse=True)
        Y = sp.csr_matrix(data.Y)
        # Category-by-label co-occurrence counts in one sparse product: (C, n) @ (n, L).
        member = sp.csr_matrix((np.ones(len(inverse), dtype=np.float32), (inverse, np.arange(len(inverse)))),
                               shape=(len(codes), len(inverse)))
        counts = (member @ Y).tocsr()
        names = data.labels.names
        relevant = {code: [names[j] for j in counts.indices[counts.indptr[c]:counts.indptr[c + 1]]]
                    for c, code in enumerate(codes) if code}
        return cls(relevant, data.labels, source=f"derived from {data.source or 'training data'}")

    def to_dict(self) -> dict[str, list[str]]:
        """The listed categories as ``{category: [label names]}`` (the file format)."""
        names = self.labels.names
        return {_key(path): [names[j] for j in ids] for path, ids in self.listed.items()}

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, ensure_ascii=False, indent=1)

    # ---- lookups ------------------------------------------------------------------
    def resolve(self, category: str | None) -> tuple[tuple[str, ...] | None, str]:
        """(the path whose labels apply, how: ``exact`` | ``parent`` | ``all``)."""
        path = category_path(category)
        if path in self.paths:
            return path, "exact"
        for depth in range(len(path) - 1, 0, -1):
            if path[:depth] in self.paths:
                return path[:depth], "parent"
        return None, "all"

    def relevant_ids(self, category: str | None) -> np.ndarray:
        """Sorted label ids relevant to ``category`` (after fallback)."""
        path, _ = self.resolve(category)
        return np.arange(len(self.labels), dtype=np.int64) if path is None else self.paths[path]

    def mask(self, categories: Sequence[str | None] | None, n: int | None = None,
             Y: sp.spmatrix | None = None) -> tuple[sp.csr_matrix, MaskStats]:
        """The relevance mask M: CSR (n, L) float32, 1.0 where a label is relevant to the product.

        Args:
            categories: one category per product (None: every product gets all labels; give ``n``).
            n: number of products when ``categories`` is None.
            Y: optional (n, L') true labels, to count positives outside the mask.

        Each distinct category is resolved once; the rows are then gathered from a
        (distinct categories, L) matrix.
        """
        L = len(self.labels)
        if categories is None:
            if n is None:
                raise ValueError("give categories or n")
            categories = [None] * n
        keys = np.asarray([c or "" for c in categories], dtype=object)
        distinct, inverse = np.unique(keys, return_inverse=True) if len(keys) else (np.array([], dtype=object),
                                                                                     np.zeros(0, dtype=np.int64))
        rows, how = [], []
        for category in distinct:
            path, kind = self.resolve(category)
            rows.append(np.arange(L, dtype=np.int64) if path is None else self.paths[path])
            how.append(kind)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        per_category = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                                     shape=(len(distinct), L))
        M = per_category[inverse] if len(keys) else sp.csr_matrix((0, L), dtype=np.float32)
        M = sp.csr_matrix(M)
        how = np.asarray(how, dtype=object)
        per_row = how[inverse] if len(keys) else how
        stats = MaskStats(
            n=len(keys),
            exact=int(np.sum(per_row == "exact")),
            parent_fallback=int(np.sum(per_row == "parent")),
            all_labels=int(np.sum(per_row == "all")),
            unknown_categories=sorted(str(c) for c, k in zip(distinct, how) if k != "exact"),
        )
        if Y is not None:
            Yb = sp.csr_matrix(Y)[:, :L]
            Yb = (Yb != 0).astype(np.float32)
            stats.positives_outside = int(Yb.sum() - Yb.multiply(M).sum()) + int((sp.csr_matrix(Y)[:, L:] != 0).sum())
        if stats.parent_fallback or stats.all_labels:
            logger.info("taxonomy mask: %s", stats.summary())
        return M, stats
