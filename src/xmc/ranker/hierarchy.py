"""XR-Linear's matrix core: one sparse linear layer per level of a label tree, and beam search.

Layer ``i`` ranks the children of ``chain[i]`` (clusters of level i+1, or the
labels for the last layer) given their parents. Its weights are a CSC matrix
of shape (d + 1, K_children), the last row holding the bias weight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import zipfile
from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp
from ..progress import progress_bar

from ..config import Config, check
from ..errors import ModelFormatError
from ..indexing.tree import ClusterChain
from ..io import JSON_ERRORS, json_problem
from ..metrics.topk import topk_to_csr
from ..sparse_rows import csr32, unsigned_indices
from .beam import POST_PROCESSORS, VALUE_TYPES, LayerWeights, beam_step, pointer_type
from .negatives import SCHEMES, binarize, negative_indicator
from .solvers import LOSS_LOGISTIC, LOSS_SQUARED_HINGE, train_children

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LinearTrainConfig(Config):
    """How each layer's one-vs-all classifiers are trained.

    Attributes:
        loss: ``squared-hinge`` (L2-loss SVM, default) or ``logistic``.
        C: inverse regularisation strength (same for positives and negatives); ``"auto"``
            (XR-Linear's default) picks by the label count and the training documents per label when
            training starts (:func:`auto_C`).
        bias: value of the constant feature appended to every instance (0 disables it).
        weight_threshold: weights with ``|w| <= weight_threshold`` are dropped (model size).
            0.1 as in PECOS; 0.02 (``configs/xr-linear-accurate.json``) gave +0.6 P@1 and
            +1.8 PSP@5 on a validation split of EURLEX57K train (tail labels keep their
            small weights) at the same training time, but a 7x larger model (float32; 2.1x PECOS's
            directory with int8 weights) and ~2x slower prediction (``benchmarks/validate_xr_linear.py``,
            BENCHMARKS.md); 0.05 (``configs/xr-linear-balanced.json``) keeps most of that gain at
            PECOS's prediction time with a 3x larger model (0.95x PECOS's directory with int8). ``"auto"``
            (XR-Linear's default) picks
            by the label count when training starts (:func:`auto_weight_threshold`).
        max_iter: passes of dual coordinate descent per classifier.
        eps: stopping tolerance of the dual solver.
        negatives: ``tfn``, ``man`` or ``tfn+man`` (see :mod:`xmc.ranker.negatives`); for a
            stand-alone XR-Linear model ``man`` uses the model's own upper layers as matcher.
        man_beam: the matcher's top-b clusters that ``man`` trains on.
        seed: seed of the solvers' instance order.
        weight_dtype: how the kept weights are stored and used for prediction: ``float32`` as
            trained, or ``int16`` / ``int8``: each classifier's weights rounded to a grid of
            ``max |w| / 32767`` or ``/ 127`` (one float32 scale per classifier; see
            :class:`xmc.ranker.beam.LayerWeights`); int8 stores a weight in 2 bytes instead of 5.
    """

    loss: Literal["squared-hinge", "logistic"] = "squared-hinge"
    C: float | Literal["auto"] = 1.0
    bias: float = 1.0
    weight_threshold: float | Literal["auto"] = 0.1
    max_iter: int = 100
    eps: float = 0.1
    negatives: Literal["tfn", "man", "tfn+man"] = "tfn"
    man_beam: int = 10
    seed: int = 0
    weight_dtype: Literal["float32", "int16", "int8"] = "float32"

    def validate(self) -> None:
        check(self.weight_dtype in VALUE_TYPES, f"weight_dtype must be one of {list(VALUE_TYPES)}")
        check(self.C == AUTO or self.C > 0, f"C must be positive or \"auto\", got {self.C}")
        check(self.weight_threshold == AUTO or self.weight_threshold >= 0, "weight_threshold must be >= 0")
        check(self.max_iter >= 1, "max_iter must be >= 1")
        check(self.eps > 0, "eps must be positive")
        check(self.man_beam >= 1, "man_beam must be >= 1")
        check(self.negatives in SCHEMES, f"negatives must be one of {SCHEMES}")

    def resolved(self, space: "LabelSpace") -> "LinearTrainConfig":
        """This config with ``weight_threshold`` and ``C`` ``"auto"`` replaced for the training labels
        ``space`` (itself if neither is)."""
        changes = {}
        if self.weight_threshold == AUTO:
            changes["weight_threshold"] = auto_weight_threshold(space.n_labels)
        if self.C == AUTO:
            changes["C"] = auto_C(space)
        return dataclasses.replace(self, **changes) if changes else self

    def resolved_for(self, Y: sp.spmatrix) -> "LinearTrainConfig":
        """:meth:`resolved` for the label matrix ``Y``, which is read only when a field is ``"auto"``."""
        return self.resolved(LabelSpace.of(Y)) if AUTO in (self.C, self.weight_threshold) else self


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """What the ``"auto"`` rules read from the training labels: how many there are, and how many
    training documents the median label has."""

    n_labels: int
    median_docs_per_label: float

    @classmethod
    def of(cls, Y: sp.spmatrix) -> "LabelSpace":
        """From the (n, L) label matrix; labels without a training document count as 0."""
        Y = sp.csr_matrix(Y)
        if not Y.has_canonical_format:  # a label listed twice in one document counts once
            Y = Y.copy()
            Y.sum_duplicates()
        counts = np.bincount(Y.indices[Y.data != 0], minlength=Y.shape[1])
        return cls(Y.shape[1], float(np.median(counts)) if Y.shape[1] else 0.0)

    def __str__(self) -> str:
        return f"{self.n_labels:,} labels, median {self.median_docs_per_label:g} training documents per label"


AUTO = "auto"
# Below this many labels the model is small enough to keep more of its small (tail) weights.
SMALL_LABEL_SPACE = 8192
# "auto" regularises more (C 0.5; see auto_C) below this many labels, when the median label has at
# least WELL_SUPPORTED training documents.
FEW_LABELS = 512
WELL_SUPPORTED = 20


def auto_C(space: LabelSpace) -> float:
    """The ``C`` ``"auto"`` stands for: 0.5 below 512 labels when the median label has 20 or more
    training documents, else PECOS's 1.

    Chosen on validation splits of train (``benchmarks/validate_xr_linear.py --variants
    auto-C1,auto-C0.5``, int8 weights; BENCHMARKS.md, "C by label count and documents per label").
    Medians below are those of the training folds, what the rule sees there. C 0.5 scored higher on
    bibtex (159 labels, median 43: +0.6 P@1, +1.1 PSP@5) and its first 2,400 documents (median 22:
    +0.1 P@1, +0.6 PSP@5), ave-implicitave (151 labels) and ave-myntra_fashion (62), and tied on
    bibtex's first 1,200 (median 11). It scored lower with more labels, whatever their documents:
    EURLEX57K's 1,000 most frequent labels (median 75: -0.2 P@1, -1.0 PSP@5), all of EURLEX57K,
    ave-ae110k_subset (900) and ave-wdc_pave (2,728); and lower on few thin labels: ``xmc demo``'s
    corpus, 200 labels (median 7: -3.3 P@1; 14 at twice its documents: -1.6 P@1).
    """
    return 0.5 if space.n_labels < FEW_LABELS and space.median_docs_per_label >= WELL_SUPPORTED else 1.0


def auto_weight_threshold(n_labels: int) -> float:
    """The weight threshold ``"auto"`` stands for: 0.05 below 8,192 labels, else PECOS's 0.1.

    Chosen on validation splits of train (``benchmarks/validate_xr_linear.py``, BENCHMARKS.md):
    on EURLEX57K (4,271 labels) 0.05 gave +0.33 P@1 and +1.5 PSP@5 over 0.1, for a 2.5x larger
    model (97 MB) that still predicts faster than PECOS at 0.1; on the generated 10k- and
    100k-label problems 0.1 scored higher (-0.45 and -0.16 P@1 at 0.05) and keeps large models
    small; on bibtex (159 labels) the two are within 0.25 of each other on every metric.
    """
    return 0.05 if n_labels < SMALL_LABEL_SPACE else 0.1


@dataclasses.dataclass
class PredictConfig(Config):
    """Prediction-time settings (each may be overridden per call).

    Attributes:
        beam_size: clusters kept per level during beam search (see :mod:`xmc.models.base`).
        topk: labels returned per instance.
        post_processor: ``l3-hinge`` (exp(-max(0, 1-s)^3)) or ``sigmoid``, each multiplied
            along the tree path; ``noop`` ranks by the raw label-layer scores.
        threshold: when set, scores below it are dropped from the output.
    """

    beam_size: int = 10
    topk: int = 10
    post_processor: Literal["l3-hinge", "sigmoid", "noop"] = "l3-hinge"
    threshold: float | None = None

    def validate(self) -> None:
        check(self.beam_size >= 1, "beam_size must be >= 1")
        check(self.topk >= 1, "topk must be >= 1")
        check(self.post_processor in POST_PROCESSORS, f"post_processor must be one of {list(POST_PROCESSORS)}")


def _threads(n_threads: int | None) -> int:
    return numba.config.NUMBA_NUM_THREADS if not n_threads else min(n_threads, numba.config.NUMBA_NUM_THREADS)


@contextlib.contextmanager
def _parallel_team(threads: int):
    """numba's parallel regions opened by this thread use ``threads`` threads until the block ends.

    A region wakes its whole team (all cores by default) whatever its work: with
    ``OMP_WAIT_POLICY=PASSIVE`` that cost about 65 us per beam layer on a 2-core VM, a third of a
    served EURLEX57K document's search. A team of one runs in the calling thread and wakes none. The
    setting is numba's thread-local one, so other threads (a server's other workers) keep theirs.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@dataclasses.dataclass
class SolverRows:
    """Training rows as the solvers read them: CSR arrays of X (n, d) and each row's squared norm.

    Everything here is per row, so a subset of rows (a worker's share in
    :mod:`xmc.distributed`) gives bit-for-bit the values of the same rows of the whole matrix.
    """

    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) uint32
    data: np.ndarray  # (nnz,) float32
    n_features: int
    sq_norms: np.ndarray  # (n,) float64

    @classmethod
    def from_csr(cls, X: sp.spmatrix) -> "SolverRows":
        X = csr32(X)
        # Unsigned feature ids: about 25% faster training (see unsigned_indices).
        return cls(X.indptr.astype(np.int64), unsigned_indices(X), X.data, X.shape[1],
                   np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel())


def train_layer(
    rows: SolverRows,
    pos: sp.spmatrix,
    neg: sp.spmatrix,
    children: np.ndarray,
    parents: np.ndarray,
    config: LinearTrainConfig,
    n_threads: int,
) -> tuple[sp.csc_matrix, np.ndarray]:
    """Train the one-vs-all problems of some children of one layer: the one home of layer training,
    called for whole layers by :meth:`HierarchicalLinear.fit` and for sub-trees by the workers of
    :mod:`xmc.distributed`.

    Child ``children[t]`` is trained on the rows marked for its parent ``parents[t]`` in ``neg``,
    with the rows marked in its column of ``pos`` as positives; its solver seed is
    ``config.seed + children[t]``, so a child's weights do not depend on which other children
    are trained in the same call nor on the row subset holding its rows (rows keep their order).

    Args:
        rows: the training rows (n of them).
        pos: (n, K) 0/1 targets; column ``children[t]`` holds child t's positives (K > max child id).
        neg: (n, P) 0/1 training indicator; column ``parents[t]`` holds child t's training rows.
        children: (m,) child ids (columns of ``pos``; the layer's node ids).
        parents: (m,) their parents (columns of ``neg``).
        config: training settings (loss, C, bias, eps, max_iter, weight_threshold, seed).
        n_threads: threads.

    Returns:
        The weights, CSC (d + 1, m) (row d holds the bias weight), and each problem's solver passes.
    """
    if AUTO in (config.weight_threshold, config.C):
        raise ValueError("weight_threshold and C 'auto' must be resolved first (LinearTrainConfig.resolved)")
    neg = sp.csc_matrix(neg)
    neg.sort_indices()
    pos = sp.csc_matrix(pos)
    pos.sort_indices()
    loss = LOSS_LOGISTIC if config.loss == "logistic" else LOSS_SQUARED_HINGE
    col_ptr, row_ind, values, iters = train_children(
        rows.indptr, rows.indices, rows.data, rows.n_features, rows.sq_norms, config.bias,
        np.asarray(children, dtype=np.int64), np.asarray(parents, dtype=np.int64),
        neg.indptr.astype(np.int64), neg.indices.astype(np.int32),
        pos.indptr.astype(np.int64), pos.indices.astype(np.int32),
        loss, config.C, config.eps, config.max_iter, config.weight_threshold, config.seed, n_threads,
    )
    return sp.csc_matrix((values, row_ind, col_ptr), shape=(rows.n_features + 1, len(children))), iters


class HierarchicalLinear:
    """A trained chain of sparse linear layers over a :class:`ClusterChain`.

    Args:
        chain: the label tree.
        weights: one CSC matrix (d + 1, K_children) per layer.
        bias: the bias feature value used in training.
        weight_dtype: how the weights are kept (:attr:`LinearTrainConfig.weight_dtype`).
    """

    def __init__(self, chain: ClusterChain, weights: list[sp.csc_matrix], bias: float = 1.0,
                 weight_dtype: str = "float32"):
        if len(weights) != len(chain):
            raise ValueError(f"{len(weights)} weight matrices for a chain of {len(chain)} layers")
        for i, (W, C) in enumerate(zip(weights, chain.matrices)):
            if W.shape[1] != C.shape[0]:
                raise ValueError(f"layer {i}: weights have {W.shape[1]} columns, the tree level has {C.shape[0]} nodes")
        if weight_dtype not in VALUE_TYPES:
            raise ValueError(f"weight_dtype {weight_dtype!r} is not one of {list(VALUE_TYPES)}")
        self.chain = chain
        self.bias = float(bias)
        self.weight_dtype = weight_dtype
        self._shapes = [tuple(W.shape) for W in weights]
        # Each layer is kept as CSC (from training), as the beam kernel's layout, or both: one is
        # derived from the other on first use, and building the kernel's drops the CSC (the
        # model's memory is then one copy of its weights, as on disk).
        self._csc: list[sp.csc_matrix | None] = [None] * len(weights)
        self._kernel: list[tuple | None] = [None] * len(weights)
        self._build_lock = threading.Lock()  # concurrent first predictions build each layer once
        for i, W in enumerate(weights):
            self._set_layer(i, W)

    @classmethod
    def _from_layers(cls, chain: ClusterChain, layers: list[LayerWeights], shapes, bias: float) -> "HierarchicalLinear":
        model = cls.__new__(cls)
        model.chain, model.bias = chain, float(bias)
        model._shapes = [tuple(int(x) for x in shape) for shape in shapes]
        model.weight_dtype = layers[-1].value_type if layers else "float32"
        model._csc = [None] * len(layers)
        model._kernel = [layer.arrays() for layer in layers]
        model._build_lock = threading.Lock()
        return model

    @property
    def weights(self) -> list[sp.csc_matrix]:
        """One CSC matrix (d + 1, K_children) per layer, bias row last: the weights the model predicts
        with (derived from the kernel's layout when the model was loaded or its weights are
        integers; kept from then on)."""
        for i, W in enumerate(self._csc):
            if W is None:
                self._csc[i] = LayerWeights(*self._kernel[i]).csc(self._shapes[i])
        return list(self._csc)

    def n_weights(self) -> int:
        """Weights stored over all layers (counted without building a layer's CSC copy)."""
        return sum(W.nnz if W is not None else len(LayerWeights(*K).entry_value)
                   for W, K in zip(self._csc, self._kernel))

    def _set_layer(self, i: int, W: sp.csc_matrix) -> None:
        self._csc[i] = sp.csc_matrix(W, dtype=np.float32)
        self._kernel[i] = None
        if self.weight_dtype != "float32":  # rounded now: every later use sees the weights that predict
            self._layer_arrays(i)

    def _layer_arrays(self, i: int) -> tuple:
        """Layer ``i`` as the beam kernel reads it (:class:`LayerWeights`), built once per layer,
        so a one-document query copies nothing."""
        if self._kernel[i] is None:
            with self._build_lock:
                if self._kernel[i] is None:
                    self._kernel[i] = LayerWeights.build(self._csc[i], self.chain[i],
                                                         value_type=self.weight_dtype).arrays()
                    self._csc[i] = None
        return self._kernel[i]

    @property
    def n_features(self) -> int:
        return self._shapes[0][0] - 1

    @property
    def n_labels(self) -> int:
        return self.chain.n_labels

    # ---- training --------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        X: sp.csr_matrix,
        Y: sp.csr_matrix,
        chain: ClusterChain,
        config: LinearTrainConfig | None = None,
        *,
        matcher_ids: np.ndarray | None = None,
        layers: list[int] | None = None,
        n_threads: int | None = None,
        progress: bool = False,
    ) -> "HierarchicalLinear":
        """Train every layer.

        Args:
            X: features, CSR (n, d).
            Y: labels, CSR (n, L).
            chain: the label tree (L labels).
            config: training settings.
            matcher_ids: (n, b) top-b leaf clusters from an external matcher (e.g. a
                fine-tuned transformer); used by ``man`` / ``tfn+man`` for the label
                layer. Without it the model's own upper layers serve as matcher.
            layers: train only these layers (others keep empty weights), e.g. just the
                label layer when a neural matcher replaces the upper ones.
            n_threads: threads (default: all).
            progress: show a progress bar over layers.
        """
        X = csr32(X)
        Y = binarize(Y)
        config = (config or LinearTrainConfig()).resolved_for(Y)
        if Y.shape != (X.shape[0], chain.n_labels):
            raise ValueError(f"Y has shape {Y.shape}, expected ({X.shape[0]}, {chain.n_labels})")
        threads = _threads(n_threads)
        rows = SolverRows.from_csr(X)
        model = cls(chain, [sp.csc_matrix((X.shape[1] + 1, k), dtype=np.float32) for k in chain.level_sizes],
                    config.bias, config.weight_dtype)
        todo = range(len(chain)) if layers is None else sorted({i % len(chain) for i in layers})
        for i in progress_bar(todo, desc="layers", disable=not progress):
            C = chain[i]
            Y_children = binarize(Y @ chain.label_to_level(i)) if i < len(chain) - 1 else Y
            man_ids = None
            t_negatives = time.perf_counter()
            if config.negatives != "tfn" and C.shape[1] > 1:
                if matcher_ids is not None and i == len(chain) - 1:
                    man_ids = matcher_ids
                else:
                    man_ids, _ = model._beam(X, upto=i, beam_size=config.man_beam, post="l3-hinge", threads=threads)
            neg = negative_indicator(config.negatives, Y_children, C, man_ids)
            t0 = time.perf_counter()
            negatives_s = t0 - t_negatives  # the matcher's beam (MAN negatives) and the indicator
            W, iters = train_layer(rows, Y_children, neg, np.arange(C.shape[0], dtype=np.int64),
                                   chain.parents(i), config, threads)
            model._set_layer(i, W)
            logger.info("layer %d: %d classifiers, %d non-zero weights, %.1f s (negatives %.1f s); solver passes: "
                        "mean %.1f, %d of %d problems stopped at max_iter", i, C.shape[0], W.nnz,
                        time.perf_counter() - t0, negatives_s, iters.mean(), int((iters >= config.max_iter).sum()),
                        len(iters))
        return model

    def pruned(self, weight_threshold: float = 0.0, weight_dtype: str | None = None) -> "HierarchicalLinear":
        """A copy without the weights of magnitude ``<= weight_threshold`` (bias weights included),
        stored as ``weight_dtype`` (default: this model's).

        The solvers apply the same rule as they write each classifier out, and each classifier's
        solution does not depend on the threshold nor on how the other layers are stored (with
        ``tfn`` negatives), so pruning a model trained at a lower threshold, or rounding a float32
        model to integers, gives the model trained with those settings, without retraining: a
        size / speed / accuracy trade-off can be chosen after training. From integer weights the
        threshold is applied to the rounded values, so a weight within half a step of it may fall
        on the other side than in training: prune a float32 model where that matters.
        """
        weights = []
        for W in self.weights:
            W = sp.csc_matrix(W, copy=True)
            W.data[np.abs(W.data) <= weight_threshold] = 0.0
            W.eliminate_zeros()
            weights.append(W)
        return type(self)(self.chain, weights, self.bias, weight_dtype or self.weight_dtype)

    # ---- prediction ------------------------------------------------------------
    def _beam(self, X, *, upto, beam_size, post, threads, topk=None, selected=None, start=None):
        """Beam search through layers ``0 .. upto-1``; returns (ids, scores) of level ``upto``'s parents.

        ``start=(level, ids, scores)`` begins from a given beam over the nodes of tree level
        ``level`` (e.g. a neural matcher's top clusters) instead of the root.
        """
        n = X.shape[0]
        first = 0
        ids = np.zeros((n, 1), dtype=np.int64)
        scores = np.ones((n, 1), dtype=np.float32)
        if start is not None:
            first, ids, scores = start
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            scores = np.ascontiguousarray(scores, dtype=np.float32)
        empty = np.zeros(1, dtype=np.int64)
        x_indptr = X.indptr.astype(np.int64)
        x_indices = unsigned_indices(X)
        team = max(1, min(threads, n))  # rows are what threads share
        with _parallel_team(team):
            for i in range(first, upto):
                last = i == len(self.chain) - 1
                out_k = topk if (last and topk is not None) else beam_size
                layer = self._layer_arrays(i)
                mask = None
                if selected is not None:
                    mask = selected if last else binarize(selected @ self.chain.label_to_level(i))
                # Rows with the same best parent read the same weight groups: scored back to back, they
                # find them still cached (EURLEX57K's label layer: about 10% faster, BENCHMARKS.md).
                row_order = np.argsort(ids[:, 0], kind="stable")
                ids, scores = beam_step(
                    x_indptr, x_indices, X.data, self.n_features, self.bias,
                    *layer,
                    ids, scores,
                    empty if mask is None else mask.indptr.astype(np.int64),
                    empty if mask is None else mask.indices.astype(np.int64),
                    mask is not None,
                    out_k, POST_PROCESSORS[post], team, row_order,
                )
        return ids, scores

    def predict(
        self,
        X: sp.csr_matrix,
        *,
        beam_size: int = 10,
        topk: int = 10,
        post_processor: str = "l3-hinge",
        selected_outputs: sp.csr_matrix | None = None,
        threshold: float | None = None,
        n_threads: int | None = None,
    ) -> sp.csr_matrix:
        """Top-k label scores by beam search.

        Args:
            X: features, CSR (n, d).
            beam_size: clusters kept per level.
            topk: labels returned per row.
            post_processor: ``l3-hinge``, ``sigmoid`` or ``noop``.
            selected_outputs: optional (n, L) 0/1 CSR: predict only among these labels per row
                (clusters without a selected label are skipped during the search).
            threshold: drop scores below this value.
            n_threads: threads (default: all).

        Returns:
            CSR (n, L) holding at most ``topk`` scores per row.
        """
        X = csr32(X)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the model expects {self.n_features}")
        if post_processor not in POST_PROCESSORS:
            raise ValueError(f"unknown post_processor {post_processor!r}; choose from {list(POST_PROCESSORS)}")
        selected = None
        if selected_outputs is not None:
            if selected_outputs.shape != (X.shape[0], self.n_labels):
                raise ValueError(f"selected_outputs has shape {selected_outputs.shape}, expected {(X.shape[0], self.n_labels)}")
            selected = binarize(selected_outputs)
            selected.sort_indices()
        ids, scores = self._beam(
            X, upto=len(self.chain), beam_size=beam_size, post=post_processor,
            threads=_threads(n_threads), topk=topk, selected=selected,
        )
        if threshold is not None:
            ids = np.where(scores >= threshold, ids, -1)
        return topk_to_csr(ids, scores, self.n_labels)

    def predict_from(
        self,
        X: sp.csr_matrix,
        ids: np.ndarray,
        scores: np.ndarray,
        *,
        beam_size: int = 10,
        topk: int = 10,
        post_processor: str = "l3-hinge",
        selected_outputs: sp.csr_matrix | None = None,
        n_threads: int | None = None,
    ) -> sp.csr_matrix:
        """Top-k label scores starting from a given beam over the leaf clusters.

        ``ids`` / ``scores`` (n, b) are an external matcher's top leaf clusters (-1 padded)
        and their path scores; each label's score is its cluster's score combined with the
        label layer's post-processed score (a product for ``l3-hinge`` / ``sigmoid``).
        """
        X = csr32(X)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, the model expects {self.n_features}")
        selected = None
        if selected_outputs is not None:
            selected = binarize(selected_outputs)
            selected.sort_indices()
        level = len(self.chain) - 1
        out_ids, out_scores = self._beam(
            X, upto=len(self.chain), beam_size=beam_size, post=post_processor, threads=_threads(n_threads),
            topk=topk, selected=selected, start=(level, ids, scores),
        )
        return topk_to_csr(out_ids, out_scores, self.n_labels)

    def predict_clusters(self, X: sp.csr_matrix, level: int, beam_size: int = 10, n_threads: int | None = None):
        """Top-``beam_size`` clusters of tree level ``level`` (nodes of ``chain[level - 1]``), as (ids, scores)."""
        return self._beam(csr32(X), upto=level, beam_size=beam_size, post="l3-hinge", threads=_threads(n_threads))

    # ---- persistence -----------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write the tree and, per layer, the beam kernel's arrays (:class:`LayerWeights`) as ``.npy``.

        A loaded model predicts without rebuilding anything, and ``load(mmap=True)`` can map every
        array from the files (worker processes then share those pages).
        """
        os.makedirs(directory, exist_ok=True)
        self.chain.save(os.path.join(directory, "tree"))
        for i in range(len(self._shapes)):
            layer_dir = os.path.join(directory, f"layer-{i}")
            os.makedirs(layer_dir, exist_ok=True)
            for name, array in _stored_arrays(LayerWeights(*self._layer_arrays(i))).items():
                np.save(os.path.join(layer_dir, f"{name}.npy"), array, allow_pickle=False)
        with open(os.path.join(directory, "layers.json"), "w", encoding="utf-8") as fh:
            json.dump({"layers": len(self._shapes), "bias": self.bias, "n_features": self.n_features,
                       "layout": "feature", "shapes": [list(shape) for shape in self._shapes]}, fh)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = False) -> "HierarchicalLinear":
        """Load a saved model; ``mmap=True`` maps the weight arrays read-only instead of reading them
        (PECOS's ``is_predict_only`` lazy load): start-up reads almost nothing and processes loading
        the same directory share the pages. Directories of the older formats load too (read whole:
        ``layer-i.npz`` CSC files of format 1, the column arrays of format 2's ``layout: kernel``)."""
        meta = _read_layers_json(os.path.join(directory, "layers.json"))
        try:
            chain = ClusterChain.load(os.path.join(directory, "tree"))
            n_layers = meta["layers"]
            if n_layers != len(chain):
                raise ValueError(f"layers.json names {n_layers} layers, the tree has {len(chain)}")
            if meta.get("layout") == "feature":
                shapes = [tuple(shape) for shape in meta["shapes"]]
                layers = [_load_layer(os.path.join(directory, f"layer-{i}"), mmap, C)
                          for i, C in enumerate(chain.matrices)]
                # The numba kernels index without bounds checks: out-of-range indices must not get there.
                for layer, shape, C in zip(layers, shapes, chain.matrices):
                    if shape[1] != C.shape[0]:
                        raise ValueError(f"a layer of {shape[1]} columns for a tree level of {C.shape[0]} nodes")
                    layer.check(shape, C)
                model = cls._from_layers(chain, layers, shapes, meta["bias"])
            else:
                if meta.get("layout") == "kernel":  # format 2: its column arrays are the CSC matrix
                    weights = [_load_columns(os.path.join(directory, f"layer-{i}"), shape)
                               for i, shape in enumerate(meta["shapes"])]
                else:
                    weights = [sp.load_npz(os.path.join(directory, f"layer-{i}.npz")) for i in range(n_layers)]
                for W in weights:
                    sp.csc_matrix(W).check_format(full_check=True)
                model = cls(chain, weights, meta["bias"])
            if any(shape[0] != model._shapes[0][0] for shape in model._shapes):
                raise ValueError("the layers differ in their number of rows")
        except ModelFormatError:
            raise
        except (OSError, KeyError, ValueError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{directory}: cannot read linear layers ({exc})") from exc
        return model


def _read_layers_json(path: str) -> dict:
    """``layers.json`` with its fields checked, or ModelFormatError naming the file and the field (the
    layers are read from its shapes: a wrong one must not get as far as the kernels)."""
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: is missing (the model directory is incomplete)") from None
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:  # a ValueError too: before JSON_ERRORS
        raise ModelFormatError(f"{path}: not UTF-8 JSON ({exc.reason})") from None
    except JSON_ERRORS as exc:
        line = getattr(exc, "lineno", None)
        raise ModelFormatError(f"{path}{'' if line is None else f', line {line}'}: {json_problem(exc)}") from None

    def whole(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if not whole(meta.get("layers"), 1):
        raise ModelFormatError(f'{path}: "layers" must be a whole number >= 1, got {meta.get("layers")!r}')
    bias = meta.get("bias")
    if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not np.isfinite(bias):
        raise ModelFormatError(f'{path}: "bias" must be a finite number, got {bias!r}')
    layout = meta.get("layout")
    if layout not in (None, "feature", "kernel"):
        raise ModelFormatError(f'{path}: "layout" must be "feature" or "kernel", got {layout!r}')
    if layout is not None:  # format 1 (no layout) reads its shapes from its .npz files
        shapes = meta.get("shapes")
        if not (isinstance(shapes, list) and len(shapes) == meta["layers"]
                and all(isinstance(s, list) and len(s) == 2 and all(whole(x, 0) for x in s) for s in shapes)):
            raise ModelFormatError(f'{path}: "shapes" must list {meta["layers"]} [rows, columns] pairs of '
                                   f"whole numbers, got {shapes!r:.80}")
    return meta


# On disk a layer's two pointer arrays are kept as counts (feature f's groups, group g's entries) in
# the narrowest unsigned type: a group rarely holds more than 255 entries or a feature more than 255
# groups, so 4 bytes per group and per feature become 1 (on EURLEX57K's default model the group
# pointers alone were a third of the directory). Loading rebuilds the pointers with one cumulative
# sum, so they are read whole, not mapped; the weights themselves stay mappable. The children arrays
# are the tree's own and are not written twice.
_POINTER_COUNTS = {"feat_groups": "feat_group_counts", "group_start": "group_entry_counts"}


def _stored_arrays(layer: LayerWeights) -> dict[str, np.ndarray]:
    """What :meth:`HierarchicalLinear.save` writes for a layer: file name (no ``.npy``) -> array."""
    stored = {}
    for field in dataclasses.fields(LayerWeights):
        array = getattr(layer, field.name)
        if field.name in _POINTER_COUNTS:
            counts = np.diff(array.astype(np.int64)) if len(array) else np.zeros(0, dtype=np.int64)
            stored[_POINTER_COUNTS[field.name]] = counts.astype(np.min_scalar_type(int(counts.max(initial=0))))
        elif field.name not in ("child_indptr", "child_ids"):
            stored[field.name] = array
    return stored


def _pointers(counts: np.ndarray, name: str, signed: bool) -> np.ndarray:
    """Pointers 0, c0, c0 + c1, ... from stored counts, in the dtype :meth:`LayerWeights.build` gives
    (:func:`~xmc.ranker.beam.pointer_type`)."""
    if counts.ndim != 1 or counts.dtype.kind != "u":
        raise ValueError(f"{name}: expected a 1-D array of unsigned counts, got {counts.dtype} of shape {counts.shape}")
    pointers = np.zeros(len(counts) + 1, dtype=np.uint64)
    np.cumsum(counts, dtype=np.uint64, out=pointers[1:])
    return pointers.astype(pointer_type(int(pointers[-1]), signed=signed))


def _load_layer(directory: str, mmap: bool, C: sp.spmatrix) -> LayerWeights:
    def read(name: str, mapped: bool = mmap) -> np.ndarray:
        # np.asarray drops the memmap subclass (numba reads plain arrays) but keeps the mapped buffer.
        path = os.path.join(directory, f"{name}.npy")
        return np.asarray(np.load(path, allow_pickle=False, mmap_mode="r" if mapped else None))

    def exists(name: str) -> bool:
        return os.path.exists(os.path.join(directory, f"{name}.npy"))

    C = sp.csc_matrix(C)
    arrays = {}
    for field in dataclasses.fields(LayerWeights):
        name = field.name
        if name in _POINTER_COUNTS and exists(_POINTER_COUNTS[name]):  # format 4
            counts = read(_POINTER_COUNTS[name], mapped=False)
            pointers = _pointers(counts, _POINTER_COUNTS[name], signed=name == "feat_groups")
            # no group counts: stored per entry (group_start empty), as a layer without weights may be too
            arrays[name] = pointers if name == "feat_groups" or len(counts) else pointers[:0]
        elif name in ("child_indptr", "child_ids") and not exists(name):  # format 4: the tree's
            arrays[name] = (C.indptr if name == "child_indptr" else C.indices).astype(np.int64)
        elif name == "child_scale" and not exists(name):  # written before 2026-12-04: float32
            arrays[name] = np.ones(C.shape[0], dtype=np.float32)
        else:
            arrays[name] = read(name)
    if not exists("child_scale") and arrays["entry_value"].dtype != np.float32:  # scales of 1 would be wrong
        raise ValueError(f"{os.path.join(directory, 'child_scale.npy')} is missing: the "
                         f"{arrays['entry_value'].dtype} weights cannot be read without their scales")
    return LayerWeights(**arrays)


def _load_columns(directory: str, shape) -> sp.csc_matrix:
    """A format-2 layer's CSC weights (its ``col_*`` arrays; the feature-major copy is rebuilt)."""
    arrays = {name: np.load(os.path.join(directory, f"{name}.npy"), allow_pickle=False)
              for name in ("col_indptr", "col_rows", "col_values")}
    if arrays["col_rows"].dtype.kind not in "iu" or arrays["col_values"].dtype != np.float32:
        raise ValueError(f"{directory}: col_rows / col_values have dtypes {arrays['col_rows'].dtype} / "
                         f"{arrays['col_values'].dtype}")
    rows = arrays["col_rows"].astype(np.int64)
    return sp.csc_matrix((arrays["col_values"], rows, arrays["col_indptr"].astype(np.int64)),
                         shape=tuple(int(x) for x in shape))
