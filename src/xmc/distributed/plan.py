"""Split the training of one label tree's linear layers into independent tasks, and put it back together.

With teacher-forced negatives (``tfn``) a node's classifiers train only on the rows
that hold a label below their parent, so the tree splits cleanly at a level ``s``:

- a **sub-tree task** per node g of level s trains every layer below g (the
  classifiers of g's descendants) and receives only the rows that hold a label
  below g, with just those labels: ``X[R_g]`` and ``Y[R_g, labels(g)]``;
- one **top task** trains layers ``0 .. s-1`` (the root's few classifiers), which
  need every row: it receives ``X`` and ``Y`` whole (a flat one-level tree has
  only this layer, split instead into chunks of its classifiers).

Every task calls :func:`xmc.ranker.hierarchy.train_layer`, the function the
single-process path calls for whole layers, with global child ids (the solver's
seed is ``seed + child id``) and its rows in their original order, so each
classifier comes out bit for bit as in :meth:`HierarchicalLinear.fit`.

This module is engine-free (numpy / scipy only); :mod:`xmc.distributed.engine`
ships the tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..indexing.tree import ClusterChain
from ..ranker.hierarchy import HierarchicalLinear, LinearTrainConfig, SolverRows, train_layer
from ..ranker.negatives import binarize, negative_indicator

logger = logging.getLogger(__name__)

# Set by tests only: the path of a flag file. The first task to create it kills its worker
# process half-way through (after its first layer), so the engine's retry is exercised.
CRASH_ONCE_ENV = "XMC_DISTRIBUTED_TEST_CRASH_ONCE"


@dataclasses.dataclass
class LayerPart:
    """The classifiers of one layer that a task trains.

    Attributes:
        layer: the layer index (``chain[layer]``).
        children: (m,) sorted global ids of the layer's children (tree nodes, or labels for the last layer).
        parents: (m,) global id of each child's parent.
        n_children: the layer's total child count.
        label_ancestor: (L_t,) for each of the task's labels, its ancestor among the layer's children.
    """

    layer: int
    children: np.ndarray
    parents: np.ndarray
    n_children: int
    label_ancestor: np.ndarray


@dataclasses.dataclass
class TrainTask:
    """One unit of distributed training: what a worker receives.

    Attributes:
        key: a name for logs and progress (``top``, ``subtree-3``, ``layer0-chunk-2``).
        X: CSR (n_t, d): only the rows the task's classifiers train on, in their original order.
        Y: CSR (n_t, L_t) 0/1: those rows' labels among the task's labels (compact columns).
        parts: the layers' classifiers to train.
        config: the training settings.
        n_threads: solver threads on the worker (0 = the worker's own count).
    """

    key: str
    X: sp.csr_matrix
    Y: sp.csr_matrix
    parts: list[LayerPart]
    config: LinearTrainConfig
    n_threads: int = 0

    @property
    def cost(self) -> int:
        """A size estimate for scheduling big tasks first: non-zeros times layers."""
        return int(self.X.nnz) * len(self.parts)


@dataclasses.dataclass
class TaskSpec:
    """A task before its matrices are cut (the driver cuts them only when it submits the task)."""

    key: str
    rows: np.ndarray | None  # sorted row ids; None = all rows
    labels: np.ndarray | None  # sorted label ids; None = all labels
    parts: list[LayerPart]
    cost: int


def split_level(chain: ClusterChain, n_workers: int) -> int:
    """The tree level whose nodes root the sub-tree tasks: the shallowest with at least two nodes per
    worker (so the engine can balance them), at most the leaf clusters' level."""
    sizes = chain.level_sizes
    for s in range(1, len(chain)):
        if sizes[s - 1] >= 2 * n_workers:
            return s
    return len(chain) - 1


def plan(Y: sp.csr_matrix, chain: ClusterChain, config: LinearTrainConfig, n_workers: int) -> list[TaskSpec]:
    """The tasks that train every layer of ``chain`` on labels ``Y`` (n, L), biggest first.

    Raises:
        ConfigError: negatives other than ``tfn`` (``man`` ranks every row with the upper layers,
            so its row sets are only known level by level on the whole data).
    """
    if config.negatives != "tfn":
        raise ConfigError(f"distributed training supports train.negatives 'tfn' only, got {config.negatives!r} "
                          "(matcher-aware negatives need the whole tree's beam over every row)")
    Y = binarize(Y)
    n, L = Y.shape
    depth = len(chain)
    # ancestor[j][label]: the label's ancestor among layer j's children (identity for the last layer)
    ancestor = [np.arange(L, dtype=np.int64) if j == depth - 1
                else sp.csr_matrix(chain.label_to_level(j)).indices.astype(np.int64) for j in range(depth)]
    parents = [chain.parents(j) for j in range(depth)]
    label_counts = np.diff(sp.csc_matrix(Y).indptr)
    specs: list[TaskSpec] = []
    if depth == 1:  # flat one-vs-all: chunks of the label layer, each on every row
        n_chunks = max(1, min(4 * n_workers, L))
        for k, children in enumerate(np.array_split(np.arange(L, dtype=np.int64), n_chunks)):
            specs.append(TaskSpec(f"layer0-chunk-{k}", None, children,
                                  [LayerPart(0, children, parents[0][children], L, children)],
                                  int(Y.shape[0]) * len(children)))
        return specs
    s = split_level(chain, n_workers)
    all_labels = np.arange(L, dtype=np.int64)
    top = [LayerPart(j, np.arange(chain.level_sizes[j], dtype=np.int64), parents[j], chain.level_sizes[j],
                     ancestor[j]) for j in range(s)]
    specs.append(TaskSpec("top", None, None, top, int(Y.nnz) * s))
    # Rows of sub-tree g: those with a label below g, i.e. column g of the level-s teacher-forced indicator.
    below = sp.csc_matrix(binarize(Y @ chain.label_to_level(s - 1)))
    below.sort_indices()
    by_node = np.argsort(ancestor[s - 1], kind="stable")
    starts = np.searchsorted(ancestor[s - 1][by_node], np.arange(chain.level_sizes[s - 1] + 1))
    for g in range(chain.level_sizes[s - 1]):
        labels = np.sort(by_node[starts[g]:starts[g + 1]])
        rows = below.indices[below.indptr[g]:below.indptr[g + 1]].astype(np.int64)
        parts = []
        for j in range(s, depth):
            children = np.unique(ancestor[j][labels])
            parts.append(LayerPart(j, children, parents[j][children], chain.level_sizes[j], ancestor[j][labels]))
        specs.append(TaskSpec(f"subtree-{g}", rows, labels, parts, int(label_counts[labels].sum()) * len(parts)))
    # The top task first (it reads every row), then the sub-trees biggest first, so the engine balances them.
    return specs[:1] + sorted(specs[1:], key=lambda t: -t.cost)


def materialise(spec: TaskSpec, X: sp.csr_matrix, Y: sp.csr_matrix, config: LinearTrainConfig,
                n_threads: int = 0) -> TrainTask:
    """Cut the task's rows and labels out of X (n, d) and Y (n, L)."""
    Xt = X if spec.rows is None else X[spec.rows]
    Yt = Y if spec.rows is None else Y[spec.rows]
    if spec.labels is not None:
        Yt = Yt[:, spec.labels]
    return TrainTask(spec.key, sp.csr_matrix(Xt), binarize(Yt), spec.parts, config, n_threads)


def _layer_matrices(task: TrainTask, part: LayerPart) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """(pos, neg, local parent of each child) of one layer part over the task's rows: pos (n_t,
    n_children) in global child columns, neg (n_t, P) over the part's P distinct parents."""
    Y = task.Y
    pos = binarize(sp.csr_matrix((Y.data, part.label_ancestor[Y.indices], Y.indptr),
                                 shape=(Y.shape[0], part.n_children)))
    uniq = np.unique(part.parents)
    local_parent = np.searchsorted(uniq, part.parents)
    C = sp.csc_matrix((np.ones(len(part.children), dtype=np.float32), (part.children, local_parent)),
                      shape=(part.n_children, len(uniq)))
    return pos, negative_indicator("tfn", pos, C, None), local_parent


def run_task(task: TrainTask, n_threads: int | None = None) -> list[tuple[int, np.ndarray, sp.csc_matrix, np.ndarray]]:
    """Train a task's classifiers (on a worker).

    Returns:
        Per layer part: (layer, children, weights CSC (d + 1, m), solver passes (m,)).
    """
    from ..ranker.hierarchy import _threads

    threads = _threads(n_threads or task.n_threads or None)
    rows = SolverRows.from_csr(task.X)
    out = []
    for k, part in enumerate(task.parts):
        pos, neg, local_parent = _layer_matrices(task, part)
        W, iters = train_layer(rows, pos, neg, part.children, local_parent, task.config, threads)
        out.append((part.layer, part.children, W, iters))
        if k == 0:
            _crash_once_for_tests()
    return out


def _crash_once_for_tests() -> None:
    path = os.environ.get(CRASH_ONCE_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    logger.warning("%s set: killing this worker process once", CRASH_ONCE_ENV)
    os._exit(1)


def assemble(chain: ClusterChain, n_features: int, config: LinearTrainConfig,
             results: Iterator[list[tuple[int, np.ndarray, sp.csc_matrix, np.ndarray]]]) -> HierarchicalLinear:
    """One :class:`HierarchicalLinear` from the tasks' results (in any order).

    Raises:
        RuntimeError: a layer's classifiers are missing or trained twice.
    """
    pieces: list[list[tuple[np.ndarray, sp.csc_matrix]]] = [[] for _ in range(len(chain))]
    for result in results:
        for layer, children, W, _iters in result:
            pieces[layer].append((children, W))
    weights = []
    for j, parts in enumerate(pieces):
        children = np.concatenate([c for c, _ in parts]) if parts else np.empty(0, dtype=np.int64)
        if not np.array_equal(np.sort(children), np.arange(chain.level_sizes[j])):
            raise RuntimeError(f"layer {j}: the tasks trained {len(children)} classifiers for "
                               f"{chain.level_sizes[j]} nodes")
        W = sp.hstack([W for _, W in parts], format="csc", dtype=np.float32)
        W = W[:, np.argsort(children, kind="stable")]
        W = sp.csc_matrix((W.data, W.indices, W.indptr), shape=(n_features + 1, chain.level_sizes[j]))
        weights.append(W)
    return HierarchicalLinear(chain, weights, config.bias)
