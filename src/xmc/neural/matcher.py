"""The neural matcher g(x, k) = w_k . phi(x) over the K leaf clusters of a label tree.

Fine-tuned with the squared hinge loss on M = binarize(Y C) (Chang et al. 2020, Eq. 3):
AdamW with linear warm-up, gradient accumulation, early stopping on a validation split
(never test data), a checkpoint per epoch to resume from, and bf16 autocast on CUDA.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from ..progress import progress_bar

from ..io import atomic_directory
from . import distributed
from .configs import MatcherConfig
from .device import autocast
from .encoder import TextEncoder

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


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


def _save_checkpoint(directory: str, encoder: TextEncoder | None, head: ClusterHead, optimizer, scheduler,
                     history: MatcherHistory, rng_state: dict) -> None:
    from safetensors.torch import save_file

    # The checkpoint replaces its own previous epoch (recognised by history.json), nothing else.
    with atomic_directory(directory, overwrite=True, marker="history.json", what="checkpoint") as tmp:
        if encoder is not None:
            encoder.save(os.path.join(tmp, "encoder"))
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, os.path.join(tmp, "head.safetensors"))
        # Optimiser state: tensors and numbers only, read back with weights_only=True (no code execution).
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   os.path.join(tmp, "optimizer.pt"))
        with open(os.path.join(tmp, "history.json"), "w", encoding="utf-8") as fh:
            json.dump({"history": dataclasses.asdict(history), "rng": rng_state}, fh)


def train_matcher(
    encoder: TextEncoder,
    texts: Sequence[str],
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
    with the same directory resumes after the last finished epoch.
    """
    from transformers import get_linear_schedule_with_warmup

    device = encoder.device
    torch.manual_seed(config.seed)
    head = ClusterHead(encoder.dim, M.shape[1]).to(device)
    M = sp.csr_matrix(M, dtype=np.float32)
    n = len(texts)
    steps_per_epoch = math.ceil(math.ceil(n / config.batch_size) / config.grad_accum)
    total_steps = max(1, int(round(steps_per_epoch * config.epochs)))
    optimizer = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": config.learning_rate},
         {"params": head.parameters(), "lr": config.head_learning_rate}],
        weight_decay=config.weight_decay,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    history = MatcherHistory()
    rng = np.random.default_rng(config.seed)
    finished = False
    if checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, "history.json")):
        history, rng, finished = _resume(checkpoint_dir, encoder, head, optimizer, scheduler)
        logger.info("resumed matcher training from %s after epoch %d", checkpoint_dir, history.epochs_done)
    if finished:  # a completed run: its best state is what was saved
        encoder.eval()
        head.eval()
        return encoder, head, history
    token_ids = encoder.pretokenize(texts)
    n_procs, rank = distributed.world()
    net = _MatcherNet(encoder, head)
    if n_procs > 1:  # each process takes its share of every global batch; gradients are averaged
        from torch.nn.parallel import DistributedDataParallel

        # Some backbone weights never receive gradients (e.g. BERT's pooler under mean pooling).
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=True)
    eval_every = config.eval_every or steps_per_epoch
    best = (copy.deepcopy(encoder.state_dict()), copy.deepcopy(head.state_dict())) if history.steps else None
    bad_evals = 0
    started = time.perf_counter()
    seen = 0
    stop = history.steps >= total_steps
    bar = progress_bar(total=total_steps, initial=history.steps, desc="fine-tuning matcher", disable=not progress)
    while not stop:
        encoder.train()
        head.train()
        micro = 0
        for rows in _batches(n, config.batch_size, rng):
            if n_procs > 1:
                if len(rows) < n_procs:  # every process must take the same number of steps
                    continue
                rows = rows[rank::n_procs]
            batch = {k: v.to(device) for k, v in encoder.collate([token_ids[i] for i in rows]).items()}
            targets = torch.from_numpy(M[rows].toarray()).to(device)
            with autocast(device, config.amp):
                logits = net(**batch)
            loss = squared_hinge_loss(logits.float(), targets) / config.grad_accum
            loss.backward()
            seen += len(rows)
            micro += 1
            if micro % config.grad_accum:
                continue
            torch.nn.utils.clip_grad_norm_(list(encoder.parameters()) + list(head.parameters()), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            history.steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item() * config.grad_accum:.3f}")
            if history.steps % eval_every == 0 or history.steps >= total_steps:
                recall = _validate(encoder, head, valid_texts, valid_M, config.top_b)
                history.evaluations.append({"step": history.steps, "valid_cluster_recall": recall})
                logger.info("step %d: validation cluster recall@%d = %.4f", history.steps, config.top_b, recall)
                if recall > history.best_recall:
                    history.best_recall, history.best_step, bad_evals = recall, history.steps, 0
                    best = ({k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
                            {k: v.detach().cpu().clone() for k, v in head.state_dict().items()})
                else:
                    bad_evals += 1
                encoder.train()
                head.train()
                if bad_evals >= config.patience:
                    logger.info("early stop at step %d (best %d)", history.steps, history.best_step)
                    stop = True
            if history.steps >= total_steps:
                stop = True
            if stop:
                break
        history.epochs_done += 1
        if checkpoint_dir and not stop and rank == 0:
            _save_checkpoint(checkpoint_dir, encoder, head, optimizer, scheduler, history,
                             {"bit_generator": rng.bit_generator.state, "finished": False})
    bar.close()
    history.seconds += time.perf_counter() - started
    history.samples_per_second = seen / max(history.seconds, 1e-9)
    if best is not None:
        encoder.load_state_dict(best[0])
        head.load_state_dict(best[1])
    encoder.eval()
    head.eval()
    if checkpoint_dir and rank == 0:
        _save_checkpoint(checkpoint_dir, encoder, head, optimizer, scheduler, history,
                         {"bit_generator": rng.bit_generator.state, "finished": True})
    distributed.barrier()
    return encoder, head, history


def _resume(directory, encoder, head, optimizer, scheduler):
    from safetensors.torch import load_file

    with open(os.path.join(directory, "history.json"), encoding="utf-8") as fh:
        saved = json.load(fh)
    state = TextEncoder.from_pretrained(encoder.config, os.path.join(directory, "encoder")).backbone.state_dict()
    encoder.backbone.load_state_dict(state)
    head.load_state_dict(load_file(os.path.join(directory, "head.safetensors"), device=str(encoder.device)))
    opt = torch.load(os.path.join(directory, "optimizer.pt"), map_location=encoder.device, weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    history = MatcherHistory(**saved["history"])
    rng = np.random.default_rng()
    rng.bit_generator.state = saved["rng"]["bit_generator"]
    return history, rng, bool(saved["rng"].get("finished"))


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
    steps = epochs * math.ceil(n / 256)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.head_learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.head_learning_rate, total_steps=steps,
                                                    pct_start=max(config.warmup_ratio, 0.01))
    rng = np.random.default_rng(config.seed)
    history = MatcherHistory()
    started = time.perf_counter()
    best, bad = None, 0
    for epoch in progress_bar(range(epochs), desc="training matcher head", disable=not progress):
        for rows in _batches(n, 256, rng):
            loss = squared_hinge_loss(head(X[rows]), torch.from_numpy(M[rows].toarray()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.steps += 1
        recall = cluster_recall(head.scores(valid_embeddings), valid_M, config.top_b)
        history.evaluations.append({"epoch": epoch + 1, "valid_cluster_recall": recall})
        if recall > history.best_recall:
            history.best_recall, history.best_step, bad = recall, history.steps, 0
            best = copy.deepcopy(head.state_dict())
        else:
            bad += 1
            if bad >= 3 * config.patience:
                break
        history.epochs_done = epoch + 1
    if best is not None:
        head.load_state_dict(best)
    history.seconds = time.perf_counter() - started
    history.samples_per_second = n * history.epochs_done / max(history.seconds, 1e-9)
    head.eval()
    return head, history
