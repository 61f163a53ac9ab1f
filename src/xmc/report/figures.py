"""Matplotlib figures of a report, drawn from :mod:`xmc.report.data`'s plain data.

Figures are built with the object API (``matplotlib.figure.Figure``, Agg canvas): no pyplot, so
no global figure registry and no GUI backend. :func:`to_svg` / :func:`to_png` pin everything that
would change between runs (the SVG id salt, the date), so the same data gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from .data import CURVE_METRICS

__all__ = ["to_svg", "to_png", "long_tail_figure", "curves_figure", "groups_figure", "calibration_figure",
           "labels_per_doc_figure", "stats_figure"]

# Fixed for byte-identical output: matplotlib salts its SVG ids randomly and stamps a date by default.
_RC = {"svg.hashsalt": "xmc-report", "svg.fonttype": "none", "font.size": 9, "axes.grid": True,
       "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}
_GROUP_SHADES = ("#f2f2f2", "#e0e0e0")
# Written into every figure file, so that --overwrite can tell an xmc figure from anything else.
XMC_MARK = "xmc report"
_MAX_POINTS = 2000


def _figure(width: float, height: float, ncols: int = 1, right: float = 0.4, bottom: float = 0.55,
            wspace: float = 0.25):
    """A figure of ``ncols`` axes in a row; margins in inches (fixed: a layout engine doubles the drawing time)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.65 / width, right=1 - right / width, bottom=bottom / height, top=1 - 0.35 / height,
                        wspace=wspace)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def to_svg(draw, *args, **kwargs) -> str:
    """Call ``draw(*args, **kwargs) -> Figure`` under the pinned settings; the figure as SVG text."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = draw(*args, **kwargs)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": XMC_MARK})
    return buffer.getvalue()


def to_png(draw, *args, dpi: int = 100, **kwargs) -> bytes:
    """Like :func:`to_svg`, as PNG bytes (Agg); no software or date stamp."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = draw(*args, **kwargs)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": XMC_MARK})
    return buffer.getvalue()


def long_tail_figure(tail: dict, ax=None):
    """Training documents per label against the label's rank, log-log, frequency groups shaded."""
    fig = None
    if ax is None:
        fig, (ax,) = _figure(6.4, 3.4, right=1.3)
    counts = tail["counts"]
    if len(counts):
        # At most ~2,000 log-spaced ranks: the same curve on a log axis, and a small SVG for millions of labels.
        ranks = np.unique(np.geomspace(1, len(counts), num=min(len(counts), _MAX_POINTS)).round().astype(np.int64))
        ax.loglog(ranks, counts[ranks - 1], color="C0", lw=1.5)
    top = max(float(counts[0]) if len(counts) else 1.0, 1.0) * 1.5
    for i, group in enumerate(tail["groups"]):
        low, high = group["low"], group["high"] or math.inf
        if low > top:
            continue
        ax.axhspan(low, min(high, top), color=_GROUP_SHADES[i % 2], zorder=0, lw=0)
        ax.axhline(low, color="0.5", lw=0.8, ls="--", zorder=1)
        ax.text(1.01, math.sqrt(low * min(high, top)), f"{group['name']}\n{group['n_labels']:,} labels",
                transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=8)
    ax.set_ylim(0.8, top)
    ax.set_xlabel("label rank (by training documents)")
    ax.set_ylabel("training documents")
    title = f"label frequency long tail ({len(counts):,} labels"
    ax.set_title(title + (f"; {tail['unseen']:,} with none)" if tail["unseen"] else ")"))
    return fig if fig is not None else ax.figure


def curves_figure(ks: Sequence[int], runs: Sequence[dict]):
    """P@k, R@k, nDCG@k and PSP@k against k, one line per run."""
    fig, axes = _figure(10.0, 3.0, ncols=len(CURVE_METRICS), wspace=0.3)
    for ax, (key, title) in zip(axes, CURVE_METRICS):
        for i, run in enumerate(runs):
            ax.plot(ks, 100 * np.asarray(run["curves"][key]), marker="o", ms=3, lw=1.3, color=f"C{i}",
                    label=run["name"])
        ax.set_title(title)
        ax.set_xlabel("k")
        ax.set_xticks([k for k in ks if k == 1 or k % 5 == 0])
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8, loc="best")
    return fig


def groups_figure(runs: Sequence[dict]):
    """Micro and macro F1 per label-frequency group, bars grouped by group, one bar per run."""
    fig, axes = _figure(10.0, 3.4, ncols=2, bottom=0.75, wspace=0.15)
    names = [g["name"] for g in runs[0]["groups"]]
    x = np.arange(len(names))
    width = 0.8 / len(runs)
    for ax, key, title in zip(axes, ("micro_f1", "macro_f1"), ("micro F1", "macro F1")):
        for i, run in enumerate(runs):
            values = 100 * np.array([g[key] for g in run["groups"]], dtype=np.float64)
            offset = (i - (len(runs) - 1) / 2) * width
            bars = ax.bar(x + offset, np.nan_to_num(values), width, color=f"C{i}", label=run["name"])
            for bar, value in zip(bars, values):
                ax.annotate("n/a" if math.isnan(value) else f"{value:.1f}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                            textcoords="offset points")
        counts = [max(run["groups"][i]["n_labels"] for run in runs) for i in range(len(names))]
        ax.set_xticks(x, [f"{n}\n{c:,} labels" for n, c in zip(names, counts)], fontsize=7.5)
        ax.set_title(f"{title} by training frequency")
        ax.set_ylabel("%")
        ax.grid(axis="x", visible=False)
    axes[0].legend(fontsize=8, loc="best")
    return fig


def calibration_figure(runs: Sequence[dict]):
    """Reliability diagram (score against observed precision) and precision / recall against the threshold."""
    fig, (left, right) = _figure(10.0, 3.6, ncols=2, wspace=0.2)
    unit = all(run["calibration"]["unit_range"] for run in runs)
    if unit:
        left.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="perfectly calibrated")
    for i, run in enumerate(runs):
        cal = run["calibration"]
        bins = cal["bins"]
        keep = bins["count"] > 0
        left.plot(bins["mean_score"][keep], bins["precision"][keep], marker="o", ms=4, color=f"C{i}",
                  label=run["name"])
        right.plot(cal["thresholds"], cal["precision"], color=f"C{i}", lw=1.4, label=f"{run['name']}: precision")
        right.plot(cal["thresholds"], cal["recall"], color=f"C{i}", lw=1.4, ls="--", label=f"{run['name']}: recall")
        right.axvline(cal["threshold"], color=f"C{i}", lw=1.0, ls=":")
        right.annotate(f"in use {cal['threshold']:.3g}", (cal["threshold"], 1.0), xycoords=("data", "axes fraction"),
                       xytext=(3, -10 - 11 * i), textcoords="offset points", fontsize=7, color=f"C{i}")
    left.set_xlabel("predicted score (bin mean)")
    left.set_ylabel("observed precision")
    left.set_title("reliability diagram")
    left.legend(fontsize=8, loc="best")
    right.set_xlabel("threshold")
    right.set_ylabel("micro precision / recall")
    right.set_title("precision and recall against the threshold")
    right.legend(fontsize=7, loc="best")
    for ax in (left, right):
        ax.set_ylim(-0.02, 1.02)
    return fig


def labels_per_doc_figure(labels_per_doc: np.ndarray, ax=None):
    """Histogram of labels per document (one bar per count)."""
    fig = None
    if ax is None:
        fig, (ax,) = _figure(6.4, 3.4)
    values = np.asarray(labels_per_doc, dtype=np.int64)
    hist = np.bincount(values) if values.size else np.zeros(1, dtype=np.int64)
    ax.bar(np.arange(hist.size), hist, width=0.9, color="C1")
    ax.set_xlabel("labels per document")
    ax.set_ylabel("documents")
    mean = float(values.mean()) if values.size else 0.0
    ax.set_title(f"labels per document (mean {mean:.2f}, max {int(values.max()) if values.size else 0})")
    ax.grid(axis="x", visible=False)
    return fig if fig is not None else ax.figure


def stats_figure(tail: dict, labels_per_doc: np.ndarray):
    """``xmc data stats --plot``: the long tail beside the labels-per-document histogram."""
    fig, (left, right) = _figure(11.0, 3.6, ncols=2, wspace=0.45)
    long_tail_figure(tail, ax=left)
    labels_per_doc_figure(labels_per_doc, ax=right)
    return fig
