"""The in-memory dataset type shared by every model: texts, labels Y and their vocabulary."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError


class LabelVocabulary:
    """A bijection between label names and dense ids ``0 .. L-1``.

    Args:
        names: label names in id order; must be unique.
    """

    def __init__(self, names: Iterable[str]):
        self.names: list[str] = [str(n) for n in names]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            seen: set[str] = set()
            dup = next(n for n in self.names if n in seen or seen.add(n))
            raise ValueError(f"duplicate label name {dup!r} in label vocabulary")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def __repr__(self) -> str:
        return f"LabelVocabulary({len(self)} labels)"

    def id(self, name: str) -> int:
        return self.index[name]

    def extended(self, extra: Sequence[str]) -> "LabelVocabulary":
        """A new vocabulary with ``extra`` names appended (ids of existing names unchanged)."""
        return LabelVocabulary(self.names + [n for n in extra if n not in self.index])


@dataclasses.dataclass
class XMCDataset:
    """Documents with their labels.

    Attributes:
        ids: document ids, length n.
        texts: main text of each document, length n (may be empty strings for
            feature-only data such as the XC sparse format).
        Y: label matrix, CSR, shape (n, L), float32, 1.0 for a positive label.
        labels: the label vocabulary (column ``j`` of ``Y`` is ``labels.names[j]``).
        titles / descriptions: optional extra text fields, length n.
        categories: optional per-document category path (e.g. ``"A > B > C"``).
        label_texts: optional text of each label (length L), for label-text
            embeddings and guide losses.
        X: optional precomputed features, CSR, shape (n, d), float32.
        unseen_labels: names of labels that occur in this data but were not in
            the vocabulary it was read with (e.g. test labels never seen in
            train). They are appended as the last columns of ``Y`` so recall
            counts them; no model trained on the original vocabulary predicts them.
        source: path the data came from, for messages.
    """

    ids: list[str]
    texts: list[str]
    Y: sp.csr_matrix
    labels: LabelVocabulary
    titles: list[str] | None = None
    descriptions: list[str] | None = None
    categories: list[str] | None = None
    label_texts: list[str] | None = None
    X: sp.csr_matrix | None = None
    unseen_labels: list[str] = dataclasses.field(default_factory=list)
    source: str | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.texts) != n:
            raise ValueError(f"{len(self.texts)} texts for {n} ids")
        if self.Y.shape != (n, len(self.labels)):
            raise ValueError(f"Y has shape {self.Y.shape}, expected ({n}, {len(self.labels)})")
        for name in ("titles", "descriptions", "categories"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} documents")
        if self.X is not None and self.X.shape[0] != n:
            raise ValueError(f"X has {self.X.shape[0]} rows for {n} documents")
        if self.label_texts is not None and len(self.label_texts) != len(self.labels):
            raise ValueError(f"{len(self.label_texts)} label texts for {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def n_known_labels(self) -> int:
        """Columns of ``Y`` that belong to the vocabulary the data was read with."""
        return len(self.labels) - len(self.unseen_labels)

    def input_texts(self, fields: Sequence[str] = ("title", "text"), sep: str = "\n") -> list[str]:
        """Join the chosen text fields of each document (missing fields are skipped)."""
        columns = []
        for field in fields:
            column = {"text": self.texts, "title": self.titles, "description": self.descriptions}[field]
            if column is not None:
                columns.append(column)
        return [sep.join(part for part in parts if part) for parts in zip(*columns)]

    @property
    def features_only(self) -> bool:
        """Whether the documents are precomputed features without text (an XC sparse file, whose texts
        are empty): a model that reads text would score every document as the empty text."""
        return self.X is not None and not any(self.texts) and not any(self.titles or ()) \
            and not any(self.descriptions or ())

    def check_has_text(self, reader: str = "this model") -> "XMCDataset":
        """``self``, or DataFormatError naming :attr:`source` when it is :attr:`features_only`;
        ``reader`` names what reads text (a model, in the message)."""
        if self.features_only:
            raise DataFormatError(self.source, None, f"the data has only precomputed features (no text), but "
                                  f"{reader} reads text")
        return self

    def check_has_features(self) -> "XMCDataset":
        """``self``, or DataFormatError naming :attr:`source` when it has no precomputed features, which
        a model trained on an XC file's features reads (it has no featurizer for text)."""
        if self.X is None:
            raise DataFormatError(self.source, None, "this model was trained on precomputed features (XC sparse) "
                                  "and the data has none")
        return self

    def subset(self, rows: Sequence[int] | np.ndarray) -> "XMCDataset":
        """The documents at ``rows`` (same label vocabulary)."""
        rows = np.asarray(rows, dtype=np.int64)

        def pick(seq):
            return None if seq is None else [seq[i] for i in rows]

        return dataclasses.replace(
            self,
            ids=pick(self.ids),
            texts=pick(self.texts),
            Y=self.Y[rows],
            titles=pick(self.titles),
            descriptions=pick(self.descriptions),
            categories=pick(self.categories),
            X=None if self.X is None else self.X[rows],
        )

    def check_trainable(self) -> "XMCDataset":
        """``self``, or DataFormatError naming :attr:`source` when no document has a label: every model
        would train into one that predicts nothing (or one score for every label) and exit 0."""
        if len(self) == 0:
            raise DataFormatError(self.source, None, "no documents: there is nothing to learn")
        if self.Y.count_nonzero() == 0:  # stored zeros (a Y built by hand) are no labels
            raise DataFormatError(self.source, None,
                                  f"none of its {len(self)} documents has a label: there is nothing to learn")
        return self

    def label_counts(self) -> np.ndarray:
        """Number of documents per label, shape (L,)."""
        return np.asarray((self.Y > 0).sum(axis=0)).ravel().astype(np.int64)

    def label_names_of(self, row: int) -> list[str]:
        start, end = self.Y.indptr[row], self.Y.indptr[row + 1]
        return [self.labels.names[j] for j in self.Y.indices[start:end]]


def labels_to_csr(label_ids: Sequence[Sequence[int]], n_labels: int) -> sp.csr_matrix:
    """Build the binary (n, L) float32 CSR label matrix from per-document label id lists."""
    lengths = np.fromiter((len(ids) for ids in label_ids), dtype=np.int64, count=len(label_ids))
    indptr = np.zeros(len(label_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter((j for ids in label_ids for j in ids), dtype=np.int32, count=int(indptr[-1]))
    Y = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(label_ids), n_labels))
    Y.sum_duplicates()
    Y.data[:] = 1.0
    return Y
