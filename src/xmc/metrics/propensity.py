"""Label propensities for the propensity-scored (PS) metrics."""

from __future__ import annotations

import numpy as np

__all__ = ["jain_propensity", "train_propensities"]


def jain_propensity(label_counts: np.ndarray, n_docs: int, A: float = 0.55, B: float = 1.5) -> np.ndarray:
    """Empirical label propensities of Jain, Prabhu and Varma (KDD 2016).

    ``p_l = 1 / (1 + C * exp(-A * log(N_l + B)))`` with
    ``C = (log(N) - 1) * (B + 1) ** A``, where ``N_l`` is the number of training
    documents with label ``l`` and ``N`` the number of training documents
    (natural logarithms).  Typical ``(A, B)``: ``(0.55, 1.5)`` by default,
    ``(0.5, 0.4)`` for Wikipedia data sets, ``(0.6, 2.6)`` for Amazon ones.

    Args:
        label_counts: ``(L,)`` training frequency of every label (0 allowed,
            e.g. for test labels unseen in training).
        n_docs: number of training documents ``N``.
        A, B: data-set specific constants.

    Returns:
        float64 ``(L,)`` propensities (in ``(0, 1)`` whenever ``N >= 3``, so
        that ``C > 0``); the PS metrics weight a hit on label ``l`` by ``1 / p_l``.
        With one or two documents ``C`` would be negative and ``p_l`` above 1 or
        negative: ``C`` is then 0, every ``p_l`` is 1 and PSP@k equals P@k.
    """
    counts = np.asarray(label_counts, dtype=np.float64).ravel()
    if n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    if np.any(counts < 0):
        raise ValueError("label_counts must be >= 0")
    C = max(np.log(n_docs) - 1.0, 0.0) * (B + 1.0) ** A
    return 1.0 / (1.0 + C * np.exp(-A * np.log(counts + B)))


def train_propensities(label_counts: np.ndarray, n_docs: int, n_labels: int | None = None,
                       A: float = 0.55, B: float = 1.5) -> np.ndarray:
    """The one definition of PSP@k propensities in xmc: Jain propensities of the training counts.

    ``label_counts`` are the training frequencies of the first ``len(label_counts)`` columns;
    columns beyond them up to ``n_labels`` (labels seen only in the test data, or predicted labels
    unknown to training) have training count 0, as in the Extreme Classification Repository's
    tools: a hit on a label never seen in training is the rarest kind of hit and weighs the most.

    Returns:
        float64 ``(n_labels,)`` propensities (``n_labels`` defaults to ``len(label_counts)``).
    """
    counts = np.asarray(label_counts, dtype=np.float64).ravel()
    n_labels = len(counts) if n_labels is None else n_labels
    if n_labels < len(counts):
        raise ValueError(f"n_labels ({n_labels}) is smaller than the number of label counts ({len(counts)})")
    return jain_propensity(np.concatenate([counts, np.zeros(n_labels - len(counts))]), n_docs, A=A, B=B)
