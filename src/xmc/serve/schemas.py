"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI document at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Document(BaseModel):
    """One document, with the fields of xmc's JSONL format (``labels`` is not needed)."""

    model_config = ConfigDict(extra="ignore", strict=True)  # "3" is no topk, true no id

    id: str | int | None = Field(None, description="echoed back; default: the document's 0-based position")
    title: str | None = None
    description: str | None = None
    text: str | None = None
    category: str | list[str] | None = Field(
        None, description="category path ('A > B' or ['A', 'B']): restricts models saved with a taxonomy")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[Document] = Field(..., min_length=1)
    topk: int | None = Field(None, ge=1, description="labels per document (default: the model's)")
    threshold: float | None = Field(None, allow_inf_nan=False, description="drop labels scoring below this")
    beam_size: int | None = Field(None, ge=1,
                                  description="clusters kept per level of the label tree (default: the model's)")
    allowed_labels: list[str] | None = Field(
        None, min_length=1, description="predict only among these label names")


class Prediction(BaseModel):
    id: str
    labels: list[str] = Field(..., description="best first")
    scores: list[float]


class PredictResponse(BaseModel):
    model: str
    model_version: str
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    name: str
    kind: str
    model_version: str
    directory: str
    n_labels: int
    has_taxonomy: bool
    trained_at: str | None
    loaded_at: str
    versions: dict[str, str]
    config: dict[str, Any] | None = None


class ModelList(BaseModel):
    models: list[ModelInfo]


class LabelList(BaseModel):
    model: str
    prefix: str
    total: int = Field(..., description="labels matching the prefix")
    labels: list[str] = Field(..., description="the first max_labels_listed of them, in label-id order")


class ReloadResponse(BaseModel):
    model: str
    model_version: str
    previous_version: str
    seconds: float


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None
