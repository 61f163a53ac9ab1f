"""The masked-bert network (encoder -> dropout -> one linear layer per head), its batches,
prediction and training loop (through :mod:`xmc.neural.trainer`); torch is imported inside."""

from __future__ import annotations

import logging
import math
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from ...metrics import evaluate
from .config import MaskedTrainConfig


logger = logging.getLogger(__name__)


def build_network(encoder, n_labels: int, n_heads: int, dropout: float):
    """encoder -> dropout -> one linear layer per head: a ``ModuleDict`` with those three entries."""
    from torch import nn

    heads = nn.ModuleList()
    for _ in range(n_heads):
        layer = nn.Linear(encoder.dim, n_labels)
        nn.init.normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)
        heads.append(layer)
    return nn.ModuleDict({"encoder": encoder, "dropout": nn.Dropout(dropout), "heads": heads})


# Products enter the network as token ids (one dict per product: the encoder runs) or as pooled
# encoder features, (n, dim) float32 (a frozen encoder: only dropout and the output layer run).
Products = Sequence[dict] | np.ndarray


def head_logits(network, pooled, head: int = 0):
    """(B, L) label scores of pooled encoder outputs (B, dim) through output head ``head``."""
    return network.heads[head](network.dropout(pooled))


def network_logits(network, batch: dict, head: int = 0):
    """(B, L) label scores of a collated batch through output head ``head``."""
    return head_logits(network, network.encoder(**batch), head)


def _collate(network, tokens: Sequence[dict], rows, device) -> dict:
    batch = network.encoder.tokenizer.pad([tokens[i] for i in rows], padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def batch_logits(network, products: Products, rows: np.ndarray, head: int, device):
    """(B, L) label scores of ``products[rows]`` through output head ``head``."""
    import torch

    if isinstance(products, np.ndarray):
        return head_logits(network, torch.from_numpy(products[rows]).to(device), head)
    return network_logits(network, _collate(network, products, rows, device), head)


def group_batches(groups: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled mini-batches of row ids, each drawn from one group (one head) only."""
    batches = []
    for g in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == g))
        batches.extend(rows[s:s + batch_size] for s in range(0, len(rows), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def pooled_features(network, tokens: Sequence[dict], *, batch_size: int = 64, amp: bool = True,
                    progress: bool = False, desc: str = "encoding") -> np.ndarray:
    """The encoder's pooled outputs (n, dim) float32 of tokenised products, in input order.

    The encoder runs in eval mode (no dropout) without gradients: the features a frozen encoder
    feeds to the output layers, equal to what :func:`predict_probabilities` computes on the way.
    """
    from ...neural.inference import encode_tokens

    def collate(items):
        return network.encoder.tokenizer.pad(items, padding=True, return_tensors="pt")

    return encode_tokens(network, tokens, network.encoder, collate, batch_size=batch_size, dim=network.encoder.dim,
                         amp=amp, progress=progress, desc=desc)


def predict_probabilities(network, products: Products, groups: np.ndarray, mask: sp.csr_matrix | None, *,
                          batch_size: int = 64, amp: bool = True, progress: bool = False) -> sp.csr_matrix:
    """Sigmoid probabilities, CSR (n, L): at the mask's entries only (every one stored), else everywhere.

    ``products``: token ids or pooled features (see ``Products``); batched per head and by token length.
    """
    import torch

    from ...neural.inference import for_each_batch, sorted_batches, token_lengths

    n = len(products)
    L = network.heads[0].out_features
    device = next(network.parameters()).device
    rows_out, cols_out, vals_out = [], [], []

    def run(g, rows):
        probs = torch.sigmoid(batch_logits(network, products, rows, g, device).float()).cpu().numpy()
        if mask is None:
            r, c = np.nonzero(np.ones_like(probs, dtype=bool))
        else:
            sub = sp.csr_matrix(mask[rows])
            r, c = np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices
        rows_out.append(rows[r])
        cols_out.append(c)
        # Every relevant label stays stored, even one whose probability underflows to 0.
        vals_out.append(np.maximum(probs[r, c], np.float32(1e-30)))

    lengths = np.zeros(n, dtype=np.int64) if isinstance(products, np.ndarray) else token_lengths(products)
    for_each_batch(network, sorted_batches(lengths, batch_size, groups), run, device=device, amp=amp,
                   progress=progress, desc="predicting")
    if not rows_out:
        return sp.csr_matrix((n, L), dtype=np.float32)
    out = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                        shape=(n, L), dtype=np.float32)
    out.sort_indices()
    return out


class StepAverages:
    """Stochastic weight averaging of a (multi-head) network, one ``AveragedModel`` per part a step changes.

    A step changes the shared encoder (unless frozen) and only the heads of its batches; averaging
    every head at every step would cost heads x labels x dim per step, most of training with the
    171 leaf heads of ave-implicitave. So the encoder is averaged over every step and each head over
    the steps that changed it. With a single head this is ``AveragedModel`` of the whole network.
    """

    def __init__(self, network, frozen: bool):
        from torch.optim.swa_utils import AveragedModel

        self.encoder = None if frozen else AveragedModel(network.encoder)
        self.heads = [AveragedModel(head) for head in network.heads]
        self.n_averaged = 0  # steps averaged

    @staticmethod
    def changed_heads(network) -> list[int]:
        """Heads with a gradient, i.e. those the coming optimiser step changes (AdamW skips the others)."""
        return [h for h, head in enumerate(network.heads) if head.weight.grad is not None]

    def update(self, network, heads: Sequence[int]) -> None:
        self.n_averaged += 1
        if self.encoder is not None:
            self.encoder.update_parameters(network.encoder)
        for h in heads:
            self.heads[h].update_parameters(network.heads[h])

    def load_into(self, network) -> None:
        """Replace the network's weights by the averages (a part never averaged keeps its weights)."""
        if self.encoder is not None and self.encoder.n_averaged.item() > 0:
            network.encoder.load_state_dict(self.encoder.module.state_dict())
        for head, average in zip(network.heads, self.heads):
            if average.n_averaged.item() > 0:
                head.load_state_dict(average.module.state_dict())


class _NetworkAverages:
    """:class:`StepAverages` behind the training engine's averager hooks."""

    def __init__(self, network, frozen: bool):
        self.network, self.averages = network, StepAverages(network, frozen)

    @property
    def n_averaged(self) -> int:
        return self.averages.n_averaged

    def update(self) -> None:  # called before the gradients are cleared
        self.averages.update(self.network, StepAverages.changed_heads(self.network))

    def load_into(self) -> None:
        self.averages.load_into(self.network)


def _validate(network, products, Y, mask, groups, threshold, metric, batch_size, amp) -> tuple[float, float]:
    probs = predict_probabilities(network, products, groups, mask, batch_size=batch_size, amp=amp)
    report = evaluate(Y, probs, ks=(1,), threshold=threshold)
    return float(report["P@1"] if metric == "p@1" else report[metric]), float(report["P@1"])


def train_network(network, products: Products, Y: sp.csr_matrix, mask: sp.csr_matrix | None,
                  groups: np.ndarray, config: MaskedTrainConfig, *, valid_inputs: Products,
                  valid_Y: sp.csr_matrix, valid_filter: sp.csr_matrix | None, valid_groups: np.ndarray,
                  threshold: float = 0.5, batch_size: int = 64, progress: bool = True) -> dict:
    """Train ``network`` in place on (products, Y), with the masked BCE when ``mask`` (n, L) is given.

    Token ids fine-tune the encoder and the output layers; pooled features (n, dim) (and the same
    kind for ``valid_inputs``) train the output layers only: the encoder is never run or updated.
    Returns the history: validations, steps, the kept state (best checkpoint or SWA average),
    throughput.
    """
    from ...neural.masked_loss import dense_rows, masked_bce_with_logits
    from ...neural.trainer import EarlyStopping, Trainer

    frozen = isinstance(products, np.ndarray)
    if frozen != isinstance(valid_inputs, np.ndarray):
        raise TypeError("products and valid_inputs must both be token ids or both pooled features")
    # Checkpoints, SWA and clipping cover what is trained: a frozen encoder would only cost copies.
    trained = network.heads if frozen else network
    head_lr = config.head_learning_rate or config.learning_rate
    param_groups = [{"params": network.heads.parameters(), "lr": head_lr}]
    if not frozen:
        param_groups.insert(0, {"params": network.encoder.parameters(), "lr": config.learning_rate})
    device = next(network.parameters()).device
    rng = np.random.default_rng(config.seed)
    n_batches = sum(math.ceil(int(c) / config.batch_size) for c in np.unique(groups, return_counts=True)[1])
    steps_per_epoch = max(1, math.ceil(n_batches / config.grad_accum))
    args = (valid_Y, valid_filter, valid_groups, threshold, config.select_metric, batch_size, config.amp)

    def evaluate():
        score = _validate(network, valid_inputs, *args)
        logger.info("step %d: validation %s %.4f (P@1 %.4f)", trainer.history.steps, config.select_metric, *score)
        return score, {config.select_metric: score[0], "P@1": score[1]}

    def step(rows):
        logits = batch_logits(network, products, rows, int(groups[rows[0]]), device)
        return masked_bce_with_logits(logits.float(), dense_rows(Y, rows, device),
                                      None if mask is None else dense_rows(mask, rows, device))

    trainer = Trainer(
        trained, param_groups, total_steps=max(1, int(round(steps_per_epoch * config.epochs))),
        grad_accum=config.grad_accum, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
        amp=config.amp, device=device, swa=_NetworkAverages(network, frozen) if config.swa else None,
        swa_start=config.swa_start,
        early_stopping=EarlyStopping(evaluate, config.eval_every or steps_per_epoch, config.patience),
        rng=rng, train_mode=network.train, progress=progress,
        desc="training output layers" if frozen else "fine-tuning")
    h = trainer.fit(lambda: group_batches(groups, config.batch_size, rng), step)
    network.eval()
    logger.info("kept %s", h.kept)
    history = {"steps": h.steps, "total_steps": h.total_steps, "evaluations": h.evaluations,
               "best_step": h.best_step, "kept": h.kept, "frozen_encoder": frozen, "seconds": h.seconds,
               "samples_per_second": h.samples_per_second}
    if h.swa is not None:
        history["swa"] = h.swa
    return history
