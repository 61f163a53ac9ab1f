"""``xmc stage export|run|import``: train an X-Transformer with its transformer stage on another machine."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..io import check_not_an_input, check_replaceable
from ..models.persistence import MODEL_MARKER
from ..models.xtransformer.stage import BUNDLE_MARKER
from ..neural.bundle import fmt_bytes

STAGED_MODELS = ("xtransformer",)


def add_parser(sub, parser_class, add_data_args, add_overwrite_arg):
    """The ``stage`` command and its three verbs (returned: the verbs' subparsers action)."""
    stage = sub.add_parser("stage", help="train an X-Transformer with its GPU stage on another machine: "
                                         "export a bundle, run it there, import the result")
    verbs = stage.add_subparsers(dest="stage_command", required=True, parser_class=parser_class)

    exp = verbs.add_parser("export", help="CPU: TF-IDF, label trees and token ids; write a bundle for the GPU stage")
    exp.add_argument("--model", required=True, help="model name (only xtransformer has stages)")
    exp.add_argument("--train", required=True, help="training data (JSONL)")
    exp.add_argument("--valid", help="validation data for the matcher's early stopping")
    exp.add_argument("--label-text", help="label texts: JSON {label: text} or a file whose line i is label i's text")
    exp.add_argument("--config", help="JSON config file (keys as printed by 'xmc config xtransformer'); "
                                      "\"auto\" values resolve for a GPU")
    exp.add_argument("--encode", metavar="FILE", help="also encode these documents with each fine-tuned encoder "
                                                      "(their embeddings come back in the result)")
    exp.add_argument("--precision", choices=["float16", "float32"], default="float16",
                     help="dtype of the encoder weights sent and brought back (default float16)")
    exp.add_argument("--embeddings", choices=["float16", "float32", "int8"], default="float16",
                     help="dtype of the embeddings brought back (default float16; int8 with a scale per row)")
    exp.add_argument("--no-encoders", action="store_true",
                     help="bring back embeddings only, not the fine-tuned encoders (the result is then for "
                          "scoring the --encode documents, not for a model that reads text)")
    exp.add_argument("--no-limits", action="store_true",
                     help="do not refuse bundles over 64 MiB or results over 8 files of 16 MiB (64 MiB in all)")
    exp.add_argument("--out", required=True, help="bundle directory to write")
    add_overwrite_arg(exp, "stage bundle")
    add_data_args(exp)
    exp.set_defaults(func=export)

    run = verbs.add_parser("run", help="GPU: fine-tune the matchers and encode every document of a bundle")
    run.add_argument("bundle", help="bundle directory (from 'xmc stage export')")
    run.add_argument("--out", required=True, help="result directory to write")
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cuda[:N] or cpu")
    add_overwrite_arg(run, "stage result")
    run.set_defaults(func=run_stage)

    imp = verbs.add_parser("import", help="CPU: train the rankers on the result; write an ordinary model directory")
    imp.add_argument("bundle", help="bundle directory (from 'xmc stage export')")
    imp.add_argument("result", help="result directory (from 'xmc stage run')")
    imp.add_argument("--train", required=True, help="the training data given to 'xmc stage export'")
    imp.add_argument("--valid", help="the validation data given to 'xmc stage export'")
    imp.add_argument("--label-text", help="the label texts given to 'xmc stage export'")
    imp.add_argument("--out", required=True, help="model directory to write")
    add_overwrite_arg(imp, "xmc model directory")
    add_data_args(imp)
    imp.set_defaults(func=import_stage)
    return verbs


def _datasets(args: argparse.Namespace):
    from .commands import _read_training

    return _read_training(args.train, args, "the xtransformer model")


def export(args: argparse.Namespace) -> int:
    from ..models.registry import model_class
    from ..models.xtransformer.stage import StageOptions, export_bundle

    cls = model_class(args.model)
    if cls.name not in STAGED_MODELS:
        raise ConfigError(f"--model {args.model}: only {', '.join(STAGED_MODELS)} has stages; train it with 'xmc train'")
    check_not_an_input(args.out, {"--train": args.train, "--valid": args.valid, "--config": args.config,
                                  "--label-text": args.label_text, "--encode": args.encode})
    check_replaceable(args.out, overwrite=args.overwrite, marker=BUNDLE_MARKER, what="stage bundle")
    config = cls.config_class.from_json(args.config) if args.config else cls.config_class()
    options = StageOptions(precision=args.precision, embeddings=args.embeddings,
                           return_encoders=not args.no_encoders, limits=not args.no_limits)
    data, valid = _datasets(args)
    extra = None
    if args.encode:
        from .commands import _read

        extra = _read(args.encode, args, labels=data.labels, require_labels=False)
    s = export_bundle(config, data, args.out, valid=valid, extra=extra, options=options, overwrite=args.overwrite)
    print(f"wrote bundle {args.out}: {fmt_bytes(s['bundle_bytes'])} in {s['bundle_files']} files "
          f"({s['documents']:,} documents, {s['mean_tokens']:.0f} tokens each on average, {s['labels']:,} labels); "
          f"result expected: {fmt_bytes(s['estimated_result_bytes'])} in {s['estimated_result_files']} files")
    return 0


def run_stage(args: argparse.Namespace) -> int:
    from ..models.xtransformer.stage import run_bundle

    check_not_an_input(args.out, {"bundle": args.bundle})
    s = run_bundle(args.bundle, args.out, device=args.device, overwrite=args.overwrite)
    print(f"wrote result {args.out} on {s['device']} in {s['seconds']:.0f} s: "
          f"{fmt_bytes(s['result_bytes'])} in {s['result_files']} files")
    return 0


def import_stage(args: argparse.Namespace) -> int:
    from ..models.xtransformer.stage import import_result

    inputs = {"bundle": args.bundle, "result": args.result, "--train": args.train, "--valid": args.valid,
              "--label-text": args.label_text}
    check_not_an_input(args.out, inputs)
    check_replaceable(args.out, overwrite=args.overwrite, marker=MODEL_MARKER, what="model directory")
    data, valid = _datasets(args)
    model = import_result(args.bundle, args.result, data, valid=valid)
    model.save(args.out, overwrite=args.overwrite)
    print(f"saved xtransformer model to {args.out}")
    return 0
