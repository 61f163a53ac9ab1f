"""The neural matcher g(x, k) = w_k . phi(x) over the K leaf clusters of a label tree.

Fine-tuned with the squared hinge loss on M = binarize(Y C) (Chang et al. 2020, Eq. 3):
AdamW with linear warm-up, gradient accumulation, early stopping on a validation split
(never test data), a checkpoint per epoch to resume from, and bf16 autocast on CUDA.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from . import distributed
from .configs import MatcherConfig
from .encoder import TextEncoder, Tokenized
from .trainer import EarlyStopping, Trainer, TrainHistory, shuffled_batches

logger = logging.getLogger(__name__)


def squared_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 3 of the paper: sum_k max(0, 1 - y_k s_k)^2 with y in {-1, +1}, averaged over the batch.

    Args:
        logits: (B, K) matcher scores.
        targets: (B, K) 0/1 cluster relevance M.
    """
    signs = 2.0 * targets.to(logits.dtype) - 1.0
    return torch.clamp(1.0 - signs * logits, min=0.0).pow(2).sum(dim=1).mean()


class ClusterHead(nn.Module):
    """w_k . phi(x) + b_k for the K clusters."""

    def __init__(self, dim: int, n_clusters: int):
        super().__init__()
        self.linear = nn.Linear(dim, n_clusters)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return self.linear(phi)

    def scores(self, embeddings: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Matcher scores (n, K) of pooled embeddings computed elsewhere (e.g. from the cache)."""
        w = self.linear.weight.detach().float().cpu().numpy()
        b = self.linear.bias.detach().float().cpu().numpy()
        out = np.empty((embeddings.shape[0], w.shape[0]), dtype=np.float32)
        for s in range(0, embeddings.shape[0], batch_size):
            out[s:s + batch_size] = embeddings[s:s + batch_size] @ w.T + b
        return out


def top_clusters(scores: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of each row's top-b clusters, best first."""
    b = min(b, scores.shape[1])
    part = np.argpartition(-scores, b - 1, axis=1)[:, :b]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def cluster_recall(scores: np.ndarray, M: sp.csr_matrix, b: int) -> float:
    """Share of the relevant clusters found in the top-b (what the ranker can still recover)."""
    ids, _ = top_clusters(scores, b)
    hit = np.asarray(M[np.arange(M.shape[0])[:, None], ids].sum(axis=1)).ravel()
    total = np.asarray(M.sum(axis=1)).ravel()
    keep = total > 0
    return float(hit[keep].sum() / max(total[keep].sum(), 1.0))


@dataclasses.dataclass
class MatcherHistory:
    """What happened during training (for reports and resumption)."""

    steps: int = 0
    epochs_done: int = 0
    best_recall: float = -1.0
    best_step: int = 0
    evaluations: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0


class _MatcherNet(nn.Module):
    """Encoder and head as one module, so DistributedDataParallel wraps both."""

    def __init__(self, encoder: TextEncoder, head: ClusterHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, **batch) -> torch.Tensor:
        return self.head(self.encoder(**batch))


def _history(h: TrainHistory) -> MatcherHistory:
    return MatcherHistory(steps=h.steps, epochs_done=h.epochs,
                          best_recall=-1.0 if h.best_score is None else float(h.best_score), best_step=h.best_step,
                          evaluations=h.evaluations, seconds=h.seconds, samples_per_second=h.samples_per_second)


def train_matcher(
    encoder: TextEncoder,
    texts: Sequence[str] | Tokenized,
    M: sp.csr_matrix,
    config: MatcherConfig,
    *,
    valid_texts: Sequence[str],
    valid_M: sp.csr_matrix,
    checkpoint_dir: str | None = None,
    progress: bool = True,
) -> tuple[TextEncoder, ClusterHead, MatcherHistory]:
    """Fine-tune ``encoder`` and a new cluster head on targets ``M`` (n, K).

    Validation cluster recall@top_b decides early stopping and which state is kept.
    With ``checkpoint_dir`` the state after each epoch is written there, and a later call
    with the same directory resumes after the last finished epoch. Trains through
    :class:`xmc.neural.trainer.Trainer` (the leftover micro-batches of an epoch are stepped).
    ``texts`` and ``valid_texts`` may be :class:`~xmc.neural.encoder.Tokenized` already (``xmc stage run``).
    """
    from safetensors.torch import load_file, save_file

    device = encoder.device
    torch.manual_seed(config.seed)
    head = ClusterHead(encoder.dim, M.shape[1]).to(device)
    M = sp.csr_matrix(M, dtype=np.float32)
    n = len(texts)
    n_procs, rank = distributed.world()
    steps_per_epoch = math.ceil(math.ceil(n / config.batch_size) / config.grad_accum)
    rng = np.random.default_rng(config.seed)
    token_ids: list[list[int]] = []  # tokenised on the first epoch: a finished run resumes without it
    net = model = _MatcherNet(encoder, head)
    if n_procs > 1:  # each process takes its share of every global batch; gradients are averaged
        from torch.nn.parallel import DistributedDataParallel

        # Some backbone weights never receive gradients (e.g. BERT's pooler under mean pooling).
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)

    def save(directory: str) -> None:
        encoder.save(os.path.join(directory, "encoder"))
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, os.path.join(directory, "head.safetensors"))

    def load(directory: str) -> None:
        state = TextEncoder.from_pretrained(encoder.config, os.path.join(directory, "encoder")).backbone.state_dict()
        encoder.backbone.load_state_dict(state)
        head.load_state_dict(load_file(os.path.join(directory, "head.safetensors"), device=str(device)))

    def evaluate():
        recall = _validate(encoder, head, valid_texts, valid_M, config.top_b)
        logger.info("step %d: validation cluster recall@%d = %.4f", trainer.history.steps, config.top_b, recall)
        return recall, {"valid_cluster_recall": recall}

    def epoch():
        if not token_ids:
            token_ids.extend(texts if isinstance(texts, Tokenized) else encoder.pretokenize(texts))
        batches = shuffled_batches(n, config.batch_size, rng)
        if n_procs > 1:  # every process must take the same number of steps
            batches = [rows[rank::n_procs] for rows in batches if len(rows) >= n_procs]
        return batches

    def step(rows):
        batch = {k: v.to(device) for k, v in encoder.collate([token_ids[i] for i in rows]).items()}
        targets = torch.from_numpy(M[rows].toarray()).to(device)
        return squared_hinge_loss(net(**batch).float(), targets)

    trainer = Trainer(
        model, [{"params": encoder.parameters(), "lr": config.learning_rate},
                {"params": head.parameters(), "lr": config.head_learning_rate}],
        total_steps=max(1, int(round(steps_per_epoch * config.epochs))), grad_accum=config.grad_accum,
        weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, amp=config.amp, device=device,
        early_stopping=EarlyStopping(evaluate, config.eval_every or steps_per_epoch, config.patience),
        checkpoint_dir=checkpoint_dir, save_module=save, load_module=load, is_main=rank == 0, rng=rng,
        progress=progress, desc="fine-tuning matcher")
    history = trainer.fit(epoch, step)
    encoder.eval()
    head.eval()
    distributed.barrier()
    return encoder, head, _history(history)


@torch.no_grad()
def _validate(encoder: TextEncoder, head: ClusterHead, texts, M, top_b: int) -> float:
    embeddings = encoder.encode(texts, progress=False)
    return cluster_recall(head.scores(embeddings), M, top_b)


def train_head(embeddings: np.ndarray, M: sp.csr_matrix, config: MatcherConfig, *, valid_embeddings: np.ndarray,
               valid_M: sp.csr_matrix, progress: bool = True) -> tuple[ClusterHead, MatcherHistory]:
    """The ``frozen`` matcher: only the cluster head, on fixed (cached) embeddings."""
    torch.manual_seed(config.seed)
    head = ClusterHead(embeddings.shape[1], M.shape[1])
    X = torch.from_numpy(embeddings)
    M = sp.csr_matrix(M, dtype=np.float32)
    n = X.shape[0]
    # The head alone is cheap: many passes, full-batch-like step sizes.
    epochs = max(1, int(math.ceil(config.epochs * 20)))
    per_epoch = math.ceil(n / 256)
    rng = np.random.default_rng(config.seed)

    def evaluate():
        recall = cluster_recall(head.scores(valid_embeddings), valid_M, config.top_b)
        return recall, {"epoch": trainer.history.steps // per_epoch, "valid_cluster_recall": recall}

    def one_cycle(optimizer, total):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.head_learning_rate, total_steps=total,
                                                   pct_start=max(config.warmup_ratio, 0.01))

    trainer = Trainer(head, [{"params": head.parameters(), "lr": config.head_learning_rate}],
                      total_steps=epochs * per_epoch, weight_decay=config.weight_decay, schedule=one_cycle,
                      max_grad_norm=None, early_stopping=EarlyStopping(evaluate, per_epoch, 3 * config.patience),
                      rng=rng, progress=progress, desc="training matcher head")
    history = trainer.fit(lambda: shuffled_batches(n, 256, rng),
                          lambda rows: squared_hinge_loss(head(X[rows]), torch.from_numpy(M[rows].toarray())))
    head.eval()
    return head, _history(history)
