"""Shared by the prepared GPU runs in this folder: bundle sizes, window-cut texts, fp16 encoders, claims.

The GPU machine takes at most 64 MiB per command (the repository's tracked and untracked files plus the
carried bundle) and gives back at most 8 files of at most 16 MiB (64 MiB in all), with no internet. So
everything a run needs is prepared on the CPU: the encoder's weights in fp16 safetensors, the data
already cut to what the encoder reads, and the run writes only small JSON (or an ``xmc stage`` result).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "src"))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))  # bench_*.py and markdown_section

from xmc.neural.bundle import MIB, directory_bytes, fmt_bytes  # noqa: E402

DATA_ROOT = os.path.join(REPO, "..", "shared", "data")
BUNDLES = os.path.join(HERE, "bundles")  # git-ignored; the device command carries one of them
SEND_LIMIT, BACK_LIMIT, FILE_LIMIT, BACK_FILES = 64 * MIB, 64 * MIB, 16 * MIB, 8
# Throughput measured on an H100 (all-MiniLM-L6-v2, 128 tokens, bf16): the sizing of every script.
H100_FINETUNE_PER_S, H100_ENCODE_PER_S = 1784.0, 3063.0


def repo_bytes() -> int:
    """Bytes of the working tree that travels with a device command (tracked + untracked, not ignored)."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    total = 0
    for name in names:
        path = os.path.join(REPO, name.decode())
        if name and os.path.isfile(path):
            total += os.path.getsize(path)
    return total


def check_send(bundle: str, smoke: bool) -> str:
    """One line with the bundle's and the tree's sizes; exits with that line when they would not fit."""
    size, files = directory_bytes(bundle)
    tree = repo_bytes()
    line = (f"bundle {os.path.relpath(bundle, REPO)}: {fmt_bytes(size)} in {files} files; with the working tree "
            f"({fmt_bytes(tree)}) {fmt_bytes(size + tree)} of the {fmt_bytes(SEND_LIMIT)} a device command takes")
    if size + tree > SEND_LIMIT and not smoke:
        sys.exit(f"error: {line}: too large")
    return line


def append_jsonl(path: str, record: dict) -> None:
    """Append one record to a device step's log, written as each row finishes (a run cut short keeps them)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=float) + "\n")


def finish_log(path: str, started: float, gpu: str) -> None:
    """The log's last record: the device step finished, and in how many seconds."""
    append_jsonl(path, {"done": True, "seconds": round(time.perf_counter() - started, 1), "gpu": gpu})


def add_rows_option(p, rows: Sequence[str], log_name: str) -> None:
    """``--rows``: the device step runs only these rows; the records of several runs append into one log."""
    p.add_argument("--rows", type=lambda v: [r for r in v.split(",") if r], default=None,
                   help=f"device: run only these rows (comma-separated, of {', '.join(rows)}); report: the records of "
                        f"several device runs can be appended into one {log_name}, the latest record of a row counts")


def check_rows(p, args, rows: Sequence[str]) -> None:
    """Refuse a ``--rows`` that names no row or one the script does not have, in one line."""
    if args.rows is not None and (not args.rows or set(args.rows) - set(rows)):
        p.error(f"--rows: expected a comma-separated subset of {', '.join(rows)}, got {','.join(args.rows) or 'none'}")


def device_wall(recs: Sequence[dict]) -> str:
    """The device seconds of every run whose records are in ``recs`` (each run ends with a ``done`` record)."""
    runs = [r for r in recs if r.get("done")]
    if not runs:
        return "did not finish (cut short; the rows below are those it wrote)"
    return f"{sum(r['seconds'] for r in runs):.0f} s" + (f" in {len(runs)} device runs" if len(runs) > 1 else "")


def check_back(out: str) -> str:
    """One line with what ``out`` brings back; exits with it when it exceeds the limits."""
    sizes = [os.path.getsize(os.path.join(root, f)) for root, _, fs in os.walk(out) for f in fs]
    line = f"result {out}: {fmt_bytes(sum(sizes))} in {len(sizes)} files (largest {fmt_bytes(max(sizes, default=0))})"
    if sum(sizes) > BACK_LIMIT or len(sizes) > BACK_FILES or max(sizes, default=0) > FILE_LIMIT:
        sys.exit(f"error: {line}: over the limits ({BACK_FILES} files of at most 16 MiB, 64 MiB in all)")
    return line


def default_encoder() -> str:
    from xmc.neural.configs import default_model_path

    return default_model_path()


def save_encoder_fp16(model_path: str | None, out: str, pooling: str = "mean", last_layers: int = 1) -> None:
    """The encoder at ``model_path`` (default: packaged MiniLM) as fp16 safetensors + tokenizer into ``out``."""
    from xmc.models.xtransformer.stage import _save_encoder
    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder

    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=model_path, pooling=pooling,
                                                        last_layers=last_layers))
    _save_encoder(encoder, out, "float16")


def window_cut(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[str], int]:
    """Each text cut after the last character its first ``max_length`` tokens cover ([CLS] and [SEP] included).

    The cut text tokenises, truncated, to exactly the token ids of the whole text truncated (checked
    here; a text whose ids would differ is kept whole). Returns (texts, how many were kept whole
    because of that check).
    """
    from xmc.neural.encoder import window_prefix

    texts = list(texts)
    if not texts:
        return [], 0

    def encode(batch):
        return tokenizer(batch, truncation=True, max_length=max_length, return_offsets_mapping=True,
                         return_attention_mask=False, return_token_type_ids=False)

    # Long texts: offsets of the prefix that TextEncoder.pretokenize tokenises (same ids, less work).
    prefixes = [window_prefix(t, max_length) for t in texts]
    enc = encode(prefixes)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    redo = [i for i, (t, p, row) in enumerate(zip(texts, prefixes, ids)) if len(p) < len(t) and len(row) < max_length]
    if redo:
        again = encode([texts[i] for i in redo])
        for j, i in enumerate(redo):
            ids[i], offsets[i] = again["input_ids"][j], again["offset_mapping"][j]
    cut = []
    for text, offs in zip(texts, offsets):
        ends = [e for s, e in offs if e > s]
        cut.append(text[: max(ends)] if ends else "")
    again = tokenizer(cut, truncation=True, max_length=max_length, return_attention_mask=False,
                      return_token_type_ids=False)["input_ids"]
    kept_whole = 0
    for i, (a, b) in enumerate(zip(again, ids)):
        if a != b:
            cut[i], kept_whole = texts[i], kept_whole + 1
    return cut, kept_whole


def write_jsonl_gz(path: str, records: Iterable[dict]) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def cut_dataset_records(tokenizer, ds, fields: Sequence[str], max_length: int, extra: dict | None = None) -> tuple[list[dict], int]:
    """JSONL records of an :class:`XMCDataset` with each of ``fields`` window-cut (see :func:`window_cut`)."""
    columns, whole = {}, 0
    source = {"title": ds.titles, "description": ds.descriptions, "text": ds.texts}
    for field in fields:
        values = source[field]
        if values is None:
            continue
        columns[field], w = window_cut(tokenizer, [v or "" for v in values], max_length)
        whole += w
    records = []
    for i in range(len(ds)):
        r = {"id": ds.ids[i], **{f: columns[f][i] for f in columns}, "labels": ds.label_names_of(i)}
        if ds.categories is not None:
            r["category"] = ds.categories[i]
        records.append(r)
    return records, whole


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def environment_line() -> str:
    import torch

    return (f"Machine: {gpu_name()}, {platform.platform()}, {os.cpu_count()} CPU cores; Python "
            f"{platform.python_version()}, torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")


def claim(name: str, value: float, baseline: float, needed: float, unit: str = "P@1") -> str:
    """'held' / 'not held' with the margin (values in [0, 1]; the margin in points). A claim of a gain
    of at least ``needed`` points; with ``needed`` 0 ("beats") a tie is not held."""
    gain = 100 * (value - baseline)
    held = gain > needed if needed == 0 else gain >= needed
    return (f"**{name}: {'held' if held else 'not held'}** ({unit} {100 * value:.2f} vs {100 * baseline:.2f}: "
            f"{gain:+.2f} points, needed {needed:+.2f}; margin {gain - needed:+.2f})")


@contextlib.contextmanager
def timer(store: dict, key: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        store[key] = round(time.perf_counter() - t, 1)


def write_json(path: str, value) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=1, default=float)


def read_json(path: str):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def fresh_dir(path: str, overwrite: bool, marker: str) -> str:
    """``path`` made empty for a new output; an existing one is replaced only with ``overwrite`` and only
    when it holds ``marker`` (written by these scripts), so nothing else is ever removed."""
    import shutil

    if os.path.lexists(path):
        if not os.path.isfile(os.path.join(path, marker)):
            sys.exit(f"error: {path} exists and is not an output of these scripts (no {marker}); choose another path")
        if not overwrite:
            sys.exit(f"error: {path} exists; pass --overwrite to replace it")
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def tiny_bert(directory: str, texts: Sequence[str], layers: int = 2) -> str:
    """A random 2-layer BERT whose vocabulary is the words of ``texts`` (the test suite's fixture), for --smoke."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from conftest import build_tiny_bert

    os.makedirs(directory, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()})
    return build_tiny_bert(directory, words, hidden_size=32, intermediate_size=64, layers=layers)


def markdown_section_write(section: str, body: str, title: str) -> None:
    """Replace block ``section`` of BENCHMARKS.md (benchmarks/markdown_section.py)."""
    import markdown_section

    markdown_section.write_section(section, body, title)


def run_steps(args, prepare, device, report, section: str, title: str, name: str) -> int:
    """The prepare / device / report / smoke steps of a script whose device step is its own code.

    ``smoke`` runs all three on the CPU in a temporary directory; ``report --write`` replaces the
    script's BENCHMARKS.md block (never for a smoke run's figures).
    """
    if args.step == "smoke":
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"gpu-smoke-{name}-") as tmp:
            args.bundle, args.out, args.device = os.path.join(tmp, "bundle"), os.path.join(tmp, "out"), "cpu"
            prepare(args)
            device(args)
            print(report(args))
        print(f"smoke finished in {time.perf_counter() - t0:.1f} s")
        return 0
    if args.step == "prepare":
        prepare(args)
        return 0
    if not args.out:
        sys.exit(f"error: {args.step} needs --out")
    if args.step == "device":
        return device(args)
    text = report(args)
    print(text)
    if args.write and not args.smoke:
        markdown_section_write(section, text, title)
    return 0
