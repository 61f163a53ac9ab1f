"""XR-Linear's weight storage: one trained model kept as float32, int16 and int8 (size, speed, accuracy).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_weight_dtype.py --datasets eurlex57k,bibtex --write

Per data set, the default config (``configs/xr-linear.json``) is trained once with float32 weights
and rounded to int16 and int8 with ``XRLinear.pruned(weight_dtype=...)``, which equals training
with that ``train.weight_dtype`` (tfn negatives; ``tests/test_xr_linear.py``). Each copy is saved
(its size on disk), reloaded, and timed over the whole test set: rounds alternate the copies, one
batch call each (top-10, beam 10) after an untimed warm-up call, and the median over the rounds is
reported. The accuracy columns measure the stored format on test; the default (int8) was chosen on
validation splits of train (``validate_xr_linear.py --weight-dtypes``), not here. ``--write`` builds
the section from every data set's JSON in ``--results-dir``, so a run of one data set keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import bench_xr_linear  # noqa: E402
import markdown_section  # noqa: E402
import peers  # noqa: E402

DTYPES = ("float32", "int16", "int8")


def run_dataset(name: str, args) -> dict:
    from xmc.models.xr_linear import XRLinear

    X_train, Y_train, X_test, Y_test = bench_xr_linear.load_dataset(name, args.cache_dir)
    with open(os.path.join(_ROOT, "configs", "xr-linear.json")) as f:
        config = json.load(f)
    config["train"]["weight_dtype"] = "float32"
    model, train_s = bench_xr_linear.train_xmc(X_train, Y_train, config=config, threads=args.threads)
    X_test = peers._csr32(X_test)
    tmp = tempfile.mkdtemp(prefix="bench_weight_dtype_")
    try:
        loaded, rows = {}, {}
        for dtype in DTYPES:
            path = os.path.join(tmp, dtype)
            model.pruned(weight_dtype=dtype).save(path)
            loaded[dtype] = XRLinear.load(path)
            loaded[dtype].predict(X_test[:2], topk=10)  # warm-up: numba's cached code
            scores = loaded[dtype].predict(X_test, topk=10, beam_size=10)
            rows[dtype] = {"weights": dtype, "model_bytes": peers._path_bytes(path), "seconds": [],
                           **bench_xr_linear._metrics(scores, Y_test, Y_train)}
        for r in range(args.rounds):
            order = DTYPES if r % 2 == 0 else DTYPES[::-1]
            for dtype in order:
                t = time.perf_counter()
                loaded[dtype].predict(X_test, topk=10, beam_size=10)
                rows[dtype]["seconds"].append(time.perf_counter() - t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows.values():
        row["predict_s"] = statistics.median(row["seconds"])
    return {"dataset": name, "n_test": X_test.shape[0], "train_s": train_s, "rows": [rows[d] for d in DTYPES]}


def markdown(results: list[dict]) -> str:
    """The section: one table over ``results`` (one per data set, each with its own date and command)."""
    lines = [
        "One default model per data set, trained with float32 weights and rounded (`XRLinear.pruned(weight_dtype=...)`, "
        "equal to training with that `train.weight_dtype`); each copy saved, reloaded and timed in alternating "
        "rounds of one batch call over the test set (top-10, beam 10; median). "
        f"Machine: {bench_xr_linear.machine()}.",
        "",
        "| data | weights | model (MB) | model / float32 | predict (ms / 1k docs) | predict / float32 | P@1 | P@3 | P@5 | PSP@5 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        base = res["rows"][0]
        for row in res["rows"]:
            lines.append(
                f"| {res['dataset']} | {row['weights']} | {row['model_bytes'] / 2**20:.1f} | "
                f"{row['model_bytes'] / base['model_bytes']:.2f} | {1000 * row['predict_s'] / res['n_test'] * 1000:.0f} | "
                f"{row['predict_s'] / base['predict_s']:.2f} | {100 * row['P@1']:.2f} | {100 * row['P@3']:.2f} | "
                f"{100 * row['P@5']:.2f} | {100 * row['PSP@5']:.2f} |")
    lines.append("")
    lines += [f"- {res['dataset']}: {res['date']}, `{res['command']}`" for res in results]
    return "\n".join(lines)


def saved_results(results_dir: str) -> list[dict]:
    """Every data set's saved JSON in ``results_dir`` (by name): a run of some data sets keeps the others' rows."""
    out = []
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".json"):
            with open(os.path.join(results_dir, name)) as f:
                out.append(json.load(f))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="eurlex57k,bibtex")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "xmc_peer_cache"))
    ap.add_argument("--results-dir", default=os.path.join(_HERE, "results", "weight_dtype"),
                    help="where each data set's JSON is kept (committed)")
    ap.add_argument("--write", action="store_true", help="replace the bench_weight_dtype block of BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    args.command = "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_weight_dtype.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    args.date = datetime.date.today().isoformat()
    results = []
    os.makedirs(args.results_dir, exist_ok=True)
    for name in args.datasets.split(","):
        results.append({**run_dataset(name, args), "date": args.date, "command": args.command})
        with open(os.path.join(args.results_dir, f"{name}.json"), "w") as f:
            json.dump(results[-1], f, indent=1)
        print(markdown(results), flush=True)
    if args.write:
        markdown_section.write_section("weight_dtype", markdown(saved_results(args.results_dir)),
                                       "XR-Linear: int8 and int16 weights")


if __name__ == "__main__":
    main()
