"""One batched inference loop for every encode and predict path of the neural models.

Inputs are run longest first, so that each batch is padded only to its own longest member
(dynamic padding) and carries little padding; results are written back by row id, so callers see
input order. The loop runs without gradients, in eval mode (restored afterwards), under autocast on
CUDA, with a progress bar. Encodings that are reused go through
:class:`xmc.neural.cache.EmbeddingCache`, which wraps :func:`encode_tokens` (``fetch(..., compute)``).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..progress import progress_bar
from .device import autocast


def token_lengths(tokens: Sequence) -> np.ndarray:
    """Length of each tokenised input: a list of ids or a tokenizer dict with ``input_ids``."""
    return np.fromiter((len(t["input_ids"]) if isinstance(t, dict) else len(t) for t in tokens), dtype=np.int64,
                       count=len(tokens))


def sorted_batches(lengths: np.ndarray, batch_size: int,
                   groups: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
    """(group, row ids) batches covering every row once: per group (ascending), longest first.

    Args:
        lengths: (n,) token lengths (zeros: input order).
        groups: (n,) group of each row (e.g. the output head); a batch never mixes groups.
    """
    n = len(lengths)
    if not n:
        return []
    groups = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(groups)
    order = np.lexsort((-np.asarray(lengths), groups))  # stable: equal lengths keep input order
    batches = []
    for g in np.unique(groups):
        rows = order[groups[order] == g]
        batches.extend((int(g), rows[s:s + batch_size]) for s in range(0, len(rows), batch_size))
    return batches


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside the block; the module's mode is restored after it."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def for_each_batch(module: nn.Module, batches: Sequence[tuple[int, np.ndarray]], run: Callable[[int, np.ndarray], None],
                   *, device: torch.device, amp: bool = True, progress: bool = False, desc: str = "encoding") -> None:
    """``run(group, rows)`` for each batch, in eval mode, without gradients, under autocast on CUDA."""
    with evaluating(module):
        for group, rows in progress_bar(batches, desc=desc, disable=not progress, unit="batch"):
            with autocast(device, amp):
                run(group, rows)


def encode_tokens(module: nn.Module, tokens: Sequence, forward: Callable[..., torch.Tensor],
                  collate: Callable[[list], dict], *, batch_size: int, dim: int | None = None, amp: bool = True,
                  progress: bool = False, desc: str = "encoding") -> np.ndarray:
    """``forward(**collate(batch))`` of every tokenised input, (n, dim) float32 in input order.

    Args:
        module: the network ``forward`` belongs to (put in eval mode; its device is used).
        tokens: n tokenised inputs (id lists or tokenizer dicts), unpadded.
        forward: batch tensors -> (B, dim) vectors.
        collate: a list of tokenised inputs -> padded tensors (padded to the batch's longest).
        dim: the output width (only needed to shape the result of no inputs).
    """
    device = next(module.parameters()).device
    n = len(tokens)
    out = np.zeros((n, dim or 0), dtype=np.float32) if n == 0 or dim is not None else None

    def run(_, rows):
        nonlocal out
        batch = {k: v.to(device) for k, v in collate([tokens[i] for i in rows]).items()}
        vectors = forward(**batch).float().cpu().numpy()
        if out is None:
            out = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        out[rows] = vectors

    for_each_batch(module, sorted_batches(token_lengths(tokens), batch_size), run, device=device, amp=amp,
                   progress=progress, desc=desc)
    return out
