"""The GUDN and LightXML models: texts, label tree, guides, fit / predict / encode / save / load."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ...data.dataset import LabelVocabulary, XMCDataset
from ...errors import ConfigError, ModelFormatError
from ...features.tfidf import TfidfFeaturizer
from ...indexing.kmeans import hierarchical_kmeans
from ...indexing.label_repr import pifa
from ...indexing.tree import ClusterChain
from ...metrics import evaluate
from ...neural.budget import resolve_budget
from ...sparse_rows import drop_below
from ..base import Capabilities, XMCModel, save_tensors, text_list, training_split
from .config import GUDNConfig, LightXMLConfig
from .network import _frozen_features, predict_scores, train_gudn

logger = logging.getLogger(__name__)

Inputs = XMCDataset | Sequence[str]


def _texts(inputs: Inputs, fields: Sequence[str]) -> list[str]:
    if isinstance(inputs, XMCDataset):
        return inputs.check_has_text().input_texts(fields)
    return text_list(inputs)


def joined_label_texts(Y: sp.csr_matrix, label_texts: Sequence[str], separator: str) -> list[str]:
    """The label-side input of each document: its labels' texts (in label-id order) joined, length n."""
    Y = sp.csr_matrix(Y)
    return [separator.join(label_texts[j] for j in Y.indices[Y.indptr[i]:Y.indptr[i + 1]]) for i in range(Y.shape[0])]


class GUDN(XMCModel):
    """Guide network + LightXML classifier.

    Attributes (after ``fit`` or ``load``):
        labels_: label vocabulary (L labels).
        chain_: the label tree; its leaves (``chain_[len(chain_) - 1]``, (L, K)) are the meta-classifier's clusters.
        network_: the torch :class:`~xmc.neural.guide.GuideNetwork`.
        label_layers_: layers E_l actually concatenates (after capping).
        history_: validations, steps, kept state; timings_: seconds per stage.
    """

    name = "gudn"
    config_class = GUDNConfig
    # Label texts feed the guide with ``label_input: text``; XDA documents fine-tune it (--augmented).
    capabilities = Capabilities(uses_validation=True, uses_label_text=True, supports_beam=True,
                                supports_augmented=True)
    packages = ("torch", "transformers", "safetensors")
    device_config = "train"

    def __init__(self, config: GUDNConfig | None = None):
        self.config = config or self.config_class()
        if not isinstance(self.config, self.config_class):
            self.config = self.config_class.from_dict(self.config.to_dict())
        self.labels_: LabelVocabulary | None = None
        self.chain_: ClusterChain | None = None
        self.network_ = None
        self.label_layers_: int = self.config.label_last_layers
        self.history_: dict = {}
        self.timings_: dict[str, float] = {}

    def _device(self):
        from ...neural.device import select_device

        return select_device(self.config.train.device)

    def _leaves(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.chain_[len(self.chain_) - 1], dtype=np.float32)

    def _build_network(self, encoder):
        from ...neural.guide import GuideNetwork

        cfg = self.config
        return GuideNetwork(encoder, len(self.labels_), self._leaves().shape[1], hidden_dim=cfg.hidden_dim,
                            dropout=cfg.dropout, label_path=cfg.label_path, label_input=cfg.label_input,
                            label_layers=self.label_layers_)

    # ---- training ----------------------------------------------------------------------------
    def fit(self, data: XMCDataset, *, valid: XMCDataset | None = None, progress: bool = True) -> "GUDN":
        """Train on ``data`` (texts, labels and, for ``label_input: text`` with a guide, ``label_texts``).

        Args:
            data: training documents; read without a fixed vocabulary.
            valid: documents for early stopping; default: ``train.valid_fraction`` of ``data``.
            progress: show progress bars.
        """
        import torch

        from ...neural.encoder import TextEncoder

        if data.unseen_labels:
            raise ValueError("training data must be read without a fixed vocabulary (it has unseen labels)")
        self.config = resolve_budget(self.config, len(data))
        cfg, tcfg = self.config, self.config.train
        if data.unseen_labels:
            raise ValueError("training data must be read without a fixed vocabulary (it has unseen labels)")
        if cfg.label_path and cfg.label_input == "text" and data.label_texts is None:
            raise ConfigError(f"{self.name} with a guide on label text needs label texts: pass --label-text FILE "
                              "(or set data.label_texts), or use label_input: onehot")
        self.labels_, self.timings_ = data.labels, {}
        started = time.perf_counter()
        fit_data, valid = training_split(data, valid, tcfg)
        Y = sp.csr_matrix(fit_data.Y, dtype=np.float32)

        texts = fit_data.input_texts(cfg.text_fields)
        X = TfidfFeaturizer(cfg.tfidf).fit_transform(texts, progress=progress)
        self.chain_ = hierarchical_kmeans(pifa(X, Y), max_leaf_size=cfg.max_leaf_size, seed=cfg.kmeans_seed,
                                          n_threads=1)
        self.timings_["index"] = time.perf_counter() - started

        device = self._device()
        torch.manual_seed(tcfg.seed)
        encoder = TextEncoder.from_pretrained(cfg.encoder)
        available = getattr(encoder.backbone.config, "num_hidden_layers", cfg.label_last_layers) + 1
        self.label_layers_ = min(cfg.label_last_layers, available)
        if cfg.label_path and self.label_layers_ < cfg.label_last_layers:
            logger.warning("label_last_layers=%d but the encoder has %d hidden states; E_l uses %d",
                           cfg.label_last_layers, available, self.label_layers_)
        self.network_ = self._build_network(encoder).to(device)
        label_side = None
        if cfg.label_path and cfg.label_input == "text":
            label_strings = joined_label_texts(Y, data.label_texts, cfg.label_separator)
            label_side = encoder.tokenizer(label_strings, truncation=True, max_length=cfg.label_max_length,
                                           return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        t = time.perf_counter()
        self.history_ = train_gudn(self, encoder.pretokenize(texts), Y, label_side,
                                   valid_tokens=encoder.pretokenize(valid.input_texts(cfg.text_fields)),
                                   valid_Y=sp.csr_matrix(valid.Y, dtype=np.float32), progress=progress)
        self.timings_["train"] = time.perf_counter() - t
        self.history_.update(train_docs=len(fit_data), valid_docs=len(valid), label_layers=self.label_layers_)
        return self

    # ---- prediction --------------------------------------------------------------------------
    def predict(self, inputs: Inputs, *, topk: int | None = None, beam_size: int | None = None,
                threshold: float | None = None, cache=None, progress: bool = False) -> sp.csr_matrix:
        """Scores of each document's top-k labels: CSR (n, L), sigmoid(meta) * sigmoid(rank) in (0, 1).

        Needs no labels: the text path only.

        Args:
            inputs: a dataset or raw texts.
            topk: labels per document (default ``config.predict.topk``).
            beam_size: clusters kept, whose labels are scored (default ``config.predict.beam_size``).
            threshold: drop labels scoring below this (default ``config.predict.threshold``).
            cache: an :class:`xmc.neural.cache.EmbeddingCache`: the texts' features E_t come from
                :meth:`encode` through it, so models that share a frozen encoder (heads fine-tuned
                from one trained model) encode a test set once.
        """
        self._check_fitted()
        topk, beam_size, threshold = self.resolve_predict(topk, beam_size, threshold)
        texts = _texts(inputs, self.config.text_fields)
        kwargs = dict(topk=topk, beam_size=beam_size, batch_size=self.config.encoder.batch_size,
                      amp=self.config.train.amp, progress=progress)
        if cache is not None:
            import torch

            features = torch.from_numpy(self.encode(texts, cache=cache, progress=progress))
            scores = predict_scores(self.network_, None, self._leaves(), features=features, **kwargs)
        else:
            scores = predict_scores(self.network_, self.network_.encoder.pretokenize(texts), self._leaves(), **kwargs)
        if threshold is not None:
            scores = drop_below(scores, threshold)
        return scores

    def encode(self, inputs: Inputs, *, cache=None, progress: bool = False) -> np.ndarray:
        """Text features E_t, (n, dim) float32, of the current encoder in eval mode (no dropout).

        With an :class:`xmc.neural.cache.EmbeddingCache` they are memoised, keyed by the encoder's
        weights, pooling and max length and by the texts (a changed encoder never hits).
        """
        self._check_fitted()
        network = self.network_
        texts = _texts(inputs, self.config.text_fields)
        device = next(network.parameters()).device

        def compute() -> np.ndarray:
            if not texts:  # tokenizers reject an empty batch
                return np.zeros((0, network.encoder.dim), dtype=np.float32)
            was_training = network.training
            try:
                return _frozen_features(network, network.encoder.pretokenize(texts), self.config.encoder.batch_size,
                                        device, self.config.train.amp, progress).cpu().numpy()
            finally:
                network.train(was_training)

        if cache is None:
            return compute()
        from ...neural.cache import texts_fingerprint

        return cache.fetch(network.encoder, f"text-features|{texts_fingerprint(texts)}", len(texts), compute)

    def evaluate(self, data: XMCDataset, *, ks: Sequence[int] = (1, 3, 5), propensities=None) -> dict[str, float]:
        """Ranking metrics of :meth:`predict` on ``data``."""
        return evaluate(data.Y, self.predict(data, topk=max(ks)), ks=ks, propensities=propensities)

    # ---- persistence -------------------------------------------------------------------------
    def _is_fitted(self) -> bool:
        return self.network_ is not None

    def _manifest_extra(self) -> dict:
        return {"label_layers": self.label_layers_, "timings": self.timings_}

    def _save_parts(self, tmp: str) -> None:
        """Encoder (safetensors + tokenizer), heads (safetensors), label tree, history."""
        self.network_.encoder.save(os.path.join(tmp, "encoder"))
        save_tensors({k: v for k, v in self.network_.state_dict().items() if not k.startswith("encoder.")},
                     os.path.join(tmp, "heads.safetensors"))
        self.chain_.save(os.path.join(tmp, "tree"))
        self._write_json(tmp, "history.json", self.history_)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "GUDN":
        """Load a saved model (``device`` overrides the config's); no pickle."""
        from safetensors.torch import load_file

        from ...neural.encoder import TextEncoder

        manifest, config = cls._read(directory, device)
        model = cls(config)
        model.label_layers_ = int(manifest.get("label_layers", config.label_last_layers))
        model.timings_ = manifest.get("timings", {})
        model.chain_ = ClusterChain.load(os.path.join(directory, "tree"))
        model.labels_ = cls._labels(directory, model.chain_.n_labels)
        encoder = TextEncoder.from_pretrained(config.encoder, os.path.join(directory, "encoder"))
        network = model._build_network(encoder)
        try:
            missing, unexpected = network.load_state_dict(load_file(os.path.join(directory, "heads.safetensors")),
                                                          strict=False)
        except (OSError, RuntimeError) as exc:
            raise ModelFormatError(f"{os.fspath(directory)}/heads.safetensors: {exc}") from exc
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ModelFormatError(f"{os.fspath(directory)}/heads.safetensors: missing {missing}, unexpected {unexpected}")
        model.network_ = network.to(model._device()).eval()
        model.history_ = cls._read_json(directory, "history.json", {})
        return model


class LightXML(GUDN):
    """The LightXML-style baseline: GUDN's classifier and dynamic negative sampling, no guides."""

    name = "lightxml"
    config_class = LightXMLConfig
    capabilities = dataclasses.replace(GUDN.capabilities, uses_label_text=False)  # no guide reads label texts
