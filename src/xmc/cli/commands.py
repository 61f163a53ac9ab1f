"""The work behind each CLI command; each takes the parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np
import scipy.sparse as sp

from ..config import Config
from ..data import (
    XMCDataset,
    dataset_stats,
    duplicate_ids,
    format_stats,
    read_dataset,
    read_label_texts,
    read_predictions,
    write_predictions,
)
from ..errors import ConfigError, DataFormatError, XMCError
from ..io import (Marker, atomic_file, check_file_output, check_not_an_input, check_replaceable, json_text,
                  jsonl_output)
from ..metrics import evaluate as evaluate_scores
from ..metrics import format_report, group_report, top_k, train_propensities
from ..models.base import refuse_unsupported
from ..models.persistence import MODEL_MARKER
from ..models.registry import MODELS, load_model, model_class
from ..neural.budget import describe_auto
from ..neural.budget import summary as budget_summary

logger = logging.getLogger(__name__)


def _read(path: str, args: argparse.Namespace, labels=None, *, require_text: bool = True,
          require_labels: bool = True) -> XMCDataset:
    # Only fields the user changed: read_dataset rejects JSONL options for XC files, even default ones.
    fields = {name: value for name, value, default in (("text_field", args.text_field, "text"),
                                                       ("labels_field", args.labels_field, "labels"))
              if value != default}
    try:
        return read_dataset(path, format=args.format, labels=labels, require_text=require_text,
                            require_labels=require_labels, **fields)
    except TypeError as exc:
        if fields and "only apply to JSONL" in str(exc):
            raise ConfigError(f"{path}: --text-field / --labels-field only apply to JSONL files") from None
        raise


def _read_training(path: str, args: argparse.Namespace, text_reader: str | None = None
                   ) -> tuple[XMCDataset, XMCDataset | None]:
    """``(training set, validation set of --valid or None)``, refused at once when no training document
    has a label (:meth:`XMCDataset.check_trainable`, which the models' ``fit`` also call) or, where
    ``text_reader`` (what reads the text, for the message) is given, when either file is features only."""
    data = _read(path, args).check_trainable()
    if getattr(args, "label_text", None):
        data.label_texts = read_label_texts(args.label_text, data.labels)
    valid = _read(args.valid, args, labels=data.labels) if getattr(args, "valid", None) else None
    if text_reader:
        for part in (data, valid):
            if part is not None:
                part.check_has_text(text_reader)
    return data, valid


def data_stats(args: argparse.Namespace) -> int:
    from .report import check_stats_outputs, write_stats_outputs

    check_stats_outputs(args)
    data = _read(args.file, args, require_text=False)
    stats = dataset_stats(data)
    print(json_text(stats) if args.json else format_stats(stats))
    write_stats_outputs(args, data, stats)
    return 0


GENERATOR_FILE = "generator.json"
GENERATOR = "xmc.datasets.sparse.make_sparse_problem"
GENERATOR_MARKER = Marker(GENERATOR_FILE, generator=GENERATOR)


def data_generate(args: argparse.Namespace) -> int:
    from ..data.readers import write_xc_sparse
    from ..datasets.sparse import GeneratorConfigError, make_sparse_problem
    from ..io import atomic_directory

    n_train = args.train_docs if args.train_docs is not None else 2 * args.labels
    n_test = args.test_docs if args.test_docs is not None else max(1, n_train // 10)
    if n_test < 1:  # the library allows none; a test.txt of 0 documents is a file no reader takes
        raise ConfigError(f"--test-docs {n_test} must be >= 1")
    n_features = args.features if args.features is not None else 10 * args.labels
    # idf is recorded so that generator.json says which data this is (before 2026-12-02: no idf).
    params = dict(n_labels=args.labels, n_train=n_train, n_test=n_test, n_features=n_features, idf=True,
                  seed=args.seed)
    check_replaceable(args.out, overwrite=args.overwrite, marker=GENERATOR_MARKER, what="generated problem directory")
    try:
        problem = make_sparse_problem(**params)  # argument errors before anything is written
    except GeneratorConfigError as exc:
        flags = {"n_labels": "--labels", "n_train": "--train-docs", "n_test": "--test-docs", "n_features": "--features",
                 "seed": "--seed"}
        flag = flags.get(getattr(exc, "argument", None))
        if flag is None:
            raise
        raise ConfigError(f"{flag} {params[exc.argument]} {exc.rule}") from None
    with atomic_directory(args.out, overwrite=args.overwrite, marker=GENERATOR_MARKER,
                          what="generated problem directory") as tmp:
        write_xc_sparse(os.path.join(tmp, "train.txt"), problem.X_train, problem.Y_train)
        write_xc_sparse(os.path.join(tmp, "test.txt"), problem.X_test, problem.Y_test)
        with open(os.path.join(tmp, GENERATOR_FILE), "w", encoding="utf-8") as fh:
            json.dump({"generator": GENERATOR, **params}, fh, indent=2)
    print(f"{args.out}: train.txt ({n_train} documents), test.txt ({n_test}), {args.labels} labels, "
          f"{n_features} features (seed {args.seed})")
    return 0


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(k) for k in text.split(",")})  # an empty item ('1,,3', '5,') is refused, not skipped
    except ValueError:
        raise ConfigError(f"--k must be comma-separated positive integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ConfigError(f"--k must be comma-separated positive integers, got {text!r}")
    return ks


def evaluate(args: argparse.Namespace) -> int:
    ks = _parse_ks(args.k)
    train = _read(args.train, args, require_text=False) if args.train else None
    truth = _read(args.truth, args, labels=train.labels if train is not None else None, require_text=False)
    Y_true, scores, counts, n_docs, unknown = aligned_predictions(args.pred, truth, train)
    if train is None:
        print(f"xmc: note: no --train given: PSP@k propensities and frequency groups use the label counts of "
              f"{args.truth}", file=sys.stderr)
    propensities = train_propensities(counts, n_docs)  # counts: 0 for labels never seen in training
    threshold = effective_threshold(scores, args.threshold)
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
        print(json_text(out))
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


def aligned_predictions(path: str, truth: XMCDataset, train: XMCDataset | None
                        ) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, int, list[str]]:
    """A prediction file lined up with ``truth`` (shared by ``xmc evaluate`` and ``xmc report``).

    Returns:
        ``(Y_true, scores, counts, n_docs, unknown)``: CSR ``(n, L')`` truth and scores whose rows
        follow ``truth.ids`` and whose columns are truth's labels followed by the ``unknown``
        predicted label names; ``(L',)`` training counts (of ``train``, else of ``truth``; 0 for the
        unknown labels) and the number of documents they were counted on.
    """
    repeated = duplicate_ids(truth.ids)
    if repeated:  # a document counted twice changes every average
        raise DataFormatError(truth.source, None, f"{len(repeated)} document id(s) occur more than once, "
                                                  f"e.g. {repeated[0]!r}")
    ids, scores, unknown = _read_predictions(path, truth)  # refuses repeated ids and non-finite scores
    row_of = {doc_id: i for i, doc_id in enumerate(ids)}
    missing = [doc_id for doc_id in truth.ids if doc_id not in row_of]
    if missing:
        raise ConfigError(f"{path}: no prediction for {len(missing)} document(s), e.g. id {missing[0]!r}")
    truth_ids = set(truth.ids)
    extra = [doc_id for doc_id in ids if doc_id not in truth_ids]
    if extra:  # predictions for other documents: the files do not belong together
        raise ConfigError(f"{path}: {len(extra)} predicted document id(s) are not in {truth.source}, "
                          f"e.g. {extra[0]!r}")
    scores = scores[[row_of[doc_id] for doc_id in truth.ids]]
    # Predicted labels unknown to the truth (and training) data are wrong predictions: they get
    # all-zero truth columns, so they keep their ranks instead of letting lower-ranked labels move up.
    Y_true = sp.hstack([truth.Y, sp.csr_matrix((len(truth), len(unknown)), dtype=truth.Y.dtype)]).tocsr()
    counts = train.label_counts() if train is not None else truth.label_counts()
    n_docs = len(train) if train is not None else len(truth)
    counts = np.concatenate([counts, np.zeros(Y_true.shape[1] - len(counts), dtype=np.int64)])
    return Y_true, scores, counts, n_docs, unknown


def effective_threshold(scores: sp.csr_matrix, threshold: float | None) -> float:
    """``threshold``, or when None one at the lowest listed score: every listed label is a positive."""
    if threshold is None:
        return float(scores.data.min()) if scores.nnz else 0.0
    return threshold


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


def _flag(name: str) -> str:
    """An option's command-line spelling: ``beam_size`` -> ``--beam-size``."""
    return "--" + name.replace("_", "-")


def _check_model_output(args: argparse.Namespace) -> None:
    """Refuse ``--out`` before any work: an input, or an existing path xmc may not replace."""
    inputs = {f"--{name.replace('_', '-')}": getattr(args, name, None)
              for name in ("train", "valid", "config", "label_text", "taxonomy", "augmented", "xda_config")}
    check_not_an_input(args.out, inputs)
    check_replaceable(args.out, overwrite=args.overwrite, marker=MODEL_MARKER, what="model directory")


def _is_prediction_record(record: dict) -> bool:
    return "labels" in record and "scores" in record and "source_id" not in record


def _is_augmented_record(record: dict) -> bool:
    return "source_id" in record


def _check_engine(args: argparse.Namespace, model) -> None:
    """Refuse engine options that cannot apply (``model``: a model class or instance), before any data is read."""
    if getattr(args, "engine", None) is None:
        if getattr(args, "address", None):
            raise ConfigError("--address names a cluster for --engine; give --engine dask too")
    elif not (model.capabilities.supports_engine and model.capabilities.loads_mmap):
        raise ConfigError(f"--engine runs xr-linear only, not {model.name}")


def _engine(args: argparse.Namespace):
    """The distributed engine the command asked for (a context manager that closes it), or None."""
    if getattr(args, "engine", None) is None:
        return None
    from ..distributed import connect
    from ..distributed.engine import _dask

    _dask()  # importing distributed configures its loggers at INFO: the CLI's level applies to them too
    if not getattr(args, "verbose", False):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    return connect(args.engine, args.address, workers=args.workers)


def train(args: argparse.Namespace) -> int:
    cls = model_class(args.model)
    _check_model_output(args)
    _check_engine(args, cls)
    if getattr(args, "xda_config", None) and not getattr(args, "augmented", None):
        raise ConfigError("--xda-config configures the --augmented fine-tuning; give --augmented too")
    given = {"label_text": args.label_text, "taxonomy": getattr(args, "taxonomy", None),
             "augmented": getattr(args, "augmented", None)}
    refuse_unsupported(cls, given, spell=_flag)
    config = _load_config(cls, args.config)
    text_reader = None if cls.capabilities.uses_data_features else f"the {args.model} model"
    data, valid = _read_training(args.train, args, text_reader)
    model = cls(config)
    caps = cls.capabilities
    fit_kwargs = {"valid": valid} if valid is not None and caps.uses_validation else {}
    if valid is not None and not fit_kwargs:
        logger.warning("model %s does not use validation data; --valid ignored", args.model)
    if given["taxonomy"]:
        fit_kwargs["taxonomy"] = args.taxonomy
    augmented = None
    if given["augmented"]:
        from ..augment import FinetuneConfig, augmented_dataset, read_augmented

        xda_config = FinetuneConfig.from_json(args.xda_config) if args.xda_config else FinetuneConfig()
        augmented = augmented_dataset(read_augmented(args.augmented), data.labels, source=args.augmented)
    budget = budget_summary(config, data)  # neural models: what "auto" chose here, and a time estimate
    if budget:
        print(budget, flush=True)
    sized = _size_summary(config, data)
    if sized:
        print(sized, flush=True)
    engine = _engine(args)
    if engine is None:
        model.fit(data, **fit_kwargs)
    else:
        with engine:
            model.fit(data, engine=engine, **fit_kwargs)
    if augmented is not None:
        from ..augment.finetune import finetune_with_augmented

        model.history_["xda"] = finetune_with_augmented(model, data, augmented, xda_config)
    model.save(args.out, overwrite=args.overwrite)
    print(f"saved {args.model} model to {args.out}")
    return 0


def tune(args: argparse.Namespace) -> int:
    from ..models.xr_linear import XRLinearConfig
    from ..tuning import (DEFAULT_GRID, auto_folds, candidate_configs, check_folds, check_grid, check_valid,
                          metric_key, parse_grid)
    from ..tuning import tune as tune_config

    check_not_an_input(args.out, {"--train": args.train, "--valid": args.valid, "--config": args.config})
    if args.valid and args.folds:
        raise ConfigError("--valid and --folds both say what to score on; give one")
    if not 0 < args.valid_fraction < 1:
        raise ConfigError(f"--valid-fraction must be between 0 and 1, got {args.valid_fraction:g}")
    check_file_output(args.out, overwrite=args.overwrite, is_ours=_is_xr_linear_config, what="xr-linear config file")
    base = XRLinearConfig.from_json(args.config) if args.config else XRLinearConfig()
    grid = parse_grid(args.grid) if args.grid else DEFAULT_GRID
    n_candidates = len(candidate_configs(base, grid))  # a bad grid or metric is refused before data is read
    metric = metric_key(args.metric)
    data, valid = _read_training(args.train, args)
    check_grid(grid, data)  # before the announcement too
    folds = 1 if valid is not None else args.folds or auto_folds(len(data))
    if valid is None:  # before the announcement: a refused run states no plan
        check_folds(len(data), folds, args.valid_fraction)
    else:
        check_valid(data, valid)
    if valid is not None:
        held_out = f"{len(data):,} documents, scored on the {len(valid):,} of {args.valid}"
    elif folds > 1:
        held_out = f"{folds} folds of {len(data):,} documents"
    else:
        held_out = f"one split holding out {args.valid_fraction:g} of {len(data):,} documents"
    print(f"tuning xr-linear: {n_candidates} candidate(s) x {held_out} = {n_candidates * folds} fits; "
          f"best by validation {metric}", flush=True)
    result = tune_config(data, grid, config=base, metric=metric, folds=None if valid is not None else folds,
                         valid_fraction=args.valid_fraction, seed=args.seed, valid=valid)
    print(result.table())
    if result.tied:
        print(f"note: every candidate scored {100 * result.candidates[0].scores[metric]:.2f} validation {metric}: "
              f"the validation data cannot tell them apart, so the first in grid order is kept, not a measured "
              f"best (more documents, --folds, or another --metric may separate them)")
    with atomic_file(args.out) as fh:
        fh.write(result.config.to_json() + "\n")
    chosen = ", ".join(f"{key}={json.dumps(value)}" for key, value in result.candidates[result.best].overrides.items())
    print(f"wrote the best config ({chosen}) to {args.out}; train with: xmc train --model xr-linear "
          f"--train {args.train} --config {args.out} --out MODEL_DIR")
    return 0


def _is_xr_linear_config(path: str) -> bool:
    """Whether ``path`` holds an xr-linear config (what ``xmc tune`` writes), so --overwrite may replace it."""
    from ..models.xr_linear import XRLinearConfig

    try:
        XRLinearConfig.from_json(path)
    except ConfigError:
        return False
    return True


def _size_summary(config, data) -> str | None:
    """What the rules of ``"auto"`` chose from the training labels (XR-Linear), stated before training starts."""
    if not hasattr(config, "resolved"):
        return None
    from ..ranker.hierarchy import LabelSpace

    space = LabelSpace.of(data.Y)
    _, chosen = config.resolved(space)
    if not chosen:
        return None
    return f"{space}: " + ", ".join(f"{key}={json.dumps(value)} (auto)" for key, value in chosen.items())


def predict(args: argparse.Namespace) -> int:
    check_not_an_input(args.out, {"--input": args.input, "--model": args.model})
    check_file_output(args.out, overwrite=args.overwrite, is_ours=jsonl_output(_is_prediction_record),
                      what="prediction file")
    if getattr(args, "engine", None):
        from ..distributed.engine import load_mapped

        model = load_mapped(args.model)  # the workers predict: here only the config, labels and featurizer
    else:
        model = load_model(args.model)
    _check_engine(args, model)
    data = _read(args.input, args, require_labels=False)
    # A model reads text unless it was trained on a file's own features (XR-Linear on XC sparse data).
    reads_text = model.reads_text
    if reads_text:
        data.check_has_text(f"the {model.name} model in {args.model}")
    elif data.X is None:
        raise ConfigError(f"{args.input}: this file has text, but the model in {args.model} was trained on "
                          "precomputed features (XC sparse) and cannot featurise text: give it an XC sparse file")
    overrides = {"topk": args.topk, "beam_size": args.beam_size, "threshold": args.threshold}
    refuse_unsupported(model, overrides, spell=_flag)
    options = {k: v for k, v in overrides.items() if v is not None}
    if model.capabilities.supports_progress:
        options["progress"] = True  # the bars (off by default in the library's predict); --quiet silences them
    engine = _engine(args)
    try:
        if engine is None:
            scores = model.predict(data, **options)
        else:
            with engine:
                scores = engine.predict(args.model, data, **options)
    except XMCError:  # already names what is wrong (an option the model lacks, a bad config)
        raise
    except ValueError as exc:  # input that does not fit the model: no features, wrong feature count
        raise ConfigError(f"{args.input}: {exc}") from exc
    indices, values = top_k(scores, model.resolve_predict(topk=args.topk).topk)
    write_predictions(args.out, data.ids, model.labels_.names, indices, values)
    print(f"wrote predictions for {len(data)} documents to {args.out}")
    return 0


def prune(args: argparse.Namespace) -> int:
    from ..models.xr_linear import XRLinear

    check_not_an_input(args.out, {"--model": args.model})
    check_replaceable(args.out, overwrite=args.overwrite, marker=MODEL_MARKER, what="model directory")
    model = load_model(args.model)
    if not isinstance(model, XRLinear):
        raise ConfigError(f"{args.model}: a {model.name} model; only xr-linear models can be pruned")
    if args.weight_threshold is None and args.weight_dtype is None:
        raise ConfigError("give --weight-threshold, --weight-dtype or both")
    before = sum(W.nnz for tree in model.trees_ for W in tree.weights)
    small = model.pruned(args.weight_threshold, weight_dtype=args.weight_dtype)
    after = sum(W.nnz for tree in small.trees_ for W in tree.weights)
    small.save(args.out, overwrite=args.overwrite)
    print(f"saved {args.out}: {after:,} of {before:,} weights kept (|w| > {small.config.train.weight_threshold:g}), "
          f"stored as {small.config.train.weight_dtype}")
    return 0


def augment(args: argparse.Namespace) -> int:
    from ..augment import AugmentConfig, write_augmented
    from ..augment.pipeline import augment as run_augment

    check_not_an_input(args.out, {"--train": args.train, "--label-text": args.label_text, "--config": args.config})
    check_file_output(args.out, overwrite=args.overwrite, is_ours=jsonl_output(_is_augmented_record),
                      what="augmented file")
    config = AugmentConfig.from_json(args.config) if args.config else AugmentConfig()
    if not config.generator.model_path:  # the packaged SmolLM2, converted once; fail before reading data
        from ..augment.default_generator import default_generator_path

        config = config.replace(generator=config.generator.replace(model_path=default_generator_path()))
    data, _ = _read_training(args.train, args, "the XDA generator")
    budget = budget_summary(config, len(data))
    if budget:
        print(budget, flush=True)
    docs = list(run_augment(data, config))
    if not docs:  # an empty file that train --augmented would take as a success
        raise ConfigError(f"{args.train}: no augmented document (no label has at most tail_threshold="
                          f"{config.tail_threshold} training documents, or the filter kept none); nothing written")
    n = write_augmented(args.out, docs)
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
    config = config_class()
    print(config.to_json())
    # Neural models' "auto" depends on the device; XR-Linear's on the training labels (its own rules).
    auto = config.describe_auto() if hasattr(config, "describe_auto") else describe_auto(config)
    if auto:  # on stderr, so that `xmc config NAME > file.json` still writes plain JSON
        print(auto, file=sys.stderr)
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(os.path.abspath(args.out), seed=args.seed, overwrite=args.overwrite)
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
