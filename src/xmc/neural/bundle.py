"""Compact, checked directories of arrays that carry a neural stage to another machine and back.

A *bundle* (sent to a GPU machine) or a *result* (sent back) is a directory holding
``manifest.json`` and ``part-NNN.safetensors`` shards (plain tensors, never pickles), optionally
beside an ``encoder/`` folder (Hugging Face weights as safetensors plus tokenizer files). The
manifest names its format and version and lists every array with its dtype, shape and the row
ranges each shard holds, so a reader checks everything before it trusts a byte.

Shards are filled in order up to ``file_bytes``; an array larger than the room left is split by
rows across shards. The same planning function sizes a bundle or result before anything is
computed, so a transfer that would not fit (e.g. at most 64 MiB sent, 8 files of at most 16 MiB
back) is refused in one line up front.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError, ModelFormatError

MIB = 1024 * 1024
MANIFEST = "manifest.json"
_DTYPES = {"float32", "float16", "int8", "uint8", "uint16", "int32", "int64", "bool"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Transfer limits of the machine in between (None: no limit)."""

    send_bytes: int | None = 64 * MIB  # everything sent with one command
    back_bytes: int | None = 64 * MIB  # everything brought back
    file_bytes: int | None = 16 * MIB  # one file brought back
    back_files: int | None = 8  # files brought back

    @classmethod
    def none(cls) -> "Limits":
        return cls(None, None, None, None)


def fmt_bytes(n: float) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n / 1024:.0f} KiB"


# ---- arrays <-> shards ------------------------------------------------------------------------
def _row_bytes(shape: Sequence[int], dtype: str) -> int:
    return int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize


_HEADER_BASE, _HEADER_PER_TENSOR = 1024, 192  # room kept for the safetensors JSON header


def plan_shards(specs: Sequence[tuple[str, tuple, str]], file_bytes: int | None) -> list[list[tuple[str, int, int]]]:
    """Shards as lists of ``(array name, first row, end row)``: arrays in order, split by rows where a shard fills.

    ``specs``: ``(name, shape, dtype)`` of each array (scalars are not allowed; zero rows are). Each
    shard stays under ``file_bytes`` with room for its header (1 KiB plus 192 B per piece).
    """
    limit = file_bytes - _HEADER_BASE if file_bytes else None
    shards: list[list[tuple[str, int, int]]] = [[]]
    used = 0
    for name, shape, dtype in specs:
        n, row = int(shape[0]), max(1, _row_bytes(shape, dtype))
        start = 0
        if n == 0:
            shards[-1].append((name, 0, 0))
            used += _HEADER_PER_TENSOR
            continue
        while start < n:
            room = n - start if limit is None else (limit - used - _HEADER_PER_TENSOR) // row
            if room <= 0:
                if not shards[-1]:
                    raise ConfigError(f"array {name!r}: one row ({fmt_bytes(row)}) exceeds the file limit")
                shards.append([])
                used = 0
                continue
            end = min(n, start + room)
            shards[-1].append((name, start, end))
            used += (end - start) * row + _HEADER_PER_TENSOR
            start = end
    return [s for s in shards if s] or [[]]


def spec_bytes(specs: Iterable[tuple[str, tuple, str]]) -> int:
    return sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for _, shape, dtype in specs)


def write_arrays(directory: str, arrays: dict[str, np.ndarray], file_bytes: int | None) -> dict:
    """Write ``arrays`` as shards into ``directory``; return the index for the manifest."""
    from safetensors.numpy import save_file

    specs = [(name, a.shape, a.dtype.name) for name, a in arrays.items()]
    index: dict = {"arrays": {name: {"dtype": dt, "shape": list(shape), "parts": []} for name, shape, dt in specs},
                   "files": []}
    for i, shard in enumerate(plan_shards(specs, file_bytes)):
        fname = f"part-{i:03d}.safetensors"
        tensors = {}
        for name, start, end in shard:
            key = f"{name}@{start}"
            tensors[key] = np.ascontiguousarray(arrays[name][start:end])
            index["arrays"][name]["parts"].append([fname, key, start, end])
        save_file(tensors, os.path.join(directory, fname))
        index["files"].append(fname)
    return index


def read_arrays(directory: str, index: dict, where: str) -> dict[str, np.ndarray]:
    """The arrays of ``index`` (from :func:`write_arrays`), each checked against its dtype and shape, and
    floating-point ones for NaN and infinity (a model with them predicts NaN scores)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        files = {f: None for f in index["files"]}
        arrays_index = index["arrays"]
        for fname in files:
            if os.path.basename(fname) != fname or not fname.endswith(".safetensors"):
                raise ModelFormatError(f"{where}: file {fname!r} is not a safetensors shard of this directory")
            path = os.path.join(directory, fname)
            if not os.path.isfile(path):
                raise ModelFormatError(f"{where}: {fname} is missing")
            try:
                files[fname] = load_file(path)
            except (SafetensorError, OSError, ValueError) as exc:
                raise ModelFormatError(f"{where}: {fname} is not a readable safetensors file ({exc})") from None
        out = {}
        for name, entry in arrays_index.items():
            dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])
            if dtype not in _DTYPES:
                raise ModelFormatError(f"{where}: array {name!r} has unsupported dtype {dtype!r}")
            pieces, expect = [], 0
            for fname, key, start, end in entry["parts"]:
                if fname not in files or key not in files[fname] or start != expect:
                    raise ModelFormatError(f"{where}: array {name!r}: part {key!r} missing from {fname}")
                piece = files[fname][key]
                if piece.dtype.name != dtype or piece.shape != (end - start, *shape[1:]):
                    raise ModelFormatError(f"{where}: array {name!r}: {fname} holds {piece.dtype.name} "
                                           f"{piece.shape}, the manifest says {dtype} {(end - start, *shape[1:])}")
                pieces.append(piece)
                expect = end
            if expect != shape[0] or not pieces:
                raise ModelFormatError(f"{where}: array {name!r}: parts cover {expect} of {shape[0]} rows")
            out[name] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            if out[name].dtype.kind == "f" and not np.isfinite(out[name]).all():  # e.g. a diverged fp16 run
                raise ModelFormatError(f"{where}: array {name!r} has values that are not finite (NaN or infinity)")
        return out
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFormatError):
            raise
        raise ModelFormatError(f"{where}: malformed array index ({type(exc).__name__}: {exc})") from None


def require(arrays: dict[str, np.ndarray], name: str, where: str, dtype=None, shape=None) -> np.ndarray:
    """``arrays[name]``, refused in one line when missing or of another dtype / shape (None: any)."""
    if name not in arrays:
        raise ModelFormatError(f"{where}: array {name!r} is missing")
    a = arrays[name]
    if dtype is not None and a.dtype.name not in ((dtype,) if isinstance(dtype, str) else dtype):
        raise ModelFormatError(f"{where}: array {name!r} has dtype {a.dtype.name}, expected {dtype}")
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape))):
        raise ModelFormatError(f"{where}: array {name!r} has shape {a.shape}, expected {tuple(shape)}")
    return a


# ---- manifests ----------------------------------------------------------------------------------
def write_manifest(directory: str, manifest: dict) -> None:
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, default=float)


def read_manifest(directory: str | os.PathLike, fmt: str, version: int, what: str) -> dict:
    """The checked manifest of a ``fmt`` directory (one-line :class:`ModelFormatError` otherwise)."""
    directory = os.fspath(directory)
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise ModelFormatError(f"{directory}: no such {what} directory")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        raise ModelFormatError(f"{directory}: not an xmc {what} (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFormatError(f"{path}: not an xmc {what} (format {found!r}, expected {fmt!r})")
    if manifest.get("version") != version:
        raise ModelFormatError(f"{path}: {what} format version {manifest.get('version')!r}; this xmc reads "
                               f"version {version}: export it again with this xmc")
    return manifest


def directory_bytes(directory: str) -> tuple[int, int]:
    """(total bytes, number of files) below ``directory``."""
    total = count = 0
    for root, _, files in os.walk(directory):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            count += 1
    return total, count


# ---- compact encodings --------------------------------------------------------------------------
def token_arrays(tokens: Sequence[Sequence[int]], vocab_size: int) -> dict[str, np.ndarray]:
    """Token id lists as one flat id array (uint16 when the vocabulary allows) and (n + 1,) int64 offsets."""
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    ids = np.fromiter((i for t in tokens for i in t), dtype=np.int64, count=int(offsets[-1])).astype(dtype)
    return {"ids": ids, "offsets": offsets}


def token_lists(ids: np.ndarray, offsets: np.ndarray, vocab_size: int, max_length: int, where: str) -> list[list[int]]:
    """Inverse of :func:`token_arrays`, checking offsets, id range and lengths."""
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(ids) or \
            np.any(np.diff(offsets) < 0):
        raise ModelFormatError(f"{where}: token offsets are not a non-decreasing cover of the ids")
    if len(ids) and (int(ids.max()) >= vocab_size):
        raise ModelFormatError(f"{where}: token id {int(ids.max())} is outside the vocabulary ({vocab_size})")
    if len(offsets) > 1 and int(np.diff(offsets).max()) > max_length:
        raise ModelFormatError(f"{where}: a text has {int(np.diff(offsets).max())} tokens, more than max_length "
                               f"{max_length}")
    flat = ids.astype(np.int64).tolist()
    bounds = offsets.tolist()
    return [flat[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]


def binary_csr_arrays(M: sp.spmatrix) -> dict[str, np.ndarray]:
    """A 0/1 sparse matrix as int64 indptr and int32 indices (the values are implied)."""
    M = sp.csr_matrix(M)
    M.sort_indices()
    return {"indptr": M.indptr.astype(np.int64), "indices": M.indices.astype(np.int32)}


def binary_csr(indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int], where: str) -> sp.csr_matrix:
    """Inverse of :func:`binary_csr_arrays`, checked (float32 ones)."""
    try:
        M = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr), shape=shape)
        M.check_format(full_check=True)
    except ValueError as exc:
        raise ModelFormatError(f"{where}: not a valid {shape} sparse matrix ({exc})") from None
    return M


def quantize(E: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """Embeddings in ``dtype``: float32, float16, or int8 with a float32 scale per row (symmetric)."""
    if dtype == "int8":
        scale = np.abs(E).max(axis=1, keepdims=True).astype(np.float32) / 127.0
        scale[scale == 0] = 1.0
        return {"q": np.rint(E / scale).astype(np.int8), "scale": scale.ravel()}
    return {"q": E.astype(dtype)}


def dequantize(q: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    out = q.astype(np.float32)
    return out * scale[:, None] if scale is not None else out


def quantized_specs(name: str, n: int, dim: int, dtype: str) -> list[tuple[str, tuple, str]]:
    specs = [(f"{name}.q", (n, dim), dtype)]
    if dtype == "int8":
        specs.append((f"{name}.scale", (n,), "float32"))
    return specs


def check_transfer(what: str, n_bytes: int, n_files: int, limits: Limits, direction: str) -> None:
    """One-line :class:`ConfigError` when a transfer would exceed ``limits`` (``direction``: send / back)."""
    problems = []
    if direction == "send" and limits.send_bytes and n_bytes > limits.send_bytes:
        problems.append(f"{fmt_bytes(n_bytes)} > {fmt_bytes(limits.send_bytes)} sent per command")
    if direction == "back":
        if limits.back_bytes and n_bytes > limits.back_bytes:
            problems.append(f"{fmt_bytes(n_bytes)} > {fmt_bytes(limits.back_bytes)} brought back")
        if limits.back_files and n_files > limits.back_files:
            problems.append(f"{n_files} files > {limits.back_files} brought back")
    if problems:
        raise ConfigError(f"{what} would not fit the transfer limits ({'; '.join(problems)})")


def n_shards(specs, file_bytes) -> int:
    return len(plan_shards(specs, file_bytes))
