"""The X-Transformer pipeline: TF-IDF, encoder, clusters, matchers and rankers; fit / predict / save / load."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from ...data.dataset import LabelVocabulary, XMCDataset
from ...ensemble import average_scores
from ...errors import ConfigError, ModelFormatError
from ...features.tfidf import TfidfFeaturizer
from ...indexing.kmeans import hierarchical_kmeans
from ...indexing.label_repr import pifa
from ...indexing.tree import ClusterChain
from ...ranker.beam import POST_PROCESSORS
from ...ranker.hierarchy import HierarchicalLinear
from ...neural.budget import resolve_budget
from ...ranker.negatives import binarize
from ...sparse_rows import drop_below
from ..base import Capabilities, XMCModel, save_tensors, text_list
from .config import MemberConfig, XTransformerConfig

logger = logging.getLogger(__name__)

Inputs = XMCDataset | Sequence[str]


@dataclasses.dataclass
class _Prepared:
    """What the stages of ``fit`` share: TF-IDF X (n, d), labels Y (n, L), the matcher's rows, the texts
    and, once tokenised, their token ids (:class:`~xmc.neural.encoder.Tokenized`)."""

    X: sp.csr_matrix | None
    Y: sp.csr_matrix
    fit_rows: np.ndarray
    valid_Y: sp.csr_matrix
    texts: list | None = None
    valid_texts: list | None = None
    label_texts: list | None = None
    tokens: list | None = None
    valid_tokens: list | None = None
    label_tokens: list | None = None


def _rows(tokens, rows):
    """Token ids of ``rows`` (still :class:`Tokenized`; the key is unused by training)."""
    from ...neural.encoder import Tokenized

    return Tokenized([tokens[i] for i in rows], key=f"{tokens.key}|rows")


@dataclasses.dataclass
class _Member:
    """A trained member: tree + ranker, and (unless the matcher is linear) encoder and cluster head."""

    config: MemberConfig
    ranker: HierarchicalLinear
    encoder: object | None = None  # TextEncoder, when fine-tuned for this member
    head: object | None = None  # ClusterHead


class XTransformer(XMCModel):
    """The X-Transformer pipeline (see the module docstring).

    Attributes (after ``fit`` or ``load``):
        labels_: label vocabulary.
        featurizer_: TF-IDF featurizer.
        encoder_: the pre-trained encoder (shared by members that do not fine-tune).
        members_: trained members.
        timings_: wall time per training stage (seconds).
        histories_: matcher training histories per member.
    """

    name = "xtransformer"
    config_class = XTransformerConfig
    capabilities = Capabilities(uses_validation=True, uses_label_text=True, supports_beam=True,
                                supports_selected_outputs=True)
    packages = ("torch", "transformers", "safetensors")
    device_config = "matcher"

    def __init__(self, config: XTransformerConfig | None = None):
        self.config = config or XTransformerConfig()
        self.labels_: LabelVocabulary | None = None
        self.featurizer_: TfidfFeaturizer | None = None
        self.encoder_ = None
        self.members_: list[_Member] = []
        self.timings_: dict[str, float] = {}
        self.histories_: list[dict] = []
        self._cache = None

    # ---- helpers ----------------------------------------------------------------
    @property
    def cache(self):
        if self._cache is None:
            from ...neural.cache import EmbeddingCache

            self._cache = EmbeddingCache(self.config.cache_dir)
        return self._cache

    def _device(self):
        from ...neural.device import select_device

        return select_device(self.config.matcher.device)

    def _load_pretrained(self):
        from ...neural.encoder import TextEncoder

        return TextEncoder.from_pretrained(self.config.encoder).to(self._device()).eval()

    def _timed(self, stage: str, started: float) -> None:
        self.timings_[stage] = self.timings_.get(stage, 0.0) + time.perf_counter() - started
        logger.info("stage %s: %.1f s", stage, self.timings_[stage])

    def _ranker_features(self, X_tfidf: sp.csr_matrix, embeddings: np.ndarray | None) -> sp.csr_matrix:
        if self.config.ranker_input == "tfidf":
            return X_tfidf
        neural = self.config.neural_weight * normalize(embeddings.astype(np.float32))
        return sp.hstack([X_tfidf, sp.csr_matrix(neural)], format="csr", dtype=np.float32)

    def _needs_encoder(self) -> bool:
        uses_neural_repr = any(m.label_repr != "pifa-tfidf" for m in self.config.members)
        return self.config.matcher.kind != "linear" or self.config.ranker_input != "tfidf" or uses_neural_repr

    # ---- training ------------------------------------------------------------------
    # fit is a sequence of stages, each one method: _prepare (TF-IDF, splits, labels), _tokenize,
    # _index_member (label tree), _fit_matcher (fine-tuning + encoding: the GPU stage), _fit_ranker.
    # `xmc stage` (stage.py) runs the same methods, the matcher stage on another machine.
    def fit(self, data: XMCDataset, *, valid: XMCDataset | None = None,
            tfidf: tuple[TfidfFeaturizer, sp.csr_matrix] | None = None, progress: bool = True) -> "XTransformer":
        """Train every member on ``data``.

        Args:
            data: training texts and labels.
            valid: documents for the matcher's early stopping; default: ``matcher.valid_fraction``
                of ``data`` held out from fine-tuning (the rankers still see all of ``data``).
            tfidf: an already fitted featurizer and its training matrix for ``data`` (e.g. shared
                by the runs of an ablation); default: fit ``config.features`` here.
            progress: show progress bars.
        """
        from ...neural import distributed

        distributed.init_from_env()  # under torchrun / accelerate: one process per GPU, DDP fine-tuning
        self.config = resolve_budget(self.config, len(data))
        self.timings_, self.histories_, self.members_ = {}, [], []
        prep = self._prepare(data, valid, tfidf, progress)
        pretrained, E_pre = None, None
        if self._needs_encoder():
            t = time.perf_counter()
            pretrained = self._load_pretrained()
            self._tokenize(prep, pretrained)
            E_pre = self.cache.encode(pretrained, prep.tokens, progress=progress, desc="encoding train (pre-trained)")
            self._timed("encode_pretrained", t)
        self.encoder_ = pretrained
        for k, member_cfg in enumerate(self.config.members):
            chain = self._index_member(k, member_cfg, prep, E_pre, pretrained, progress)
            member, history, E, matcher_ids, chain = self._fit_matcher(k, member_cfg, chain, prep, pretrained,
                                                                       E_pre, progress)
            self._fit_ranker(k, member, prep, E, chain, matcher_ids, progress)
            self.members_.append(member)
            self.histories_.append(history)
        return self

    def _prefix(self, k: int) -> str:
        return f"member{k}." if len(self.config.members) > 1 else ""

    def _prepare(self, data: XMCDataset, valid: XMCDataset | None,
                 tfidf: tuple[TfidfFeaturizer, sp.csr_matrix] | None, progress: bool = True) -> "_Prepared":
        """Labels, TF-IDF and the matcher's fit / validation rows (the config is already resolved)."""
        if data.unseen_labels:
            raise ValueError("training data must be read without a fixed vocabulary (it has unseen labels)")
        data.check_trainable().check_has_text()
        if valid is not None:
            valid.check_has_text()
        cfg = self.config
        self.labels_ = data.labels
        texts = data.input_texts(cfg.text_fields)
        Y = binarize(data.Y)
        t = time.perf_counter()
        if tfidf is not None:
            self.featurizer_, X = tfidf
            if X.shape[0] != len(data):
                raise ValueError(f"the given TF-IDF matrix has {X.shape[0]} rows for {len(data)} documents")
        else:
            self.featurizer_ = TfidfFeaturizer(cfg.features)
            X = self.featurizer_.fit_transform(data.input_texts(cfg.features.fields), progress=progress)
        self._timed("tfidf", t)
        # Matcher validation: given documents, else a seeded share of train kept out of fine-tuning.
        rng = np.random.default_rng(cfg.matcher.seed)
        n = len(texts)
        if valid is not None:
            fit_rows = np.arange(n)
            valid_texts = valid.input_texts(cfg.text_fields)
            valid_Y = binarize(valid.Y[:, : len(self.labels_)])
        else:
            perm = rng.permutation(n)
            n_valid = max(1, int(round(cfg.matcher.valid_fraction * n)))
            fit_rows, valid_rows = np.sort(perm[n_valid:]), np.sort(perm[:n_valid])
            valid_texts, valid_Y = [texts[i] for i in valid_rows], Y[valid_rows]
        if cfg.matcher.max_train_docs is not None and len(fit_rows) > cfg.matcher.max_train_docs:
            fit_rows = np.sort(rng.choice(fit_rows, cfg.matcher.max_train_docs, replace=False))
        label_texts = data.label_texts if data.label_texts is not None else data.labels.names
        return _Prepared(X=X, Y=Y, fit_rows=fit_rows, valid_Y=valid_Y, texts=texts, valid_texts=valid_texts,
                         label_texts=None if label_texts is None else list(label_texts))

    @staticmethod
    def _tokenize(prep: "_Prepared", encoder) -> None:
        """Token ids of the training, validation and label texts (once, by ``encoder``'s tokenizer)."""
        if prep.tokens is None:
            prep.tokens = encoder.tokenized(prep.texts)
            prep.valid_tokens = encoder.tokenized(prep.valid_texts)
        if prep.label_tokens is None and prep.label_texts is not None:
            prep.label_tokens = encoder.tokenized(prep.label_texts)

    def _index_member(self, k: int, member_cfg: MemberConfig, prep: "_Prepared", E_pre, encoder,
                      progress: bool) -> ClusterChain:
        """The member's label tree: hierarchical k-means over its label representation."""
        t = time.perf_counter()
        Z = self._label_representation(member_cfg, prep, E_pre, encoder, progress)
        chain = self._cluster(Z, member_cfg, self.config.n_threads or None)
        self._timed(self._prefix(k) + "index", t)
        return chain

    @staticmethod
    def cluster_targets(Y: sp.csr_matrix, chain: ClusterChain) -> sp.csr_matrix:
        """M = binarize(Y C): the (n, K) leaf clusters holding each document's labels."""
        return binarize(Y @ chain[len(chain) - 1])

    def _fit_matcher(self, k: int, member_cfg: MemberConfig, chain: ClusterChain, prep: "_Prepared", pretrained,
                     E_pre, progress: bool):
        """The matcher stage: (member, history, E, matcher_ids, chain).

        ``transformer``: fine-tune a copy of the encoder on M = binarize(Y C), encode every training
        document with it (E) and keep each one's top-b clusters (the MAN negatives); ``frozen``: a head
        on the pre-trained E; ``linear``: nothing (E is the pre-trained one, if any).
        """
        from ...neural.matcher import top_clusters, train_head, train_matcher

        cfg = self.config
        prefix = self._prefix(k)
        member = _Member(member_cfg, ranker=None)
        if cfg.matcher.kind == "linear":
            return member, {}, E_pre, None, chain
        fit_rows, Y = prep.fit_rows, prep.Y
        M = self.cluster_targets(Y, chain)
        valid_M = self.cluster_targets(prep.valid_Y, chain)
        t = time.perf_counter()
        E = E_pre
        if cfg.matcher.kind == "transformer":
            encoder = copy.deepcopy(pretrained)
            ckpt = os.path.join(cfg.work_dir, self._matcher_key(member_cfg, fit_rows)) if cfg.work_dir else None
            encoder, head, hist = train_matcher(
                encoder, _rows(prep.tokens, fit_rows), M[fit_rows], cfg.matcher,
                valid_texts=prep.valid_tokens, valid_M=valid_M, checkpoint_dir=ckpt, progress=progress,
            )
            member.encoder = encoder
            self._timed(prefix + "finetune", t)
            t = time.perf_counter()
            E = self.cache.encode(encoder, prep.tokens, progress=progress, desc="encoding train (fine-tuned)")
            self._timed(prefix + "encode_finetuned", t)
        else:
            E_valid = self.cache.encode(pretrained, prep.valid_tokens, progress=False)
            head, hist = train_head(E_pre[fit_rows], M[fit_rows], cfg.matcher,
                                    valid_embeddings=E_valid, valid_M=valid_M, progress=progress)
            self._timed(prefix + "matcher_head", t)
        history = dataclasses.asdict(hist)
        if member_cfg.recluster and cfg.matcher.kind == "transformer":
            t = time.perf_counter()
            chain = self._cluster(pifa(sp.csr_matrix(E), Y), member_cfg, cfg.n_threads or None)
            M = self.cluster_targets(Y, chain)
            valid_M = self.cluster_targets(prep.valid_Y, chain)
            E_valid = self.cache.encode(member.encoder, prep.valid_tokens, progress=False)
            head, hist2 = train_head(E[fit_rows], M[fit_rows], cfg.matcher,
                                     valid_embeddings=E_valid, valid_M=valid_M, progress=progress)
            history["recluster"] = dataclasses.asdict(hist2)
            self._timed(prefix + "recluster", t)
        member.head = head
        matcher_ids, _ = top_clusters(head.scores(E), cfg.matcher.top_b)
        return member, history, E, matcher_ids, chain

    def _fit_ranker(self, k: int, member: "_Member", prep: "_Prepared", E, chain: ClusterChain, matcher_ids,
                    progress: bool) -> None:
        """The linear ranker on [TF-IDF || neural] with TFN / MAN / TFN+MAN negatives."""
        cfg = self.config
        t = time.perf_counter()
        R = self._ranker_features(prep.X, E)
        layers = None if cfg.matcher.kind == "linear" else [len(chain) - 1]
        member.ranker = HierarchicalLinear.fit(R, prep.Y, chain, cfg.ranker, matcher_ids=matcher_ids, layers=layers,
                                               n_threads=cfg.n_threads or None, progress=progress)
        self._timed(self._prefix(k) + "ranker", t)

    def _matcher_key(self, member_cfg: MemberConfig, fit_rows: np.ndarray) -> str:
        """Checkpoint folder name: equal trees, matcher and encoder settings and rows share a fine-tuned matcher."""
        cfg = self.config
        spec = json.dumps([member_cfg.to_dict(), cfg.matcher.to_dict(), cfg.encoder.to_dict(), cfg.text_fields,
                           cfg.features.to_dict() if member_cfg.label_repr == "pifa-tfidf" else None,
                           len(self.labels_), hashlib.sha1(np.ascontiguousarray(fit_rows)).hexdigest()], sort_keys=True)
        return "matcher-" + hashlib.sha1(spec.encode()).hexdigest()[:16]

    def _label_representation(self, m: MemberConfig, prep: "_Prepared", E_pre, encoder, progress) -> sp.csr_matrix:
        if m.label_repr == "pifa-tfidf":
            return pifa(prep.X, prep.Y)
        if m.label_repr == "pifa-neural":
            return pifa(sp.csr_matrix(E_pre), prep.Y)
        if prep.label_tokens is None:
            raise ConfigError("label_repr 'text-emb' needs label texts (or label names)")
        return sp.csr_matrix(normalize(self.cache.encode(encoder, prep.label_tokens, progress=progress,
                                                         desc="encoding label texts")))

    @staticmethod
    def _cluster(Z: sp.csr_matrix, m: MemberConfig, threads) -> ClusterChain:
        return hierarchical_kmeans(Z, branching=m.branching, max_leaf_size=m.max_leaf_size, max_iter=m.max_iter,
                                   seed=m.seed, n_threads=threads)

    # ---- prediction ----------------------------------------------------------------
    def _texts(self, inputs: Inputs) -> tuple[list[str], list[str]]:
        """(encoder texts, TF-IDF texts) of the inputs."""
        if isinstance(inputs, XMCDataset):
            inputs.check_has_text()
            return inputs.input_texts(self.config.text_fields), inputs.input_texts(self.featurizer_.config.fields)
        texts = text_list(inputs)
        return texts, texts

    def predict(
        self,
        inputs: Inputs,
        *,
        topk: int | None = None,
        beam_size: int | None = None,
        post_processor: str | None = None,
        threshold: float | None = None,
        selected_outputs: sp.spmatrix | None = None,
        progress: bool = False,
    ) -> sp.csr_matrix:
        """Scores of the top-k labels: CSR (n, L).

        Args:
            inputs: raw texts or a dataset.
            topk / beam_size / post_processor / threshold: override ``config.predict``
                (beam_size = b, the leaf clusters the matcher keeps for the ranker).
            selected_outputs: optional (n, L) 0/1 matrix; predict only among these labels.
        """
        self._check_fitted()
        p = self.config.predict
        topk, beam, threshold = self.resolve_predict(topk, beam_size, threshold)
        post = post_processor or p.post_processor
        if post not in POST_PROCESSORS:
            raise ValueError(f"unknown post_processor {post!r}; choose from {list(POST_PROCESSORS)}")
        enc_texts, tfidf_texts = self._texts(inputs)
        X = self.featurizer_.transform(tfidf_texts)
        from ...neural.cache import EmbeddingCache

        cache = EmbeddingCache(key_by="identity")  # per call: members sharing an encoder encode once; nothing kept from earlier calls
        embeddings = []
        for member in self.members_:
            encoder = member.encoder or self.encoder_
            embeddings.append(cache.encode(encoder, enc_texts, progress=progress) if encoder is not None else None)
        return self.predict_embedded(X, embeddings, topk=topk, beam_size=beam, post_processor=post,
                                     threshold=threshold, selected_outputs=selected_outputs)

    def predict_embedded(self, X: sp.csr_matrix, embeddings: Sequence[np.ndarray | None], *, topk: int | None = None,
                         beam_size: int | None = None, post_processor: str | None = None,
                         threshold: float | None = None, selected_outputs: sp.spmatrix | None = None) -> sp.csr_matrix:
        """:meth:`predict` from TF-IDF X (n, d) and each member's encoder embeddings (n, dim) computed elsewhere
        (e.g. on a GPU by ``xmc stage run``; None for a member without a neural part)."""
        from ...neural.matcher import top_clusters

        self._check_fitted()
        topk, beam, threshold = self.resolve_predict(topk, beam_size, threshold)
        post = post_processor or self.config.predict.post_processor
        threads = self.config.n_threads or None
        results = []
        for member, E in zip(self.members_, embeddings, strict=True):
            R = self._ranker_features(X, E)
            if member.head is None:
                results.append(member.ranker.predict(R, beam_size=beam, topk=topk, post_processor=post,
                                                     selected_outputs=selected_outputs, n_threads=threads))
                continue
            ids, g = top_clusters(member.head.scores(E), beam)
            results.append(self._combine(member.ranker, R, ids, g, topk, beam, post, selected_outputs, threads))
        scores = results[0] if len(results) == 1 else average_scores(results, topk)
        if threshold is not None:
            scores = drop_below(scores, threshold)
        return scores

    def _combine(self, ranker: HierarchicalLinear, R, ids, g, topk, beam, post, selected, threads) -> sp.csr_matrix:
        """f(x, l) = sigma(g(x, c_l), h(x, l)) over the labels of the top-b clusters (paper Eq. 2)."""
        matcher_post = np.exp(-np.maximum(0.0, 1.0 - g) ** 3).astype(np.float32)  # l3-hinge of the cluster scores
        combiner = self.config.combiner
        if combiner == "product":
            return ranker.predict_from(R, ids, matcher_post, beam_size=beam, topk=topk, post_processor=post,
                                       selected_outputs=selected, n_threads=threads)
        ones = np.ones_like(matcher_post)
        if combiner == "ranker":
            return ranker.predict_from(R, ids, ones, beam_size=beam, topk=topk, post_processor=post,
                                       selected_outputs=selected, n_threads=threads)
        # average: every candidate label's ranker score, then the mean with its cluster's matcher score.
        leaf = ranker.chain[len(ranker.chain) - 1]
        n_candidates = int(np.diff(leaf.indptr).max()) * ids.shape[1]
        h = ranker.predict_from(R, ids, ones, beam_size=beam, topk=n_candidates, post_processor=post,
                                selected_outputs=selected, n_threads=threads).tocoo()
        label_cluster = leaf.tocsr().indices  # each label's leaf cluster (one per row)
        cluster_score = sp.csr_matrix((matcher_post.ravel(), (np.repeat(np.arange(ids.shape[0]), ids.shape[1]),
                                                              np.maximum(ids, 0).ravel())),
                                      shape=(ids.shape[0], leaf.shape[1]))
        gl = np.asarray(cluster_score[h.row, label_cluster[h.col]]).ravel()
        avg = sp.csr_matrix(((h.data + gl) / 2.0, (h.row, h.col)), shape=h.shape)
        return average_scores([avg], topk)

    # ---- persistence -----------------------------------------------------------------
    def _is_fitted(self) -> bool:
        return bool(self.members_)

    def _writes(self) -> bool:
        from ...neural import distributed

        return distributed.is_main()  # every process holds the same model; rank 0 writes it

    def _manifest_extra(self) -> dict:
        # "parts": what load must find; a directory that lost one loaded and predicted other scores
        return {"n_members": len(self.members_), "timings": self.timings_, "parts": list(self._parts())}

    def _parts(self) -> dict[str, Callable[[str], None]]:
        """The parts that depend on the config (the shared encoder, members' encoders and heads): each
        path in the directory -> how it is written."""
        parts: dict[str, Callable[[str], None]] = {}
        if self.encoder_ is not None and any(m.encoder is None for m in self.members_):
            parts["encoder"] = self.encoder_.save
        for k, member in enumerate(self.members_):
            if member.encoder is not None:
                parts[f"member-{k}/encoder"] = member.encoder.save
            if member.head is not None:
                parts[f"member-{k}/head.safetensors"] = functools.partial(save_tensors, member.head.state_dict())
        return parts

    def _save_parts(self, tmp: str) -> None:
        """TF-IDF, encoders (safetensors), heads, trees and rankers, histories."""
        self.featurizer_.save(os.path.join(tmp, "featurizer"))
        for k, member in enumerate(self.members_):
            member.ranker.save(os.path.join(tmp, f"member-{k}", "ranker"))
        for path, write in self._parts().items():
            write(os.path.join(tmp, path))
        self._write_json(tmp, "histories.json", self.histories_)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | None = None) -> "XTransformer":
        """Load a saved pipeline (``device`` overrides the config's, e.g. ``cpu``)."""
        from safetensors.torch import load_file

        from ...neural.encoder import TextEncoder
        from ...neural.matcher import ClusterHead

        manifest, config = cls._read(directory, device)
        for part in manifest.get("parts", []):  # absent from directories of earlier versions
            if not os.path.exists(os.path.join(directory, part)):
                raise ModelFormatError(f"{os.fspath(directory)}: {part} is missing (the model directory is incomplete)")
        model = cls(config)
        model.featurizer_ = TfidfFeaturizer.load(os.path.join(directory, "featurizer"))
        dev = model._device()
        shared = os.path.join(directory, "encoder")
        if os.path.isdir(shared):
            model.encoder_ = TextEncoder.from_pretrained(config.encoder, shared).to(dev).eval()
        for k in range(manifest["n_members"]):
            mdir = os.path.join(directory, f"member-{k}")
            member = _Member(config.members[k], HierarchicalLinear.load(os.path.join(mdir, "ranker")))
            if os.path.isdir(os.path.join(mdir, "encoder")):
                member.encoder = TextEncoder.from_pretrained(config.encoder, os.path.join(mdir, "encoder")).to(dev).eval()
            head_path = os.path.join(mdir, "head.safetensors")
            if os.path.exists(head_path):
                state = load_file(head_path)
                member.head = ClusterHead(state["linear.weight"].shape[1], state["linear.weight"].shape[0])
                member.head.load_state_dict(state)
                member.head.eval()
            model.members_.append(member)
        model.labels_ = cls._labels(directory, model.members_[0].ranker.n_labels)
        model.timings_ = manifest.get("timings", {})
        return model
