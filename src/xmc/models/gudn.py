"""GUDN (a guide network over raw label text) and its LightXML-style baseline.

Wang et al., "GUDN: A novel guide network for extreme multi-label text classification".
One encoder reads the document text (E_t) and, during training only, the document's label
texts joined as one input (E_l, [CLS] states of the last ``label_last_layers`` layers). The
feature guide pulls E_t towards E_l (MSE), the link guide asks E_l to predict the labels
(BCE); the classifier is LightXML's: a meta-classifier over label clusters from xmc's
indexer (PIFA over TF-IDF, balanced hierarchical k-means leaves), candidates from the top-b
clusters, and a ranking classifier (one embedding per label) over the candidates. The loss
terms and the network live in :mod:`xmc.neural.guide`.

``LightXML`` is the same model with both guides off (the label path is never built).
Prediction reads the text alone: top-b clusters -> their labels -> sigmoid(meta) *
sigmoid(rank) -> top-k.

Training reuses the label-masking model's training settings (``MaskedTrainConfig``: AdamW,
linear warm-up, SWA, early stopping on a validation split, never on test data), through the
shared engine (:mod:`xmc.neural.trainer`); encoding and prediction go through
:mod:`xmc.neural.inference`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp

from ..config import Config, check
from ..data.dataset import LabelVocabulary, XMCDataset
from ..data.split import train_valid_split
from ..errors import ConfigError, ModelFormatError
from ..features.tfidf import TfidfConfig, TfidfFeaturizer
from ..indexing.kmeans import hierarchical_kmeans
from ..indexing.label_repr import pifa
from ..indexing.tree import ClusterChain
from ..metrics import evaluate, top_k, topk_to_csr
from ..neural.budget import resolve_budget
from ..neural.configs import EncoderConfig
from ..ranker.negatives import binarize
from .masked_bert import MaskedTrainConfig
from .base import Capabilities, XMCModel

logger = logging.getLogger(__name__)


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


Inputs = XMCDataset | Sequence[str]


def _texts(inputs: Inputs, fields: Sequence[str]) -> list[str]:
    if isinstance(inputs, XMCDataset):
        return inputs.input_texts(fields)
    if isinstance(inputs, str):
        raise TypeError("predict takes a list of texts or an XMCDataset")
    return list(inputs)


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
        from ..neural.device import select_device

        return select_device(self.config.train.device)

    def _leaves(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.chain_[len(self.chain_) - 1], dtype=np.float32)

    def _build_network(self, encoder):
        from ..neural.guide import GuideNetwork

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

        from ..neural.encoder import TextEncoder

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
        if valid is None:
            fit_data, valid = train_valid_split(data, tcfg.valid_fraction, seed=tcfg.seed)
        else:
            fit_data = data
            valid = valid.subset(np.arange(len(valid)))
            valid.Y = sp.csr_matrix(valid.Y[:, :len(self.labels_)])
        if tcfg.max_train_docs is not None and len(fit_data) > tcfg.max_train_docs:
            rows = np.random.default_rng(tcfg.seed).choice(len(fit_data), tcfg.max_train_docs, replace=False)
            fit_data = fit_data.subset(np.sort(rows))
        Y = sp.csr_matrix(fit_data.Y, dtype=np.float32)

        texts = fit_data.input_texts(cfg.text_fields)
        X = TfidfFeaturizer(cfg.tfidf).fit_transform(texts)
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
            scores = scores.multiply(scores >= threshold).tocsr()
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
        from ..neural.cache import texts_fingerprint

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
        from safetensors.torch import save_file

        self.network_.encoder.save(os.path.join(tmp, "encoder"))
        heads = {k: v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()
                 if not k.startswith("encoder.")}
        save_file(heads, os.path.join(tmp, "heads.safetensors"))
        self.chain_.save(os.path.join(tmp, "tree"))
        with open(os.path.join(tmp, "history.json"), "w", encoding="utf-8") as fh:
            json.dump(self.history_, fh, indent=1, default=float)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "GUDN":
        """Load a saved model (``device`` overrides the config's); no pickle."""
        from safetensors.torch import load_file

        from ..neural.encoder import TextEncoder

        manifest, config = cls._read(directory)
        if device is not None:
            config = config.replace(train=config.train.replace(device=device))
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
        hist = os.path.join(directory, "history.json")
        if os.path.exists(hist):
            with open(hist, encoding="utf-8") as fh:
                model.history_ = json.load(fh)
        return model


class LightXML(GUDN):
    """The LightXML-style baseline: GUDN's classifier and dynamic negative sampling, no guides."""

    name = "lightxml"
    config_class = LightXMLConfig
    capabilities = dataclasses.replace(GUDN.capabilities, uses_label_text=False)  # no guide reads label texts


# ---- prediction and the training loop (torch imported here only) ---------------------------------


def _batch(network, token_ids: Sequence[Sequence[int]], rows, device) -> dict:
    return {k: v.to(device) for k, v in network.encoder.collate([token_ids[i] for i in rows]).items()}


def predict_scores(network, token_ids: Sequence[Sequence[int]] | None, leaves: sp.csr_matrix, *, topk: int,
                   beam_size: int, batch_size: int = 64, amp: bool = True, progress: bool = False,
                   features=None) -> sp.csr_matrix:
    """Top-k scores CSR (n, L) from the text path: the labels of the top-``beam_size`` clusters.

    Args:
        token_ids: pre-tokenised texts, length n (None when ``features`` are given).
        leaves: (L, K) label-to-cluster indicator.
        features: precomputed text features E_t, a (n, dim) tensor, instead of running the encoder.
    """
    import torch

    from ..neural.guide import candidate_labels, top_cluster_ids
    from ..neural.inference import for_each_batch, sorted_batches, token_lengths

    n, L = (len(token_ids) if features is None else features.shape[0]), leaves.shape[0]
    clusters_to_labels = sp.csr_matrix(leaves.T)
    label_cluster = np.asarray(leaves.argmax(axis=1)).ravel()
    device = next(network.parameters()).device
    if features is None:  # longest first: batches of similar lengths pad less
        lengths = token_lengths(token_ids)
    else:
        lengths, features = np.zeros(n, dtype=np.int64), features.to(device)
    k = min(topk, L)
    indices = np.full((n, k), -1, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.float32)

    def run(_, rows):
        if features is None:
            batch_features = network.text_features(**_batch(network, token_ids, rows, device))
        else:
            batch_features = features[torch.from_numpy(rows).to(device)]
        cluster_logits = network.cluster_logits(batch_features)
        index, valid = candidate_labels(top_cluster_ids(cluster_logits, beam_size), clusters_to_labels)
        logits = network.candidate_logits(batch_features, torch.from_numpy(index).to(device))
        meta = torch.sigmoid(cluster_logits.float()).cpu().numpy()
        scores = torch.sigmoid(logits.float()).cpu().numpy() * np.take_along_axis(meta, label_cluster[index], 1)
        scores = np.where(valid, scores, -1.0)
        kk = min(k, scores.shape[1])
        ids, vals = top_k(scores, kk)
        labels = np.take_along_axis(index, np.maximum(ids, 0), 1)
        labels = np.where((ids >= 0) & (vals >= 0), labels, -1)
        indices[rows, :kk] = labels
        values[rows, :kk] = np.where(labels >= 0, vals, 0.0)

    for_each_batch(network, sorted_batches(lengths, batch_size), run, device=device, amp=amp, progress=progress,
                   desc="predicting")
    return topk_to_csr(indices, values, L)


def _validate(model: GUDN, tokens, Y, metric: str, features=None) -> tuple[float, float]:
    scores = predict_scores(model.network_, tokens, model._leaves(), topk=5, beam_size=model.config.predict.beam_size,
                            batch_size=model.config.encoder.batch_size, amp=model.config.train.amp,
                            features=features)
    report = evaluate(Y, scores, ks=(1,), threshold=None if metric == "p@1" else 0.5)
    return float(report["P@1" if metric == "p@1" else metric]), float(report["P@1"])


def _frozen_features(network, tokens, batch_size: int, device, amp: bool, progress: bool):
    """E_t of every training text under the frozen encoder (eval mode), kept on ``device``."""
    import torch

    from ..neural.inference import encode_tokens

    return torch.from_numpy(encode_tokens(network, tokens, network.text_features, network.encoder.collate,
                                          batch_size=batch_size, dim=network.encoder.dim, amp=amp, progress=progress,
                                          desc="encoding (frozen encoder)")).to(device)


def _frozen_label_states(network, tokens, batch_size: int, device, amp: bool, progress: bool):
    """E_l's unprojected [CLS] states of every label-side input under the frozen encoder, kept on ``device``."""
    import torch

    from ..neural.inference import encode_tokens

    return torch.from_numpy(encode_tokens(network, tokens, network.label_states, network.encoder.collate,
                                          batch_size=batch_size, amp=amp, progress=progress,
                                          desc="encoding label texts (frozen encoder)")).to(device)


def train_gudn(model: GUDN, tokens: Sequence[Sequence[int]], Y: sp.csr_matrix,
               label_tokens: Sequence[Sequence[int]] | None, *, valid_tokens: Sequence[Sequence[int]],
               valid_Y: sp.csr_matrix, progress: bool = True) -> dict:
    """Train ``model.network_`` in place with L_overall = L_guide + L_class.

    Args:
        tokens: pre-tokenised training texts (n).
        Y: (n, L) labels.
        label_tokens: pre-tokenised label-side inputs (``label_input: text`` with a guide), else None.
        valid_tokens / valid_Y: the early-stopping data.

    Returns:
        The history: steps, validations, kept state, loss terms of the last steps, throughput.
    """
    import torch

    from ..neural.guide import (candidate_bce, candidate_labels, feature_guide_loss, link_guide_loss, meta_loss,
                                top_cluster_ids)
    from ..neural.masked_loss import dense_rows, gathered_targets, padded_indices
    from ..neural.trainer import EarlyStopping, ModuleAverage, Trainer, shuffled_batches

    cfg, config, network = model.config, model.config.train, model.network_
    device = next(network.parameters()).device
    leaves = model._leaves()
    clusters_to_labels = sp.csr_matrix(leaves.T)
    M = sp.csr_matrix(binarize(Y @ leaves), dtype=np.float32)
    n = len(tokens)
    rng = np.random.default_rng(config.seed)
    n_batches = math.ceil(n / config.batch_size)
    steps_per_epoch = max(1, math.ceil(n_batches / config.grad_accum))
    heads = [p for name, p in network.named_parameters() if not name.startswith("encoder.")]
    groups = [{"params": heads, "lr": config.head_learning_rate or config.learning_rate}]
    cached = valid_cached = label_cached = None
    if config.freeze_encoder:  # encode every training and validation text once; the heads' dropout still applies
        network.encoder.requires_grad_(False)
        cached = _frozen_features(network, tokens, cfg.encoder.batch_size, device, config.amp, progress)
        valid_cached = _frozen_features(network, valid_tokens, cfg.encoder.batch_size, device, config.amp, progress)
        if cfg.label_path and cfg.label_input == "text":
            # E_l's encoder states are fixed too: the guides train its projection and the shared classifiers.
            label_cached = _frozen_label_states(network, label_tokens, cfg.encoder.batch_size, device, config.amp,
                                                progress)
    else:
        groups.insert(0, {"params": network.encoder.parameters(), "lr": config.learning_rate})
    loss_terms: dict[str, float] = {}

    def step(rows):
        if cached is None:
            features = network.text_features(**_batch(network, tokens, rows, device))
        else:
            features = cached[torch.from_numpy(rows).to(device)]
        cluster_logits = network.cluster_logits(features)
        index, valid = candidate_labels(top_cluster_ids(cluster_logits, cfg.n_candidate_clusters),
                                        clusters_to_labels, forced=M[rows])
        index_t, valid_t = torch.from_numpy(index).to(device), torch.from_numpy(valid).to(device)
        targets = torch.from_numpy(gathered_targets(Y, rows, index)).to(device)
        logits = network.candidate_logits(features, index_t)
        terms = {"meta": meta_loss(cluster_logits, dense_rows(M, rows, device)),
                 "rank": candidate_bce(logits, targets, valid_t)}
        if cfg.label_path:
            if label_cached is not None:
                label_features = network.label_proj(label_cached[torch.from_numpy(rows).to(device)])
            elif cfg.label_input == "text":
                label_features = network.label_features(**_batch(network, label_tokens, rows, device))
            else:
                label_index, label_valid = padded_indices(Y, rows)
                label_features = network.label_features(label_index=torch.from_numpy(label_index).to(device),
                                                        label_valid=torch.from_numpy(label_valid).to(device))
            if cfg.feature_guide:
                terms["feature"] = feature_guide_loss(features, label_features)
            if cfg.link_guide:
                terms["link"] = link_guide_loss(network.candidate_logits(label_features, index_t), targets, valid_t)
        return sum(terms.values()), {k: v.detach() for k, v in terms.items()}

    def evaluate():
        loss_terms.clear()
        loss_terms.update(trainer.log_means())
        score = _validate(model, valid_tokens, valid_Y, config.select_metric, valid_cached)
        logger.info("step %d: validation %s %.4f (P@1 %.4f)", trainer.history.steps, config.select_metric, *score)
        return score, {config.select_metric: score[0], "P@1": score[1], **loss_terms}

    def train_mode():
        network.train()
        if cached is not None:
            network.encoder.eval()  # frozen: its dropout would make the cached features stale

    trainer = Trainer(
        network, groups, total_steps=max(1, int(round(steps_per_epoch * config.epochs))),
        grad_accum=config.grad_accum, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
        amp=config.amp, device=device, swa=ModuleAverage(network) if config.swa else None,
        swa_start=config.swa_start,
        early_stopping=EarlyStopping(evaluate, config.eval_every or steps_per_epoch, config.patience),
        rng=rng, train_mode=train_mode, progress=progress, desc=f"training {model.name}")
    h = trainer.fit(lambda: shuffled_batches(n, config.batch_size, rng), step)
    history = {"steps": h.steps, "total_steps": h.total_steps, "evaluations": h.evaluations,
               "best_step": h.best_step, "kept": h.kept, "loss_terms": dict(loss_terms), "seconds": h.seconds,
               "samples_per_second": h.samples_per_second}
    if h.swa is not None:
        history["swa"] = h.swa
    network.eval()
    logger.info("kept %s", history["kept"])
    return history
