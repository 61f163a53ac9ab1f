"""XR-Linear: TF-IDF features, semantic label indexing and a tree of sparse linear rankers.

The user-facing model (Parabel / PECOS XR-Linear; Chang et al. 2020, sections
3.2 and 3.4). Several trees (different seeds or label representations) form an
ensemble whose scores are averaged.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp

from ..config import Config, check
from ..data.dataset import LabelVocabulary, XMCDataset
from ..ensemble import average_scores
from ..errors import ConfigError, ModelFormatError
from ..features.tfidf import TfidfConfig, TfidfFeaturizer
from ..indexing.kmeans import hierarchical_kmeans
from ..indexing.label_repr import combine, pifa
from ..indexing.tree import ClusterChain
from ..ranker.beam import VALUE_TYPES
from ..ranker.hierarchy import (AUTO, FEW_LABELS, SMALL_LABEL_SPACE, WELL_SUPPORTED, HierarchicalLinear, LabelSpace,
                               LinearTrainConfig, PredictConfig, auto_C, auto_weight_threshold)
from ..progress import progress_bar
from ..sparse_rows import csr32, drop_below, l2_normalize_rows
from .base import Capabilities, XMCModel, text_list

logger = logging.getLogger(__name__)

LabelRepr = Literal["pifa", "text", "pifa+text", "pifa|text", "given"]


@dataclasses.dataclass
class IndexerConfig(Config):
    """How one label tree is built.

    Attributes:
        label_repr: ``pifa`` (PIFA over TF-IDF), ``text`` (TF-IDF of the label texts),
            ``pifa+text`` (convex combination), ``pifa|text`` (concatenation) or
            ``given`` (a user-supplied label feature matrix Z passed to ``fit``).
        text_weight: weight of the text part in ``pifa+text`` / ``pifa|text``.
        pifa_normalize_labels: in PIFA, weigh each training document by 1/sqrt(its label
            count) (PECOS's ``normalized_Y``) instead of 1; ``"auto"`` is false at every size
            (see :func:`auto_pifa_normalize_labels`).
        branching: children per tree node (power of two): 2 = Parabel, 16 = PECOS,
            wider = Bonsai-like shallow trees; ``1`` builds no tree (flat one-vs-all).
        max_leaf_size: leaves hold about this many labels at most.
        max_iter: balanced 2-means iterations per split.
        seed: seed of the clustering (different seeds give ensemble members).
    """

    label_repr: LabelRepr = "pifa"
    text_weight: float = 0.5
    pifa_normalize_labels: bool | Literal["auto"] = AUTO
    branching: int = 16
    max_leaf_size: int = 100
    max_iter: int = 20
    seed: int = 0

    def validate(self) -> None:
        check(0.0 <= self.text_weight <= 1.0, "text_weight must be in [0, 1]")
        check(self.branching == 1 or (self.branching >= 2 and self.branching & (self.branching - 1) == 0),
              f"branching must be 1 or a power of two, got {self.branching}")
        check(self.max_leaf_size >= 1, "max_leaf_size must be >= 1")
        check(self.max_iter >= 1, "max_iter must be >= 1")


@dataclasses.dataclass
class XRLinearConfig(Config):
    """Full configuration of :class:`XRLinear` (``xmc config xr-linear`` prints the default).

    Attributes:
        features: TF-IDF settings (ignored when the data carries features, e.g. XC sparse files).
        normalize_data_features: L2-normalise the rows of features that come with a dataset
            (XC sparse files), in training and prediction alike, as napkinXC and omikuji do
            (PECOS does not; on bibtex's binary bag of words that costs about 8 points of P@1).
            TF-IDF rows are unit-length already. A matrix passed to ``fit_matrix`` is used as
            given; a matrix passed to ``predict`` is normalised as the model's training features were
            (a model trained by ``fit`` on a dataset's own features with this setting normalises it).
        indexers: one entry per tree; more than one makes a score-averaging ensemble.
        trees_per_indexer: trees built from each indexer entry, with seeds ``seed``,
            ``seed + 1``, ...; ``"auto"``: 2 from 50,000 to under 500,000 labels (for a single
            entry), else 1 (see :func:`auto_trees_per_indexer`).
        train: how the per-level linear classifiers are trained (``weight_threshold``
            ``"auto"``: 0.05 below 8,192 labels, else 0.1; ``C`` ``"auto"``: 0.5 below 512 labels when
            the median label has 20 or more training documents, else 1; see
            :func:`xmc.ranker.hierarchy.auto_weight_threshold` and :func:`xmc.ranker.hierarchy.auto_C`).
            Weights are stored as int8 (``weight_dtype``; one float scale per classifier): on
            validation splits of train within 0.05 P@1 of float32 on bibtex, EURLEX57K and the
            generated 10k / 100k / 1M-label problems, for a 0.55x model on EURLEX57K (0.47x on disk)
            that predicts in about the same time (0.87x - 0.99x; BENCHMARKS.md, "int8 and int16 weights").
        predict: default prediction settings (overridable per call).
        n_threads: threads for training and prediction (0 = all cores).
    """

    features: TfidfConfig = dataclasses.field(default_factory=TfidfConfig)
    normalize_data_features: bool = True
    indexers: list[IndexerConfig] = dataclasses.field(default_factory=lambda: [IndexerConfig()])
    trees_per_indexer: int | Literal["auto"] = AUTO
    train: LinearTrainConfig = dataclasses.field(
        default_factory=lambda: LinearTrainConfig(C=AUTO, weight_threshold=AUTO, weight_dtype="int8"))
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    n_threads: int = 0

    def validate(self) -> None:
        check(len(self.indexers) >= 1, "indexers needs at least one entry")
        check(self.trees_per_indexer == AUTO or self.trees_per_indexer >= 1, "trees_per_indexer must be >= 1")
        check(self.n_threads >= 0, "n_threads must be >= 0")

    def resolved(self, space: LabelSpace) -> tuple["XRLinearConfig", dict[str, object]]:
        """The config to train the labels ``space`` describes with: every ``"auto"`` replaced and the
        indexers expanded to one entry per tree (``trees_per_indexer`` 1), so that the saved config
        retrains the same model. Returns it and ``{field: chosen value}`` for the fields that were
        ``"auto"``."""
        n_labels = space.n_labels
        chosen: dict[str, object] = {}
        train = self.train.resolved(space)
        for key in ("weight_threshold", "C"):
            if getattr(self.train, key) == AUTO:
                chosen[f"train.{key}"] = getattr(train, key)
        indexers = []
        for ix in self.indexers:
            if ix.pifa_normalize_labels == AUTO:
                ix = dataclasses.replace(ix, pifa_normalize_labels=auto_pifa_normalize_labels(n_labels))
                chosen["indexers.pifa_normalize_labels"] = ix.pifa_normalize_labels
            indexers.append(ix)
        per_indexer = self.trees_per_indexer
        if per_indexer == AUTO:
            per_indexer = chosen["trees_per_indexer"] = auto_trees_per_indexer(n_labels, len(self.indexers))
        indexers = [dataclasses.replace(ix, seed=ix.seed + k) for ix in indexers for k in range(per_indexer)]
        return dataclasses.replace(self, indexers=indexers, trees_per_indexer=1, train=train), chosen

    def describe_auto(self) -> str | None:
        """Lines saying what each ``"auto"`` value stands for (None: no ``"auto"``)."""
        lines = []
        if self.train.weight_threshold == AUTO:
            small, large = auto_weight_threshold(SMALL_LABEL_SPACE - 1), auto_weight_threshold(SMALL_LABEL_SPACE)
            lines.append(f"  train.weight_threshold: {small:g} below {SMALL_LABEL_SPACE:,} labels, else {large:g}")
        if self.train.C == AUTO:
            lines.append(f"  train.C: {auto_C(LabelSpace(FEW_LABELS - 1, WELL_SUPPORTED)):g} below {FEW_LABELS:,} "
                         f"labels when the median label has {WELL_SUPPORTED} or more training documents, else "
                         f"{auto_C(LabelSpace(FEW_LABELS, WELL_SUPPORTED)):g} ('xmc tune' chooses it on your data)")
        if any(ix.pifa_normalize_labels == AUTO for ix in self.indexers):
            lines.append("  indexers.pifa_normalize_labels: false at every size")
        if self.trees_per_indexer == AUTO:
            lines.append(f"  trees_per_indexer: 2 from {LARGE_LABEL_SPACE:,} to under {ENSEMBLE_LIMIT:,} labels "
                         "(one indexer entry), else 1")
        return ('"auto" is chosen by the training labels when training starts:\n' + "\n".join(lines)
                if lines else None)


# From this many labels on, "auto" trains two trees, up to (not including) ENSEMBLE_LIMIT labels
# (see auto_trees_per_indexer).
LARGE_LABEL_SPACE = 50_000
ENSEMBLE_LIMIT = 500_000


def auto_pifa_normalize_labels(n_labels: int) -> bool:
    """What ``pifa_normalize_labels="auto"`` stands for: False (binary weighting) at every size.

    On validation splits of train (``benchmarks/validate_xr_linear.py``, BENCHMARKS.md) PECOS's
    weighting lost on EURLEX57K (-0.13 P@1), its first 5,000 documents (-0.48) and the generated
    1M-label problem (-0.75 P@1, -2.5 PSP@5), and tied at 100k labels (+0.04 P@1). From 50,000
    labels it was the default until 2026-12-02, chosen on the generator's data before idf weighting,
    on which a random label tree beat clustered ones. ``n_labels`` is kept for the "auto" interface.
    """
    return False


def auto_trees_per_indexer(n_labels: int, n_indexers: int) -> int:
    """What ``trees_per_indexer="auto"`` stands for: 2 from 50,000 to under 500,000 labels when one
    indexer is configured, else 1.

    Two trees (seeds s and s + 1, scores averaged) reduce what one tree's clustering gets by chance:
    on validation splits of the generated problems +0.7 P@1 and +1.7 PSP@5 over one tree at 100k
    labels, +0.5 P@1 and +0.9 PSP@5 at 1M (``benchmarks/validate_xr_linear.py``, BENCHMARKS.md).
    They double training and prediction time and the model: at 100k labels one tree trains in 0.4x
    PECOS's time and predicts in 0.35x, so two stay well inside PECOS's budget; at 10k one tree
    already trains in about PECOS's time; at 1M two trees predicted in 0.99-1.05x PECOS's time at
    0.82-0.84x its peak memory, past the goals xmc holds itself to there (<= 1.0x, <= 0.8x), and a
    model of a million labels or more is better kept at one tree's size. ``trees_per_indexer: 2``
    asks for two at any size. (The accuracy figures are on the generated data before its idf
    weighting, like those of :func:`auto_pifa_normalize_labels`; the costs stand.)
    """
    return 2 if LARGE_LABEL_SPACE <= n_labels < ENSEMBLE_LIMIT and n_indexers == 1 else 1


Inputs = XMCDataset | Sequence[str] | sp.spmatrix


# Documents per prediction chunk (the progress bar's step); large enough to keep every thread busy.
_PREDICT_CHUNK = 4096


class XRLinear(XMCModel):
    """Hierarchical linear XMC model over TF-IDF features.

    Args:
        config: the model configuration (default: :class:`XRLinearConfig`).

    Attributes (after ``fit`` or ``load``):
        labels_: the label vocabulary.
        featurizer_: the TF-IDF featurizer, or None when trained on given features.
        trees_: one :class:`HierarchicalLinear` per indexer.
        fit_seconds_: per tree, wall seconds of ``label_repr``, ``index`` and ``rank``
            (the linear layers) in the last ``fit`` (empty after ``load``).
    """

    name = "xr-linear"
    config_class = XRLinearConfig
    # Trained on an XC file's own features, it has no featurizer and reads no text.
    capabilities = Capabilities(uses_label_text=True, uses_data_features=True, supports_beam=True,
                                supports_selected_outputs=True, loads_mmap=True, supports_engine=True)

    def __init__(self, config: XRLinearConfig | None = None):
        self.config = config or XRLinearConfig()
        self.labels_: LabelVocabulary | None = None
        self.featurizer_: TfidfFeaturizer | None = None
        self.trees_: list[HierarchicalLinear] = []
        self.fit_seconds_: list[dict[str, float]] = []
        # Whether a feature matrix given to predict is L2-normalised first: as the training features were.
        self.normalizes_features_ = False

    # ---- training --------------------------------------------------------------
    def fit(self, data: XMCDataset, *, label_features: sp.spmatrix | None = None, progress: bool = True,
            engine=None) -> "XRLinear":
        """Train on a dataset.

        Uses ``data.X`` when present (precomputed features), otherwise fits TF-IDF on
        the text fields of ``config.features.fields``. Label texts (for ``text``
        representations) come from ``data.label_texts``, else the label names.

        Args:
            data: training documents and labels.
            label_features: (L, d') label feature matrix for indexers with ``label_repr="given"``.
            progress: show progress bars.
            engine: a distributed engine (:class:`xmc.distributed.DaskEngine`) that trains the
                trees' linear layers on its workers (same weights); None trains in this process.
        """
        if data.unseen_labels:
            raise ValueError("training data must be read without a fixed vocabulary (it has unseen labels)")
        data.check_trainable()  # no label: a model of 0 labels, or of labels never seen positive
        self.labels_ = data.labels
        X = self.fit_features(data, progress=progress)
        label_texts = data.label_texts if data.label_texts is not None else data.labels.names
        return self.fit_matrix(X, data.Y, label_texts=label_texts, label_features=label_features, progress=progress,
                               engine=engine)

    def fit_features(self, data: XMCDataset, *, progress: bool = True) -> sp.csr_matrix:
        """The training features of ``data``: its own (``data.X``, normalised as configured), or TF-IDF
        fitted on its texts and kept as ``featurizer_`` (the first step of :meth:`fit`)."""
        if data.X is not None:
            self.featurizer_ = None
            self.normalizes_features_ = self.config.normalize_data_features
            return self._data_features(data)
        self.featurizer_, self.normalizes_features_ = TfidfFeaturizer(self.config.features), False
        return self.featurizer_.fit_transform(data.input_texts(self.config.features.fields), progress=progress)

    def fit_matrix(
        self,
        X: sp.csr_matrix,
        Y: sp.csr_matrix,
        *,
        label_texts: Sequence[str] | None = None,
        label_features: sp.spmatrix | None = None,
        matcher_ids: np.ndarray | None = None,
        progress: bool = True,
        engine=None,
    ) -> "XRLinear":
        """Train the trees on a feature matrix X (n, d) and labels Y (n, L).

        ``matcher_ids`` (n, b) are an external matcher's top leaf clusters for ``man``
        negatives (X-Transformer); they only apply to a single tree built elsewhere.
        ``engine`` (see :meth:`fit`) trains the linear layers on a cluster; label
        representations and clustering stay in this process.
        """
        if engine is not None and matcher_ids is not None:
            raise ConfigError("distributed training takes no external matcher_ids")
        if engine is not None and self.config.train.negatives != "tfn":
            raise ConfigError(f"distributed training supports train.negatives 'tfn' only, got "
                              f"{self.config.train.negatives!r}")
        if self.labels_ is None or len(self.labels_) != Y.shape[1]:
            self.labels_ = LabelVocabulary(str(j) for j in range(Y.shape[1]))
        X = sp.csr_matrix(X, dtype=np.float32)
        X.sort_indices()
        space = LabelSpace.of(Y)
        self.config, chosen = self.config.resolved(space)
        if chosen:
            logger.info("for %s, \"auto\" chose %s", space,
                        ", ".join(f"{key}={value}" for key, value in chosen.items()))
        threads = self.config.n_threads or None
        n_trees = len(self.config.indexers)
        # Every tree is clustered before any is trained, so that the label representations (one
        # per distinct setting, shared by trees that differ only in seed) are freed before the
        # linear layers, the peak of training memory, are built.
        chains, seconds, representations = [], [], {}
        for k, indexer in enumerate(self.config.indexers):
            t0 = time.perf_counter()
            key = (indexer.label_repr, indexer.text_weight, indexer.pifa_normalize_labels)
            if indexer.branching != 1 and key not in representations:
                representations[key] = self.label_representation(indexer, X, Y, label_texts, label_features)
            t1 = time.perf_counter()
            if indexer.branching == 1:
                chain = ClusterChain.flat(Y.shape[1])
            else:
                chain = hierarchical_kmeans(
                    representations[key], branching=indexer.branching, max_leaf_size=indexer.max_leaf_size,
                    max_iter=indexer.max_iter, seed=indexer.seed, n_threads=threads, progress=progress,
                )
            chains.append(chain)
            seconds.append({"label_repr": t1 - t0, "index": time.perf_counter() - t1})
            logger.info("tree %d/%d: levels %s", k + 1, n_trees, chain.level_sizes)
        del representations
        self.trees_ = []
        self.fit_seconds_ = seconds
        for k, chain in enumerate(chains):
            t2 = time.perf_counter()
            if engine is None:
                tree = HierarchicalLinear.fit(X, Y, chain, self.config.train, matcher_ids=matcher_ids,
                                              n_threads=threads, progress=progress)
            else:
                tree = engine.fit_tree(X, Y, chain, self.config.train, progress=progress)
            _check_some_weights(tree, self.config.train.weight_threshold, "train.weight_threshold")
            self.trees_.append(tree)
            seconds[k]["rank"] = time.perf_counter() - t2
            logger.info("tree %d/%d trained: %s", k + 1, n_trees,
                        ", ".join(f"{key} {v:.1f} s" for key, v in seconds[k].items()))
        return self

    def label_representation(self, indexer: IndexerConfig, X, Y, label_texts, label_features) -> sp.csr_matrix:
        """The (L, *) label matrix the indexer clusters."""
        if indexer.label_repr == "given":
            if label_features is None:
                raise ConfigError("label_repr 'given' needs label_features passed to fit")
            if label_features.shape[0] != Y.shape[1]:
                raise ValueError(f"label_features has {label_features.shape[0]} rows for {Y.shape[1]} labels")
            return l2_normalize_rows(sp.csr_matrix(label_features, dtype=np.float32))
        if indexer.label_repr == "pifa":
            return pifa(X, Y, normalize_labels=indexer.pifa_normalize_labels)
        if self.featurizer_ is None:
            raise ConfigError(f"label_repr {indexer.label_repr!r} embeds label texts with the TF-IDF "
                              "vocabulary, which needs a text dataset (not precomputed features)")
        if label_texts is None:
            raise ConfigError(f"label_repr {indexer.label_repr!r} needs label texts")
        text = l2_normalize_rows(self.featurizer_.transform(list(label_texts)))
        if indexer.label_repr == "text":
            return text
        mode = "convex" if indexer.label_repr == "pifa+text" else "concat"
        return combine(pifa(X, Y, normalize_labels=indexer.pifa_normalize_labels), text, mode, indexer.text_weight)

    # ---- prediction ------------------------------------------------------------
    def transform(self, inputs: Inputs) -> sp.csr_matrix:
        """Features (n, d) of raw texts, a dataset, or a feature matrix passed through."""
        if sp.issparse(inputs):
            if inputs.dtype.kind not in "biuf":  # complex: casting would drop the imaginary part
                raise TypeError(f"the feature matrix must hold real numbers, got dtype {inputs.dtype}")
            X = csr32(inputs)
            if not np.isfinite(X.data).all():  # NaN scored every label 1.0
                raise ValueError("the feature matrix holds values that are not finite (NaN or infinity)")
            return l2_normalize_rows(X) if self.normalizes_features_ else X
        if isinstance(inputs, XMCDataset):
            if self.featurizer_ is None:
                return self._data_features(inputs.check_has_features())
            return self.featurizer_.transform(inputs.check_has_text().input_texts(self.featurizer_.config.fields))
        texts = text_list(inputs)
        if self.featurizer_ is None:
            raise ValueError("this model was trained on precomputed features and cannot featurise raw text")
        return self.featurizer_.transform(texts)

    def _data_features(self, data: XMCDataset) -> sp.csr_matrix:
        X = sp.csr_matrix(data.X, dtype=np.float32)
        return l2_normalize_rows(X) if self.config.normalize_data_features else X

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
            inputs: texts, a dataset, or features (n, d).
            topk / beam_size / post_processor / threshold: override ``config.predict``.
            selected_outputs: optional (n, L) 0/1 matrix; predict only among these labels.
            progress: show progress bars (TF-IDF, then documents predicted).
        """
        self._check_fitted()
        p = self.config.predict
        topk, beam_size, threshold = self.resolve_predict(topk, beam_size, threshold)
        X = self.transform(inputs)
        n = X.shape[0]
        selected = None
        if selected_outputs is not None:
            selected = sp.csr_matrix(selected_outputs)
            if selected.shape[0] != n:  # checked before chunking, which would hide extra rows
                raise ValueError(f"selected_outputs has {selected.shape[0]} rows for {n} documents")
        def predict_rows(X_rows, selected_rows):
            members = [
                tree.predict(X_rows, beam_size=beam_size, topk=topk, post_processor=post_processor or p.post_processor,
                             selected_outputs=selected_rows, n_threads=self.config.n_threads or None)
                for tree in self.trees_
            ]
            return members[0] if len(members) == 1 else average_scores(members, topk)

        if n <= _PREDICT_CHUNK:  # one chunk: no slicing, no bar (a served document pays neither)
            scores = predict_rows(X, selected)
        else:
            parts = []
            # Rows are independent: predicting in chunks gives the same scores and lets a bar count documents.
            with progress_bar(total=n, desc="predicting", unit="doc", disable=not progress) as bar:
                for start in range(0, n, _PREDICT_CHUNK):
                    rows = slice(start, start + _PREDICT_CHUNK)
                    parts.append(predict_rows(X[rows], None if selected is None else selected[rows]))
                    bar.update(parts[-1].shape[0])
            scores = sp.vstack(parts, format="csr")
        if threshold is not None:
            scores = drop_below(scores, threshold)
        return scores

    def pruned(self, weight_threshold: float | None = None, *, weight_dtype: str | None = None) -> "XRLinear":
        """A copy whose trees keep only the weights of magnitude above ``weight_threshold`` and
        store them as ``weight_dtype`` (each defaults to the model's own).

        With ``tfn`` negatives (the default) and a float32 model this equals training with
        ``train.weight_threshold`` and ``train.weight_dtype`` set to them (see
        :meth:`HierarchicalLinear.pruned`): train once at a low threshold with ``weight_dtype``
        float32, then choose model size and prediction time without retraining. The
        threshold cannot go below the one the model was trained with (those weights are gone), nor
        the weights to a wider type than they have (the rounding cannot be undone).
        """
        self._check_fitted()
        train = self.config.train
        weight_threshold = train.weight_threshold if weight_threshold is None else float(weight_threshold)
        if weight_threshold < train.weight_threshold:
            raise ConfigError(f"weight_threshold {weight_threshold:g} is below the {train.weight_threshold:g} this "
                              "model was trained with: the smaller weights were not kept")
        stored = self.trees_[0].weight_dtype
        weight_dtype = weight_dtype or stored
        if weight_dtype not in VALUE_TYPES:
            raise ConfigError(f"weight_dtype {weight_dtype!r} is not one of {list(VALUE_TYPES)}")
        if np.dtype(VALUE_TYPES[weight_dtype]).itemsize > np.dtype(VALUE_TYPES[stored]).itemsize:
            raise ConfigError(f"weight_dtype {weight_dtype} is wider than the model's {stored} weights: "
                              "the rounding cannot be undone")
        model = copy.copy(self)
        model.config = copy.deepcopy(self.config)
        model.config.train.weight_threshold = weight_threshold
        model.config.train.weight_dtype = weight_dtype
        model.trees_ = [tree.pruned(weight_threshold, weight_dtype) for tree in self.trees_]
        for tree in model.trees_:
            _check_some_weights(tree, weight_threshold, "weight_threshold")
        model.fit_seconds_ = []
        return model

    def _is_fitted(self) -> bool:
        return bool(self.trees_)

    # ---- persistence -----------------------------------------------------------
    def _manifest_extra(self) -> dict:
        return {"n_trees": len(self.trees_), "featurizer": self.featurizer_ is not None,
                "normalizes_features": self.normalizes_features_}

    def _save_parts(self, directory: str) -> None:
        if self.featurizer_ is not None:
            self.featurizer_.save(os.path.join(directory, "featurizer"))
        for k, tree in enumerate(self.trees_):
            tree.save(os.path.join(directory, f"tree-{k}"))

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = False) -> "XRLinear":
        """Load a saved model. ``mmap=True`` maps the trees' weight arrays read-only from the
        directory's ``.npy`` files instead of reading them (PECOS's lazy load): a server starts
        faster and its worker processes share those pages. The directory must then stay in place
        and unchanged while the model is in use (a retrain writes a new directory and renames it,
        so a mapped model keeps reading the old files)."""
        manifest, config = cls._read(directory)
        model = cls(config)
        featurizer_dir = os.path.join(directory, "featurizer")
        if manifest.get("featurizer") and not os.path.isdir(featurizer_dir):
            raise ModelFormatError(f"{os.fspath(directory)}: the TF-IDF featurizer (featurizer/) is missing")
        model.featurizer_ = TfidfFeaturizer.load(featurizer_dir) if os.path.isdir(featurizer_dir) else None
        n_trees = manifest.get("n_trees")
        if isinstance(n_trees, bool) or not isinstance(n_trees, int) or n_trees < 1:
            raise ModelFormatError(f"{os.fspath(directory)}/xmc_model.json: \"n_trees\" must be a whole number >= 1, "
                                   f"got {n_trees!r}")
        # Written before the flag: the CLI trains with fit, which normalised a dataset's own features as configured.
        model.normalizes_features_ = bool(manifest.get(
            "normalizes_features", model.featurizer_ is None and config.normalize_data_features))
        model.trees_ = [HierarchicalLinear.load(os.path.join(directory, f"tree-{k}"), mmap=mmap)
                       for k in range(n_trees)]
        for k, tree in enumerate(model.trees_):
            if tree.n_labels != model.trees_[0].n_labels or tree.n_features != model.trees_[0].n_features:
                raise ModelFormatError(f"{os.fspath(directory)}/tree-{k}: its shape differs from tree-0's")
            if model.featurizer_ is not None and tree.n_features != model.featurizer_.n_features:
                raise ModelFormatError(f"{os.fspath(directory)}/tree-{k}: {tree.n_features} features, the "
                                       f"featurizer makes {model.featurizer_.n_features}")
        model.labels_ = cls._labels(directory, model.trees_[0].n_labels)
        # Directories written before weight_dtype existed hold float32 weights: the config says what is stored.
        model.config.train.weight_dtype = model.trees_[0].weight_dtype
        return model


class NoWeightsError(ConfigError):
    """Training or pruning left no weight at all: the model would score every label the same."""


def _check_some_weights(tree: HierarchicalLinear, threshold, name: str) -> None:
    """NoWeightsError when ``threshold`` removed every weight: every label would then score the same."""
    if tree.n_weights() == 0:
        raise NoWeightsError(f"{name}={threshold:g} removed every weight of the model (all labels would score "
                          "the same); lower it")
