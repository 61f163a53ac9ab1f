"""The augmented corpus: JSONL, one generated document per line, with its provenance.

Each line is an object::

    {"id": "doc7#aug2", "source_id": "doc7", "text": "...", "labels": ["a", "b"],
     "scores": {"consistency": 0.5, "diversity": 1.93},
     "generator": {"model_path": "...", "prompt": true, ...}}

``scores`` values may be null (not scored); ``generator`` is the generator config that wrote
the line. Such a file can be reused to train any number of classifiers without regenerating.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
from typing import Any, Iterable

import numpy as np

from ..data import LabelVocabulary, XMCDataset
from ..data.dataset import labels_to_csr
from ..errors import DataFormatError
from ..io import JSON_ERRORS, atomic_file, json_problem

REQUIRED = ("id", "source_id", "text", "labels")


@dataclasses.dataclass
class AugmentedDocument:
    """One generated document.

    Attributes:
        id: its own id (``<source_id>#aug<i>``).
        source_id: id of the training document it was generated from.
        text: the generated text.
        labels: label names, copied from the source.
        scores: {"consistency": S_Con, "diversity": S_Div} (values may be None).
        generator: the generator config (a plain dict) that produced it.
    """

    id: str
    source_id: str
    text: str
    labels: list[str]
    scores: dict[str, float | None] = dataclasses.field(default_factory=dict)
    generator: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        scores = {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in self.scores.items()}
        return json.dumps({"id": self.id, "source_id": self.source_id, "text": self.text, "labels": list(self.labels),
                           "scores": scores, "generator": self.generator}, ensure_ascii=False)


def write_augmented(path: str | os.PathLike, docs: Iterable[AugmentedDocument]) -> int:
    """Write the documents as JSONL (gzip when the name ends in .gz), atomically; return the count."""
    n = 0
    gz = os.fspath(path).endswith(".gz")
    with atomic_file(path, "wb" if gz else "w") as fh:
        out = gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) if gz else fh
        for doc in docs:
            line = doc.to_json() + "\n"
            out.write(line.encode("utf-8") if gz else line)
            n += 1
        if gz:
            out.close()
    return n


def read_augmented(path: str | os.PathLike) -> list[AugmentedDocument]:
    """Read an augmented JSONL file; a malformed line raises :class:`DataFormatError` naming file and line."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    docs = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except JSON_ERRORS as exc:
                raise DataFormatError(path, line_no, json_problem(exc)) from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, line_no, f"expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in REQUIRED if k not in obj]
            if missing:
                raise DataFormatError(path, line_no, f"missing field(s) {', '.join(map(repr, missing))}")
            for key in ("id", "source_id", "text"):
                if not isinstance(obj[key], str):
                    raise DataFormatError(path, line_no, f"field {key!r} must be a string")
            labels = obj["labels"]
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise DataFormatError(path, line_no, "field 'labels' must be a list of strings")
            scores = obj.get("scores") or {}
            if not isinstance(scores, dict) or not all(v is None or isinstance(v, (int, float)) for v in scores.values()):
                raise DataFormatError(path, line_no, "field 'scores' must be an object of numbers or nulls")
            generator = obj.get("generator") or {}
            if not isinstance(generator, dict):
                raise DataFormatError(path, line_no, "field 'generator' must be an object")
            docs.append(AugmentedDocument(obj["id"], obj["source_id"], obj["text"], labels,
                                          {k: (None if v is None else float(v)) for k, v in scores.items()}, generator))
    if not docs:  # fine-tuning on it would add steps on nothing and report success
        raise DataFormatError(path, None, "no augmented documents (the file is empty)")
    return docs


def augmented_dataset(docs: list[AugmentedDocument], labels: LabelVocabulary, *, source: str | None = None) -> XMCDataset:
    """The documents as an :class:`XMCDataset` over the training vocabulary ``labels``.

    A label name outside the vocabulary raises :class:`DataFormatError` naming the document:
    an augmented file must be used with the training data it was generated from.
    """
    ids = []
    for i, doc in enumerate(docs):
        try:
            ids.append([labels.id(name) for name in doc.labels])
        except KeyError as exc:
            raise DataFormatError(source, None, f"document {doc.id!r} (entry {i + 1}): label {exc} "
                                                "is not in the training vocabulary") from None
    return XMCDataset(ids=[d.id for d in docs], texts=[d.text for d in docs],
                      Y=labels_to_csr(ids, len(labels)), labels=labels, source=source)


def source_rows(docs: list[AugmentedDocument], train_ids: list[str]) -> np.ndarray:
    """Row of each document's source in the training data, int64 (n,); -1 where it is absent."""
    where = {doc_id: i for i, doc_id in enumerate(train_ids)}
    return np.array([where.get(d.source_id, -1) for d in docs], dtype=np.int64)
