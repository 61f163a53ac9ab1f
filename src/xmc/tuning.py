"""Choose XR-Linear settings on validation folds carved from the training data, never on test data.

XR-Linear's ``"auto"`` rules are heuristics read from the label counts. On validation splits of
seven data sets the best ``C`` ranged from 0.5 (bibtex) to 4 (the demo corpus) with no statistic of
the labels that tells them apart (BENCHMARKS.md, "C above 1"), so a user who can afford a few more
fits chooses on their own data: :func:`tune` trains every candidate of a grid on each fold, scores
it on the held-out part with :mod:`xmc.metrics`, and returns the config of the best, which
``xmc train --config`` then trains on all the data.

Features are computed once per fold and shared by the candidates unless the grid changes them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold

from .data.dataset import XMCDataset
from .data.split import train_valid_rows, valid_size
from .errors import ConfigError
from .metrics import aligned_rows, ranking_report, train_propensities
from .models.xr_linear import NoWeightsError, XRLinear, XRLinearConfig
from .progress import progress_bar, quiet

logger = logging.getLogger(__name__)

# Below this many documents a single 10% split is too small to tell settings apart (bibtex's 10% is
# 488 documents; benchmarks/validate_xr_linear.py uses 5 folds there), so "auto" averages five
# folds; from here on one split, since every fold is another full training.
SMALL_DATA = 10_000
DEFAULT_GRID = {"train.C": [0.5, 1.0, 2.0, 4.0]}
DEFAULT_METRIC = "nDCG@5"
_KS = (1, 3, 5)
# Grid keys under these top-level fields change the features, which are then computed per candidate.
_FEATURE_FIELDS = ("features", "normalize_data_features")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the grid: its overrides, validation metrics averaged over the folds, fit seconds."""

    overrides: dict[str, object]
    scores: dict[str, float]
    fit_seconds: float


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """Every candidate in grid order, the index of the best by ``metric``, and its config (the base
    config with the best overrides; fields left ``"auto"`` are resolved again when it trains)."""

    metric: str
    folds: int
    candidates: list[Candidate]
    best: int
    config: XRLinearConfig

    @property
    def tied(self) -> bool:
        """Whether two or more candidates all scored the best's ``metric``: the validation data could not
        tell them apart, so the first in grid order was kept by rule, not by measurement."""
        top = self.candidates[self.best].scores[self.metric]
        return len(self.candidates) > 1 and all(c.scores[self.metric] == top for c in self.candidates)

    def table(self) -> str:
        """The candidates as an aligned text table, metrics in percent, the best marked with ``*``."""
        keys = [f"P@{k}" for k in _KS] + ["nDCG@5", "PSP@5"]
        if self.metric not in keys:
            keys.append(self.metric)
        names = [", ".join(f"{k}={json.dumps(v)}" for k, v in c.overrides.items()) or "(base config)"
                 for c in self.candidates]
        rows = [["candidate"] + keys + ["fit (s)"]]
        for i, (name, c) in enumerate(zip(names, self.candidates)):
            rows.append([("* " if i == self.best else "  ") + name]
                        + [f"{100 * c.scores[k]:.2f}" for k in keys] + [f"{c.fit_seconds:.1f}"])
        return "\n".join(aligned_rows(rows))


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
    """``["train.C=0.5,1,2"]`` -> ``{"train.C": [0.5, 1, 2]}``; each value is read as JSON, else kept as text."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {spec!r}: expected KEY=VALUE[,VALUE...], e.g. train.C=0.5,1,2")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice")
        grid[key] = [_scalar(v.strip()) for v in values.split(",")]
    return grid


def _scalar(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set(tree: dict, path: list[str], value, key: str) -> None:
    """Set ``path`` in a config dict; through a list (``indexers``) it sets the field of every entry."""
    head, rest = path[0], path[1:]
    if head not in tree:
        raise ConfigError(f"--grid {key}: no config field {head!r} (valid here: {', '.join(sorted(tree))})")
    if not rest:
        tree[head] = value
    elif isinstance(tree[head], list):
        for entry in tree[head]:
            _set(entry, rest, value, key)
    elif isinstance(tree[head], dict):
        _set(tree[head], rest, value, key)
    else:
        raise ConfigError(f"--grid {key}: {head!r} is a value, not a group of fields")


def candidate_configs(base: XRLinearConfig, grid: dict[str, list]) -> list[tuple[dict, XRLinearConfig]]:
    """Every combination of the grid's values applied to ``base``, in grid order, each validated."""
    out = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        tree = base.to_dict()
        for key, value in overrides.items():
            _set(tree, key.split("."), value, key)
        try:
            config = XRLinearConfig.from_dict(tree)
        except ConfigError as exc:
            raise ConfigError(f"--grid {', '.join(f'{k}={v}' for k, v in overrides.items())}: {exc}") from None
        out.append((overrides, config))
    return out


def check_grid(grid: dict[str, list], data: XMCDataset) -> None:
    """ConfigError for a grid key that cannot change any candidate's score on ``data``: candidates that
    tie by construction read as 'the validation data cannot tell them apart'."""
    for key in grid:
        if key == "predict.topk":
            raise ConfigError(f"--grid {key}: candidates are scored on their own top {max(_KS)} labels, so "
                              "predict.topk changes nothing here; set it in the config you train")
        if data.X is not None and key.split(".")[0] == "features":
            raise ConfigError(f"--grid {key}: {data.source or 'the data'} carries its own features (XC sparse), "
                              "so TF-IDF settings change nothing")


def fold_rows(n: int, folds: int, valid_fraction: float = 0.1, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_rows, valid_rows)`` per fold: one seeded split of ``valid_fraction`` when ``folds`` is 1
    (:func:`xmc.data.split.train_valid_rows`), else scikit-learn's shuffled ``KFold``."""
    check_folds(n, folds, valid_fraction)
    if folds == 1:
        return [train_valid_rows(n, valid_fraction, seed)]
    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(n)))


def check_folds(n: int, folds: int, valid_fraction: float = 0.1) -> None:
    """ConfigError unless :func:`fold_rows` can split ``n`` documents so: one ``valid_fraction`` split
    that leaves neither side empty (``folds`` 1), or K folds with 2 <= K <= n."""
    if folds == 1:
        valid_size(n, valid_fraction)  # a fraction outside (0, 1), or one that leaves a side empty
    elif not 2 <= folds <= n:
        raise ConfigError(f"folds must be 1 (one split) or between 2 and the number of documents ({n:,}), "
                          f"got {folds}")


def check_valid(data: XMCDataset, valid: XMCDataset) -> None:
    """DataFormatError naming ``valid`` unless it has what models trained on ``data`` read (as
    :meth:`XRLinear.transform` would say, but before any fit): text for text, features for features."""
    if data.X is None:  # features-only documents would be scored as empty texts, every candidate 0.00
        valid.check_has_text(f"a model trained on {data.source or 'text'}")
    else:
        valid.check_has_features()


def auto_folds(n_docs: int) -> int:
    """What ``folds=None`` stands for: 5 below 10,000 documents, else one split."""
    return 5 if n_docs < SMALL_DATA else 1


def metric_key(metric: str) -> str:
    """``metric`` spelled as :func:`xmc.metrics.ranking_report` spells it (case aside); ConfigError if it is none."""
    valid = _report_keys()
    match = [v for v in valid if v.lower() == metric.strip().lower()]
    if not match:
        raise ConfigError(f"metric {metric!r} is not one of {', '.join(valid)}")
    return match[0]


def tune(data: XMCDataset, grid: dict[str, list] | None = None, *, config: XRLinearConfig | None = None,
         metric: str = DEFAULT_METRIC, folds: int | None = None, valid_fraction: float = 0.1, seed: int = 0,
         valid: XMCDataset | None = None, progress: bool = True) -> TuneResult:
    """Train XR-Linear with each candidate of ``grid`` on every fold of ``data`` and pick the best.

    Args:
        data: the training data; the folds are carved from it (never pass test data).
        grid: ``{dotted config key: [values]}``, e.g. ``{"train.C": [0.5, 1, 2]}``; every combination
            is a candidate (default: :data:`DEFAULT_GRID`).
        config: the base config the candidates change (default: ``XRLinearConfig()``).
        metric: the validation metric that picks the best, a key of
            :func:`xmc.metrics.ranking_report` at k 1, 3 or 5 (PSP from the fold's training counts);
            the first candidate in grid order wins a tie.
        folds: ``K`` >= 2 averages K folds, 1 holds out one ``valid_fraction`` split; None: 5 below
            10,000 documents, else 1.
        seed: seed of the split (the models keep the seeds of their config).
        valid: a validation set of the user's own (read with ``data``'s labels): the candidates train
            on all of ``data`` and are scored on it, instead of on folds.
        progress: a bar over all fits, with its ETA.
    """
    metric = metric_key(metric)
    data.check_trainable()
    grid = dict(DEFAULT_GRID if grid is None else grid)
    if not grid or any(not values for values in grid.values()):
        raise ConfigError("the grid needs at least one key with at least one value")
    base = config or XRLinearConfig()
    candidates = candidate_configs(base, grid)
    check_grid(grid, data)
    if valid is not None and folds is not None:
        raise ConfigError("give either a validation set or folds, not both")
    if valid is not None:
        check_valid(data, valid)
    splits = [None] if valid is not None else fold_rows(
        len(data), auto_folds(len(data)) if folds is None else folds, valid_fraction, seed)
    # One fold's copies at a time: K folds held at once would hold the data K - 1 times over.
    pairs = ((data, valid) if split is None else (data.subset(split[0]), data.subset(split[1])) for split in splits)
    shared_features = not any(key.split(".")[0] in _FEATURE_FIELDS for key in grid)
    sums = [dict.fromkeys(_report_keys(), 0.0) for _ in candidates]
    seconds = [0.0] * len(candidates)
    refused: set[int] = set()  # candidates left without weights on some fold
    with progress_bar(total=len(splits) * len(candidates), desc="tuning", unit="fit", disable=not progress) as bar:
        for fold_train, fold_valid in pairs:
            # valid may have more columns than train: labels it alone has, appended by its reader
            propensities = train_propensities(fold_train.label_counts(), len(fold_train), fold_valid.Y.shape[1])
            label_texts = fold_train.label_texts if fold_train.label_texts is not None else fold_train.labels.names
            features = None
            for i, (_, cfg) in enumerate(candidates):
                model = XRLinear(cfg)
                model.labels_ = fold_train.labels
                if features is None or not shared_features:
                    X_train = model.fit_features(fold_train, progress=False)
                    # predict's input: TF-IDF of the texts, or the file's own features as they are, which
                    # predict normalises as fit_features did the training ones (once, for every candidate)
                    with quiet():  # the tuning bar is the progress; TF-IDF bars would interleave with it
                        X_valid = fold_valid.X if model.featurizer_ is None else model.transform(fold_valid)
                    features = X_train, model.featurizer_, model.normalizes_features_, X_valid
                X_train, model.featurizer_, model.normalizes_features_, X_valid = features
                t0 = time.perf_counter()
                try:
                    model.fit_matrix(X_train, fold_train.Y, label_texts=label_texts, progress=False)
                except NoWeightsError as exc:  # a candidate `xmc train` would refuse: it scores 0 on this fold
                    refused.add(i)
                    settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in candidates[i][0].items())
                    logger.warning("candidate %s: %s", settings, exc)
                    model = None
                seconds[i] += time.perf_counter() - t0
                if model is not None:
                    scores = model.predict(X_valid, topk=max(_KS))
                    report = ranking_report(fold_valid.Y, scores, ks=_KS, propensities=propensities)
                    for key in sums[i]:
                        sums[i][key] += report[key]
                bar.update(1)
    results = [Candidate(overrides, {k: v / len(splits) for k, v in totals.items()}, seconds[i] / len(splits))
               for i, ((overrides, _), totals) in enumerate(zip(candidates, sums))]
    trainable = [i for i in range(len(results)) if i not in refused]
    if not trainable:  # a config that `xmc train` refuses is no answer
        raise ConfigError(f"every candidate of the grid removed every weight (the weight threshold is too high "
                          f"for this data): no config to choose; try lower train.weight_threshold values")
    best = max(trainable, key=lambda i: (results[i].scores[metric], -i))
    return TuneResult(metric=metric, folds=len(splits), candidates=results, best=best, config=candidates[best][1])


def _report_keys() -> list[str]:
    return [f"{name}@{k}" for name in ("P", "R", "nDCG", "PSP", "PSnDCG") for k in _KS]
