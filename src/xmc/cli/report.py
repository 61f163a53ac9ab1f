"""``xmc report`` and the figure outputs of ``xmc data stats`` (``--plot``, ``--html``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import numpy as np

from ..data import XMCDataset, dataset_stats, read_label_texts
from ..errors import ConfigError
from ..io import atomic_file, check_file_output, check_not_an_input


class AttachToPred(argparse.Action):
    """``--model`` / ``--name``: belongs to the ``--pred`` given just before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        preds = getattr(namespace, "pred", None) or []
        if not preds:
            parser.error(f"{option_string} {value}: give it after the --pred it belongs to")
        attached = dict(getattr(namespace, self.dest, None) or {})
        index = len(preds) - 1
        if index in attached:
            parser.error(f"{option_string} given twice for --pred {preds[index]}")
        attached[index] = value
        setattr(namespace, self.dest, attached)


def command_line(args: argparse.Namespace) -> str:
    """The command that is running, as a user would type it (shown on the pages)."""
    argv = getattr(args, "argv", None)
    return "xmc " + shlex.join(argv) if argv is not None else f"xmc {args.command}"


def _made_by_xmc(path: str) -> bool:
    """Whether ``path`` is a page or figure an earlier xmc report / data stats wrote (its mark in the head)."""
    from ..report.figures import XMC_MARK

    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'<meta name="generator" content="xmc">' in head or XMC_MARK.encode() in head


def _check_new(path: str | None, overwrite: bool, inputs: dict[str, str | None]) -> None:
    """Refuse before any work: an input, anything not written by xmc, or an xmc output without --overwrite."""
    if path:
        check_not_an_input(path, inputs)
        check_file_output(path, overwrite=overwrite, is_ours=_made_by_xmc, what="report or figure")


def _require_plotting() -> None:
    missing = []
    for module in ("matplotlib", "jinja2"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"figures need {' and '.join(missing)}: pip install 'xmc[report]'")


def _parse_bounds(text: str) -> tuple[float, ...]:
    """--bounds as the group edges, checked by the rule the metrics apply (xmc.metrics.groups.check_bounds)."""
    from ..metrics.groups import check_bounds

    try:
        bounds = tuple(float(b) for b in text.split(",") if b.strip())
        check_bounds(bounds)
    except ValueError:
        raise ConfigError(f"--bounds must be increasing positive numbers separated by commas, got {text!r}") from None
    return bounds


def _run_name(path: str, taken: set[str]) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".jsonl", ".json"):
        base = base.removesuffix(suffix)
    name, i = base or path, 2
    while name in taken:
        name, i = f"{base} ({i})", i + 1
    return name


def report(args: argparse.Namespace) -> int:
    from ..models.persistence import read_labels, read_manifest
    from ..report import Run, report_data
    from ..report.render import render_report
    from .commands import _read, aligned_predictions

    inputs = {"--truth": args.truth, "--train": args.train, "--label-text": args.label_text,
              **{f"--pred {p}": p for p in args.pred}, **{f"--model {m}": m for m in (args.models or {}).values()}}
    _check_new(args.out, args.overwrite, inputs)  # before minutes of reading
    _require_plotting()
    bounds = _parse_bounds(args.bounds)
    models, names = args.models or {}, args.names or {}
    manifests = {}
    for i, directory in models.items():
        manifests[i] = dict(read_manifest(directory), directory=directory)
    train = _read(args.train, args, require_text=False) if args.train else None
    truth = _read(args.truth, args, labels=train.labels if train is not None else None, require_text=False)
    texts = read_label_texts(args.label_text, truth.labels) if args.label_text else None
    runs: list[Run] = []
    for i, path in enumerate(args.pred):
        Y_true, scores, counts, n_docs, unknown = aligned_predictions(path, truth, train)
        if i in models:  # the page shows this model's config beside these predictions: they must be its own
            names_here = list(truth.labels.names) + unknown
            stray = sorted({names_here[j] for j in np.unique(scores.indices)} - set(read_labels(models[i])))
            if stray:
                raise ConfigError(f"--model {models[i]}: {path} predicts {len(stray)} label(s) this model does not "
                                  f"have (e.g. {', '.join(map(repr, stray[:3]))}); give each --pred the model that "
                                  "made it")
        name = names.get(i) or _run_name(path, {r.name for r in runs})
        if name in {r.name for r in runs}:
            raise ConfigError(f"--name {name!r} is used for two prediction files")
        runs.append(Run(name=name, Y_true=Y_true, scores=scores, label_names=list(truth.labels.names) + unknown,
                        train_counts=counts, n_train_docs=n_docs, threshold=args.threshold,
                        manifest=manifests.get(i), source=path,
                        label_texts=None if texts is None else texts + unknown))
    train_counts = (train if train is not None else truth).label_counts()
    data = report_data(runs, train_counts, bounds=bounds)
    datasets = {"train": dataset_stats(train)} if train is not None else {}
    datasets["test" if train is not None else "truth (also the label counts)"] = dataset_stats(truth)
    page = render_report(data, datasets=datasets, command=command_line(args))
    with atomic_file(args.out) as fh:
        fh.write(page)
    print(f"wrote the report on {len(runs)} prediction file(s) to {args.out}")
    return 0


def check_stats_outputs(args: argparse.Namespace) -> None:
    """Fail before reading the data when ``--plot`` / ``--html`` would overwrite a file or cannot be drawn."""
    for path in (args.plot, args.html):
        _check_new(path, args.overwrite, {"FILE": args.file})
    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        raise ConfigError(f"--plot {args.plot}: the file name must end in .png or .svg")
    if args.plot or args.html:
        _require_plotting()


def write_stats_outputs(args: argparse.Namespace, data: XMCDataset, stats: dict) -> None:
    """The long tail and labels-per-document figures of ``xmc data stats`` (``--plot`` / ``--html``)."""
    from ..report import figures as F
    from ..report.data import long_tail
    from ..report.render import render_stats_page

    tail = long_tail(data.label_counts())
    per_doc = np.asarray((data.Y > 0).sum(axis=1)).ravel()
    if args.plot:
        if args.plot.lower().endswith(".svg"):
            with atomic_file(args.plot) as fh:
                fh.write(F.to_svg(F.stats_figure, tail, per_doc))
        else:
            with atomic_file(args.plot, "wb") as fh:
                fh.write(F.to_png(F.stats_figure, tail, per_doc))
        print(f"wrote {args.plot}", file=sys.stderr)  # stdout stays the statistics (e.g. --json)
    if args.html:
        page = render_stats_page(stats, tail, per_doc, name=os.path.basename(args.file), command=command_line(args))
        with atomic_file(args.html) as fh:
            fh.write(page)
        print(f"wrote {args.html}", file=sys.stderr)
