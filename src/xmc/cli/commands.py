"""The work behind each CLI command; each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np
import scipy.sparse as sp

from ..config import Config
from ..data import (
    XMCDataset,
    dataset_stats,
    format_stats,
    read_dataset,
    read_label_texts,
    read_predictions,
    write_predictions,
)
from ..errors import ConfigError
from ..metrics import evaluate as evaluate_scores
from ..metrics import format_report, group_report, jain_propensity, top_k
from ..models.registry import MODELS, load_model, model_class

logger = logging.getLogger(__name__)


def _read(path: str, args: argparse.Namespace, labels=None) -> XMCDataset:
    # Only fields the user changed: read_dataset rejects JSONL options for XC files, even default ones.
    fields = {name: value for name, value, default in (("text_field", args.text_field, "text"),
                                                       ("labels_field", args.labels_field, "labels"))
              if value != default}
    try:
        return read_dataset(path, format=args.format, labels=labels, **fields)
    except TypeError as exc:
        if fields and "only apply to JSONL" in str(exc):
            raise ConfigError(f"{path}: --text-field / --labels-field only apply to JSONL files") from None
        raise


def data_stats(args: argparse.Namespace) -> int:
    stats = dataset_stats(_read(args.file, args))
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise ConfigError(f"--k must be comma-separated positive integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k must be comma-separated positive integers, got {text!r}")
    return ks


def evaluate(args: argparse.Namespace) -> int:
    ks = _parse_ks(args.k)
    train = _read(args.train, args) if args.train else None
    truth = _read(args.truth, args, labels=train.labels if train is not None else None)
    ids, scores, unknown = _read_predictions(args.pred, truth)
    row_of = {doc_id: i for i, doc_id in enumerate(ids)}
    missing = [doc_id for doc_id in truth.ids if doc_id not in row_of]
    if missing:
        raise ConfigError(f"{args.pred}: no prediction for {len(missing)} document(s), e.g. id {missing[0]!r}")
    scores = scores[[row_of[doc_id] for doc_id in truth.ids]]
    # Predicted labels unknown to the truth (and training) data are wrong predictions: they get
    # all-zero truth columns, so they keep their ranks instead of letting lower-ranked labels move up.
    Y_true = sp.hstack([truth.Y, sp.csr_matrix((len(truth), len(unknown)), dtype=truth.Y.dtype)]).tocsr()
    counts = train.label_counts() if train is not None else truth.label_counts()
    n_docs = len(train) if train is not None else len(truth)
    counts = np.concatenate([counts, np.zeros(Y_true.shape[1] - len(counts), dtype=np.int64)])
    propensities = jain_propensity(counts, n_docs)
    if args.threshold is None:
        # Every listed label is a positive prediction: threshold below any score.
        threshold = float(scores.data.min()) if scores.nnz else 0.0
    else:
        threshold = args.threshold
    report = evaluate_scores(Y_true, scores, ks=ks, propensities=propensities, threshold=threshold)
    report["documents"] = len(truth)
    report["unseen_test_labels"] = len(truth.unseen_labels)
    report["unknown_predicted_labels"] = len(unknown)
    groups = None
    if args.report:
        predicted = scores.copy()
        predicted.data = (predicted.data >= threshold).astype(np.float32)
        predicted.eliminate_zeros()
        groups = group_report(Y_true, predicted, counts)
    if args.json:
        out = dict(report)
        if groups is not None:
            out["groups"] = groups
        print(json.dumps(out, indent=2, default=float))
        return 0
    counts_keys = ("documents", "unseen_test_labels", "unknown_predicted_labels")
    print(format_report({k: v for k, v in report.items() if k not in counts_keys}))  # values in percent
    print()
    for key in counts_keys:
        print(f"{key.replace('_', ' '):<25} {report[key]:>8,}")
    if groups is not None:
        print("\nlabel-frequency groups (train count):")
        print(f"{'group':>14} {'labels':>7} {'micro P':>8} {'micro R':>8} {'micro F1':>9} {'macro F1':>9}")
        for g in groups:
            print(f"{g['name']:>14} {g['n_labels']:>7} {100 * g['micro_p']:8.2f} {100 * g['micro_r']:8.2f} "
                  f"{100 * g['micro_f1']:9.2f} {100 * g['macro_f1']:9.2f}")
    return 0


def _read_predictions(path: str, truth: XMCDataset) -> tuple[list[str], sp.csr_matrix, list[str]]:
    """``read_predictions`` whose columns are truth's labels followed by the unknown predicted labels."""
    readers_logger = logging.getLogger("xmc.data.readers")
    level = readers_logger.level
    readers_logger.setLevel(logging.ERROR)  # its "ignored" warning does not apply: unknown labels are kept
    try:
        ids, scores, unknown = read_predictions(path, truth.labels)
        if unknown:
            ids, scores, _ = read_predictions(path, truth.labels.extended(unknown))
    finally:
        readers_logger.setLevel(level)
    if unknown:
        logger.warning("%s: %d predicted label name(s) occur in neither the truth nor the training data; "
                       "they count as wrong predictions", path, len(unknown))
    return ids, scores, unknown


def _load_config(cls, path: str | None) -> Config:
    config_class = cls.config_class
    return config_class.from_json(path) if path else config_class()


def train(args: argparse.Namespace) -> int:
    cls = model_class(args.model)
    if getattr(args, "xda_config", None) and not getattr(args, "augmented", None):
        raise ConfigError("--xda-config configures the --augmented fine-tuning; give --augmented too")
    config = _load_config(cls, args.config)
    data = _read(args.train, args)
    if args.label_text:
        data.label_texts = read_label_texts(args.label_text, data.labels)
    valid = _read(args.valid, args, labels=data.labels) if args.valid else None
    model = cls(config)
    fit_kwargs = {"valid": valid} if valid is not None and getattr(cls, "uses_validation", False) else {}
    if valid is not None and not fit_kwargs:
        logger.warning("model %s does not use validation data; --valid ignored", args.model)
    if getattr(args, "taxonomy", None):
        if not getattr(cls, "uses_taxonomy", False):
            raise ConfigError(f"model {args.model} does not use a taxonomy; drop --taxonomy")
        fit_kwargs["taxonomy"] = args.taxonomy
    augmented = None
    if getattr(args, "augmented", None):
        from ..augment import FinetuneConfig, augmented_dataset, read_augmented

        if args.model not in ("lightxml", "gudn"):
            raise ConfigError(f"--augmented applies to lightxml / gudn, not {args.model}")
        xda_config = FinetuneConfig.from_json(args.xda_config) if args.xda_config else FinetuneConfig()
        augmented = augmented_dataset(read_augmented(args.augmented), data.labels, source=args.augmented)
    model.fit(data, **fit_kwargs)
    if augmented is not None:
        from ..augment.finetune import finetune_with_augmented

        model.history_["xda"] = finetune_with_augmented(model, data, augmented, xda_config)
    model.save(args.out)
    print(f"saved {args.model} model to {args.out}")
    return 0


def predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    data = _read(args.input, args)
    if getattr(model, "featurizer_", None) is not None and data.X is not None and not any(data.input_texts()):
        raise ConfigError(f"{args.input}: the model featurises text, but this file has only precomputed features")
    overrides = {"topk": args.topk, "beam_size": args.beam_size, "threshold": args.threshold}
    try:
        scores = model.predict(data, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:  # input that does not fit the model: no features, wrong feature count
        raise ConfigError(f"{args.input}: {exc}") from exc
    topk = args.topk or model.config.predict.topk
    indices, values = top_k(scores, topk)
    write_predictions(args.out, data.ids, model.labels_.names, indices, values)
    print(f"wrote predictions for {len(data)} documents to {args.out}")
    return 0


def augment(args: argparse.Namespace) -> int:
    from ..augment import AugmentConfig, write_augmented
    from ..augment.pipeline import augment as run_augment

    config = AugmentConfig.from_json(args.config) if args.config else AugmentConfig()
    if not config.generator.model_path:  # fail before reading data or training anything
        raise ConfigError("generator.model_path is required in --config: a local T5-family (or causal LM) "
                          "Hugging Face directory")
    data = _read(args.train, args)
    if args.label_text:
        data.label_texts = read_label_texts(args.label_text, data.labels)
    n = write_augmented(args.out, run_augment(data, config))
    print(f"wrote {n} augmented documents to {args.out}")
    return 0


def _pipeline_configs() -> dict[str, type[Config]]:
    """Configs printable by ``xmc config`` that belong to no model: ``xmc augment`` and its fine-tuning."""
    from ..augment import AugmentConfig, FinetuneConfig

    return {"augment": AugmentConfig, "xda-finetune": FinetuneConfig}


def print_config(args: argparse.Namespace) -> int:
    if args.list or not args.model:
        print("\n".join(sorted(MODELS) + sorted(_pipeline_configs())))
        return 0
    pipeline = _pipeline_configs()
    config_class = pipeline[args.model] if args.model in pipeline else model_class(args.model).config_class
    print(config_class().to_json())
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(os.path.abspath(args.out), seed=args.seed)
    return 0


def serve(args: argparse.Namespace) -> int:
    from ..serve import ServeSettings
    from ..serve.server import parse_model_args
    from ..serve.server import serve as run_server

    settings = ServeSettings(max_documents=args.max_documents, max_body_bytes=args.max_body_bytes,
                             max_batch_documents=args.max_batch_documents, max_wait_ms=args.max_wait_ms,
                             mmap=not args.no_mmap)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"xmc serve needs the 'serve' extra (pip install 'xmc[serve]'): {exc}") from None
    logging.getLogger("xmc.serve").setLevel(logging.INFO)  # loads, reloads and refused requests, even without -v
    run_server(parse_model_args(args.models), host=args.host, port=args.port, workers=args.workers,
               settings=settings, access_log=args.verbose)
    return 0
