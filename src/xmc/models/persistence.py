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
from ..io import Marker, atomic_directory

MANIFEST = "xmc_model.json"
MODEL_MARKER = Marker(MANIFEST, format="xmc-model")  # an xmc model directory: the only one --overwrite replaces
LABELS = "labels.json"


def model_directory(directory: str | os.PathLike, overwrite: bool = False):
    """``atomic_directory`` for a model: replaces only an existing xmc model, and only with ``overwrite``."""
    return atomic_directory(directory, overwrite=overwrite, marker=MODEL_MARKER, what="model directory")


def library_versions(*packages: str) -> dict[str, str]:
    versions = {"xmc": __version__}
    for name in ("numpy", "scipy", "scikit-learn", *packages):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


# The layout version of model directories this xmc writes (it reads every earlier one); a directory
# from a later version may hold parts this one would ignore, so it is refused rather than half-read.
# 1: XR-Linear layers as layer-i.npz; 2: as layer-i/ (one .npy per beam-kernel array, mmap-able),
# both a column-major and a feature-major copy; 3: the feature-major copy only; 4: its two pointer
# arrays stored as counts in the narrowest unsigned type, its children arrays taken from the tree.
FORMAT_VERSION = 4


def write_manifest(directory: str, model: str, config: dict[str, Any], extra: dict[str, Any] | None = None,
                   packages: tuple[str, ...] = ()) -> None:
    manifest = {"format": "xmc-model", "format_version": FORMAT_VERSION, "model": model,
                "versions": library_versions(*packages), "config": config,
                "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    manifest.update(extra or {})
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def read_manifest(directory: str | os.PathLike, expect: str | None = None) -> dict[str, Any]:
    """The model directory's manifest, checked; ``expect`` (a model name) rejects other kinds of model.

    Refuses (:class:`ModelFormatError`) a manifest with missing or mistyped fields, and one written
    by a later layout version or a later xmc than this one.
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise ModelFormatError(f"{os.fspath(directory)}: not a model directory")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ModelFormatError(f"{os.fspath(directory)}: no {MANIFEST}; not an xmc model directory") from None
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{path}: not UTF-8 JSON ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # digits beyond Python's limit; nesting beyond its stack
        raise ModelFormatError(f"{path}: invalid JSON ({type(exc).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "xmc-model" or "model" not in manifest:
        raise ModelFormatError(f"{path}: not an xmc model manifest")
    for key, kind, name in (("model", str, "a string"), ("config", dict, "an object"),
                            ("versions", dict, "an object"), ("format_version", int, "an integer")):
        if key in manifest and (not isinstance(manifest[key], kind) or isinstance(manifest[key], bool)):
            raise ModelFormatError(f"{path}: {key!r} must be {name}, got {json.dumps(manifest[key])[:40]}")
    if "config" not in manifest:
        raise ModelFormatError(f"{path}: no 'config'")
    if manifest.get("format_version", 1) > FORMAT_VERSION:
        raise ModelFormatError(f"{path}: model format version {manifest['format_version']} is newer than this "
                               f"xmc reads ({FORMAT_VERSION}); upgrade xmc to load it")
    written_by = manifest.get("versions", {}).get("xmc")
    if written_by is not None and _version_tuple(written_by) > _version_tuple(__version__):
        raise ModelFormatError(f"{path}: written by xmc {written_by}, newer than this xmc {__version__}; "
                               "upgrade xmc to load it")
    if expect is not None and manifest["model"] != expect:
        raise ModelFormatError(f"{os.fspath(directory)} holds a {manifest['model']!r} model, not {expect!r}")
    return manifest


def write_labels(directory: str, names: list[str]) -> None:
    with open(os.path.join(directory, LABELS), "w", encoding="utf-8") as fh:
        json.dump(names, fh, ensure_ascii=False)


def read_labels(directory: str | os.PathLike, n_labels: int | None = None) -> list[str]:
    """Label names in id order; ``n_labels`` (the model's output size) must match their number."""
    path = os.path.join(directory, LABELS)
    try:
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: not UTF-8, not JSON, digits beyond the limit
        raise ModelFormatError(f"{os.fspath(directory)}: cannot read {LABELS} ({exc or type(exc).__name__})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFormatError(f"{path}: expected a list of label names")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        twice = next(n for n in names if n in seen or seen.add(n))
        raise ModelFormatError(f"{path}: label {twice!r} is listed twice")
    if n_labels is not None and len(names) != n_labels:
        raise ModelFormatError(f"{path}: {len(names)} label names for a model with {n_labels} outputs")
    return names
