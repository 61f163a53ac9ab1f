"""A new user's first ``xmc train`` + ``xmc predict``: with and without ``python -m xmc.precompile``.

numba caches xmc's compiled kernels; a fresh install has none, so the first run compiles them.
Each case runs the CLI as fresh processes on bibtex (XC sparse, the README's example) with its
own empty ``NUMBA_CACHE_DIR`` (the checkout's own cache is never touched):

* ``uncompiled``: the first train + predict with an empty cache (what a plain pip install gave);
* ``after precompile``: ``python -m xmc.precompile`` first (``make setup`` runs it), then the
  first train + predict;
* ``cached``: train + predict again with that cache (median of ``--repeats``).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_first_run.py [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from markdown_section import write_section  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "bibtex")


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _train_predict(work: str, env: dict[str, str], tag: str) -> tuple[float, float]:
    xmc = [sys.executable, "-m", "xmc.cli.main", "-q"]
    model, pred = os.path.join(work, f"model-{tag}"), os.path.join(work, f"pred-{tag}.jsonl")
    train = _timed(xmc + ["train", "--model", "xr-linear", "--train", os.path.join(DATA, "train_xc.txt"),
                          "--out", model], env)
    predict = _timed(xmc + ["predict", "--model", model, "--input", os.path.join(DATA, "test_xc.txt"),
                            "--out", pred], env)
    return train, predict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="xmc-first-run-") as work:
        def env_with(cache: str) -> dict[str, str]:
            return {**os.environ, "NUMBA_CACHE_DIR": cache, "OMP_WAIT_POLICY": "PASSIVE"}

        cold = env_with(os.path.join(work, "cache-cold"))
        rows.append(("uncompiled (empty numba cache)", *_train_predict(work, cold, "cold"), None))
        warm = env_with(os.path.join(work, "cache-precompiled"))
        precompile_s = _timed([sys.executable, "-m", "xmc.precompile"], warm)
        rows.append(("first run after `python -m xmc.precompile`", *_train_predict(work, warm, "first"),
                     precompile_s))
        again = [_train_predict(work, warm, f"again{i}") for i in range(args.repeats)]
        rows.append((f"cached (median of {args.repeats})", statistics.median(t for t, _ in again),
                     statistics.median(p for _, p in again), None))
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after. "
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `python benchmarks/bench_first_run.py --repeats "
        f"{args.repeats} --write`. Each step is a fresh `xmc` process on bibtex (XC sparse), its own "
        "`NUMBA_CACHE_DIR`.",
        "",
        "| case | xmc train (s) | xmc predict (s) | precompile (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, train, predict, pre in rows:
        lines.append(f"| {name} | {train:.2f} | {predict:.2f} | {'' if pre is None else f'{pre:.1f}'} |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("first_run", body, "First run: numba compilation at set-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
