"""Evaluation metrics for extreme multi-label classification.

Vectorised over scipy sparse matrices.  Ranking metrics (P@k, R@k, nDCG@k,
PSP@k, PSnDCG@k) live in :mod:`xmc.metrics.ranking` (conventions documented
there), thresholded micro/macro P/R/F1 in :mod:`xmc.metrics.classification`,
frequency-bucketed reports in :mod:`xmc.metrics.groups`.

Everywhere ``Y_true`` is a sparse ``(n, L)`` truth and scores / predictions may
have ``L' <= L`` columns; the missing columns are labels the model cannot
predict and they still count as relevant.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from xmc.metrics.classification import _macro, _micro, label_counts, macro_prf, micro_prf, threshold_scores
from xmc.metrics.groups import frequency_groups, group_report
from xmc.metrics.propensity import jain_propensity, train_propensities
from xmc.metrics.ranking import (
    ndcg_at_k,
    precision_at_k,
    psndcg_at_k,
    psprecision_at_k,
    ranking_report,
    recall_at_k,
)
from xmc.metrics.topk import top_k, topk_to_csr

__all__ = [
    "top_k",
    "topk_to_csr",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "psprecision_at_k",
    "psndcg_at_k",
    "ranking_report",
    "jain_propensity",
    "train_propensities",
    "label_counts",
    "micro_prf",
    "macro_prf",
    "threshold_scores",
    "frequency_groups",
    "group_report",
    "evaluate",
    "format_report",
]


def evaluate(Y_true: sp.spmatrix, scores: sp.spmatrix | np.ndarray, *,
             ks: Sequence[int] = (1, 3, 5),
             propensities: np.ndarray | None = None,
             threshold: float | np.ndarray | None = None) -> dict[str, float]:
    """Ranking metrics, plus thresholded micro/macro P/R/F1 when asked.

    Args:
        Y_true: sparse ``(n, L)`` ground truth.
        scores: sparse or dense ``(n, L')`` scores, ``L' <= L``.
        ks: the ks of the ranking metrics.
        propensities: optional ``(L,)`` propensities; adds ``PSP@k``/``PSnDCG@k``.
        threshold: optional scalar or ``(L',)`` thresholds; when given the
            predictions ``scores >= threshold`` add the keys ``micro_p``,
            ``micro_r``, ``micro_f1``, ``macro_p``, ``macro_r``, ``macro_f1``.

    Returns:
        ``dict`` of floats in ``[0, 1]``: :func:`ranking_report`'s keys
        followed by the thresholded ones.
    """
    report = ranking_report(Y_true, scores, ks=ks, propensities=propensities)
    if threshold is not None:
        counts = label_counts(Y_true, threshold_scores(scores, threshold))
        mp, mr, mf = _micro(*counts)
        Mp, Mr, Mf = _macro(*counts)
        report.update(micro_p=mp, micro_r=mr, micro_f1=mf, macro_p=Mp, macro_r=Mr, macro_f1=Mf)
    return report


_AT_K = re.compile(r"^(.+)@(\d+)$")
_AVG = re.compile(r"^(micro|macro)_(p|r|f1)$")


def _pct(v) -> str:
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        v = float(v)
        return "nan" if math.isnan(v) else f"{100.0 * v:.2f}"
    return str(v)


def aligned_rows(table: list[list[str]]) -> list[str]:
    """Text rows of equal length: the first column left-aligned (names), the others right-aligned (numbers)."""
    widths = [max(len(t[j]) for t in table) for j in range(len(table[0]))]
    return ["  ".join([t[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(t[1:], widths[1:])]).rstrip()
            for t in table]


def _grid(rows: list[str], cols: list[str], cell: dict[tuple[str, str], str], corner: str = "") -> list[str]:
    return aligned_rows([[corner] + cols] + [[r] + [cell.get((r, c), "") for c in cols] for r in rows])


def format_report(report: dict) -> str:
    """Render a metrics dict as an aligned text table, values in percent.

    ``NAME@k`` keys become a grid (one row per metric, one column per k),
    ``micro_*``/``macro_*`` keys a grid with columns P, R, F1, and any other
    key a ``key  value`` line.  Floats are shown as percentages with 2
    decimals (``0.4523`` -> ``45.23``).

    Args:
        report: e.g. the output of :func:`evaluate` or :func:`ranking_report`.

    Returns:
        The table as a multi-line string (no trailing newline).
    """
    at_rows: list[str] = []
    at_cols: list[str] = []
    at_cell: dict[tuple[str, str], str] = {}
    avg_rows: list[str] = []
    avg_cell: dict[tuple[str, str], str] = {}
    other: list[tuple[str, str]] = []
    col_name = {"p": "P", "r": "R", "f1": "F1"}
    for key, val in report.items():
        m = _AT_K.match(str(key))
        a = _AVG.match(str(key))
        if m:
            name, k = m.group(1), f"@{m.group(2)}"
            if name not in at_rows:
                at_rows.append(name)
            if k not in at_cols:
                at_cols.append(k)
            at_cell[(name, k)] = _pct(val)
        elif a:
            if a.group(1) not in avg_rows:
                avg_rows.append(a.group(1))
            avg_cell[(a.group(1), col_name[a.group(2)])] = _pct(val)
        else:
            other.append((str(key), _pct(val)))
    at_cols.sort(key=lambda c: int(c[1:]))
    blocks: list[list[str]] = []
    if at_rows:
        blocks.append(_grid(at_rows, at_cols, at_cell, "metric"))
    if avg_rows:
        blocks.append(_grid(avg_rows, ["P", "R", "F1"], avg_cell, "average"))
    if other:
        w = max(len(k) for k, _ in other)
        blocks.append([f"{k.ljust(w)}  {v}" for k, v in other])
    return "\n\n".join("\n".join(b) for b in blocks)
