"""Seeded train/validation splits."""

from __future__ import annotations

import numpy as np

from xmc.data.dataset import XMCDataset
from xmc.errors import ConfigError


def valid_size(n: int, valid_fraction: float) -> int:
    """How many of ``n`` documents a ``valid_fraction`` split holds out; ConfigError (a ValueError) when
    the fraction is not in (0, 1) or the split would leave either side empty (checkable before any rows
    are drawn; a user's setting, so one line from the CLI, not an internal error)."""
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    n_valid = int(round(valid_fraction * n))
    if n_valid == 0 or n_valid == n:
        raise ConfigError(
            f"valid_fraction={valid_fraction} of {n} documents leaves "
            f"{'the validation' if n_valid == 0 else 'the training'} side empty: give more documents, "
            "another valid_fraction, or a validation file (--valid)"
        )
    return n_valid


def train_valid_rows(n: int, valid_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_rows, valid_rows)`` of ``n`` documents (the rule of :func:`train_valid_split`).

    Raises:
        ConfigError: ``valid_fraction`` not in (0, 1), or a split that would leave
            either side empty.
    """
    n_valid = valid_size(n, valid_fraction)
    permutation = np.random.default_rng(seed).permutation(n)
    return np.sort(permutation[n_valid:]), np.sort(permutation[:n_valid])


def train_valid_split(
    dataset: XMCDataset, valid_fraction: float = 0.1, seed: int = 0
) -> tuple[XMCDataset, XMCDataset]:
    """Split ``dataset`` at random into ``(train, valid)``.

    ``round(valid_fraction * n)`` documents, drawn by a permutation from
    ``numpy.random.default_rng(seed)``, go to ``valid``; both sides keep the
    original document order and the full label vocabulary. The same dataset,
    fraction and seed always give the same split.

    Raises:
        ConfigError: ``valid_fraction`` not in (0, 1), or a split that would leave
            either side empty.
    """
    train_rows, valid_rows = train_valid_rows(len(dataset), valid_fraction, seed)
    return dataset.subset(train_rows), dataset.subset(valid_rows)
