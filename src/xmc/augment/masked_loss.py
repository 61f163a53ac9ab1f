"""Masked data-augmentation loss of XDA (paper Eq. 4).

An augmented document copies its original's labels, but the generator was conditioned on
all of them while only the tail labels needed more examples. Head labels already have many
real positives, and a noisy synthetic positive would pull their classifiers towards generic
text, so on augmented documents the positive BCE terms of head labels are dropped:

    L_Aug(x_aug) = - sum_j [ (1 - h_j) y_j log sigma(s_j) + (1 - y_j) log(1 - sigma(s_j)) ]

with h_j = 1 for a head label (more than N_t training documents). Negative terms of every
label, and positive terms of tail labels, stay. The classifier is trained with
L = L_BCE(real) + weight * L_Aug(augmented).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def head_label_mask(label_counts: np.ndarray, tail_threshold: int) -> np.ndarray:
    """Bool (L,) array, True for head labels: more than ``tail_threshold`` (N_t) training documents."""
    return np.asarray(label_counts) > tail_threshold


def augmented_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """L_Aug (Eq. 4): BCE summed over labels, averaged over the batch, head positives dropped.

    Args:
        logits: (B, L) scores s.
        targets: (B, L) 0/1 labels y of the augmented documents.
        head: (L,) or (B, L) bool/0-1, True where the label is a head label.

    Returns:
        A scalar tensor.
    """
    losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    drop = targets.bool() & head.bool().to(logits.device).expand_as(targets)
    # where() rather than a product: a dropped term's gradient is exactly 0 even for infinite logits.
    losses = torch.where(drop, torch.zeros((), dtype=losses.dtype, device=losses.device), losses)
    return losses.sum(dim=1).mean()


def xda_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    aug_logits: torch.Tensor | None,
    aug_targets: torch.Tensor | None,
    head: torch.Tensor,
    aug_weight: float = 1.0,
    mask: bool = True,
) -> torch.Tensor:
    """L_BCE on real documents + ``aug_weight`` * L_Aug on augmented ones.

    Args:
        logits / targets: (B, L) real documents.
        aug_logits / aug_targets: (A, L) augmented documents, or None when the batch has none.
        head: (L,) bool head-label mask (:func:`head_label_mask`).
        aug_weight: weight of the augmented term.
        mask: False = plain BCE on augmented documents too (the "w/o Mask" ablation).
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").sum(1).mean()
    if aug_logits is None or aug_logits.shape[0] == 0:
        return loss
    no_head = torch.zeros_like(head, dtype=torch.bool)
    return loss + aug_weight * augmented_bce_with_logits(aug_logits, aug_targets, head if mask else no_head)
