"""Model names known to the CLI, imported lazily so the linear path never imports torch."""

from __future__ import annotations

import importlib
import os

from ..errors import ConfigError, ModelFormatError, XMCError
from .persistence import read_manifest

# name -> "module:Class"; each model issue adds its entry.
MODELS: dict[str, str] = {
    "xr-linear": "xmc.models.xr_linear:XRLinear",
    "xtransformer": "xmc.models.xtransformer:XTransformer",
    "masked-bert": "xmc.models.masked_bert:MaskedBert",
    "gudn": "xmc.models.gudn:GUDN",
    "lightxml": "xmc.models.gudn:LightXML",
}


def model_class(name: str):
    """The model class registered under ``name``."""
    try:
        module, cls = MODELS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None
    return getattr(importlib.import_module(module), cls)


def load_model(directory: str | os.PathLike):
    """Load any xmc model directory (dispatching on its manifest's model name)."""
    manifest = read_manifest(directory)
    if manifest["model"] not in MODELS:
        raise ModelFormatError(f"{os.fspath(directory)}: unknown model {manifest['model']!r}")
    cls = model_class(manifest["model"])
    try:
        return cls.load(directory)
    except XMCError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # anything a damaged or foreign directory makes a loader trip on
        raise ModelFormatError(f"{os.fspath(directory)}: cannot load the {manifest['model']} model "
                               f"({type(exc).__name__}: {exc})") from exc
