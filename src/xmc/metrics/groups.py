"""Metrics broken down by label training frequency.

Labels are bucketed by how many training documents carry them, as in Table 5
of Chen et al.'s label-masking paper: with the default
``bounds=(1, 100, 1000, 10000)`` the groups are ``[1,100)``, ``[100,1000)``,
``[1000,10000)`` and ``[10000,inf)``.  Labels with training count 0 (including
truth columns beyond ``len(train_counts)``, i.e. test labels never seen in
training) form an extra ``"unseen"`` group, listed first and only when
non-empty.  When ``bounds[0] > 1`` the labels with ``0 < count < bounds[0]``
form a ``"(0,b0)"`` group, likewise listed only when non-empty.  The regular
buckets are always listed, even when empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from xmc.metrics.classification import _macro, _micro, label_counts

__all__ = ["check_bounds", "frequency_groups", "group_report"]


def check_bounds(bounds: Sequence[float]) -> np.ndarray:
    """``bounds`` as float64 group edges, or ValueError unless they are finite, > 0 and strictly
    increasing (a NaN passes every comparison, and made one empty group)."""
    b = np.asarray(bounds, dtype=np.float64).ravel()
    if b.size == 0 or not np.isfinite(b).all() or np.any(b <= 0) or np.any(np.diff(b) <= 0):
        raise ValueError(f"bounds must be finite, strictly increasing and > 0, got {tuple(bounds)}")
    return b


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def frequency_groups(train_counts: np.ndarray,
                     bounds: Sequence[float] = (1, 100, 1000, 10000)) -> list[tuple[str, np.ndarray]]:
    """Partition labels into training-frequency buckets.

    Args:
        train_counts: ``(L,)`` number of training documents of every label.
        bounds: strictly increasing positive bucket edges ``b0 < b1 < ...``;
            bucket ``i`` is ``[b_i, b_{i+1})`` and the last is ``[b_last, inf)``.

    Returns:
        ``[(name, label_indices), ...]`` with names like ``"[1,100)"`` and
        ``"[10000,inf)"`` and int64 sorted index arrays; ``"unseen"`` (count 0)
        first when non-empty.  Every label is in exactly one group.
    """
    counts = np.asarray(train_counts, dtype=np.float64).ravel()
    b = check_bounds(bounds)
    if np.any(counts < 0):
        raise ValueError("train_counts must be >= 0")
    groups: list[tuple[str, np.ndarray]] = []
    unseen = np.nonzero(counts == 0)[0]
    if unseen.size:
        groups.append(("unseen", unseen))
    below = np.nonzero((counts > 0) & (counts < b[0]))[0]
    if below.size:
        groups.append((f"(0,{_fmt(b[0])})", below))
    # bucket id of every label with count >= b0: 0 .. len(b)-1
    bucket = np.searchsorted(b, counts, side="right") - 1
    edges = list(b) + [np.inf]
    for i in range(b.size):
        hi = "inf" if i == b.size - 1 else _fmt(edges[i + 1])
        groups.append((f"[{_fmt(edges[i])},{hi})", np.nonzero((bucket == i) & (counts > 0))[0]))
    return groups


def group_report(Y_true: sp.spmatrix, Y_pred: sp.spmatrix, train_counts: np.ndarray,
                 bounds: Sequence[float] = (1, 100, 1000, 10000)) -> list[dict]:
    """Micro P/R/F1 and macro P/R/F1 restricted to each frequency group.

    Args:
        Y_true: sparse ``(n, L)`` ground truth.
        Y_pred: sparse ``(n, L')`` binary predictions, ``L' <= L`` (e.g. from
            :func:`xmc.metrics.threshold_scores`).
        train_counts: ``(L_train,)`` training frequency per label; labels
            ``>= L_train`` are treated as count 0 (``"unseen"``).
        bounds: bucket edges, see :func:`frequency_groups`.

    Returns:
        One dict per group of :func:`frequency_groups`, in the same order, with
        keys ``name``, ``n_labels`` (labels in the group), ``n_active`` (of
        those, labels occurring in the test truth or predictions),
        ``micro_p``, ``micro_r``, ``micro_f1`` (computed on the group's label
        columns only), ``macro_p``, ``macro_r``, ``macro_f1`` (averaged over
        the group's active labels, the default rule of
        :func:`xmc.metrics.macro_prf`).  Metric values are NaN for a group
        with no active label.
    """
    tp, n_pred, n_true = label_counts(Y_true, Y_pred)
    L = tp.shape[0]
    counts = np.asarray(train_counts, dtype=np.float64).ravel()
    if counts.shape[0] > L:
        raise ValueError(f"train_counts has {counts.shape[0]} entries, more than Y_true's {L} columns")
    counts = np.concatenate([counts, np.zeros(L - counts.shape[0])])
    active = (n_true > 0) | (n_pred > 0)
    out = []
    for name, idx in frequency_groups(counts, bounds):  # loop over a handful of groups
        act = idx[active[idx]]
        row = {"name": name, "n_labels": int(idx.size), "n_active": int(act.size)}
        if act.size:
            mp, mr, mf = _micro(tp[idx], n_pred[idx], n_true[idx])
            Mp, Mr, Mf = _macro(tp, n_pred, n_true, labels=act)
        else:
            mp = mr = mf = Mp = Mr = Mf = float("nan")
        row.update(micro_p=mp, micro_r=mr, micro_f1=mf, macro_p=Mp, macro_r=Mr, macro_f1=Mf)
        out.append(row)
    return out
