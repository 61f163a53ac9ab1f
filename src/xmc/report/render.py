"""One self-contained HTML page from :mod:`xmc.report.data`: figures embedded as SVG data URIs, no script,
no network; the same data gives the same bytes."""

from __future__ import annotations

import base64
import importlib.resources
import json
import math
from collections.abc import Sequence

import numpy as np

from .. import __version__
from . import figures as F

__all__ = ["render_report", "render_stats_page", "figure_html"]

# Rows of the results table: (key of xmc.metrics.evaluate, shown name).
_SUMMARY_KEYS = [(f"{m}@{k}", f"{m}@{k}") for m in ("P", "R", "nDCG", "PSP", "PSnDCG") for k in (1, 3, 5)] + [
    ("micro_p", "micro P"), ("micro_r", "micro R"), ("micro_f1", "micro F1"),
    ("macro_p", "macro P"), ("macro_r", "macro R"), ("macro_f1", "macro F1")]


def _template(name: str):
    import jinja2

    def load(template: str) -> str:
        return importlib.resources.files(__package__).joinpath(template).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name)


def figure_html(svg: str, alt: str, caption: str = ""):
    """A ``<figure>`` holding ``svg`` as a data URI (each image its own document: no id clashes)."""
    from markupsafe import Markup, escape

    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return Markup(f'<figure><img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">{caption_html}</figure>')


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _summary_rows(runs: Sequence[dict]) -> list[dict]:
    rows = []
    for key, name in _SUMMARY_KEYS:
        values = [run["summary"].get(key, float("nan")) for run in runs]
        finite = [v for v in values if not math.isnan(v)]
        best = max(finite) if finite and len(runs) > 1 else None
        rows.append({"name": name, "cells": [{"text": _pct(v), "best": best is not None and v == best}
                                             for v in values]})
    rows.append({"name": "threshold in use", "cells": [{"text": f"{run['threshold_in_use']:.4g}" + (
        "" if run["threshold"] is not None else " *"), "best": False} for run in runs]})
    rows.append({"name": "labels listed (max)",
                 "cells": [{"text": str(run["max_listed"]), "best": False} for run in runs]})
    return rows


def _dataset_rows(datasets: dict[str, dict]) -> list[dict]:
    keys: list[str] = []
    for stats in datasets.values():
        keys += [k for k in stats if k != "label_count_histogram" and k not in keys]
    return [{"name": k.replace("_", " "), "cells": [_number(s[k]) if k in s else "" for s in datasets.values()]}
            for k in keys]


def _group_rows(runs: Sequence[dict]) -> list[dict]:
    rows = []
    for g, group in enumerate(runs[0]["groups"]):
        cells = []
        for run in runs:
            cells += [_pct(run["groups"][g]["micro_f1"]), _pct(run["groups"][g]["macro_f1"])]
        n_labels = max(run["groups"][g]["n_labels"] for run in runs)  # "unseen" also holds a run's unknown labels
        rows.append({"name": group["name"], "n_labels": f"{n_labels:,}", "cells": cells})
    return rows


def _run_view(run: dict) -> dict:
    manifest = run["manifest"] or None
    view = dict(run)
    if manifest:
        view["versions"] = sorted((manifest.get("versions") or {}).items())
        view["config_json"] = json.dumps(manifest.get("config", {}), indent=2, sort_keys=True)
        view["model_dir"] = manifest.get("directory", "")
    return view


def render_report(data: dict, *, datasets: dict[str, dict], command: str, title: str = "xmc evaluation report") -> str:
    """The HTML page of :func:`xmc.report.data.report_data`'s output.

    Args:
        data: :func:`~xmc.report.data.report_data`'s result.
        datasets: ``{name: xmc.data.dataset_stats(...)}`` shown side by side (e.g. train, test).
        command: the command line that made the page (shown verbatim).
        title: the page title.
    """
    runs = data["runs"]
    threshold_note = "; ".join(f"{r['name']}: {r['threshold_in_use']:.4g}" for r in runs)
    figs = {
        "long_tail": figure_html(F.to_svg(F.long_tail_figure, data["long_tail"]), "label frequency long tail",
                                 "Training documents per label, labels ranked by frequency (log-log); the shaded "
                                 "bands are the label-frequency groups used below."),
        "curves": figure_html(F.to_svg(F.curves_figure, data["ks"], runs), "P@k, R@k, nDCG@k and PSP@k",
                              f"k = {data['ks'][0]}..{data['ks'][-1]}; a file listing fewer than k labels per "
                              "document scores its missing ranks as misses."),
        "groups": figure_html(F.to_svg(F.groups_figure, runs), "micro and macro F1 per label-frequency group",
                              "Labels grouped by training documents (label masking paper, Table 5); macro F1 "
                              "averages the group's labels that occur in the test truth or the predictions."),
        "calibration": figure_html(F.to_svg(F.calibration_figure, runs), "reliability diagram and precision / "
                                   "recall against the threshold",
                                   "Left: listed predictions binned by score, observed precision per bin. Right: "
                                   f"micro precision (solid) and recall (dashed) of score >= t; dotted: the "
                                   f"threshold in use ({threshold_note})."),
    }
    return _template("report.html").render(
        title=title, command=command, version=__version__, runs=[_run_view(r) for r in runs],
        summary_rows=_summary_rows(runs), dataset_names=list(datasets), dataset_rows=_dataset_rows(datasets),
        group_rows=_group_rows(runs), figures=figs,
    )


def render_stats_page(stats: dict, tail: dict, labels_per_doc: np.ndarray, *, name: str, command: str) -> str:
    """``xmc data stats --html``: the statistics table, the long tail and the labels-per-document histogram."""
    figs = {"tail": figure_html(F.to_svg(F.long_tail_figure, tail), "label frequency long tail"),
            "per_doc": figure_html(F.to_svg(F.labels_per_doc_figure, labels_per_doc), "labels per document")}
    return _template("stats.html").render(
        title=f"xmc data stats: {name}", command=command, version=__version__, figures=figs,
        rows=_dataset_rows({name: stats}),
        histogram=list(stats.get("label_count_histogram", {}).items()))
