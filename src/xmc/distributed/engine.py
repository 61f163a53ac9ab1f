"""XR-Linear on a Dask cluster: sub-tree training tasks and sharded batch prediction.

Why Dask rather than Ray (``benchmarks/bench_engines.py``, BENCHMARKS.md "Distributed engines"):
on a 2-worker local cluster Dask installs in 45 MB against 260 MB, starts in 1.3 s against 4.6 s
and its processes hold 103 MB against 437 MB; Ray's advantages, zero-copy shared-memory objects
and a lower per-task overhead (0.7 against 1.9 ms), do not pay here: each training task receives
its own rows (nothing to share between workers), tasks last seconds to minutes, and prediction
workers share the model through memory-mapped files instead. And Ray fails in xmc's own environment
(it imports the installed pyarrow, which needs numpy >= 2).

Training task arguments travel inside the task (not ``scatter``-ed), so the scheduler can rerun a
task whose worker died; the driver keeps at most ``max_in_flight`` tasks submitted, so at most that
many row subsets exist beside X at any time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from itertools import islice
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, EngineError
from ..indexing.tree import ClusterChain
from ..progress import progress_bar
from ..ranker.hierarchy import HierarchicalLinear, LinearTrainConfig
from .plan import assemble, materialise, plan

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'xmc[distributed]'"
# Dask keeps a task's arguments with the task (so it can rerun it); it warns about big ones.
_LARGE_GRAPH_WARNING = r".*(Large object|large graph|Sending large).*"


def _dask():
    try:
        import distributed
    except ImportError as exc:
        raise EngineError(f"the dask engine needs dask.distributed, which is not installed: {INSTALL_HINT}") from exc
    return distributed


def load_mapped(directory: str):
    """Load a saved model memory-mapped (its weights stay in the page cache, shared by processes)."""
    from ..models.persistence import read_manifest
    from ..models.registry import model_class

    name = read_manifest(directory)["model"]
    cls = model_class(name)
    if not cls.capabilities.loads_mmap:
        raise ConfigError(f"{directory}: distributed prediction supports memory-mappable models (xr-linear), "
                          f"not {name}")
    return cls.load(directory, mmap=True)


class DaskEngine:
    """A connection to a Dask cluster, or a local one started (and stopped) with it.

    Args:
        address: a running scheduler (``tcp://host:8786``); None starts a local cluster.
        workers: worker processes of the local cluster.
        threads_per_worker: threads of each local worker (the solvers' threads in a task).
        max_in_flight: tasks submitted at a time (default: the workers + 1, so a worker finds its
            next task ready): bounds the driver's memory for cut row subsets.
        retries: reruns of a task that raised (a task whose worker died is rerun by the
            scheduler anyway, up to its ``allowed-failures``).

    Use as a context manager::

        with DaskEngine(workers=2) as engine:
            model = XRLinear().fit(data, engine=engine)
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, workers: int = 2, threads_per_worker: int = 1,
                 max_in_flight: int | None = None, retries: int = 2):
        if workers < 1 or threads_per_worker < 1:
            raise ConfigError("workers and threads_per_worker must be >= 1")
        dd = _dask()
        self._cluster = None
        try:
            if address is None:
                self._cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                                                processes=True, dashboard_address=None,
                                                silence_logs=logging.ERROR)
                self.client = dd.Client(self._cluster)
            else:
                self.client = dd.Client(address, timeout="30s")
        except (OSError, TimeoutError) as exc:
            self.close()
            raise EngineError(f"cannot reach the dask scheduler at {address or 'a new local cluster'}: {exc}") from exc
        n = self.n_workers
        if n == 0:
            self.client.wait_for_workers(1, timeout=60)
        self.max_in_flight = max_in_flight or self.n_workers + 1
        self.retries = retries
        logger.info("dask engine: %d workers (%s)", self.n_workers, address or "local cluster")

    @property
    def n_workers(self) -> int:
        return len(self.client.nthreads())

    def close(self) -> None:
        """Disconnect; a local cluster started here is shut down."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> "DaskEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- training --------------------------------------------------------------
    def _run_bounded(self, fn, payloads, *, total: int, desc: str, progress: bool, key_prefix: str):
        """Submit ``fn(payload)`` for each (key, payload-maker) keeping ``max_in_flight`` at a time;
        yields (key, result) as tasks finish."""
        dd = _dask()
        todo = iter(payloads)
        token = uuid.uuid4().hex[:8]

        def submit(item):
            key, make = item
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_LARGE_GRAPH_WARNING)
                fut = self.client.submit(fn, *make(), key=f"{key_prefix}-{key}-{token}", pure=False,
                                         retries=self.retries)
            keys[fut.key] = key
            return fut

        keys: dict[str, str] = {}
        pending = dd.as_completed([submit(item) for item in islice(todo, self.max_in_flight)])
        with progress_bar(total=total, desc=desc, unit="task", disable=not progress) as bar:
            for fut in pending:
                try:
                    result = fut.result()
                except Exception as exc:  # the engine gave up on it (e.g. KilledWorker after its retries)
                    raise EngineError(f"distributed {desc}: task {keys[fut.key]} failed ({type(exc).__name__}: "
                                      f"{exc})") from exc
                key = keys.pop(fut.key)
                fut.release()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.add(submit(nxt))
                bar.update(1)
                yield key, result

    def fit_tree(self, X: sp.csr_matrix, Y: sp.csr_matrix, chain: ClusterChain,
                 config: LinearTrainConfig | None = None, *, progress: bool = False) -> HierarchicalLinear:
        """Train the linear layers of one label tree on the cluster (see :mod:`xmc.distributed.plan`):
        the same weights as :meth:`HierarchicalLinear.fit` (bit for bit).

        Args:
            X: features, CSR (n, d); Y: labels, CSR (n, L); chain: the tree; config: training settings.
        """
        config = (config or LinearTrainConfig()).resolved_for(Y)
        X = sp.csr_matrix(X, dtype=np.float32)
        X.sort_indices()
        if Y.shape != (X.shape[0], chain.n_labels):
            raise ValueError(f"Y has shape {Y.shape}, expected ({X.shape[0]}, {chain.n_labels})")
        Y = sp.csr_matrix(Y)
        specs = plan(Y, chain, config, self.n_workers, row_weight=np.diff(X.indptr))
        shipped = sum(X.shape[0] if s.rows is None else len(s.rows) for s in specs)
        logger.info("distributed training: %d tasks over %d workers (%s); they receive %.2f x the rows in all",
                    len(specs), self.n_workers, ", ".join(s.key for s in specs[:5]) + (" ..." if len(specs) > 5 else ""),
                    shipped / max(X.shape[0], 1))
        from .worker import train_on_worker

        payloads = ((s.key, lambda s=s: (materialise(s, X, Y, config),)) for s in specs)
        results = (r for _key, r in self._run_bounded(train_on_worker, payloads, total=len(specs), desc="training",
                                                      progress=progress, key_prefix="xmc-train"))
        return assemble(chain, X.shape[1], config, results)

    # ---- prediction ------------------------------------------------------------
    def predict(self, model_dir: str | os.PathLike, inputs: Any, *, shard_size: int = 20_000,
                progress: bool = False, **options) -> sp.csr_matrix:
        """Batch prediction sharded over the workers; each loads the model once, memory-mapped.

        Args:
            model_dir: a saved model directory every worker can read (a shared file system
                on a multi-machine cluster).
            inputs: what the model's ``predict`` takes: a dataset, texts, or features (n, d).
            shard_size: documents per task.
            options: ``predict`` options (topk, beam_size, post_processor, threshold).

        Returns:
            The scores, CSR (n, L), equal to ``model.predict(inputs, **options)``.
        """
        from ..data.dataset import XMCDataset
        if shard_size < 1:
            raise ConfigError("shard_size must be >= 1")
        model_dir = os.path.abspath(os.fspath(model_dir))
        model = load_mapped(model_dir)  # the driver reads the config / featurizer, not the weights
        if isinstance(inputs, XMCDataset):
            featurizer = getattr(model, "featurizer_", None)
            inputs = model.transform(inputs) if featurizer is None else inputs.input_texts(featurizer.config.fields)
        n = inputs.shape[0] if sp.issparse(inputs) else len(inputs)
        if sp.issparse(inputs):
            inputs = sp.csr_matrix(inputs)
        from .worker import ModelPlugin, predict_on_worker

        plugin_name = f"xmc-model-{uuid.uuid4().hex[:8]}"
        self.client.register_plugin(ModelPlugin(model_dir), name=plugin_name)
        try:
            starts = list(range(0, n, shard_size))
            payloads = ((str(k), lambda s=s: (plugin_name, inputs[s:s + shard_size], options))
                        for k, s in enumerate(starts))
            parts: dict[int, sp.csr_matrix] = {}
            for key, result in self._run_bounded(predict_on_worker, payloads, total=len(starts), desc="predicting",
                                                 progress=progress, key_prefix="xmc-predict"):
                parts[int(key)] = result
        finally:
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(plugin_name)
        if not parts:
            return sp.csr_matrix((0, len(model.labels_)), dtype=np.float32)
        return sp.vstack([parts[k] for k in range(len(starts))], format="csr")


def connect(engine: str, address: str | None = None, workers: int = 2, **kwargs) -> DaskEngine:
    """The engine named ``engine`` (``dask``): a client of ``address``, or a local cluster of ``workers``."""
    if engine != "dask":
        raise ConfigError(f"unknown engine {engine!r}; choose from: dask")
    return DaskEngine(address, workers=workers, **kwargs)


__all__: Sequence[str] = ["DaskEngine", "connect", "INSTALL_HINT"]
