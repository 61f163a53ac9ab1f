"""Timing benchmark of xmc.metrics on an XMC-sized evaluation.

6,000 test documents x 4,271 labels, top-100 random predictions per document
(seeded), 1-8 true labels per document (about half drawn from the document's
predictions so the metrics are not trivially zero).  Times ``ranking_report``
(P/R/nDCG/PSP/PSnDCG at 1, 3, 5, one top-k pass) and the thresholded
micro/macro P/R/F1, median of 5 runs each.  Goal: total < 2 s.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py            # print the table
    .venv/bin/python benchmarks/bench_metrics.py --write    # also update BENCHMARKS.md

``--write`` replaces only the text between ``<!-- bench_metrics:start -->``
and ``<!-- bench_metrics:end -->`` in BENCHMARKS.md (appending a
``## Metrics`` section with those markers when absent, creating the file when
missing); every other section of the file is left untouched.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

from xmc.metrics import jain_propensity, macro_prf, micro_prf, ranking_report, threshold_scores

import markdown_section  # benchmarks/ is the script's directory

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MD = REPO / "BENCHMARKS.md"


def make_problem(n: int = 6000, L: int = 4271, topk: int = 100, seed: int = 0):
    """Seeded random truth ``(n, L)``, top-``topk`` scores ``(n, L)`` and propensities ``(L,)``."""
    rng = np.random.default_rng(seed)
    # top-k distinct random labels per row: the k smallest of random keys
    pred = np.argpartition(rng.random((n, L), dtype=np.float32), topk, axis=1)[:, :topk]
    scores = sp.csr_matrix(
        (rng.random(n * topk, dtype=np.float32), pred.ravel(), np.arange(0, n * topk + 1, topk)),
        shape=(n, L),
    )
    scores.sort_indices()
    # truth: 1..8 labels per row, each either one of the row's predictions or a random label
    m = rng.integers(1, 9, size=n)
    rows = np.repeat(np.arange(n), m)
    from_pred = rng.random(rows.size) < 0.5
    cols = np.where(from_pred, pred[rows, rng.integers(0, topk, size=rows.size)],
                    rng.integers(0, L, size=rows.size))
    Y = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, L))
    Y.sum_duplicates()
    Y.data[:] = 1
    train_counts = rng.zipf(1.5, size=L).clip(max=60000) - 1  # heavy tail, some zeros
    prop = jain_propensity(train_counts, 60000)
    return Y, scores, prop


def _median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(runs: int = 5, command: str = "python benchmarks/bench_metrics.py") -> tuple[str, dict]:
    Y, S, prop = make_problem()
    n, L = Y.shape

    def ranking():
        return ranking_report(Y, S, ks=(1, 3, 5), propensities=prop)

    def classification():
        P = threshold_scores(S, 0.5)
        return micro_prf(Y, P), macro_prf(Y, P)

    def total():
        return ranking(), classification()

    ranking()  # warm-up (imports, page faults)
    t_rank, rep = _median_time(ranking, runs)
    t_cls, (mi, ma) = _median_time(classification, runs)
    t_total, _ = _median_time(total, runs)

    lines = [
        f"Problem: {n:,} documents x {L:,} labels, top-100 random predictions per document "
        f"({S.nnz:,} scores), {Y.nnz:,} true labels; seed 0. Median of {runs} runs; each row is timed on its own.",
        "",
        "| step | median time (s) |",
        "|---|---:|",
        f"| `ranking_report` (P/R/nDCG/PSP/PSnDCG @1,3,5) | {t_rank:.3f} |",
        f"| `threshold_scores` + `micro_prf` + `macro_prf` | {t_cls:.3f} |",
        f"| **total** (goal < 2 s) | **{t_total:.3f}** |",
        "",
        f"Sanity values: P@1 = {100 * rep['P@1']:.2f}, nDCG@5 = {100 * rep['nDCG@5']:.2f}, "
        f"PSP@5 = {100 * rep['PSP@5']:.2f}, micro-F1@0.5 = {100 * mi[2]:.2f}, "
        f"macro-F1@0.5 = {100 * ma[2]:.2f}.",
        "",
        f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"os.cpu_count() = {os.cpu_count()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}.",
        "",
        f"Command: `{command}` (from the repository root).",
    ]
    return "\n".join(lines), {"ranking_s": t_rank, "classification_s": t_cls, "total_s": t_total}


def write_section(md_path: Path, body: str) -> None:
    """Replace the text between the markers in ``md_path``, touching nothing else."""
    markdown_section.write_section("metrics", body, "Metrics", md_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="update the metrics section of BENCHMARKS.md")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--md", type=Path, default=DEFAULT_MD, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    command = ".venv/bin/python benchmarks/bench_metrics.py" + (" --write" if args.write else "")
    if args.runs != 5:
        command += f" --runs {args.runs}"
    body, _ = run(args.runs, command)
    print(body)
    if args.write:
        write_section(args.md, body)
        print(f"\nupdated {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
