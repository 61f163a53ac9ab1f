"""Configuration of the masked-bert model (:class:`MaskedBertConfig` and its parts)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from ...config import Config, check, check_device
from ...neural.configs import EncoderConfig


@dataclasses.dataclass
class MaskedTrainConfig(Config):
    """How the network is trained.

    Attributes:
        epochs: passes over the training products.
        batch_size: products per forward pass; grad_accum: passes per optimiser step.
        learning_rate: AdamW learning rate (paper: 1e-4); weight_decay: AdamW weight decay.
        head_learning_rate: learning rate of the freshly initialised output layers (None = learning_rate,
            as in the paper; a larger one helps short budgets).
        warmup_ratio: share of the steps with linearly increasing learning rate (paper: 10%).
        swa: average the weights of the steps after ``swa_start`` (a share of all steps); the
            average replaces the best checkpoint when it validates at least as well.
        valid_fraction: share of the training products held out for early stopping (when no
            validation data is given).
        eval_every: optimiser steps between validations (0 = once per epoch).
        patience: validations without improvement before stopping.
        select_metric: validation metric of early stopping (ties broken by P@1).
        max_train_docs: train on at most this many products (a compute budget; None = all).
        amp: bf16/fp16 autocast on CUDA (ignored on CPU).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        seed: initialisation, shuffling and validation split.
        freeze_encoder: keep the pre-trained encoder fixed (linear probing): encode every training and
            validation product once (eval mode, no gradients, ``encoder.batch_size`` per batch) and train
            only dropout + output layers over those pooled features, at ``head_learning_rate`` (default
            ``learning_rate``). Used by masked-bert, lightxml and gudn (whose guides then train the label-side
            projection and the shared classifiers over cached label-side states); prediction
            and the saved format are unchanged (the saved encoder is the pre-trained one).
        cache_dir: with ``freeze_encoder``, keep the pooled features here as ``.npy`` files, keyed by the
            encoder's weights and pooling and the products' texts, so that models over the same data
            encode it once (None: encode in every fit).

    ``epochs``, ``head_learning_rate``, ``patience`` and ``freeze_encoder`` (and the encoder's ``max_length``) may be
    ``"auto"``, the models' defaults: resolved by device when training starts (:mod:`xmc.neural.budget`;
    with CUDA the paper's settings, on a CPU a frozen encoder), and saved resolved.
    """

    epochs: float | Literal["auto"] = 3.0
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 1e-4
    head_learning_rate: float | Literal["auto"] | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    swa: bool = True
    swa_start: float = 0.5
    valid_fraction: float = 0.1
    eval_every: int = 0
    patience: int | Literal["auto"] = 2
    select_metric: Literal["micro_f1", "macro_f1", "p@1"] = "micro_f1"
    max_train_docs: int | None = None
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    freeze_encoder: bool | Literal["auto"] = False
    cache_dir: str | None = None

    def validate(self) -> None:
        check_device(self.device)
        check(self.epochs == "auto" or self.epochs > 0, "epochs must be positive")
        check(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        check(self.learning_rate > 0, "learning_rate must be positive")
        check(self.weight_decay >= 0, "weight_decay must be >= 0")
        check(self.head_learning_rate in (None, "auto") or self.head_learning_rate > 0,
              "head_learning_rate must be positive")
        check(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        check(0.0 <= self.swa_start < 1.0, "swa_start must be in [0, 1)")
        check(0.0 < self.valid_fraction < 1.0, "valid_fraction must be in (0, 1)")
        check((self.patience == "auto" or self.patience >= 1) and self.eval_every >= 0,
              "patience must be >= 1 and eval_every >= 0")
        check(self.max_train_docs is None or self.max_train_docs >= 2, "max_train_docs must be >= 2")
        check(self.cache_dir is None or self.freeze_encoder, "cache_dir holds frozen-encoder features; it needs "
              "freeze_encoder: true")


@dataclasses.dataclass
class MaskedPredictConfig(Config):
    """Prediction defaults (each may be overridden per call).

    Attributes:
        topk: labels returned per product (best first).
        threshold: keep labels whose probability reaches this (paper: 0.5); ``"tuned"`` chooses it
            after training on the model's own validation split (the value maximising micro F1 over
            each product's top-k there; see :mod:`xmc.thresholds`) and saves it with the model;
            None = the plain top-k list.
        per_label: with ``"tuned"``, also tune one threshold per label that has at least
            ``min_label_positives`` validation positives (the others keep the global one).
        min_label_positives: validation positives a label needs for its own threshold.
    """

    topk: int = 10
    threshold: float | Literal["tuned"] | None = "tuned"
    per_label: bool = False
    min_label_positives: int = 5

    def validate(self) -> None:
        check(self.topk >= 1, "topk must be >= 1")
        check(self.threshold is None or self.threshold == "tuned" or 0.0 <= self.threshold <= 1.0,
              "threshold must be in [0, 1], \"tuned\" or null")
        check(self.min_label_positives >= 1, "min_label_positives must be >= 1")

    @property
    def fixed_threshold(self) -> float | None:
        """The threshold before (or without) tuning: 0.5 stands in for ``"tuned"``."""
        return 0.5 if self.threshold == "tuned" else self.threshold


def _default_encoder() -> EncoderConfig:
    # The paper's 512 tokens with CUDA; "auto" shortens them on a CPU (xmc.neural.budget).
    return EncoderConfig(pooling="cls-concat", last_layers=5, max_length="auto")


def _default_train() -> MaskedTrainConfig:
    return MaskedTrainConfig(epochs="auto", head_learning_rate="auto", freeze_encoder="auto")


@dataclasses.dataclass
class MaskedBertConfig(Config):
    """Full configuration of :class:`MaskedBert` (``xmc config masked-bert`` prints it).

    Attributes:
        encoder: encoder and pooling (paper: [CLS] of the last 5 layers concatenated, 512 tokens).
        dropout: dropout before the output layer.
        masking: train with the loss over the relevant labels M(x) only.
        heads: ``single`` output layer, or one per ``leaf`` / ``top`` category (a baseline).
        filter_predictions: predict only among the labels relevant to the product's category
            (always on with ``masking``).
        derive_taxonomy: without a taxonomy file, use the labels seen with each category in the
            training data.
        train: the training loop; predict: prediction defaults.
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=_default_encoder)
    dropout: float = 0.1
    masking: bool = True
    heads: Literal["single", "leaf", "top"] = "single"
    filter_predictions: bool = True
    derive_taxonomy: bool = False
    train: MaskedTrainConfig = dataclasses.field(default_factory=_default_train)
    predict: MaskedPredictConfig = dataclasses.field(default_factory=MaskedPredictConfig)

    def validate(self) -> None:
        check(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        check(self.heads in ("single", "leaf", "top"), f"unknown heads {self.heads!r}")
        check(self.filter_predictions or not self.masking,
              "masking trains only the relevant labels' outputs; filter_predictions must stay true")

    @property
    def needs_taxonomy(self) -> bool:
        return self.masking or self.filter_predictions
