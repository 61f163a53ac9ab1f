"""The ``xmc`` command line: data statistics and generation, training, pruning, prediction, evaluation and the demo."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import traceback

from ..errors import XMCError
from ..progress import quiet
from . import commands, report, stage

DESCRIPTION = """Extreme multi-label text classification.

Typical use:
  xmc train --model xr-linear --train train.jsonl.gz --out model/
  xmc tune --train train.jsonl.gz --out tuned.json       (then: xmc train ... --config tuned.json)
  xmc predict --model model/ --input test.jsonl.gz --out pred.jsonl
  xmc evaluate --truth test.jsonl.gz --pred pred.jsonl --train train.jsonl.gz
  xmc report --truth test.jsonl.gz --pred pred.jsonl --train train.jsonl.gz --out report.html

X-Transformer with its GPU stage on another machine:
  xmc stage export --model xtransformer --train train.jsonl.gz --out bundle/    (CPU)
  xmc stage run bundle/ --out result/                                        (GPU)
  xmc stage import bundle/ result/ --train train.jsonl.gz --out model/       (CPU)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit 2, no usage dump
        self.exit(2, f"xmc: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:  # numpy's seeds
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 4294967295, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):  # 'nan' would silently drop every label
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace an existing {what} at --out (anything else there is never replaced)")


def _add_engine_args(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("distributed (xr-linear; needs pip install 'xmc[distributed]')")
    g.add_argument("--engine", choices=["dask"], help=f"{what} on a Dask cluster instead of in this process")
    g.add_argument("--address", help="the cluster's scheduler, e.g. tcp://host:8786 (default: start a local "
                                     "cluster of --workers processes)")
    g.add_argument("--workers", type=_positive_int, default=2, help="local cluster workers (default 2)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["auto", "jsonl", "xc"], default="auto",
                   help="file format (default: from the file name / header)")
    p.add_argument("--text-field", default="text", help="JSONL field of the main text (default: text)")
    p.add_argument("--labels-field", default="labels", help="JSONL field of the label list (default: labels)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xmc", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars (on a terminal they are bars; otherwise a plain line every 10 s)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="inspect data files")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    stats = data_sub.add_parser("stats", help="counts, labels per document, documents per label, long tail")
    stats.add_argument("file", help="JSONL (optionally .gz) or XC sparse file")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--plot", help="also draw the long tail and the labels-per-document histogram "
                                      "into this .png (or .svg) file")
    stats.add_argument("--html", help="also write a self-contained HTML page of the statistics and figures")
    stats.add_argument("--overwrite", action="store_true", help="replace existing --plot / --html files")
    _add_data_args(stats)
    stats.set_defaults(func=commands.data_stats)

    gen = data_sub.add_parser("generate", help="write a seeded synthetic sparse XMC problem (hidden label "
                                               "hierarchy, Zipf long tail) as XC sparse train.txt / test.txt")
    gen.add_argument("--out", required=True, help="directory to write (train.txt, test.txt, generator.json)")
    gen.add_argument("--labels", type=int, default=1000, help="number of labels (default 1000)")
    gen.add_argument("--train-docs", type=int, help="training documents (default: 2 x labels)")
    gen.add_argument("--test-docs", type=int, help="test documents (default: train documents / 10)")
    gen.add_argument("--features", type=int, help="number of features (default: 10 x labels)")
    gen.add_argument("--seed", type=int, default=0, help="random seed: equal arguments give equal files")
    _add_overwrite_arg(gen, "generated problem directory")
    gen.set_defaults(func=commands.data_generate)

    train = sub.add_parser("train", help="train a model and save it as a directory")
    train.add_argument("--model", required=True, help="model name (see 'xmc config --list')")
    train.add_argument("--train", required=True, help="training data (JSONL or XC sparse)")
    train.add_argument("--valid", help="validation data for models that early-stop or select on it")
    train.add_argument("--out", required=True, help="model directory to write (a new path, or an xmc model "
                                                   "with --overwrite; written to a temporary path, then renamed)")
    _add_overwrite_arg(train, "xmc model directory")
    train.add_argument("--config", help="JSON config file (keys as printed by 'xmc config MODEL')")
    train.add_argument("--label-text", help="label texts: JSON {label: text} or a file whose line i is label i's text")
    train.add_argument("--taxonomy", help="attribute taxonomy JSON {category: [labels]} (label-masking models)")
    train.add_argument("--augmented", help="XDA augmented JSONL (from 'xmc augment'): after training, fine-tune the "
                                           "classifier on it with the masked augmentation loss (lightxml / gudn)")
    train.add_argument("--xda-config", help="JSON FinetuneConfig of the --augmented fine-tuning (keys as printed by "
                                            "'xmc config xda-finetune')")
    _add_data_args(train)
    _add_engine_args(train, "train the linear layers (label sub-trees as tasks)")
    train.set_defaults(func=commands.train)

    tune = sub.add_parser("tune", help="choose xr-linear settings on validation folds of the training data "
                                       "and write the best config (for 'xmc train --config')")
    tune.add_argument("--train", required=True, help="training data (JSONL or XC sparse); the folds are carved "
                                                     "from it (never tune on test data)")
    tune.add_argument("--out", required=True, help="config JSON to write (a new path, or an xr-linear config "
                                                   "with --overwrite)")
    _add_overwrite_arg(tune, "xr-linear config file")
    tune.add_argument("--config", help="base JSON config the grid changes (default: xr-linear's default)")
    tune.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                      help="a config key and its candidate values, repeatable; every combination is tried "
                           "(default: train.C=0.5,1,2,4)")
    tune.add_argument("--metric", default="nDCG@5", help="validation metric that picks the best: P, R, nDCG, PSP "
                                                         "or PSnDCG at 1, 3 or 5 (default: nDCG@5)")
    tune.add_argument("--folds", type=_positive_int, help="K >= 2: average K folds; 1: one --valid-fraction "
                                                          "split (default: 5 below 10,000 documents, else 1)")
    tune.add_argument("--valid", help="a validation file of your own: the candidates train on all of --train and "
                                      "are scored on it (instead of folds)")
    tune.add_argument("--valid-fraction", type=_finite_float, default=0.1,
                      help="held-out share of the single split (default: 0.1)")
    tune.add_argument("--seed", type=_seed, default=0, help="seed of the folds (default: 0)")
    _add_data_args(tune)
    tune.set_defaults(func=commands.tune)

    predict = sub.add_parser("predict", help="predict labels with a saved model")
    predict.add_argument("--model", required=True, help="model directory")
    predict.add_argument("--input", required=True, help="documents (JSONL or XC sparse)")
    predict.add_argument("--out", required=True, help="prediction JSONL to write (a new path, or an xmc "
                                                     "prediction file with --overwrite)")
    _add_overwrite_arg(predict, "xmc prediction file")
    predict.add_argument("--topk", type=_positive_int, help="labels per document (default: the model's)")
    predict.add_argument("--beam-size", type=_positive_int,
                         help="clusters kept per level of the label tree (default: the model's)")
    predict.add_argument("--threshold", type=_finite_float, help="drop labels scoring below this")
    _add_data_args(predict)
    _add_engine_args(predict, "predict in shards (the model memory-mapped once per worker)")
    predict.set_defaults(func=commands.predict)

    prune = sub.add_parser("prune", help="a smaller, faster copy of an xr-linear model: drop its weights of "
                                         "magnitude <= --weight-threshold and/or store them as --weight-dtype "
                                         "(from a float32 model: equal to training with those settings)")
    prune.add_argument("--model", required=True, help="xr-linear model directory")
    prune.add_argument("--weight-threshold", type=_finite_float, default=None,
                       help="drop weights |w| <= this; not below the threshold the model was trained with")
    prune.add_argument("--weight-dtype", choices=["float32", "int16", "int8"], default=None,
                       help="store each classifier's weights as integers times one scale (int8: 2 bytes a weight "
                            "instead of 5); not wider than the model's")
    prune.add_argument("--out", required=True, help="model directory to write")
    _add_overwrite_arg(prune, "xmc model directory")
    prune.set_defaults(func=commands.prune)

    evaluate = sub.add_parser("evaluate", help="score a prediction file against the truth")
    evaluate.add_argument("--truth", required=True, help="documents with their true labels (JSONL or XC sparse)")
    evaluate.add_argument("--pred", required=True, help="prediction JSONL ({id, labels, scores})")
    evaluate.add_argument("--k", default="1,3,5", help="comma-separated cut-offs (default: 1,3,5)")
    evaluate.add_argument("--train", help="training data: label frequencies for PSP@k and the frequency groups "
                                          "(default: the truth file's own counts)")
    evaluate.add_argument("--threshold", type=_finite_float,
                          help="score threshold for micro/macro P/R/F1 (default: every listed label counts)")
    evaluate.add_argument("--report", action="store_true", help="also print the label-frequency group table")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    _add_data_args(evaluate)
    evaluate.set_defaults(func=commands.evaluate)

    rep = sub.add_parser("report", help="an HTML page comparing prediction files: long tail, P/R/nDCG/PSP@k "
                                        "curves, F1 by label frequency, calibration, frequent errors")
    rep.add_argument("--truth", required=True, help="documents with their true labels (JSONL or XC sparse)")
    rep.add_argument("--pred", required=True, action="append",
                     help="prediction JSONL ({id, labels, scores}); repeat to compare several")
    rep.add_argument("--model", dest="models", action=report.AttachToPred, metavar="DIR",
                     help="the model directory of the --pred just before: its kind, config and versions go "
                          "into the page")
    rep.add_argument("--name", dest="names", action=report.AttachToPred, metavar="NAME",
                     help="how the page names the --pred just before (default: its file name)")
    rep.add_argument("--train", help="training data: the long tail, PSP@k and the frequency groups "
                                     "(default: the truth file's own counts)")
    rep.add_argument("--label-text", help="label texts shown beside the label names in the error tables: JSON "
                                          "{label: text} or a file whose line i is label i's text")
    rep.add_argument("--out", required=True, help="HTML file to write")
    rep.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    rep.add_argument("--threshold", type=_finite_float,
                     help="score threshold of the thresholded figures and tables (default: every listed label counts)")
    rep.add_argument("--bounds", default="1,100,1000,10000",
                     help="label-frequency group edges by training documents (default: 1,100,1000,10000)")
    _add_data_args(rep)
    rep.set_defaults(func=report.report)

    augment = sub.add_parser("augment", help="XDA: write prompt-generated, filtered documents for tail labels")
    augment.add_argument("--train", required=True, help="training data (JSONL with texts)")
    augment.add_argument("--out", required=True, help="augmented JSONL to write ({id, source_id, text, labels, "
                                                     "scores}; a new path, or an xmc augmented file with --overwrite)")
    _add_overwrite_arg(augment, "xmc augmented file")
    augment.add_argument("--label-text", help="label texts: JSON {label: text} or a file whose line i is label i's text")
    augment.add_argument("--config", help="JSON AugmentConfig (generator.model_path is required)")
    _add_data_args(augment)
    augment.set_defaults(func=commands.augment)

    stage_verbs = stage.add_parser(sub, _Parser, _add_data_args, _add_overwrite_arg)

    config = sub.add_parser("config", help="print a model's full default config as JSON")
    config.add_argument("model", nargs="?", help="model name")
    config.add_argument("--list", action="store_true", help="list model names (and the configs 'augment', "
                                                            "'xda-finetune')")
    config.set_defaults(func=commands.print_config)

    serve = sub.add_parser("serve", help="serve saved models over HTTP (JSON API, OpenAPI docs at /docs)")
    serve.add_argument("models", nargs="+", metavar="MODEL_DIR",
                       help="model directory, named by its base name, or NAME=DIR")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default: 1)")
    serve.add_argument("--max-documents", type=_positive_int, default=64, help="documents per request (default: 64)")
    serve.add_argument("--max-body-bytes", type=_positive_int, default=4 * 1024 * 1024,
                       help="largest request body (default: 4 MiB); larger ones get 413")
    serve.add_argument("--max-batch-documents", type=_positive_int, default=32,
                       help="documents per micro-batched model call (default: 32)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a neural model's batch waits for more requests (default: 5)")
    serve.add_argument("--no-mmap", action="store_true", help="read XR-Linear weights instead of mapping them")
    serve.set_defaults(func=commands.serve)

    demo = sub.add_parser("demo", help="train and evaluate on a built-in synthetic long-tailed corpus (offline)")
    demo.add_argument("--out", default="demo_output", help="directory for the model and predictions")
    demo.add_argument("--seed", type=_seed, default=0, help="corpus seed")
    _add_overwrite_arg(demo, "xmc demo output directory")
    demo.set_defaults(func=commands.demo)
    # --quiet also after the command name (`xmc train ... --quiet`); SUPPRESS keeps a leaf's default
    # from overwriting `xmc --quiet train ...`.
    for leaf in ([p for name, p in sub.choices.items() if name not in ("data", "stage")] + list(data_sub.choices.values())
                 + list(stage_verbs.choices.values())):
        leaf.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the pages of `xmc report` / `xmc data stats --html` show the command that made them
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with quiet() if args.quiet else contextlib.nullcontext():
            return args.func(args) or 0
    except (XMCError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
        print(f"xmc: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xmc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `xmc config xr-linear | head`: stop quietly, like other Unix tools
        # (before OSError, its base class)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return 141
    except OSError as exc:  # the system refused (disk full, I/O error): not the user's input, same one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xmc: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("xmc: error: out of memory (the input is larger than this machine can hold)", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: one line for the user, the traceback with --verbose
        if args.verbose:
            traceback.print_exc()
        print(f"xmc: internal error: {type(exc).__name__}: {exc} (please report it; -v shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
