"""Device-dependent defaults: config values ``"auto"`` resolved where the model is trained.

With CUDA a neural model's defaults are its paper's settings (the encoder fine-tuned over long
inputs). On a CPU those take hours, so ``auto`` resolves to a budget that finishes: the
pre-trained encoder frozen (every text encoded once, only the output layers trained, for more
epochs since an epoch then costs milliseconds), shorter inputs and a larger learning rate for the
freshly initialised layers. A value set in a config (``--config``) is never touched: only the
fields still holding ``"auto"`` are resolved. The resolved config is what the model saves.

Torch-free except for the CUDA check, so ``xmc config`` stays light.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from ..config import Config

logger = logging.getLogger(__name__)

AUTO = "auto"

# config class name -> {dotted field: (value with CUDA, value on a CPU)}
RULES: dict[str, dict[str, tuple[Any, Any]]] = {
    "MaskedBertConfig": {
        "encoder.max_length": (512, 128),
        "train.freeze_encoder": (False, True),
        "train.epochs": (3.0, 30.0),
        "train.head_learning_rate": (None, 3e-3),
    },
    # lightxml / gudn on a CPU: head learning rate and patience chosen on the validation split of
    # an 800-document EURLEX57K training sample (benchmarks/validate_cpu_budget.py, BENCHMARKS.md).
    "GUDNConfig": {
        "encoder.max_length": (512, 256),
        "train.freeze_encoder": (False, True),
        "train.epochs": (3.0, 30.0),
        "train.head_learning_rate": (1e-3, 1e-2),
        "train.patience": (2, 5),
    },
    "XTransformerConfig": {
        "matcher.kind": ("transformer", "frozen"),
    },
    # XDA on a CPU: generation (SmolLM2 over 40-word windows: 0.5-1 candidate/s on 2 shared cores)
    # is the cost; one candidate per tail document keeps a few hundred documents within minutes.
    "GeneratorConfig": {
        "prompt": (True, False),
        "max_words": (200, 40),
        "n_aug": (4, 1),
    },
}
RULES["LightXMLConfig"] = dict(RULES["GUDNConfig"])
# gudn alone: patience 10 edged out 5 on the same validation split (0.6125 against 0.600 P@1, 2026-12-02),
# and 60 epochs beat 30 in 5-fold cross-validation over the whole 800-document sample (62.13 against 59.25
# mean P@1, better on every fold; benchmarks/validate_cpu_budget.py --folds 5, BENCHMARKS.md).
RULES["GUDNConfig"]["train.patience"] = (2, 10)
RULES["GUDNConfig"]["train.epochs"] = (3.0, 60.0)
RULES["AugmentConfig"] = {f"generator.{path}": values for path, values in RULES["GeneratorConfig"].items()}

# Rough throughputs of all-MiniLM-L6-v2 (texts per second at 128 tokens) measured on a 2-core CPU
# (MODELS.md) and a guess for one GPU; they only size the printed estimate.
_ENCODE_PER_S = {"cpu": 25.0, "cuda": 1500.0}
_FINETUNE_PER_S = {"cpu": 7.0, "cuda": 300.0}
# Training samples per second of the output layers over cached features (frozen encoder). gudn /
# lightxml step through candidate sampling, the label tree and SWA of the whole network: 414 steps of
# 32 in 57 s on the 2-core CPU at load ~3.5 (99/s at load ~9; bench_cpu_defaults.py, 2026-12-02); the
# other models' heads are far cheaper.
_HEAD_PER_S = {"GUDNConfig": 230.0, "LightXMLConfig": 230.0}
_HEAD_PER_S_DEFAULT = 5000.0
_CPU_CORES_MEASURED = 2


def _device_field(config: Config) -> str:
    for path in ("train.device", "matcher.device", "generator.device", "device"):
        value = _get(config, path)
        if value is not None:
            return value
    return "auto"


def _get(config: Config, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        if not dataclasses.is_dataclass(value) or not hasattr(value, part):
            return None
        value = getattr(value, part)
    return value


def device_kind(device: str) -> str:
    """``cuda`` when ``device`` (``auto``, ``cpu``, ``cuda[:N]``) will run on a GPU here, else ``cpu``."""
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_fields(config: Config) -> list[str]:
    """Dotted names of the fields of ``config`` that hold ``"auto"`` and have a rule."""
    rules = RULES.get(type(config).__name__, {})
    return [path for path in rules if _get(config, path) == AUTO]


def resolve(config: Config, device: str | None = None, kind: str | None = None) -> tuple[Config, dict[str, Any]]:
    """``config`` with every ``"auto"`` replaced for ``device`` (default: the config's own device field).

    ``kind`` (``cuda`` / ``cpu``) names the machine the config is for instead, whatever this one has
    (``xmc stage export`` resolves for the GPU machine it prepares a bundle for).

    Returns the resolved config (a new object; ``config`` itself when nothing was ``auto``) and
    the values chosen, by dotted field name.
    """
    fields = auto_fields(config)
    if not fields:
        return config, {}
    kind = kind or device_kind(device or _device_field(config))
    rules = RULES[type(config).__name__]
    chosen = {path: rules[path][0 if kind == "cuda" else 1] for path in fields}
    data = config.to_dict()
    for path, value in chosen.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    return type(config).from_dict(data), chosen


def resolve_budget(config: Config, n_texts: int) -> Config:
    """:func:`resolve` for a model's ``fit``: the resolved config, its budget logged."""
    resolved, chosen = resolve(config)
    if chosen:
        logger.info("%s", summary(resolved, int(n_texts), chosen))
    return resolved


def estimate_seconds(config: Config, n_texts: int, kind: str, mean_tokens: float | None = None) -> float:
    """A rough training time of a resolved neural config over ``n_texts`` texts on ``kind`` (cpu / cuda).

    ``mean_tokens``: the texts' mean length in tokens before truncation (default: all at max_length).
    """
    scale = 1.0
    if kind == "cpu":
        scale = _CPU_CORES_MEASURED / max(1, min(os.cpu_count() or 1, _threads()))
    max_length = _get(config, "encoder.max_length") or 128
    tokens = max_length if mean_tokens is None else min(max_length, mean_tokens)
    length = max(0.1, tokens / 128) ** 1.3  # attention cost grows faster than linearly
    generator = config if type(config).__name__ == "GeneratorConfig" else _get(config, "generator")
    if generator is not None:  # XDA: prompt tuning over every text, generation for the (tail) texts
        per_candidate = {"cpu": 1.5, "cuda": 0.02}[kind] * generator.max_words / 40
        tuning = n_texts * 0.5 * per_candidate if generator.prompt else 0.0
        return (tuning + n_texts * generator.n_aug * per_candidate) * scale
    frozen = _get(config, "train.freeze_encoder")
    kind_matcher = _get(config, "matcher.kind")
    epochs = float(_get(config, "train.epochs") or _get(config, "matcher.epochs") or 1.0)
    encode = n_texts * length / _ENCODE_PER_S[kind]
    if frozen or kind_matcher in ("frozen", "linear"):
        label_side = n_texts / _ENCODE_PER_S[kind] if _get(config, "feature_guide") or _get(config, "link_guide") else 0
        head = _HEAD_PER_S.get(type(config).__name__, _HEAD_PER_S_DEFAULT) * (1.0 if kind == "cpu" else 10.0)
        seconds = encode + label_side + epochs * n_texts / head
    else:
        # fine-tuning plus encoding for validation; GUDN's guides run the encoder on the label side too
        guides = 2.0 if (_get(config, "feature_guide") or _get(config, "link_guide")) else 1.0
        seconds = epochs * n_texts * length * guides / _FINETUNE_PER_S[kind] + encode
    if _get(config, "matcher.kind") is not None:
        seconds += n_texts / 200.0  # TF-IDF, the tree and the linear rankers
    return seconds * scale


def _threads() -> int:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is there whenever a neural config is trained
        return os.cpu_count() or 1


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def mean_tokens(texts: list[str], sample: int = 200) -> float:
    """A rough mean token count of ``texts`` (1.3 word pieces per whitespace word, over the first ``sample``)."""
    head = texts[:sample]
    return 1.3 * sum(len(t.split()) for t in head) / max(1, len(head)) + 2


def summary(config: Config, data, chosen: dict[str, Any] | None = None) -> str | None:
    """One line naming the device, the resolved budget and a time estimate; None for non-neural configs.

    ``data``: the training texts' count, or the dataset (its text lengths refine the estimate).
    ``chosen``: the values :func:`resolve` picked (default: resolve ``config`` here).
    """
    name = type(config).__name__
    if name not in RULES:
        return None
    n_texts, tokens = data, None
    if not isinstance(data, int):
        n_texts, tokens = len(data), mean_tokens(data.input_texts())
    if chosen is None:
        config, chosen = resolve(config)
    kind = device_kind(_device_field(config))
    shown = {path: _get(config, path) for path in RULES[name]}
    parts = [f"{path}={_plain(value)}{' (auto)' if path in chosen else ''}" for path, value in shown.items()]
    estimate = estimate_seconds(config, n_texts, kind, tokens)
    return (f"budget for {kind}: {', '.join(parts)}; estimated time ~{_format_seconds(estimate)} for "
            f"{n_texts:,} texts (rough; 'xmc config' shows the full config, --config overrides any value)")


def _plain(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def describe_auto(config: Config) -> str | None:
    """Lines saying what each ``"auto"`` value of ``config`` resolves to on this machine (None: no auto)."""
    fields = auto_fields(config)
    if not fields:
        return None
    kind = device_kind(_device_field(config))
    _, chosen = resolve(config)
    rules = RULES[type(config).__name__]
    lines = [f'"auto" resolves on this machine ({kind}) to:']
    lines += [f"  {path}: {_plain(chosen[path])}   (cuda: {_plain(rules[path][0])}, cpu: {_plain(rules[path][1])})"
              for path in fields]
    return "\n".join(lines)
