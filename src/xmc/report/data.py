"""The numbers behind every figure and table of an evaluation report: matrices in, plain data out.

Nothing here plots. Every metric comes from :mod:`xmc.metrics` (one definition of each), so a test
can check a figure's data against ``xmc.metrics`` without reading an image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..metrics import evaluate, frequency_groups, group_report, ranking_report, threshold_scores, train_propensities
from ..metrics.classification import label_counts

__all__ = ["Run", "CURVE_METRICS", "DEFAULT_BOUNDS", "long_tail", "ranking_curves", "group_bars", "calibration",
           "top_errors", "summary", "report_data"]

# The ranking metrics drawn as curves over k: (key prefix in ranking_report, title).
CURVE_METRICS = (("P", "P@k"), ("R", "R@k"), ("nDCG", "nDCG@k"), ("PSP", "PSP@k"))
# Label-frequency group edges of the label-masking paper's Table 5 (see xmc.metrics.groups).
DEFAULT_BOUNDS = (1, 100, 1000, 10000)


@dataclasses.dataclass
class Run:
    """One prediction file lined up with the truth.

    Attributes:
        name: how the report names it (legend, table headers).
        Y_true: CSR ``(n, L')`` truth; columns beyond the truth's labels are predicted labels the
            truth and training data do not know (all zero).
        scores: CSR ``(n, L')`` listed scores, rows aligned with ``Y_true``.
        label_names: ``L'`` column names.
        train_counts: ``(L',)`` training documents per label (0 for labels unseen in training).
        n_train_docs: documents the counts were taken on (for the propensities).
        threshold: the score threshold of the thresholded metrics; None: every listed label counts.
        manifest: the model directory's manifest (kind, versions, config), when known.
        source: the prediction file.
        label_texts: ``L'`` label descriptions shown beside the names, when known.
    """

    name: str
    Y_true: sp.csr_matrix
    scores: sp.csr_matrix
    label_names: list[str]
    train_counts: np.ndarray
    n_train_docs: int
    threshold: float | None = None
    manifest: dict[str, Any] | None = None
    source: str = ""
    label_texts: list[str] | None = None

    @property
    def threshold_in_use(self) -> float:
        """The threshold applied: the given one, else the lowest listed score (every label counts)."""
        if self.threshold is not None:
            return float(self.threshold)
        return float(self.scores.data.min()) if self.scores.nnz else 0.0

    def propensities(self) -> np.ndarray:
        return train_propensities(self.train_counts, self.n_train_docs)

    def predicted(self) -> sp.csr_matrix:
        """Binary ``(n, L')`` predictions at :attr:`threshold_in_use`."""
        return threshold_scores(self.scores, self.threshold_in_use)


def long_tail(train_counts: np.ndarray, bounds: Sequence[float] = DEFAULT_BOUNDS) -> dict:
    """The training label-frequency curve and its frequency groups.

    Returns:
        ``counts``: the non-zero counts sorted in descending order (rank 1 first, for a log-log
        plot); ``unseen``: labels with count 0; ``groups``: ``[{name, low, high, n_labels}]`` of
        :func:`xmc.metrics.frequency_groups` (``high`` None for the open last group), seen labels only.
    """
    counts = np.asarray(train_counts, dtype=np.int64).ravel()
    groups = []
    for name, idx in frequency_groups(counts, bounds):
        if name == "unseen":
            continue
        low, _, high = name[1:-1].partition(",")
        groups.append({"name": name, "low": float(low), "high": None if high == "inf" else float(high),
                       "n_labels": int(idx.size)})
    return {"counts": np.sort(counts[counts > 0])[::-1], "unseen": int((counts == 0).sum()), "groups": groups}


def ranking_curves(run: Run, ks: Sequence[int] = tuple(range(1, 21))) -> dict[str, list[float]]:
    """``{"P": [P@k for k in ks], "R": ..., "nDCG": ..., "PSP": ...}`` from :func:`xmc.metrics.ranking_report`."""
    report = ranking_report(run.Y_true, run.scores, ks=ks, propensities=run.propensities())
    return {key: [report[f"{key}@{k}"] for k in ks] for key, _ in CURVE_METRICS}


def group_bars(run: Run, bounds: Sequence[float] = DEFAULT_BOUNDS) -> list[dict]:
    """:func:`xmc.metrics.group_report` of the run's predictions at its threshold."""
    return group_report(run.Y_true, run.predicted(), run.train_counts, bounds)


def _hits(run: Run) -> tuple[np.ndarray, np.ndarray]:
    """Every listed score and whether its (document, label) is true, in CSR order."""
    S = run.scores.tocsr()
    rows = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    truth = run.Y_true.tocsr()
    correct = np.asarray(truth[rows, S.indices]).ravel() > 0 if S.nnz else np.zeros(0, dtype=bool)
    return S.data.astype(np.float64), correct


def calibration(run: Run, n_bins: int = 10, n_thresholds: int = 101) -> dict:
    """Reliability diagram and precision / recall against the threshold.

    Args:
        run: the predictions.
        n_bins: equal-width score bins of the reliability diagram, over ``[0, 1]`` when every score
            lies there, else over the scores' range.
        n_thresholds: thresholds of the precision / recall curve, evenly spaced over the bin range.

    Returns:
        ``bins``: ``{edges, mean_score, precision, count}`` (NaN for an empty bin); ``thresholds``,
        ``precision``, ``recall``: micro precision and recall of the predictions ``score >= t``
        (recall over every true label of the truth, as :func:`xmc.metrics.micro_prf`);
        ``threshold``: the threshold in use, with its ``precision_at`` and ``recall_at``;
        ``unit_range``: whether the scores lie in ``[0, 1]`` (the diagonal is meaningful).
    """
    scores, correct = _hits(run)
    n_true = int(run.Y_true.count_nonzero())
    unit = bool(scores.size == 0 or (scores.min() >= 0.0 and scores.max() <= 1.0))
    lo, hi = (0.0, 1.0) if unit else (float(scores.min()), float(scores.max()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, n_bins + 1)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(which, weights=scores, minlength=n_bins) / count
        precision = np.bincount(which, weights=correct, minlength=n_bins) / count
    thresholds = np.linspace(lo, hi, n_thresholds)
    used = run.threshold_in_use

    order = np.argsort(scores, kind="stable")
    ascending = scores[order]
    hits_above = np.concatenate([np.cumsum(correct[order][::-1])[::-1], [0]])  # true hits among ascending[i:]

    def at(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.searchsorted(ascending, t, side="left")  # the first score >= t
        n_pred = scores.size - first
        tp = hits_above[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0), tp / n_true if n_true else tp * 0.0

    p, r = at(thresholds)
    p_used, r_used = at(np.array([used]))
    return {"bins": {"edges": edges, "mean_score": mean_score, "precision": precision, "count": count},
            "thresholds": thresholds, "precision": p, "recall": r, "threshold": used,
            "precision_at": float(p_used[0]), "recall_at": float(r_used[0]), "unit_range": unit}


def top_errors(run: Run, n: int = 15) -> dict[str, list[dict]]:
    """The labels most often missed and most often predicted wrongly, at the threshold in use.

    Returns:
        ``missed``: ``[{label, text, missed, test_count, train_count}]`` by false negatives (then
        label id); ``wrong``: ``[{label, text, wrong, predicted, train_count}]`` by false positives
        (``text``: the label text, else the name). Labels with no such error are left out.
    """
    tp, n_pred, n_true = label_counts(run.Y_true, run.predicted())
    ids = np.arange(tp.shape[0])

    def worst(errors: np.ndarray) -> np.ndarray:
        order = np.lexsort((ids, -errors))
        return order[errors[order] > 0][:n]

    fn, fp = n_true - tp, n_pred - tp
    name, train = run.label_names, run.train_counts
    text = run.label_texts if run.label_texts is not None else name
    return {
        "missed": [{"label": name[j], "text": text[j], "missed": int(fn[j]), "test_count": int(n_true[j]),
                    "train_count": int(train[j])} for j in worst(fn)],
        "wrong": [{"label": name[j], "text": text[j], "wrong": int(fp[j]), "predicted": int(n_pred[j]),
                   "train_count": int(train[j])} for j in worst(fp)],
    }


def summary(run: Run, ks: Sequence[int] = (1, 3, 5)) -> dict[str, float]:
    """:func:`xmc.metrics.evaluate` at ``ks`` and the threshold in use (values in ``[0, 1]``)."""
    return evaluate(run.Y_true, run.scores, ks=ks, propensities=run.propensities(), threshold=run.threshold_in_use)


def _aligned_groups(per_run: list[list[dict]]) -> list[list[dict]]:
    """The same groups, in the same order, for every run.

    ``group_report`` lists "unseen" (and "(0,b0)") only when non-empty, and one run may predict
    labels the data never saw while another does not; such a run gets an empty row (NaN metrics).
    """
    names: list[str] = []
    for groups in per_run:
        names += [g["name"] for g in groups if g["name"] not in names]
    optional_first = {"unseen": 0}
    names.sort(key=lambda name: optional_first.get(name, 1 if name.startswith("(") else 2))  # stable
    empty = dict.fromkeys(("micro_p", "micro_r", "micro_f1", "macro_p", "macro_r", "macro_f1"), float("nan"))
    out = []
    for groups in per_run:
        by_name = {g["name"]: g for g in groups}
        out.append([by_name.get(name, {"name": name, "n_labels": 0, "n_active": 0, **empty}) for name in names])
    return out


def report_data(runs: Sequence[Run], train_counts: np.ndarray, *, ks: Sequence[int] = tuple(range(1, 21)),
                bounds: Sequence[float] = DEFAULT_BOUNDS, n_top: int = 15) -> dict:
    """Everything a report shows, for one or more runs on the same truth.

    Args:
        runs: the prediction files, lined up with the same truth.
        train_counts: ``(L,)`` training documents per training label (the long tail).
        ks: the ks of the ranking curves.
        bounds: label-frequency group edges (see :func:`xmc.metrics.frequency_groups`).
        n_top: rows of the most-missed / most-wrongly-predicted tables.

    Returns:
        ``{"ks", "long_tail", "runs": [{name, source, manifest, threshold, max_listed, summary, curves,
        groups, calibration, errors}]}``.
    """
    ks = list(ks)
    out = {"ks": ks, "bounds": list(bounds), "long_tail": long_tail(train_counts, bounds), "runs": []}
    groups = _aligned_groups([group_bars(run, bounds) for run in runs])
    for run in runs:
        listed = np.diff(run.scores.indptr)
        out["runs"].append({
            "name": run.name, "source": run.source, "manifest": run.manifest,
            "threshold": run.threshold, "threshold_in_use": run.threshold_in_use,
            "max_listed": int(listed.max()) if listed.size else 0,
            "summary": summary(run), "curves": ranking_curves(run, ks), "groups": groups[len(out["runs"])],
            "calibration": calibration(run), "errors": top_errors(run, n_top),
        })
    return out
