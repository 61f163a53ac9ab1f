"""Benchmark of the data readers: wall time and peak RSS of loading the real data sets.

Each load runs in a fresh Python subprocess, so its peak RSS (``ru_maxrss``) is
that load's alone (interpreter and imports included; the baseline after the
imports is reported too). The table shows the median time over ``--runs`` runs.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_loading.py [DATA_DIR] [--runs 3] [--write]

``DATA_DIR`` defaults to ``../shared/data`` relative to the repository root.
``--write`` replaces the text between the ``bench_loading`` markers of the
``## Data loading`` section of BENCHMARKS.md (creating the file or the section
when missing) and leaves the other sections alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import markdown_section  # benchmarks/ is the script's directory

REPO_ROOT = Path(__file__).resolve().parents[1]

# (relative path, reader format) — eurlex57k train is the headline case.
CASES = (
    ("eurlex57k/train.jsonl.gz", "jsonl"),
    ("eurlex57k/test.jsonl.gz", "jsonl"),
    ("ave-implicitave/train.jsonl", "jsonl"),
    ("bibtex/train_xc.txt", "xc"),
)


def child(fmt: str, path: str) -> None:
    """Load one file and print timing and memory as JSON (runs in the subprocess)."""
    import numpy  # noqa: F401  (imports are part of the baseline, not of the load)
    import scipy.sparse  # noqa: F401

    from xmc.data import read_dataset

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    ds = read_dataset(path, format=fmt)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "baseline_rss_mib": baseline_kib / 1024,
        "docs": len(ds),
        "labels": len(ds.labels),
        "nnz_y": int(ds.Y.nnz),
    }))


def run_case(path: Path, fmt: str, runs: int) -> dict:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, __file__, "--child", fmt, str(path)],
            check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "docs": results[0]["docs"],
        "labels": results[0]["labels"],
        "labels_per_doc": results[0]["nnz_y"] / max(results[0]["docs"], 1),
        "median_s": statistics.median(r["seconds"] for r in results),
        "min_s": min(r["seconds"] for r in results),
        "max_s": max(r["seconds"] for r in results),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "baseline_rss_mib": statistics.median(r["baseline_rss_mib"] for r in results),
        "size_mib": path.stat().st_size / 2**20,
    }


def cpu_name() -> str:
    name = platform.processor()
    if not name or name in ("x86_64", "aarch64"):
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or platform.machine()


def machine_description() -> str:
    import numpy
    import scipy

    return (
        f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, scipy {scipy.__version__}"
    )


def markdown(rows: list[tuple[str, str, dict]], runs: int, command: str) -> str:
    lines = [
        f"Machine: {machine_description()}.",
        f"Date: {datetime.date.today().isoformat()}. Command (from the repository root): `{command}`",
        "",
        f"Each load runs in a fresh subprocess; time is the median of {runs} runs (min-max in brackets); "
        "peak RSS is the largest `ru_maxrss` of the runs, interpreter and numpy/scipy imports included "
        "(baseline after imports in brackets).",
        "",
        "| file | format | size on disk (MiB) | docs | labels | labels/doc | time (s) | peak RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, fmt, r in rows:
        lines.append(
            f"| {name} | {fmt} | {r['size_mib']:.1f} | {r['docs']:,} | {r['labels']:,} | {r['labels_per_doc']:.2f} "
            f"| {r['median_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f}) "
            f"| {r['peak_rss_mib']:.0f} ({r['baseline_rss_mib']:.0f}) |"
        )
    return "\n".join(lines)


def update_benchmarks_md(path: Path, body: str) -> None:
    """Replace the marked block of the ``## Data loading`` section, keeping everything else."""
    markdown_section.write_section("loading", body, "Data loading", path)


def display_command(argv: list[str]) -> str:
    python = Path(sys.executable)
    try:
        python_shown = str(python.relative_to(REPO_ROOT))
    except ValueError:
        python_shown = "python"
    script = Path(__file__).resolve().relative_to(REPO_ROOT)
    return " ".join([python_shown, str(script), *argv])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", nargs="?", default=str(REPO_ROOT.parent / "shared" / "data"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--benchmarks-md", default=str(REPO_ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    rows = []
    for relative, fmt in CASES:
        path = data_dir / relative
        if not path.exists():
            print(f"skipping {path}: not found", file=sys.stderr)
            continue
        print(f"loading {relative} x{args.runs} ...", file=sys.stderr, flush=True)
        rows.append((relative, fmt, run_case(path, fmt, args.runs)))
    if not rows:
        sys.exit(f"no data found under {data_dir}")
    table = markdown(rows, args.runs, display_command(argv))
    print(table)
    if args.write:
        update_benchmarks_md(Path(args.benchmarks_md), table)
        print(f"updated {args.benchmarks_md}", file=sys.stderr)


if __name__ == "__main__":
    main()
