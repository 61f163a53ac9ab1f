"""Configuration of the X-Transformer pipeline (:class:`XTransformerConfig`, :class:`MemberConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ...config import Config, check
from ...features.tfidf import TfidfConfig
from ...neural.configs import EncoderConfig, MatcherConfig
from ...ranker.hierarchy import LinearTrainConfig, PredictConfig


LabelRepr = Literal["pifa-tfidf", "pifa-neural", "text-emb"]


@dataclasses.dataclass
class MemberConfig(Config):
    """One ensemble member: a label tree, its matcher and its ranker.

    Attributes:
        label_repr: ``pifa-tfidf`` (PIFA over TF-IDF), ``pifa-neural`` (PIFA over the
            pre-trained encoder's instance embeddings) or ``text-emb`` (mean-pooled
            encoder states of the label texts).
        branching / max_leaf_size / max_iter / seed: the hierarchical k-means (as XR-Linear).
        recluster: after fine-tuning, rebuild the tree from pifa-neural of the fine-tuned
            encoder and retrain the cluster head on it (the encoder is kept).
    """

    label_repr: LabelRepr = "pifa-tfidf"
    branching: int = 16
    max_leaf_size: int = 100
    max_iter: int = 20
    seed: int = 0
    recluster: bool = False

    def validate(self) -> None:
        check(self.branching >= 2 and self.branching & (self.branching - 1) == 0,
              f"branching must be a power of two >= 2, got {self.branching}")
        check(self.max_leaf_size >= 1, "max_leaf_size must be >= 1")


def _default_ranker() -> LinearTrainConfig:
    return LinearTrainConfig(negatives="tfn+man")


def _default_predict() -> PredictConfig:
    return PredictConfig(beam_size=20)


@dataclasses.dataclass
class XTransformerConfig(Config):
    """Full configuration of :class:`XTransformer` (``xmc config xtransformer`` prints it).

    Attributes:
        features: TF-IDF settings (phi_tfidf and pifa-tfidf).
        encoder: the Hugging Face encoder and its pooling (phi_neural).
        text_fields: document fields joined into the encoder's input text.
        members: one entry per ensemble member (label representation and tree).
        matcher: how the matcher is trained (``transformer`` fine-tunes the encoder).
        ranker_input: ``tfidf`` or ``tfidf+neural`` ([phi_tfidf || neural_weight * phi_neural / |phi_neural|]).
        neural_weight: scale of the normalised neural block in the ranker input.
        ranker: the linear ranker's training (negatives ``tfn``, ``man``, ``tfn+man``).
        combiner: f(x, l) from the cluster score g and the ranker score h: ``product``
            (post(g) * post(h), as PECOS), ``average`` ((post(g) + post(h)) / 2) or ``ranker`` (h only).
        predict: topk, post_processor and beam_size = the leaf clusters the matcher keeps, whose labels
            the ranker scores (b; one meaning in every model, see :mod:`xmc.models.base`).
        cache_dir: keep encoded embeddings here between runs (None: memory only).
        work_dir: checkpoints of matcher training, to resume an interrupted run (None: none).
        n_threads: threads of the linear parts (0 = all cores).
    """

    features: TfidfConfig = dataclasses.field(default_factory=lambda: TfidfConfig(fields=["title", "text"]))
    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    text_fields: list[str] = dataclasses.field(default_factory=lambda: ["title", "text"])
    members: list[MemberConfig] = dataclasses.field(default_factory=lambda: [MemberConfig()])
    # "auto": the fine-tuned transformer matcher with CUDA, a frozen encoder's on a CPU (xmc.neural.budget)
    matcher: MatcherConfig = dataclasses.field(default_factory=lambda: MatcherConfig(kind="auto"))
    ranker_input: Literal["tfidf", "tfidf+neural"] = "tfidf+neural"
    neural_weight: float = 1.0
    ranker: LinearTrainConfig = dataclasses.field(default_factory=_default_ranker)
    combiner: Literal["product", "average", "ranker"] = "product"
    predict: PredictConfig = dataclasses.field(default_factory=_default_predict)
    cache_dir: str | None = None
    work_dir: str | None = None
    n_threads: int = 0

    def validate(self) -> None:
        check(len(self.members) >= 1, "members needs at least one entry")
        check(self.neural_weight > 0, "neural_weight must be positive")
        check(len(self.text_fields) >= 1, "text_fields must name at least one of title, description, text")
        bad = [f for f in self.text_fields if f not in ("title", "description", "text")]
        check(not bad, f"unknown text field(s) {bad}; choose from title, description, text")
        if self.matcher.kind == "linear":
            check(self.combiner == "product", "a linear matcher ranks by its own tree; combiner must be 'product'")
