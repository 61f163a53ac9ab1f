"""From request documents to the model's own predictions, with per-request constraints.

Documents become an :class:`~xmc.data.XMCDataset` exactly as ``read_jsonl`` builds one, and the
model's ``predict`` runs with the same arguments as ``xmc predict``, so the server answers with
the labels and scores ``xmc predict`` writes for the same documents.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..data.dataset import LabelVocabulary, XMCDataset
from ..metrics import top_k
from ..models.base import refuse_unsupported


@dataclasses.dataclass(frozen=True)
class Options:
    """Per-request prediction options; requests with equal options can share one model call."""

    topk: int | None = None
    threshold: float | None = None
    beam_size: int | None = None
    constrained: bool = False


@dataclasses.dataclass
class Job:
    """One request's work: its documents (dicts of the JSONL fields), options and allowed label ids."""

    documents: list[dict[str, Any]]
    options: Options
    allowed: np.ndarray | None = None  # sorted label ids, or None for every label

    def __len__(self) -> int:
        return len(self.documents)


def document_text(doc: dict[str, Any]) -> str:
    """The text fields of a document joined (empty when it has no text at all)."""
    return "\n".join(doc.get(f) or "" for f in ("title", "description", "text")).strip()


def documents_to_dataset(documents: Sequence[dict[str, Any]], labels: LabelVocabulary) -> XMCDataset:
    """The dataset ``read_jsonl`` would build from these documents written as JSONL lines.

    As there: a field that no document has is ``None``, otherwise missing values are ``""``;
    a category given as a list is a path joined with `` > ``; the text defaults to ``""``.
    """
    def column(field: str) -> list[str] | None:
        values = [doc.get(field) for doc in documents]
        return None if all(v is None for v in values) else [v if v is not None else "" for v in values]

    categories = column("category")
    if categories is not None:
        categories = [" > ".join(c) if isinstance(c, list) else c for c in categories]
    n = len(documents)
    return XMCDataset(
        ids=[str(doc["id"]) for doc in documents],
        texts=[doc.get("text") or "" for doc in documents],
        Y=sp.csr_matrix((n, len(labels)), dtype=np.float32),
        labels=labels,
        titles=column("title"),
        descriptions=column("description"),
        categories=categories,
    )


def _taxonomy_selection(model, data: XMCDataset) -> sp.csr_matrix | None:
    """Category restriction for a model with a taxonomy that does not apply it itself."""
    taxonomy = getattr(model, "taxonomy_", None)
    if taxonomy is None or data.categories is None or getattr(model.config, "filter_predictions", False):
        return None  # masked-bert with filter_predictions restricts to the category inside predict
    mask, _ = taxonomy.mask(data.categories)
    return mask


def _selection(model, data: XMCDataset, jobs: Sequence[Job]) -> sp.csr_matrix | None:
    """The (n, L) 0/1 matrix of labels each document may get, or None for no restriction."""
    L = len(model.labels_)
    selected = _taxonomy_selection(model, data)
    if any(job.allowed is not None for job in jobs):
        rows = []
        for job in jobs:
            ids = np.arange(L) if job.allowed is None else job.allowed
            block = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), ids, [0, len(ids)]), shape=(1, L))
            rows.append(sp.vstack([block] * len(job), format="csr"))
        allowed = sp.vstack(rows, format="csr")
        selected = allowed if selected is None else selected.multiply(allowed).tocsr()
    return selected


def _keep_selected(scores: sp.csr_matrix, selected: sp.csr_matrix) -> sp.csr_matrix:
    """Scores only at the selected (row, label) pairs (a stored score of 0 stays a prediction)."""
    coo = scores.tocoo()
    keep = np.asarray(selected[coo.row, coo.col]).ravel() > 0
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=scores.shape)


def predict_jobs(model, jobs: Sequence[Job]) -> list[list[dict[str, Any]]]:
    """Predict every document of ``jobs`` (all with the same options) in one model call.

    Returns, per job, its predictions ``{"id", "labels": [best first], "scores"}``.

    Arguments a model's ``predict`` does not take are applied here, generically: a threshold
    drops lower scores after the call, and a label restriction (``allowed_labels``, a taxonomy
    category) filters every label the model scored (``topk`` = all labels) before the top k are
    kept; models with ``selected_outputs`` (XR-Linear, X-Transformer) search only the allowed
    labels instead.
    """
    options = jobs[0].options
    documents = [doc for job in jobs for doc in job.documents]
    data = documents_to_dataset(documents, model.labels_)
    caps = model.capabilities
    refuse_unsupported(model, {"beam_size": options.beam_size})
    selected = _selection(model, data, jobs)
    k = model.resolve_predict(topk=options.topk).topk  # checked, and capped at the label count
    kwargs: dict[str, Any] = {}
    if options.topk is not None:
        kwargs["topk"] = options.topk
    if options.beam_size is not None:
        kwargs["beam_size"] = options.beam_size
    late_threshold = late_selection = None
    if options.threshold is not None:
        if caps.supports_threshold:
            kwargs["threshold"] = options.threshold
        else:
            late_threshold = options.threshold
    if selected is not None:
        if caps.supports_selected_outputs:
            kwargs["selected_outputs"] = selected
        else:
            kwargs["topk"] = len(model.labels_)
            late_selection = selected
    scores = sp.csr_matrix(model.predict(data, **kwargs))
    if late_selection is not None:
        scores = _keep_selected(scores, late_selection)
    if late_threshold is not None:
        scores.data[scores.data < late_threshold] = -np.inf  # stored entries only; padded away below
    indices, values = top_k(scores, k)
    names = model.labels_.names
    predictions = []
    # As write_predictions: best first, ties in top_k's order, padding (-1, or -inf from a threshold) dropped.
    order = np.argsort(-values.astype(np.float64), axis=1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=1)
    values = np.take_along_axis(values.astype(np.float64), order, axis=1)
    for doc_id, idx, val in zip(data.ids, indices.tolist(), values.tolist()):
        keep = [t for t, j in enumerate(idx) if j >= 0 and val[t] != -np.inf]
        predictions.append({"id": doc_id, "labels": [names[idx[t]] for t in keep], "scores": [val[t] for t in keep]})
    out, start = [], 0
    for job in jobs:
        out.append(predictions[start:start + len(job)])
        start += len(job)
    return out
