"""Masked binary cross-entropy: the loss of section 4.2 of Chen, Xia and Shinzato.

    L(x) = - sum_{j in M(x)} [ y_j log sigma(s_j) + (1 - y_j) log(1 - sigma(s_j)) ]

Only the labels relevant to the product's category (M(x), from :mod:`xmc.neural.taxonomy`)
contribute, so the output weights of an irrelevant label get exactly zero gradient from that
product. Two vectorised forms, no per-sample Python loop:

* dense: a (B, L) 0/1 mask tensor multiplies the element-wise loss (simple; fine for
  thousands of labels);
* gathered: (B, K) padded index tensors of the relevant labels; only those K << L logits
  are computed from the hidden states (for very large label spaces).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F


def masked_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of BCE over the relevant labels of each sample, averaged over the batch.

    Args:
        logits: (B, L) scores s.
        targets: (B, L) 0/1 truth y.
        mask: (B, L) 0/1 relevance M(x); None = every label (the unmasked baseline).

    Returns:
        A scalar tensor.
    """
    losses = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    if mask is not None:
        # where() rather than a product: an irrelevant label's gradient is exactly 0 even for inf logits.
        losses = torch.where(mask.bool(), losses, torch.zeros((), dtype=losses.dtype, device=losses.device))
    return losses.sum(dim=1).mean()


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Rows of a sparse (n, L) 0/1 matrix as a dense float32 (B, L) tensor."""
    return torch.from_numpy(np.asarray(matrix[rows].toarray(), dtype=np.float32)).to(device)


def padded_indices(mask: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relevant label ids of the given rows as a padded (B, K) int64 array and its (B, K) validity.

    K is the largest number of relevant labels in the batch; padding ids are 0 and invalid.
    """
    sub = sp.csr_matrix(mask[rows])
    sub.eliminate_zeros()
    sub.sort_indices()
    lengths = np.diff(sub.indptr)
    K = max(int(lengths.max()) if len(lengths) else 0, 1)
    valid = np.arange(K)[None, :] < lengths[:, None]
    index = np.zeros((len(rows), K), dtype=np.int64)
    index[valid] = sub.indices
    return index, valid


def gathered_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    index: torch.Tensor) -> torch.Tensor:
    """Scores of the indexed labels only: (B, K) = <hidden_b, weight[index_bk]> + bias[index_bk].

    Args:
        hidden: (B, d) pooled states (after dropout).
        weight: (L, d) output weights; bias: (L,) or None.
        index: (B, K) label ids.
    """
    logits = torch.einsum("bd,bkd->bk", hidden, weight[index])
    return logits if bias is None else logits + bias[index]


def gathered_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """:func:`masked_bce_with_logits` on gathered (B, K) logits, targets and validity."""
    return masked_bce_with_logits(logits, targets, valid)


def gathered_targets(Y: sp.csr_matrix, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """y at the gathered positions: (B, K) float32 with Y[rows[b], index[b, k]]."""
    picked = sp.csr_matrix(Y[rows])[np.arange(len(rows))[:, None], index]
    return np.asarray(picked.toarray(), dtype=np.float32)
