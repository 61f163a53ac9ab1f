"""Attribute value extraction as XMC with taxonomy label masking.

Chen, Xia and Shinzato, "Extreme Multi-Label Classification with Label Masking for Product
Attribute Value Extraction" (ECNLP 2023). A product is "[CLS] title [SEP] description"
(NFKC-normalised, the tokenizer's text-pair encoding); the encoder's [CLS] states of the last
l layers are concatenated (``encoder.pooling = "cls-concat"``, l = 5), passed through dropout
and one linear layer with a sigmoid per attribute-value label. With ``masking`` the binary
cross-entropy sums over the labels relevant to the product's category only
(:mod:`xmc.neural.masked_loss`, M(x) from :mod:`xmc.neural.taxonomy`), and predictions are
made among those labels.

The paper's baselines come from the same class: ``masking: false`` (plain BERT; its
predictions are still restricted to the relevant labels when ``filter_predictions``) and
``heads: "leaf" | "top"`` (one output layer per leaf / top-level category over a shared
encoder, mini-batches drawn from one category group at a time).

Training: AdamW with linear warm-up, gradient accumulation, stochastic weight averaging
(``torch.optim.swa_utils.AveragedModel``; per head for multi-head networks, see ``StepAverages``)
and early stopping on a validation split carved
from the training data (or given), never the test data. With ``train.freeze_encoder`` the
encoder keeps its pre-trained weights: every product is encoded once (pooled features,
optionally cached on disk) and only dropout + output layers are trained, by the same loop
(linear probing; a CPU budget that covers whole datasets). The loop is the shared engine
(:mod:`xmc.neural.trainer`); encoding and prediction go through :mod:`xmc.neural.inference`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import unicodedata
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import scipy.sparse as sp

from ..config import Config, check
from ..data.dataset import LabelVocabulary, XMCDataset
from ..data.split import train_valid_split
from ..errors import ConfigError, ModelFormatError
from ..metrics import evaluate, top_k, topk_to_csr
from ..neural.budget import resolve_budget
from ..neural.configs import EncoderConfig
from ..neural.taxonomy import Taxonomy, category_path
from .base import Capabilities, XMCModel

if TYPE_CHECKING:
    from ..neural.cache import EmbeddingCache

logger = logging.getLogger(__name__)


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
        check(self.epochs == "auto" or self.epochs > 0, "epochs must be positive")
        check(self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1")
        check(self.learning_rate > 0, "learning_rate must be positive")
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


Inputs = XMCDataset | Sequence[str]


def normalize_text(text: str | None) -> str:
    """NFKC (full-width characters, ligatures, compatibility forms) and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


def product_pairs(inputs: Inputs) -> tuple[list[str], list[str]]:
    """(first, second) segments of each product: title and description, NFKC-normalised.

    Datasets without titles use their main text as the first segment; without descriptions
    the main text (if any) is the second. Plain strings are titles.
    """
    if isinstance(inputs, XMCDataset):
        first = inputs.titles if inputs.titles is not None else inputs.texts
        if inputs.descriptions is not None:
            second = inputs.descriptions
        elif inputs.titles is not None:
            second = inputs.texts
        else:
            second = [""] * len(inputs)
    else:
        if isinstance(inputs, str):
            raise TypeError("predict takes a list of texts or an XMCDataset")
        first, second = list(inputs), [""] * len(inputs)
    return [normalize_text(t) for t in first], [normalize_text(t) for t in second]


def tokenize_pairs(tokenizer, first: Sequence[str], second: Sequence[str], max_length: int) -> list[dict]:
    """Token ids (and segment ids) of "[CLS] first [SEP] second [SEP]", truncated, unpadded."""
    enc = tokenizer(list(first), list(second), truncation=True, max_length=max_length,
                    return_attention_mask=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(first))]


class MaskedBert(XMCModel):
    """BERT-style encoder + per-label sigmoid outputs, trained with taxonomy label masking.

    Attributes (after ``fit`` or ``load``):
        labels_: label vocabulary (L labels).
        taxonomy_: the :class:`~xmc.neural.taxonomy.Taxonomy` (None when not needed).
        groups_: category group of each output head (``[""]`` for a single head).
        network_: the torch module (encoder, dropout, heads).
        thresholds_: optional (L,) per-label probability thresholds used instead of the scalar one.
        history_: validations, steps, SWA outcome; timings_: seconds per stage;
        mask_stats_: taxonomy fallbacks counted on the training data.
    """

    name = "masked-bert"
    config_class = MaskedBertConfig
    # No label tree, so no beam: every label relevant to a product is scored.
    capabilities = Capabilities(uses_validation=True, uses_taxonomy=True)
    packages = ("torch", "transformers", "safetensors")

    def __init__(self, config: MaskedBertConfig | None = None):
        self.config = config or MaskedBertConfig()
        self.labels_: LabelVocabulary | None = None
        self.taxonomy_: Taxonomy | None = None
        self.groups_: list[str] = [""]
        self.group_sizes_: list[int] = [0]
        self.network_ = None
        self.thresholds_: np.ndarray | None = None
        self.history_: dict = {}
        self.timings_: dict[str, float] = {}
        self.mask_stats_: dict = {}

    # ---- helpers ------------------------------------------------------------------
    def _device(self):
        from ..neural.device import select_device

        return select_device(self.config.train.device)

    def _group_key(self, category: str | None) -> str:
        path = category_path(category)
        return " > ".join(path[:1] if self.config.heads == "top" else path)

    def _group_ids(self, categories: Sequence[str | None] | None, n: int) -> np.ndarray:
        """Head of each product; an unknown group uses the largest group sharing its longest known prefix."""
        if len(self.groups_) == 1:
            return np.zeros(n, dtype=np.int64)
        if categories is None:
            categories = [None] * n
        index = {g: i for i, g in enumerate(self.groups_)}
        sizes = np.asarray(self.group_sizes_)
        keys = np.asarray([self._group_key(c) for c in categories], dtype=object)
        distinct, inverse = np.unique(keys, return_inverse=True)
        resolved = np.empty(len(distinct), dtype=np.int64)
        for d, key in enumerate(distinct):
            if key in index:
                resolved[d] = index[key]
                continue
            path = category_path(key)
            candidates = list(range(len(self.groups_)))  # no category: the largest group
            for depth in range(len(path) - 1, 0, -1):
                prefix = path[:depth]
                sharing = [i for i, g in enumerate(self.groups_) if category_path(g)[:depth] == prefix]
                if sharing:
                    candidates = sharing
                    break
            resolved[d] = max(candidates, key=lambda i: sizes[i])
        return resolved[inverse]

    def _masks(self, data: Inputs, categories: Sequence[str | None] | None, n: int, Y=None):
        if self.taxonomy_ is None:
            return None, None
        if categories is None and isinstance(data, XMCDataset):
            categories = data.categories
        return self.taxonomy_.mask(categories, n=n, Y=Y)

    def _resolve_taxonomy(self, data: XMCDataset, taxonomy) -> Taxonomy | None:
        if isinstance(taxonomy, Taxonomy):
            if taxonomy.labels != data.labels:
                raise ValueError("the taxonomy was built over a different label vocabulary")
            return taxonomy
        if isinstance(taxonomy, dict):
            return Taxonomy(taxonomy, data.labels, source="taxonomy dict")
        if taxonomy is not None:
            return Taxonomy.from_file(taxonomy, data.labels)
        if self.config.derive_taxonomy:
            return Taxonomy.from_data(data)
        if self.config.needs_taxonomy:
            raise ConfigError("masked-bert needs an attribute taxonomy (category -> labels): pass taxonomy= "
                              "(CLI: --taxonomy FILE) or set derive_taxonomy: true; for plain BERT set "
                              "masking: false and filter_predictions: false")
        return None

    # ---- training ------------------------------------------------------------------
    def fit(self, data: XMCDataset, *, valid: XMCDataset | None = None,
            taxonomy: str | os.PathLike | dict | Taxonomy | None = None, progress: bool = True) -> "MaskedBert":
        """Train on ``data``.

        Args:
            data: products (title, description, category) and their labels.
            valid: products for early stopping; default: ``train.valid_fraction`` of ``data``.
            taxonomy: a taxonomy JSON file, a ``{category: [labels]}`` dict or a Taxonomy over
                ``data.labels``; None derives it from ``data`` when ``derive_taxonomy`` is set.
            progress: show progress bars.
        """
        import torch

        from ..neural.cache import EmbeddingCache
        from ..neural.encoder import TextEncoder

        if data.unseen_labels:
            raise ValueError("training data must be read without a fixed vocabulary (it has unseen labels)")
        self.config = resolve_budget(self.config, len(data))
        cfg, tcfg = self.config, self.config.train
        self.labels_ = data.labels
        self.timings_ = {}
        started = time.perf_counter()
        self.taxonomy_ = self._resolve_taxonomy(data, taxonomy)
        if self.taxonomy_ is not None:
            _, stats = self.taxonomy_.mask(data.categories, n=len(data), Y=data.Y)
            self.mask_stats_ = {"train": dataclasses.asdict(stats),
                                "labels_relevant_to_no_category": len(self.taxonomy_.uncovered_labels),
                                "taxonomy_labels_not_in_vocabulary": len(self.taxonomy_.unknown_labels)}
            if stats.positives_outside:
                logger.warning("%d true training labels lie outside their category's taxonomy entry; the masked "
                               "loss never sees them", stats.positives_outside)
        if cfg.heads != "single" and data.categories is None:
            raise ConfigError(f"heads {cfg.heads!r} needs product categories in the training data")

        if valid is None:
            fit_data, valid = train_valid_split(data, tcfg.valid_fraction, seed=tcfg.seed)
        else:
            fit_data = data
            valid = valid.subset(np.arange(len(valid)))
            valid.Y = sp.csr_matrix(valid.Y[:, :len(self.labels_)])
        if tcfg.max_train_docs is not None and len(fit_data) > tcfg.max_train_docs:
            rows = np.random.default_rng(tcfg.seed).choice(len(fit_data), tcfg.max_train_docs, replace=False)
            fit_data = fit_data.subset(np.sort(rows))

        if cfg.heads == "single":
            self.groups_, self.group_sizes_ = [""], [len(fit_data)]
        else:
            keys = [self._group_key(c) for c in fit_data.categories]
            self.groups_, counts = (list(a) for a in np.unique(np.asarray(keys, dtype=object), return_counts=True))
            self.group_sizes_ = [int(c) for c in counts]

        device = self._device()
        torch.manual_seed(tcfg.seed)
        encoder = TextEncoder.from_pretrained(cfg.encoder)
        self._check_encoder(encoder)
        self.network_ = build_network(encoder, len(self.labels_), len(self.groups_), cfg.dropout).to(device)
        train_mask, _ = self._masks(fit_data, None, len(fit_data))
        valid_mask, _ = self._masks(valid, None, len(valid))
        if tcfg.freeze_encoder:
            t = time.perf_counter()
            cache = EmbeddingCache(tcfg.cache_dir)
            train_inputs = self._pooled(cache, product_pairs(fit_data), progress, "encoding training products")
            valid_inputs = self._pooled(cache, product_pairs(valid), progress, "encoding validation products")
            self.timings_["encode"] = time.perf_counter() - t
        else:
            tokenizer, max_length = encoder.tokenizer, cfg.encoder.max_length
            train_inputs = tokenize_pairs(tokenizer, *product_pairs(fit_data), max_length)
            valid_inputs = tokenize_pairs(tokenizer, *product_pairs(valid), max_length)
        self.timings_["prepare"] = time.perf_counter() - started - self.timings_.get("encode", 0.0)

        t = time.perf_counter()
        self.history_ = train_network(
            self.network_, train_inputs, sp.csr_matrix(fit_data.Y, dtype=np.float32),
            train_mask if cfg.masking else None,
            self._group_ids(fit_data.categories, len(fit_data)), tcfg,
            valid_inputs=valid_inputs, valid_Y=sp.csr_matrix(valid.Y, dtype=np.float32),
            valid_filter=valid_mask if cfg.filter_predictions else None,
            valid_groups=self._group_ids(valid.categories, len(valid)),
            threshold=cfg.predict.fixed_threshold if cfg.predict.fixed_threshold is not None else 0.5,
            batch_size=cfg.encoder.batch_size, progress=progress,
        )
        self.timings_["train"] = time.perf_counter() - t
        self.thresholds_ = None
        if cfg.predict.threshold == "tuned":
            self._tune_thresholds(valid_inputs, valid, valid_mask)
        self.history_["train_products"] = len(fit_data)
        self.history_["valid_products"] = len(valid)
        return self

    def _tune_thresholds(self, valid_inputs: Products, valid: XMCDataset, valid_mask) -> None:
        """``thresholds_`` (L,) from the validation split: global micro-F1 optimum, per label where asked."""
        from ..thresholds import tune_global, tune_per_label

        p = self.config.predict
        proba = predict_probabilities(self.network_, valid_inputs, self._group_ids(valid.categories, len(valid)),
                                      valid_mask if self.config.filter_predictions else None,
                                      batch_size=self.config.encoder.batch_size, amp=self.config.train.amp)
        indices, values = top_k(proba, p.topk)
        scores = topk_to_csr(indices, values, proba.shape[1])
        Y = sp.csr_matrix(valid.Y, dtype=np.float32)
        threshold, f1 = tune_global(Y, scores)
        if not np.isfinite(threshold):  # no true label among the candidates: keep the paper's 0.5
            threshold = 0.5
        thresholds, own = (tune_per_label(Y, scores, threshold, min_positives=p.min_label_positives)
                           if p.per_label else (np.full(proba.shape[1], threshold), 0))
        self.thresholds_ = thresholds.astype(np.float32)
        self.history_["thresholds"] = {"global": threshold, "valid_micro_f1": f1, "labels_with_own": own,
                                       "valid_products": len(valid)}
        logger.info("tuned threshold %.4f on %d validation products (micro F1 %.4f); %d labels with their own",
                    threshold, len(valid), f1, own)

    def _pooled(self, cache: EmbeddingCache, pairs: tuple[list[str], list[str]], progress: bool, desc: str) -> np.ndarray:
        """Pooled encoder features (n, dim) of (title, description) pairs, through ``cache``."""
        from ..neural.cache import texts_fingerprint

        network, cfg = self.network_, self.config
        amp = cfg.train.amp and next(network.parameters()).device.type == "cuda"

        def compute() -> np.ndarray:
            tokens = tokenize_pairs(network.encoder.tokenizer, *pairs, cfg.encoder.max_length)
            return pooled_features(network, tokens, batch_size=cfg.encoder.batch_size, amp=cfg.train.amp,
                                   progress=progress, desc=desc)

        # Pairs tokenise differently from single texts (segment ids), and autocast changes the values.
        key = f"text-pairs|amp={amp}|{texts_fingerprint(pairs[0])}|{texts_fingerprint(pairs[1])}"
        return cache.fetch(network.encoder, key, len(pairs[0]), compute)

    def _check_encoder(self, encoder) -> None:
        enc = self.config.encoder
        layers = getattr(encoder.backbone.config, "num_hidden_layers", None)
        if enc.pooling == "cls-concat" and layers is not None and enc.last_layers > layers + 1:
            raise ConfigError(f"encoder.last_layers={enc.last_layers} but the encoder has only {layers} layers "
                              f"(+ embeddings)")

    # ---- prediction ----------------------------------------------------------------
    def predict_proba(self, inputs: Inputs, *, categories: Sequence[str | None] | None = None,
                      progress: bool = False, cache: EmbeddingCache | None = None) -> sp.csr_matrix:
        """Label probabilities: CSR (n, L).

        With ``filter_predictions`` only the labels relevant to each product's category are
        stored (every relevant label, whatever its probability, so P@k ranks all of them);
        otherwise every label.

        Args:
            inputs: a dataset (titles, descriptions, categories) or titles.
            categories: categories of raw titles (None: all labels are relevant).
            cache: an :class:`~xmc.neural.cache.EmbeddingCache`: the encoder's pooled features of
                ``inputs`` come from it (keyed by the encoder's weights and the texts), so models sharing
                a frozen encoder encode a test set once. The probabilities equal those of the direct
                path up to float rounding (other batches, other padding).
        """
        self._check_fitted()
        first, second = product_pairs(inputs)
        n = len(first)
        if categories is not None and len(categories) != n:
            raise ValueError(f"{len(categories)} categories for {n} products")
        cats = categories if categories is not None else (inputs.categories if isinstance(inputs, XMCDataset)
                                                          else None)
        mask, _ = self._masks(inputs, cats, n) if self.config.filter_predictions else (None, None)
        if cache is not None:
            products = self._pooled(cache, (first, second), progress, "encoding")
        else:
            products = tokenize_pairs(self.network_.encoder.tokenizer, first, second, self.config.encoder.max_length)
        return predict_probabilities(self.network_, products, self._group_ids(cats, n), mask,
                                     batch_size=self.config.encoder.batch_size, amp=self.config.train.amp,
                                     progress=progress)

    def predict(self, inputs: Inputs, *, topk: int | None = None, threshold: float | np.ndarray | None = None,
                categories: Sequence[str | None] | None = None, progress: bool = False) -> sp.csr_matrix:
        """Predicted labels: CSR (n, L) of the probabilities of each product's top-k labels that reach the threshold.

        Args:
            inputs / categories: as :meth:`predict_proba`.
            topk: labels per product (default ``config.predict.topk``).
            threshold: a probability or an (L,) array of per-label thresholds; default
                ``thresholds_`` (tuned on the validation split) when set, else ``config.predict.threshold``
                (None: no threshold; ``"tuned"`` on a model saved without thresholds: 0.5).
        """
        topk, _, threshold = self.resolve_predict(topk, None, threshold)
        proba = self.predict_proba(inputs, categories=categories, progress=progress)
        indices, values = top_k(proba, topk)
        scores = topk_to_csr(indices, values, proba.shape[1])
        if threshold is not None:
            thr = np.asarray(threshold, dtype=np.float64)
            if thr.ndim and thr.shape != (proba.shape[1],):
                raise ValueError(f"per-label thresholds need shape ({proba.shape[1]},), got {thr.shape}")
            keep = scores.data >= (thr[scores.indices] if thr.ndim else thr)
            scores.data = np.where(keep, scores.data, 0).astype(scores.data.dtype)
            scores.eliminate_zeros()
        return scores

    def evaluate(self, data: XMCDataset, *, threshold: float | np.ndarray | None = None,
                 ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
        """P@k over the relevant labels and micro/macro P/R/F1 at the threshold (default 0.5)."""
        threshold = self.resolve_predict(threshold=threshold).threshold
        thr = 0.5 if threshold is None else threshold
        return evaluate(data.Y, self.predict_proba(data), ks=ks, threshold=thr)

    # ---- persistence ---------------------------------------------------------------
    def _is_fitted(self) -> bool:
        return self.network_ is not None

    def _default_threshold(self):
        """The thresholds tuned on the validation split, else ``config.predict``'s fixed one."""
        return self.thresholds_ if self.thresholds_ is not None else self.config.predict.fixed_threshold

    def _manifest_extra(self) -> dict:
        return {"groups": self.groups_, "group_sizes": self.group_sizes_, "timings": self.timings_,
                "mask_stats": self.mask_stats_, "has_taxonomy": self.taxonomy_ is not None}

    def _save_parts(self, tmp: str) -> None:
        """Taxonomy, encoder (safetensors + tokenizer), heads (safetensors), thresholds, history."""
        from safetensors.torch import save_file

        self.network_.encoder.save(os.path.join(tmp, "encoder"))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.network_.heads.state_dict().items()},
                  os.path.join(tmp, "heads.safetensors"))
        if self.taxonomy_ is not None:
            self.taxonomy_.save(os.path.join(tmp, "taxonomy.json"))
        if self.thresholds_ is not None:
            np.save(os.path.join(tmp, "thresholds.npy"), np.asarray(self.thresholds_, dtype=np.float32))
        with open(os.path.join(tmp, "history.json"), "w", encoding="utf-8") as fh:
            json.dump(self.history_, fh, indent=1, default=float)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "MaskedBert":
        """Load a saved model (``device`` overrides the config's, e.g. ``cpu``); no pickle."""
        from safetensors.torch import load_file

        from ..neural.encoder import TextEncoder

        manifest, config = cls._read(directory)
        if device is not None:
            config = dataclasses.replace(config, train=dataclasses.replace(config.train, device=device))
        model = cls(config)
        model.labels_ = cls._labels(directory)
        model.groups_, model.group_sizes_ = list(manifest["groups"]), list(manifest["group_sizes"])
        model.timings_, model.mask_stats_ = manifest.get("timings", {}), manifest.get("mask_stats", {})
        tax_path = os.path.join(directory, "taxonomy.json")
        if manifest.get("has_taxonomy"):
            model.taxonomy_ = Taxonomy.from_file(tax_path, model.labels_)
        thr_path = os.path.join(directory, "thresholds.npy")
        if os.path.exists(thr_path):
            model.thresholds_ = np.load(thr_path, allow_pickle=False)
        encoder = TextEncoder.from_pretrained(config.encoder, os.path.join(directory, "encoder"))
        network = build_network(encoder, len(model.labels_), len(model.groups_), config.dropout)
        try:
            network.heads.load_state_dict(load_file(os.path.join(directory, "heads.safetensors")))
        except (OSError, RuntimeError) as exc:
            raise ModelFormatError(f"{os.fspath(directory)}/heads.safetensors: {exc}") from exc
        model.network_ = network.to(model._device()).eval()
        hist_path = os.path.join(directory, "history.json")
        if os.path.exists(hist_path):
            with open(hist_path, encoding="utf-8") as fh:
                model.history_ = json.load(fh)
        return model


# ---- the network and its training loop (torch imported here only) ----------------------------


def build_network(encoder, n_labels: int, n_heads: int, dropout: float):
    """encoder -> dropout -> one linear layer per head: a ``ModuleDict`` with those three entries."""
    from torch import nn

    heads = nn.ModuleList()
    for _ in range(n_heads):
        layer = nn.Linear(encoder.dim, n_labels)
        nn.init.normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)
        heads.append(layer)
    return nn.ModuleDict({"encoder": encoder, "dropout": nn.Dropout(dropout), "heads": heads})


# Products enter the network as token ids (one dict per product: the encoder runs) or as pooled
# encoder features, (n, dim) float32 (a frozen encoder: only dropout and the output layer run).
Products = Sequence[dict] | np.ndarray


def head_logits(network, pooled, head: int = 0):
    """(B, L) label scores of pooled encoder outputs (B, dim) through output head ``head``."""
    return network.heads[head](network.dropout(pooled))


def network_logits(network, batch: dict, head: int = 0):
    """(B, L) label scores of a collated batch through output head ``head``."""
    return head_logits(network, network.encoder(**batch), head)


def _collate(network, tokens: Sequence[dict], rows, device) -> dict:
    batch = network.encoder.tokenizer.pad([tokens[i] for i in rows], padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def batch_logits(network, products: Products, rows: np.ndarray, head: int, device):
    """(B, L) label scores of ``products[rows]`` through output head ``head``."""
    import torch

    if isinstance(products, np.ndarray):
        return head_logits(network, torch.from_numpy(products[rows]).to(device), head)
    return network_logits(network, _collate(network, products, rows, device), head)


def group_batches(groups: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled mini-batches of row ids, each drawn from one group (one head) only."""
    batches = []
    for g in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == g))
        batches.extend(rows[s:s + batch_size] for s in range(0, len(rows), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pooled_features(network, tokens: Sequence[dict], *, batch_size: int = 64, amp: bool = True,
                    progress: bool = False, desc: str = "encoding") -> np.ndarray:
    """The encoder's pooled outputs (n, dim) float32 of tokenised products, in input order.

    The encoder runs in eval mode (no dropout) without gradients: the features a frozen encoder
    feeds to the output layers, equal to what :func:`predict_probabilities` computes on the way.
    """
    from ..neural.inference import encode_tokens

    def collate(items):
        return network.encoder.tokenizer.pad(items, padding=True, return_tensors="pt")

    return encode_tokens(network, tokens, network.encoder, collate, batch_size=batch_size, dim=network.encoder.dim,
                         amp=amp, progress=progress, desc=desc)


def predict_probabilities(network, products: Products, groups: np.ndarray, mask: sp.csr_matrix | None, *,
                          batch_size: int = 64, amp: bool = True, progress: bool = False) -> sp.csr_matrix:
    """Sigmoid probabilities, CSR (n, L): at the mask's entries only (every one stored), else everywhere.

    ``products``: token ids or pooled features (see ``Products``); batched per head and by token length.
    """
    import torch

    from ..neural.inference import for_each_batch, sorted_batches, token_lengths

    n = len(products)
    L = network.heads[0].out_features
    device = next(network.parameters()).device
    rows_out, cols_out, vals_out = [], [], []

    def run(g, rows):
        probs = torch.sigmoid(batch_logits(network, products, rows, g, device).float()).cpu().numpy()
        if mask is None:
            r, c = np.nonzero(np.ones_like(probs, dtype=bool))
        else:
            sub = sp.csr_matrix(mask[rows])
            r, c = np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices
        rows_out.append(rows[r])
        cols_out.append(c)
        # Every relevant label stays stored, even one whose probability underflows to 0.
        vals_out.append(np.maximum(probs[r, c], np.float32(1e-30)))

    lengths = np.zeros(n, dtype=np.int64) if isinstance(products, np.ndarray) else token_lengths(products)
    for_each_batch(network, sorted_batches(lengths, batch_size, groups), run, device=device, amp=amp,
                   progress=progress, desc="predicting")
    if not rows_out:
        return sp.csr_matrix((n, L), dtype=np.float32)
    out = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                        shape=(n, L), dtype=np.float32)
    out.sort_indices()
    return out


class StepAverages:
    """Stochastic weight averaging of a (multi-head) network, one ``AveragedModel`` per part a step changes.

    A step changes the shared encoder (unless frozen) and only the heads of its batches; averaging
    every head at every step would cost heads x labels x dim per step, most of training with the
    171 leaf heads of ave-implicitave. So the encoder is averaged over every step and each head over
    the steps that changed it. With a single head this is ``AveragedModel`` of the whole network.
    """

    def __init__(self, network, frozen: bool):
        from torch.optim.swa_utils import AveragedModel

        self.encoder = None if frozen else AveragedModel(network.encoder)
        self.heads = [AveragedModel(head) for head in network.heads]
        self.n_averaged = 0  # steps averaged

    @staticmethod
    def changed_heads(network) -> list[int]:
        """Heads with a gradient, i.e. those the coming optimiser step changes (AdamW skips the others)."""
        return [h for h, head in enumerate(network.heads) if head.weight.grad is not None]

    def update(self, network, heads: Sequence[int]) -> None:
        self.n_averaged += 1
        if self.encoder is not None:
            self.encoder.update_parameters(network.encoder)
        for h in heads:
            self.heads[h].update_parameters(network.heads[h])

    def load_into(self, network) -> None:
        """Replace the network's weights by the averages (a part never averaged keeps its weights)."""
        if self.encoder is not None and self.encoder.n_averaged.item() > 0:
            network.encoder.load_state_dict(self.encoder.module.state_dict())
        for head, average in zip(network.heads, self.heads):
            if average.n_averaged.item() > 0:
                head.load_state_dict(average.module.state_dict())


class _NetworkAverages:
    """:class:`StepAverages` behind the training engine's averager hooks."""

    def __init__(self, network, frozen: bool):
        self.network, self.averages = network, StepAverages(network, frozen)

    @property
    def n_averaged(self) -> int:
        return self.averages.n_averaged

    def update(self) -> None:  # called before the gradients are cleared
        self.averages.update(self.network, StepAverages.changed_heads(self.network))

    def load_into(self) -> None:
        self.averages.load_into(self.network)


def _validate(network, products, Y, mask, groups, threshold, metric, batch_size, amp) -> tuple[float, float]:
    probs = predict_probabilities(network, products, groups, mask, batch_size=batch_size, amp=amp)
    report = evaluate(Y, probs, ks=(1,), threshold=threshold)
    return float(report["P@1"] if metric == "p@1" else report[metric]), float(report["P@1"])


def train_network(network, products: Products, Y: sp.csr_matrix, mask: sp.csr_matrix | None,
                  groups: np.ndarray, config: MaskedTrainConfig, *, valid_inputs: Products,
                  valid_Y: sp.csr_matrix, valid_filter: sp.csr_matrix | None, valid_groups: np.ndarray,
                  threshold: float = 0.5, batch_size: int = 64, progress: bool = True) -> dict:
    """Train ``network`` in place on (products, Y), with the masked BCE when ``mask`` (n, L) is given.

    Token ids fine-tune the encoder and the output layers; pooled features (n, dim) (and the same
    kind for ``valid_inputs``) train the output layers only: the encoder is never run or updated.
    Returns the history: validations, steps, the kept state (best checkpoint or SWA average),
    throughput.
    """
    from ..neural.masked_loss import dense_rows, masked_bce_with_logits
    from ..neural.trainer import EarlyStopping, Trainer

    frozen = isinstance(products, np.ndarray)
    if frozen != isinstance(valid_inputs, np.ndarray):
        raise TypeError("products and valid_inputs must both be token ids or both pooled features")
    # Checkpoints, SWA and clipping cover what is trained: a frozen encoder would only cost copies.
    trained = network.heads if frozen else network
    head_lr = config.head_learning_rate or config.learning_rate
    param_groups = [{"params": network.heads.parameters(), "lr": head_lr}]
    if not frozen:
        param_groups.insert(0, {"params": network.encoder.parameters(), "lr": config.learning_rate})
    device = next(network.parameters()).device
    rng = np.random.default_rng(config.seed)
    n_batches = sum(math.ceil(int(c) / config.batch_size) for c in np.unique(groups, return_counts=True)[1])
    steps_per_epoch = max(1, math.ceil(n_batches / config.grad_accum))
    args = (valid_Y, valid_filter, valid_groups, threshold, config.select_metric, batch_size, config.amp)

    def evaluate():
        score = _validate(network, valid_inputs, *args)
        logger.info("step %d: validation %s %.4f (P@1 %.4f)", trainer.history.steps, config.select_metric, *score)
        return score, {config.select_metric: score[0], "P@1": score[1]}

    def step(rows):
        logits = batch_logits(network, products, rows, int(groups[rows[0]]), device)
        return masked_bce_with_logits(logits.float(), dense_rows(Y, rows, device),
                                      None if mask is None else dense_rows(mask, rows, device))

    trainer = Trainer(
        trained, param_groups, total_steps=max(1, int(round(steps_per_epoch * config.epochs))),
        grad_accum=config.grad_accum, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
        amp=config.amp, device=device, swa=_NetworkAverages(network, frozen) if config.swa else None,
        swa_start=config.swa_start,
        early_stopping=EarlyStopping(evaluate, config.eval_every or steps_per_epoch, config.patience),
        rng=rng, train_mode=network.train, progress=progress,
        desc="training output layers" if frozen else "fine-tuning")
    h = trainer.fit(lambda: group_batches(groups, config.batch_size, rng), step)
    network.eval()
    logger.info("kept %s", h.kept)
    history = {"steps": h.steps, "total_steps": h.total_steps, "evaluations": h.evaluations,
               "best_step": h.best_step, "kept": h.kept, "frozen_encoder": frozen, "seconds": h.seconds,
               "samples_per_second": h.samples_per_second}
    if h.swa is not None:
        history["swa"] = h.swa
    return history
