"""The masked-bert model: products as text pairs, taxonomy groups and masks, fit / predict / save / load."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import unicodedata
from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.sparse as sp

from ...data.dataset import LabelVocabulary, XMCDataset
from ...errors import ConfigError, DataFormatError, ModelFormatError
from ...metrics import evaluate, top_k, topk_to_csr
from ...neural.budget import resolve_budget
from ...neural.taxonomy import Taxonomy, category_path
from ..base import Capabilities, XMCModel, save_tensors, text_list, training_split
from .config import MaskedBertConfig
from .network import Products, build_network, pooled_features, predict_probabilities, train_network

if TYPE_CHECKING:
    from ...neural.cache import EmbeddingCache

logger = logging.getLogger(__name__)

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
        inputs.check_has_text()
        first = inputs.titles if inputs.titles is not None else inputs.texts
        if inputs.descriptions is not None:
            second = inputs.descriptions
        elif inputs.titles is not None:
            second = inputs.texts
        else:
            second = [""] * len(inputs)
    else:
        first = text_list(inputs)
        second = [""] * len(first)
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
    device_config = "train"

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
        from ...neural.device import select_device

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

        from ...neural.cache import EmbeddingCache
        from ...neural.encoder import TextEncoder

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
            if stats.n and stats.exact + stats.parent_fallback == 0:  # every mask is "all labels": no masking
                raise DataFormatError(data.source, None, "a taxonomy is given, but no document has a category it "
                                      "knows (the field 'category'); the masked loss would mask nothing")
            if stats.positives_outside:
                logger.warning("%d true training labels lie outside their category's taxonomy entry; the masked "
                               "loss never sees them", stats.positives_outside)
        if cfg.heads != "single" and data.categories is None:
            raise ConfigError(f"heads {cfg.heads!r} needs product categories in the training data")

        fit_data, valid = training_split(data, valid, tcfg)

        if cfg.heads == "single":
            self.groups_, self.group_sizes_ = [""], [len(fit_data)]
        else:
            keys = [self._group_key(c) for c in fit_data.categories]
            self.groups_, counts = (list(a) for a in np.unique(np.asarray(keys, dtype=object), return_counts=True))
            self.group_sizes_ = [int(c) for c in counts]

        device = self._device()
        torch.manual_seed(tcfg.seed)
        encoder = TextEncoder.from_pretrained(cfg.encoder)  # refuses a last_layers the encoder lacks
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
        from ...thresholds import tune_global, tune_per_label

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
        from ...neural.cache import texts_fingerprint

        network, cfg = self.network_, self.config
        amp = cfg.train.amp and next(network.parameters()).device.type == "cuda"

        def compute() -> np.ndarray:
            tokens = tokenize_pairs(network.encoder.tokenizer, *pairs, cfg.encoder.max_length)
            return pooled_features(network, tokens, batch_size=cfg.encoder.batch_size, amp=cfg.train.amp,
                                   progress=progress, desc=desc)

        # Pairs tokenise differently from single texts (segment ids), and autocast changes the values.
        key = f"text-pairs|amp={amp}|{texts_fingerprint(pairs[0])}|{texts_fingerprint(pairs[1])}"
        return cache.fetch(network.encoder, key, len(pairs[0]), compute)

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
                "mask_stats": self.mask_stats_, "has_taxonomy": self.taxonomy_ is not None,
                "has_thresholds": self.thresholds_ is not None}

    def _save_parts(self, tmp: str) -> None:
        """Taxonomy, encoder (safetensors + tokenizer), heads (safetensors), thresholds, history."""
        self.network_.encoder.save(os.path.join(tmp, "encoder"))
        save_tensors(self.network_.heads.state_dict(), os.path.join(tmp, "heads.safetensors"))
        if self.taxonomy_ is not None:
            self.taxonomy_.save(os.path.join(tmp, "taxonomy.json"))
        if self.thresholds_ is not None:
            np.save(os.path.join(tmp, "thresholds.npy"), np.asarray(self.thresholds_, dtype=np.float32))
        self._write_json(tmp, "history.json", self.history_)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "MaskedBert":
        """Load a saved model (``device`` overrides the config's, e.g. ``cpu``); no pickle."""
        from safetensors.torch import load_file

        from ...neural.encoder import TextEncoder

        manifest, config = cls._read(directory, device)
        model = cls(config)
        model.labels_ = cls._labels(directory)
        model.groups_, model.group_sizes_ = list(manifest["groups"]), list(manifest["group_sizes"])
        model.timings_, model.mask_stats_ = manifest.get("timings", {}), manifest.get("mask_stats", {})
        tax_path = os.path.join(directory, "taxonomy.json")
        if manifest.get("has_taxonomy"):
            model.taxonomy_ = Taxonomy.from_file(tax_path, model.labels_)
        thr_path = os.path.join(directory, "thresholds.npy")
        # Directories of earlier versions do not say: then thresholds.npy is read when present.
        if manifest.get("has_thresholds", os.path.exists(thr_path)):
            if not os.path.exists(thr_path):  # the tuned thresholds would silently become the fixed one
                raise ModelFormatError(f"{os.fspath(directory)}: thresholds.npy is missing (the model directory is "
                                       "incomplete)")
            thresholds = np.load(thr_path, allow_pickle=False)
            if thresholds.shape != (len(model.labels_),) or not np.isfinite(thresholds).all():
                raise ModelFormatError(f"{thr_path}: expected {len(model.labels_)} finite thresholds, one per label")
            model.thresholds_ = thresholds
        encoder = TextEncoder.from_pretrained(config.encoder, os.path.join(directory, "encoder"))
        network = build_network(encoder, len(model.labels_), len(model.groups_), config.dropout)
        try:
            network.heads.load_state_dict(load_file(os.path.join(directory, "heads.safetensors")))
        except (OSError, RuntimeError) as exc:
            raise ModelFormatError(f"{os.fspath(directory)}/heads.safetensors: {exc}") from exc
        model.network_ = network.to(model._device()).eval()
        model.history_ = cls._read_json(directory, "history.json", {})
        return model
