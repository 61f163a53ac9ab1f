"""The contract every xmc model keeps: declared capabilities, one fitted check, one resolution of
the predict defaults, and one save/load skeleton that each model plugs its own parts into.

The CLI and the server ask a model's :class:`Capabilities` what it takes (validation data, label
texts, a taxonomy, a beam, a threshold, ...) instead of probing its methods, so an option a model
lacks is refused up front with one line naming the option.

The prediction options have one meaning in every model (each model's ``config.predict`` holds
its defaults):

* ``topk``: labels returned per document, best first.
* ``beam_size``: clusters kept at each cluster level of the label tree that prediction searches
  (its width). XR-Linear searches every level of its tree with it; X-Transformer's matcher keeps
  ``beam_size`` leaf clusters and its ranker scores their labels (a member without a neural
  matcher searches its tree as XR-Linear does); GUDN / LightXML keep ``beam_size`` clusters of
  their one cluster level. Other beams have other names: ``man_beam`` (the clusters a ranker
  trains on with matcher-aware negatives) and ``top_b`` (the matcher's validation recall@b).
* ``threshold``: labels scoring below it are dropped (masked-bert: a probability, per label or
  ``"tuned"`` on the validation split). Not to be confused with ``weight_threshold`` (pruning of
  linear weights) or ``tail_threshold`` (XDA's tail-label count).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..config import Config
from ..errors import ConfigError
from .persistence import model_directory, read_labels, read_manifest, write_labels, write_manifest


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a model class takes, as the CLI and the server ask it.

    Attributes:
        uses_validation: ``fit`` takes ``valid=`` (early stopping, threshold tuning).
        uses_label_text: training reads ``data.label_texts`` (``--label-text``).
        uses_taxonomy: ``fit`` takes ``taxonomy=``.
        uses_data_features: can train on a file's own features (XC sparse) and then reads no text.
        supports_threshold: ``predict`` takes ``threshold=``.
        supports_beam: ``predict`` takes ``beam_size=`` (clusters searched per level).
        supports_selected_outputs: ``predict`` takes ``selected_outputs=`` (an (n, L) label restriction).
        supports_augmented: ``xmc train --augmented`` can fine-tune it on XDA documents.
        supports_progress: ``fit`` and ``predict`` take ``progress=``.
        loads_mmap: ``load`` takes ``mmap=`` (weights mapped read-only from the directory's files).
        supports_engine: ``fit`` takes ``engine=`` (training on a cluster: ``xmc train --engine``).
    """

    uses_validation: bool = False
    uses_label_text: bool = False
    uses_taxonomy: bool = False
    uses_data_features: bool = False
    supports_threshold: bool = True
    supports_beam: bool = False
    supports_selected_outputs: bool = False
    supports_augmented: bool = False
    supports_progress: bool = True
    loads_mmap: bool = False
    supports_engine: bool = False

    def fit_kwargs(self) -> frozenset[str]:
        """Keyword arguments (beyond the data) that ``fit`` accepts for these capabilities."""
        names = {"valid": self.uses_validation, "taxonomy": self.uses_taxonomy, "progress": self.supports_progress,
                 "engine": self.supports_engine}
        return frozenset(k for k, on in names.items() if on)

    def predict_kwargs(self) -> frozenset[str]:
        """Keyword arguments (beyond the inputs) that ``predict`` accepts: ``topk`` always."""
        names = {"topk": True, "threshold": self.supports_threshold, "beam_size": self.supports_beam,
                 "selected_outputs": self.supports_selected_outputs, "progress": self.supports_progress}
        return frozenset(k for k, on in names.items() if on)


class PredictOptions(NamedTuple):
    """``predict``'s options after the defaults of ``config.predict`` filled the ones not given."""

    topk: int
    beam_size: int | None
    threshold: Any  # a float, an (L,) array of per-label thresholds, or None (no threshold)


class XMCModel:
    """Base of every xmc model: subclasses set ``name``, ``config_class``, ``capabilities`` and
    implement ``fit``, ``predict``, :meth:`_is_fitted`, :meth:`_save_parts` and :meth:`_load_parts`.

    A model directory is ``xmc_model.json`` (the manifest, with its format version and the config),
    ``labels.json`` and the model's own parts; :meth:`save` writes it atomically and :meth:`load`
    reads and checks the manifest and the config before the parts.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    capabilities: ClassVar[Capabilities] = Capabilities()
    # Libraries whose versions the manifest records besides numpy / scipy / scikit-learn.
    packages: ClassVar[tuple[str, ...]] = ()
    # The sub-config whose ``device`` ``load(device=...)`` overrides (None: the model has no device).
    device_config: ClassVar[str | None] = None

    config: Config
    labels_: Any

    # ---- fitted state -------------------------------------------------------------------------
    def _is_fitted(self) -> bool:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        """Refuse to predict or save an unfitted model (a RuntimeError: a programming error, not bad input)."""
        if not self._is_fitted():
            raise RuntimeError(f"model is not fitted; call fit() or {type(self).__name__}.load()")

    # ---- prediction defaults ------------------------------------------------------------------
    def _default_threshold(self):
        """The threshold ``predict`` applies when none is given (models with tuned thresholds override)."""
        return getattr(self.config.predict, "threshold", None)

    @property
    def reads_text(self) -> bool:
        """Whether ``predict`` featurises text: every model but one trained on a file's own features
        (XR-Linear on XC sparse data), which reads only features."""
        return getattr(self, "featurizer_", None) is not None or not self.capabilities.uses_data_features

    def resolve_predict(self, topk: int | None = None, beam_size: int | None = None,
                        threshold=None) -> PredictOptions:
        """``predict``'s options: each one given, else the default of ``config.predict``.

        Given ones are checked (``ConfigError``): ``topk`` and ``beam_size`` whole numbers >= 1 (a
        beam of 0 crashed the beam kernel), ``threshold`` finite (NaN kept nothing). ``topk`` and
        ``beam_size`` are capped at the label count, above which nothing changes but the memory
        their (n, k) buffers take.
        """
        p = self.config.predict
        labels = getattr(self, "labels_", None)
        n_labels = len(labels) if labels is not None else None
        if threshold is not None:
            values = np.asarray(threshold, dtype=np.float64) if _is_number_or_array(threshold) else None
            if values is None or not np.isfinite(values).all():
                raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
        topk = p.topk if topk is None else _count_option("topk", topk)
        beam_size = getattr(p, "beam_size", None) if beam_size is None else _count_option("beam_size", beam_size)
        if n_labels:
            topk = min(topk, n_labels)
            beam_size = None if beam_size is None else min(beam_size, n_labels)
        return PredictOptions(topk=topk, beam_size=beam_size,
                              threshold=self._default_threshold() if threshold is None else threshold)

    # ---- persistence --------------------------------------------------------------------------
    def _manifest_extra(self) -> dict[str, Any]:
        """Fields the model adds to its manifest (part counts, timings)."""
        return {}

    def _save_parts(self, directory: str) -> None:
        """Write the model's own parts into ``directory`` (a temporary directory renamed when complete)."""
        raise NotImplementedError

    def _writes(self) -> bool:
        """Whether this process writes the directory (distributed training: rank 0 only)."""
        return True

    def save(self, directory: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the model directory atomically (see :mod:`xmc.models.persistence`).

        An existing xmc model at ``directory`` is replaced only with ``overwrite=True`` (atomically);
        anything else there is never replaced.
        """
        self._check_fitted()
        if not self._writes():
            return
        with model_directory(directory, overwrite) as tmp:
            write_manifest(tmp, self.name, self.config.to_dict(), self._manifest_extra(), packages=self.packages)
            write_labels(tmp, self.labels_.names)
            self._save_parts(tmp)

    @classmethod
    def _read(cls, directory: str | os.PathLike, device: str | None = None) -> tuple[dict[str, Any], Config]:
        """The directory's checked manifest (this model's name, a format version this xmc reads) and
        config, with ``device`` (when given) in place of the saved one."""
        manifest = read_manifest(directory, expect=cls.name)
        config = cls.config_class.from_dict(manifest["config"], where="xmc_model.json:config")
        if device is not None and cls.device_config:
            part = getattr(config, cls.device_config)
            config = config.replace(**{cls.device_config: part.replace(device=device)})
        return manifest, config

    @staticmethod
    def _write_json(directory: str, name: str, value: Any) -> None:
        """A JSON part (training histories); numpy scalars written as floats."""
        with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
            json.dump(value, fh, indent=1, default=float)

    @staticmethod
    def _read_json(directory: str | os.PathLike, name: str, default: Any = None) -> Any:
        """A JSON part written by :meth:`_write_json`, or ``default`` when the directory has none."""
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return default
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    @staticmethod
    def _labels(directory: str | os.PathLike, n_labels: int | None = None):
        from ..data.dataset import LabelVocabulary

        return LabelVocabulary(read_labels(directory, n_labels))


# What an option asks of a model, for the one-line refusal of an option the model lacks.
_OPTION_NEEDS = {
    "valid": ("uses_validation", "uses no validation data"),
    "label_text": ("uses_label_text", "reads no label texts"),
    "taxonomy": ("uses_taxonomy", "uses no taxonomy"),
    "augmented": ("supports_augmented", "cannot be fine-tuned on augmented (XDA) documents"),
    "threshold": ("supports_threshold", "takes no threshold"),
    "beam_size": ("supports_beam", "has no beam (no label tree to search)"),
    "selected_outputs": ("supports_selected_outputs", "takes no label restriction"),
}


def refuse_unsupported(model: type[XMCModel] | XMCModel, options: dict[str, Any], spell=None) -> None:
    """Raise :class:`~xmc.errors.ConfigError` naming the first option given (not None) that ``model`` lacks.

    ``spell`` turns an option's name into the caller's spelling (``beam_size`` -> ``--beam-size``).
    """
    from ..errors import ConfigError

    caps = model.capabilities
    for key, value in options.items():
        if value is None or value is False or key not in _OPTION_NEEDS:
            continue
        attr, lack = _OPTION_NEEDS[key]
        if not getattr(caps, attr):
            shown = spell(key) if spell else key
            raise ConfigError(f"{shown}: the {model.name} model {lack}; drop {shown}")


def save_tensors(state: dict, path: str) -> None:
    """A module's ``state_dict`` (or part of it) as safetensors, on the CPU and contiguous."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def training_split(data, valid, train_config):
    """(training set, validation set) of a neural model's ``fit``.

    Without ``valid``, ``train_config.valid_fraction`` of ``data`` is held out (seeded by
    ``train_config.seed``), never the test data; a given ``valid`` is copied with its label columns
    cut to ``data``'s labels (it was read with them, plus any it alone has). At most
    ``train_config.max_train_docs`` training documents are kept (a seeded sample, in order).
    """
    import numpy as np
    import scipy.sparse as sp

    from ..data.split import train_valid_split

    # Before any encoder is fine-tuned on labels that are not there, or on the empty texts of XC features.
    data.check_trainable().check_has_text()
    if valid is None:
        fit_data, valid = train_valid_split(data, train_config.valid_fraction, seed=train_config.seed)
    else:
        fit_data = data
        valid = valid.check_has_text().subset(np.arange(len(valid)))
        valid.Y = sp.csr_matrix(valid.Y[:, :len(data.labels)])
    if train_config.max_train_docs is not None and len(fit_data) > train_config.max_train_docs:
        rows = np.random.default_rng(train_config.seed).choice(len(fit_data), train_config.max_train_docs,
                                                               replace=False)
        fit_data = fit_data.subset(np.sort(rows))
    return fit_data, valid


def text_list(inputs) -> list:
    """``predict``'s raw texts as a list, in order; TypeError for what is not an ordered collection of
    them: one string (its characters), a mapping (its keys) or a set (an order of its own), or a matrix."""
    import collections.abc as abc

    import scipy.sparse as sp

    if isinstance(inputs, (str, bytes)):
        raise TypeError("predict takes a list of texts, not a single string")
    if isinstance(inputs, (abc.Mapping, abc.Set)) or sp.issparse(inputs):
        raise TypeError(f"predict takes a list of texts (or a dataset), not a {type(inputs).__name__}")
    return list(inputs)


def _count_option(name: str, value) -> int:
    """``value`` as a count >= 1 (an int, or a float that is a whole number), else ConfigError."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value))
    if isinstance(value, (bool, np.bool_)) or not whole or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _is_number_or_array(value) -> bool:
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return False
    try:
        return np.asarray(value).dtype.kind in "iuf"
    except (TypeError, ValueError):
        return False
