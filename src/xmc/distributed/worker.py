"""What runs inside a Dask worker process (imports dask; :mod:`xmc.distributed.engine` imports it lazily)."""

from __future__ import annotations

import scipy.sparse as sp
from distributed import WorkerPlugin, get_worker

from .engine import load_mapped
from .plan import run_task


def _worker_threads() -> int:
    return int(get_worker().state.nthreads)


def train_on_worker(task) -> list:
    # numba uses the worker's thread count, not every core of the machine
    return run_task(task, n_threads=_worker_threads())


class ModelPlugin(WorkerPlugin):
    """Loads a saved model once per worker, memory-mapped (every worker process on a machine then
    shares its pages through the page cache)."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory
        self.model = None

    def setup(self, worker) -> None:
        self.model = load_mapped(self.directory)
        # predict with the worker's threads, not every core of the machine
        self.model.config.n_threads = int(worker.state.nthreads)

    def teardown(self, worker) -> None:
        self.model = None


def predict_on_worker(plugin_name: str, shard, options: dict) -> sp.csr_matrix:
    return get_worker().plugins[plugin_name].model.predict(shard, **options)
