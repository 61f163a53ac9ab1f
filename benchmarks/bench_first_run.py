"""A new user's first ``xmc train`` + ``xmc predict``: with and without ``python -m xmc.precompile``.

numba caches xmc's compiled kernels; a fresh install has none, so the first run compiles them.
Each case runs the CLI as fresh processes on bibtex (XC sparse, the README's example) with its
own empty ``NUMBA_CACHE_DIR`` (the checkout's own cache is never touched):

* ``uncompiled``: the first train + predict with an empty cache (what a plain pip install gave);
* ``after precompile``: ``python -m xmc.precompile`` first (``make setup`` runs it), then the
  first train + predict;
* ``cached``: train + predict again with that cache (median of ``--repeats``);
* ``PECOS CLI``: the peer's own commands on the same data, alternating with the cached runs
  (``python -m pecos.xmc.xlinear.train`` / ``.predict``, defaults, top-10 like xmc's default). PECOS
  reads CSR ``.npz`` files, not XC text: the features are written once, L2-normalised as xmc's
  reader normalises them (``normalize_data_features``), before anything is timed. Skipped when
  ``pecos`` is not installed.

Whole commands, not ``fit`` calls: what a user waits for, imports and file parsing included (the
in-process comparison is ``bench_xr_linear.py``).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_first_run.py [--repeats 3] [--write]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

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


def _pecos_inputs(work: str) -> dict[str, str]:
    """bibtex as PECOS's CLI reads it: CSR float32 ``.npz`` files, rows L2-normalised as xmc's reader
    normalises them (``try_peers.load_bibtex``, the same matrices every in-process peer run gets)."""
    import scipy.sparse as sp
    from try_peers import load_bibtex

    X_train, Y_train, X_test, _ = load_bibtex(normalize=True)
    paths = {name: os.path.join(work, f"pecos-{name}.npz") for name in ("X_train", "Y_train", "X_test")}
    for name, matrix in zip(paths, (X_train, Y_train, X_test)):
        sp.save_npz(paths[name], sp.csr_matrix(matrix, dtype=np.float32))
    return paths


def _pecos_train_predict(work: str, env: dict[str, str], inputs: dict[str, str], tag: str) -> tuple[float, float]:
    model, pred = os.path.join(work, f"pecos-model-{tag}"), os.path.join(work, f"pecos-pred-{tag}.npz")
    train = _timed([sys.executable, "-m", "pecos.xmc.xlinear.train", "-x", inputs["X_train"], "-y", inputs["Y_train"],
                    "-m", model], env)
    predict = _timed([sys.executable, "-m", "pecos.xmc.xlinear.predict", "-x", inputs["X_test"], "-m", model,
                      "-o", pred, "-k", "10"], env)
    return train, predict


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
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
        pecos = importlib.util.find_spec("pecos") is not None
        inputs = _pecos_inputs(work) if pecos else {}
        again, peer, comparison = [], [], []
        for i in range(args.repeats):  # alternating, so both see the same machine
            again.append(_train_predict(work, warm, f"again{i}"))
            if pecos:
                peer.append(_pecos_train_predict(work, warm, inputs, f"{i}"))
        cached_train, cached_predict = statistics.median(t for t, _ in again), statistics.median(p for _, p in again)
        rows.append((f"cached (median of {args.repeats})", cached_train, cached_predict, None))
        if pecos:
            peer_train, peer_predict = statistics.median(t for t, _ in peer), statistics.median(p for _, p in peer)
            rows.append((f"PECOS CLI, npz inputs (median of {args.repeats})", peer_train, peer_predict, None))
            comparison = ["", f"Cached xmc against PECOS's CLI: train {cached_train / peer_train:.2f}x, predict "
                              f"{cached_predict / peer_predict:.2f}x (whole commands)."]
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after. "
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `python benchmarks/bench_first_run.py --repeats "
        f"{args.repeats} --write`. Each step is a fresh process on bibtex (xmc: XC sparse, its own "
        "`NUMBA_CACHE_DIR`; PECOS: its CLI on the same features as npz).",
        "",
        "| case | train (s) | predict (s) | precompile (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, train, predict, pre in rows:
        lines.append(f"| {name} | {train:.2f} | {predict:.2f} | {'' if pre is None else f'{pre:.1f}'} |")
    body = "\n".join(lines + comparison)
    print(body)
    if args.write:
        write_section("first_run", body, "First run: numba compilation at set-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
