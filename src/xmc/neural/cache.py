"""An embedding cache: each text set is encoded once per encoder state and reused.

Indexing (pifa-neural), ranker features and ensemble members all need the same
instance embeddings; encoding is the slow step on CPU, so results are kept in
memory and, when a directory is given, on disk as ``<key>.npy`` (plain arrays, never
pickles). The key hashes the encoder's weights, its pooling settings and the texts, so
a fine-tuned encoder never reuses a pre-trained encoder's vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Callable, Sequence

import numpy as np
import torch

from ..io import atomic_file
from .encoder import TextEncoder

logger = logging.getLogger(__name__)


def encoder_fingerprint(encoder: TextEncoder) -> str:
    """A hash of the encoder's weights and pooling settings."""
    h = hashlib.sha1()
    cfg = encoder.config
    h.update(f"{cfg.pooling}|{cfg.last_layers}|{cfg.max_length}|{type(encoder.backbone).__name__}".encode())
    with torch.no_grad():
        for name, param in encoder.backbone.state_dict().items():
            h.update(name.encode())
            h.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def texts_fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class EmbeddingCache:
    """Memoises ``encoder.encode(texts)`` (and, through :meth:`fetch`, any pooled encoding).

    Args:
        directory: where to keep ``.npy`` files across runs (None: memory only).
        key_by: ``weights`` keys entries by a hash of the encoder's weights (safe across
            training steps and processes); ``identity`` by the encoder object alone, for
            short-lived caches within one prediction call, where hashing ~100 MB of weights
            would dominate single-document latency.
    """

    def __init__(self, directory: str | os.PathLike | None = None, key_by: str = "weights"):
        if key_by not in ("weights", "identity"):
            raise ValueError(f"key_by must be 'weights' or 'identity', got {key_by!r}")
        if key_by == "identity" and directory:
            raise ValueError("an on-disk cache must be keyed by weights")
        self.key_by = key_by
        self.directory = os.fspath(directory) if directory else None
        self._memory: dict[str, np.ndarray] = {}
        self._fingerprints: dict[int, tuple[int, str]] = {}
        self.hits = 0
        self.misses = 0

    def _encoder_key(self, encoder: TextEncoder) -> str:
        if self.key_by == "identity":
            return f"id-{id(encoder)}"
        # Hashing the weights costs a pass over them; remember it until a training step changes them
        # (parameters' _version counters move on every in-place update).
        version = sum(p._version for p in encoder.backbone.parameters())
        cached = self._fingerprints.get(id(encoder))
        if cached is None or cached[0] != version:
            cached = (version, encoder_fingerprint(encoder))
            self._fingerprints[id(encoder)] = cached
        return cached[1]

    def encode(self, encoder: TextEncoder, texts: Sequence[str], *, progress: bool = True,
               desc: str = "encoding") -> np.ndarray:
        """``encoder.encode(texts)``, memoised; :class:`~xmc.neural.encoder.Tokenized` texts are keyed by their ``key``."""
        key = getattr(texts, "key", None) or texts_fingerprint(texts)
        return self.fetch(encoder, key, len(texts),
                          lambda: encoder.encode(texts, progress=progress, desc=desc))

    def fetch(self, encoder: TextEncoder, inputs_key: str, n: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """``compute()``: the (n, encoder.dim) float32 vectors of the inputs named by ``inputs_key``, memoised.

        For inputs that :meth:`encode` does not tokenise itself (e.g. text pairs with segment ids):
        ``inputs_key`` must identify both the texts and how they are fed to the encoder.
        """
        key = hashlib.sha1(f"{self._encoder_key(encoder)}|{inputs_key}".encode()).hexdigest()[:24]
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = os.path.join(self.directory, f"{key}.npy") if self.directory else None
        if path and os.path.exists(path):
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (n, encoder.dim):
                self.hits += 1
                self._memory[key] = vectors
                return vectors
            logger.warning("%s: cached embeddings have shape %s, expected %s; re-encoding",
                           path, vectors.shape, (n, encoder.dim))
        self.misses += 1
        vectors = compute()
        self._memory[key] = vectors
        if path:
            os.makedirs(self.directory, exist_ok=True)
            with atomic_file(path, "wb") as fh:
                np.save(fh, vectors, allow_pickle=False)
        return vectors
