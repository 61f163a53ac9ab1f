"""Configuration of the GUDN and LightXML models (:class:`GUDNConfig`, :class:`LightXMLConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ...config import Config, check
from ...features.tfidf import TfidfConfig
from ...neural.configs import EncoderConfig
from ..masked_bert.config import MaskedTrainConfig


@dataclasses.dataclass
class GUDNPredictConfig(Config):
    """Prediction defaults (each may be overridden per call).

    Attributes:
        topk: labels returned per document (best first).
        beam_size: clusters of the meta-classifier kept, whose labels are scored (the width of the
            search; one meaning in every model, see :mod:`xmc.models.base`).
        threshold: drop labels whose score (sigmoid(meta) * sigmoid(rank), in (0, 1)) is below
            this; None = the plain top-k list.
    """

    topk: int = 10
    beam_size: int = 10
    threshold: float | None = None

    def validate(self) -> None:
        check(self.topk >= 1 and self.beam_size >= 1, "topk and beam_size must be >= 1")
        check(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold must be in [0, 1]")


def _default_encoder() -> EncoderConfig:
    # LightXML: the [CLS] states of the last 5 layers concatenated.
    # "auto": the paper's 512 tokens with CUDA, fewer on a CPU (xmc.neural.budget).
    return EncoderConfig(pooling="cls-concat", last_layers=5, max_length="auto")


def _default_train() -> MaskedTrainConfig:
    return MaskedTrainConfig(epochs="auto", learning_rate=1e-4, head_learning_rate="auto", freeze_encoder="auto",
                             patience="auto", select_metric="p@1")


@dataclasses.dataclass
class GUDNConfig(Config):
    """Full configuration of :class:`GUDN` (``xmc config gudn`` prints it).

    Attributes:
        encoder: the shared encoder; its pooling gives the text features E_t.
        text_fields: document fields joined into the encoder's input text.
        feature_guide: add L_feature = MSE(E_t, E_l).
        link_guide: add L_link = BCE of the labels predicted from E_l.
        label_input: ``text`` (the document's label texts joined by ``label_separator``) or
            ``onehot`` (one learnt input embedding per label, the paper's Table 4 ablation).
        label_last_layers: E_l concatenates the [CLS] states of this many last layers (paper: 10;
            capped at the encoder's layers + embeddings, with a warning).
        label_max_length: tokens of the label-side input.
        label_separator: joins a document's label texts.
        dropout: dropout on the features before the classifiers (high, as the paper).
        hidden_dim: size of the ranking space (label embeddings).
        max_leaf_size / kmeans_seed: label clusters of the meta-classifier (PIFA over TF-IDF,
            balanced k-means leaves of at most this many labels).
        n_candidate_clusters: b of training: the meta-classifier's top clusters whose labels
            become the candidates (the positives' clusters are always added).
        tfidf: TF-IDF settings of PIFA.
        train: the training loop (``select_metric`` picks the early-stopping metric).
        predict: prediction defaults.
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=_default_encoder)
    text_fields: list[str] = dataclasses.field(default_factory=lambda: ["title", "text"])
    feature_guide: bool = True
    link_guide: bool = True
    label_input: Literal["text", "onehot"] = "text"
    label_last_layers: int = 10
    label_max_length: int = 128
    label_separator: str = ", "
    dropout: float = 0.5
    hidden_dim: int = 300
    max_leaf_size: int = 64
    kmeans_seed: int = 0
    n_candidate_clusters: int = 10
    tfidf: TfidfConfig = dataclasses.field(default_factory=lambda: TfidfConfig(fields=["title", "text"]))
    train: MaskedTrainConfig = dataclasses.field(default_factory=_default_train)
    predict: GUDNPredictConfig = dataclasses.field(default_factory=GUDNPredictConfig)

    def validate(self) -> None:
        check(self.label_input in ("text", "onehot"), f"unknown label_input {self.label_input!r}")
        check(len(self.text_fields) >= 1, "text_fields must name at least one of title, description, text")
        check(self.label_last_layers >= 1 and self.label_max_length >= 8, "label_last_layers >= 1, label_max_length >= 8")
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check(self.train.cache_dir is None, "train.cache_dir is a masked-bert setting")
        check(self.hidden_dim >= 1 and self.max_leaf_size >= 1 and self.n_candidate_clusters >= 1,
              "hidden_dim, max_leaf_size and n_candidate_clusters must be >= 1")
        bad = [f for f in self.text_fields if f not in ("title", "description", "text")]
        check(not bad, f"unknown text field(s) {bad}; choose from title, description, text")

    @property
    def label_path(self) -> bool:
        return self.feature_guide or self.link_guide


@dataclasses.dataclass
class LightXMLConfig(GUDNConfig):
    """:class:`GUDNConfig` with both guides off: the LightXML-style baseline (``xmc config lightxml``)."""

    feature_guide: bool = False
    link_guide: bool = False

    def validate(self) -> None:
        super().validate()
        check(not self.label_path, "lightxml has no guides; use the gudn model for feature_guide / link_guide")
