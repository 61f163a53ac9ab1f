"""Split the training of one label tree's linear layers into independent tasks, and put it back together.

With teacher-forced negatives (``tfn``) a node's classifiers train only on the rows
that hold a label below it, so the work splits along the tree:

- a **sub-tree task** for node g trains every layer below g and receives only the
  rows that hold a label below g, with just those labels: ``X[R_g]``, ``Y[R_g, labels(g)]``
  and a few index arrays;
- a **node task** for g trains only g's own children (one layer) on the same rows;
  a costly sub-tree is split into its node task and its children's sub-tree tasks
  (label popularity is skewed: a head cluster can hold most rows);
- the **top task** trains the root's few classifiers, which need every row: it
  receives ``X`` and ``Y`` whole (a flat one-level tree has only this layer, split
  instead into chunks of its classifiers, each on every row).

Every task calls :func:`xmc.ranker.hierarchy.train_layer`, the function the
single-process path calls for whole layers, with global child ids (the solver's
seed is ``seed + child id``) and its rows in their original order, so each
classifier comes out bit for bit as in :meth:`HierarchicalLinear.fit`.

This module is engine-free (numpy / scipy only); :mod:`xmc.distributed.engine`
ships the tasks.
"""

from __future__ import annotations

import dataclasses
import heapq
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
    cost: float  # estimated: classifiers x non-zeros of their rows


class _Tree:
    """The tree's levels as arrays, for planning: each level's label groups, row sets and costs."""

    def __init__(self, Y: sp.csr_matrix, chain: ClusterChain, row_weight: np.ndarray):
        self.chain = chain
        self.depth = depth = len(chain)
        n, L = Y.shape
        # ancestor[j][label]: the label's ancestor among layer j's children (identity for the last layer)
        self.ancestor = [np.arange(L, dtype=np.int64) if j == depth - 1
                         else sp.csr_matrix(chain.label_to_level(j)).indices.astype(np.int64) for j in range(depth)]
        self.parents = [chain.parents(j) for j in range(depth)]
        self.rows: dict[int, sp.csc_matrix] = {}  # level j >= 1 -> (n, K_j): rows with a label below each node
        self.own: dict[int, np.ndarray] = {}  # level j -> cost of training the children of each node
        self.by_node: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for j in range(1, depth):
            M = sp.csc_matrix(binarize(Y @ chain.label_to_level(j - 1)))
            M.sort_indices()
            self.rows[j] = M
            n_children = np.bincount(self.parents[j], minlength=chain.level_sizes[j - 1])
            # a node's classifiers cost about (its children) x (the non-zeros of its rows)
            self.own[j] = n_children * (row_weight @ M)
            order = np.argsort(self.ancestor[j - 1], kind="stable")
            self.by_node[j] = order, np.searchsorted(self.ancestor[j - 1][order],
                                                     np.arange(chain.level_sizes[j - 1] + 1))
        # subtree[j][g]: the cost of every layer below node g of level j
        self.subtree: dict[int, np.ndarray] = {depth - 1: self.own[depth - 1]} if depth > 1 else {}
        for j in range(depth - 2, 0, -1):
            self.subtree[j] = self.own[j] + np.bincount(self.parents[j], weights=self.subtree[j + 1],
                                                        minlength=chain.level_sizes[j - 1])
        self.top_cost = float(chain.level_sizes[0] * row_weight.sum())

    def labels(self, level: int, node: int) -> np.ndarray:
        order, starts = self.by_node[level]
        return np.sort(order[starts[node]:starts[node + 1]])

    def node_rows(self, level: int, node: int) -> np.ndarray:
        M = self.rows[level]
        return M.indices[M.indptr[node]:M.indptr[node + 1]].astype(np.int64)

    def children(self, level: int, node: int) -> np.ndarray:
        """The nodes of level + 1 below ``node`` of ``level`` (layer ``level``'s children of it)."""
        return np.flatnonzero(self.parents[level] == node)

    def spec(self, level: int, node: int, whole_subtree: bool) -> TaskSpec:
        """Layer ``level``'s classifiers below ``node`` (and, for a sub-tree, every layer further down)."""
        labels = self.labels(level, node)
        parts = []
        for j in range(level, self.depth if whole_subtree else level + 1):
            kids = np.unique(self.ancestor[j][labels])
            parts.append(LayerPart(j, kids, self.parents[j][kids], self.chain.level_sizes[j], self.ancestor[j][labels]))
        kind = "subtree" if whole_subtree and level < self.depth - 1 else "node"
        cost = self.subtree[level][node] if whole_subtree else self.own[level][node]
        return TaskSpec(f"{kind}-L{level}-{node}", self.node_rows(level, node), labels, parts, float(cost))


def plan(Y: sp.csr_matrix, chain: ClusterChain, config: LinearTrainConfig, n_workers: int,
         row_weight: np.ndarray | None = None, tasks_per_worker: int = 4) -> list[TaskSpec]:
    """The tasks that train every layer of ``chain`` on labels ``Y`` (n, L), biggest first.

    Start from the top task (layer 0, every row) and one sub-tree task per node of level 1; while
    the costliest sub-tree task costs more than ``1 / (tasks_per_worker * n_workers)`` of the whole,
    replace it by a task for its own node's classifiers (on its rows) and one sub-tree task per
    child (each on fewer rows). Label popularity is skewed (a head cluster can hold most rows), so
    the split follows the cost, not the tree's shape.

    Args:
        Y: labels, CSR (n, L).
        chain: the tree.
        config: the training settings (only ``negatives`` is read here).
        n_workers: workers to balance for.
        row_weight: (n,) cost of a row (its non-zeros); default 1 per row.
        tasks_per_worker: granularity of the split.

    Raises:
        ConfigError: negatives other than ``tfn`` (``man`` ranks every row with the upper layers,
            so its row sets are only known level by level on the whole data).
    """
    if config.negatives != "tfn":
        raise ConfigError(f"distributed training supports train.negatives 'tfn' only, got {config.negatives!r} "
                          "(matcher-aware negatives need the whole tree's beam over every row)")
    Y = binarize(Y)
    n, L = Y.shape
    row_weight = np.ones(n) if row_weight is None else np.asarray(row_weight, dtype=np.float64)
    if len(chain) == 1:  # flat one-vs-all: chunks of the label layer, each on every row
        parents = chain.parents(0)
        return [TaskSpec(f"layer0-chunk-{k}", None, children,
                         [LayerPart(0, children, parents[children], L, children)],
                         float(row_weight.sum()) * len(children))
                for k, children in enumerate(np.array_split(np.arange(L, dtype=np.int64),
                                                            max(1, min(tasks_per_worker * n_workers, L))))]
    tree = _Tree(Y, chain, row_weight)
    top = TaskSpec("top", None, None, [LayerPart(0, np.arange(chain.level_sizes[0], dtype=np.int64), tree.parents[0],
                                                 chain.level_sizes[0], tree.ancestor[0])], tree.top_cost)
    target = (tree.top_cost + tree.subtree[1].sum()) / (tasks_per_worker * n_workers)
    done: list[TaskSpec] = [top]
    # max-heap of (cost, level, node) sub-trees still whole
    heap = [(-float(c), 1, g) for g, c in enumerate(tree.subtree[1])]
    heapq.heapify(heap)
    while heap:
        cost, level, node = heapq.heappop(heap)
        if -cost > target and level < len(chain) - 1:
            done.append(tree.spec(level, node, whole_subtree=False))
            for c in tree.children(level, node):
                heapq.heappush(heap, (-float(tree.subtree[level + 1][c]), level + 1, int(c)))
        else:
            done.append(tree.spec(level, node, whole_subtree=True))
    return sorted(done, key=lambda t: -t.cost)


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
    return HierarchicalLinear(chain, weights, config.bias, config.weight_dtype)
