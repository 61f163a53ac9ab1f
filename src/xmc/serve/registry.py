"""The models a server holds: name -> loaded model, swapped atomically on reload."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import os
import time
from concurrent.futures import Executor
from typing import Any, Mapping

from ..models.persistence import MANIFEST, read_manifest
from ..models.registry import MODELS, model_class
from ..errors import ConfigError, ModelFormatError
from .batcher import MicroBatcher
from .predictor import Job, Options, predict_jobs
from .settings import ServeSettings

logger = logging.getLogger(__name__)

# Models whose predict is cheap per document: batching what is queued helps, waiting does not.
LINEAR_KINDS = {"xr-linear"}
# Predicted once by every model it loads, before the model takes requests (see ModelRegistry._load).
WARM_UP = Job([{"id": "warm-up", "title": "warm-up", "text": "warm-up"}], Options())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class LoadedModel:
    """One loaded version of a model directory and its request queue."""

    name: str
    directory: str
    model: Any
    manifest: dict[str, Any]
    version: str
    trained_at: str | None
    loaded_at: str
    batcher: MicroBatcher

    @property
    def kind(self) -> str:
        return self.manifest["model"]

    def info(self, with_config: bool = False) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "model_version": self.version, "directory": self.directory,
            "n_labels": len(self.model.labels_), "has_taxonomy": getattr(self.model, "taxonomy_", None) is not None,
            "trained_at": self.trained_at, "loaded_at": self.loaded_at,
            "versions": {k: str(v) for k, v in self.manifest.get("versions", {}).items()},
            "config": self.manifest.get("config") if with_config else None,
        }


def load_directory(directory: str, *, mmap: bool) -> tuple[Any, dict[str, Any], str, str | None]:
    """(model, manifest, version, trained_at) of a model directory.

    The version is a hash of the manifest and its modification time: saving a model writes a
    new directory (renamed into place), so every retrain gets a new version.
    """
    manifest = read_manifest(directory)
    if manifest["model"] not in MODELS:
        raise ModelFormatError(f"{directory}: unknown model {manifest['model']!r}")
    cls = model_class(manifest["model"])
    kwargs = {"mmap": True} if mmap and cls.capabilities.loads_mmap else {}
    model = cls.load(directory, **kwargs)
    path = os.path.join(directory, MANIFEST)
    stat = os.stat(path)
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read() + str(stat.st_mtime_ns).encode()).hexdigest()[:12]
    trained_at = manifest.get("trained_at") or datetime.datetime.fromtimestamp(
        stat.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    return model, manifest, digest, trained_at


class ModelRegistry:
    """Name -> :class:`LoadedModel`; ``reload`` loads a directory again and swaps it in.

    Args:
        directories: {name: model directory}.
        settings: server settings (batching, mmap).
        executor: where every model call runs (see :mod:`.batcher`).
    """

    def __init__(self, directories: Mapping[str, str | os.PathLike], settings: ServeSettings, executor: Executor):
        self.directories = {name: os.fspath(d) for name, d in directories.items()}
        self.settings = settings
        self.executor = executor
        self._models: dict[str, LoadedModel] = {}
        self._locks = {name: asyncio.Lock() for name in self.directories}

    def _load(self, name: str) -> LoadedModel:
        directory = self.directories[name]
        t0 = time.perf_counter()
        model, manifest, version, trained_at = load_directory(directory, mmap=self.settings.mmap)
        if not model.reads_text:
            raise ConfigError(f"{directory}: this {manifest['model']} model was trained on precomputed features "
                              "(XC sparse) and cannot featurise text; xmc serve answers with text documents")
        # A model's first call does one-time work: numba loads its compiled kernels, a TF-IDF
        # featurizer builds its n-gram lookup (together about 0.5 s for XR-Linear on EURLEX57K).
        # Done here, it happens before /readyz answers and before a reload's swap, not on a request;
        # on the prediction executor, like every model call (see .batcher), after those queued.
        t1 = time.perf_counter()
        self.executor.submit(predict_jobs, model, [WARM_UP]).result()
        warm_up_s = time.perf_counter() - t1
        linear = manifest["model"] in LINEAR_KINDS
        batcher = MicroBatcher(lambda jobs: predict_jobs(model, jobs), self.executor,
                               max_documents=self.settings.max_batch_documents,
                               max_wait=0.0 if linear else self.settings.max_wait_ms / 1000)
        logger.info("loaded model %r (%s, version %s) from %s in %.2f s (warm-up prediction %.2f s)", name,
                    manifest["model"], version, directory, time.perf_counter() - t0, warm_up_s)
        return LoadedModel(name, directory, model, manifest, version, trained_at, _now(), batcher)

    def load_all(self) -> None:
        """Load every directory (at start-up; an error names the directory)."""
        for name in self.directories:
            self._models[name] = self._load(name)

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def all(self) -> list[LoadedModel]:
        return list(self._models.values())

    async def reload(self, name: str) -> tuple[LoadedModel, LoadedModel]:
        """Load ``name``'s directory again and swap it in; returns (new, old).

        Requests that already hold the old model finish on it (its queue is drained, then
        closed). If loading fails the exception propagates and the old model stays in place.
        """
        async with self._locks[name]:  # one reload of a model at a time
            old = self._models[name]
            new = await asyncio.to_thread(self._load, name)
            self._models[name] = new  # the swap: one assignment on the event loop, atomic for requests
        await old.batcher.close()
        return new, old

    async def reload_all(self) -> None:
        """Reload every model (SIGHUP); a failure is logged and keeps that model's old version."""
        for name in self.directories:
            try:
                new, old = await self.reload(name)
                logger.info("SIGHUP: reloaded %r: %s -> %s", name, old.version, new.version)
            except Exception as exc:  # noqa: BLE001 - keep serving the old version, say why
                logger.error("SIGHUP: reloading %r failed, still serving version %s: %s",
                             name, self._models[name].version, exc)

    async def close(self) -> None:
        for entry in self._models.values():
            await entry.batcher.close()
