"""The model directory format shared by every xmc model.

A model directory holds ``xmc_model.json`` (model name, xmc and library
versions, the full config), ``labels.json`` (label names in id order) and the
model's own sub-folders of ``.npz`` / ``.npy`` / safetensors / JSON files. No
pickle anywhere, so loading a directory never runs code from it.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
from typing import Any

from .. import __version__
from ..errors import ModelFormatError

MANIFEST = "xmc_model.json"
LABELS = "labels.json"


def library_versions(*packages: str) -> dict[str, str]:
    versions = {"xmc": __version__}
    for name in ("numpy", "scipy", "scikit-learn", *packages):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def write_manifest(directory: str, model: str, config: dict[str, Any], extra: dict[str, Any] | None = None,
                   packages: tuple[str, ...] = ()) -> None:
    manifest = {"format": "xmc-model", "model": model, "versions": library_versions(*packages), "config": config,
                "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    manifest.update(extra or {})
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)


def read_manifest(directory: str | os.PathLike, expect: str | None = None) -> dict[str, Any]:
    """The model directory's manifest; ``expect`` (a model name) rejects other kinds of model."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise ModelFormatError(f"{os.fspath(directory)}: not a model directory")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ModelFormatError(f"{os.fspath(directory)}: no {MANIFEST}; not an xmc model directory") from None
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if manifest.get("format") != "xmc-model" or "model" not in manifest:
        raise ModelFormatError(f"{path}: not an xmc model manifest")
    if expect is not None and manifest["model"] != expect:
        raise ModelFormatError(f"{os.fspath(directory)} holds a {manifest['model']!r} model, not {expect!r}")
    return manifest


def write_labels(directory: str, names: list[str]) -> None:
    with open(os.path.join(directory, LABELS), "w", encoding="utf-8") as fh:
        json.dump(names, fh, ensure_ascii=False)


def read_labels(directory: str | os.PathLike) -> list[str]:
    try:
        with open(os.path.join(directory, LABELS), encoding="utf-8") as fh:
            names = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{os.fspath(directory)}: cannot read {LABELS} ({exc})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFormatError(f"{os.fspath(directory)}/{LABELS}: expected a list of label names")
    return names
