"""`xmc tune` on real data: does a config chosen on validation folds of train beat the default on test?

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_tune.py --datasets bibtex,ave-wdc_pave --write

For each data set, as a user would run it: ``xmc.tuning.tune`` with its defaults (grid train.C =
0.5, 1, 2, 4; 5 folds below 10,000 training documents, else one 10% split; best by nDCG@5) on the
training file only; then the default config and the tuned one are each trained on the whole
training file and scored once on the test file (xmc.metrics; PSP from training counts). The test
file never takes part in the choice. Results are kept as JSON in ``--results-dir``
(``benchmarks/results/tune``, committed); ``--write`` rebuilds the ``tune`` section of
BENCHMARKS.md from all of them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)

import markdown_section  # noqa: E402
from bench_xr_linear import machine  # noqa: E402

DATA = os.path.join(_ROOT, "..", "shared", "data")
METRICS = ("P@1", "P@5", "PSP@5")


def files(name: str) -> tuple[str, str]:
    """(train, test) paths of a data set under ../shared/data: JSONL text sets (gzipped or not, as
    EURLEX57K's), or bibtex's XC files."""
    root = os.path.join(DATA, name)
    for ext in (".jsonl", ".jsonl.gz"):
        if os.path.exists(os.path.join(root, "train" + ext)):
            return os.path.join(root, "train" + ext), os.path.join(root, "test" + ext)
    return os.path.join(root, "train_xc.txt"), os.path.join(root, "test_xc.txt")


def test_scores(config, train, test) -> tuple[dict[str, float], float]:
    """Test P@1 / P@5 / PSP@5 of ``config`` trained on all of ``train``, and the C it trained with."""
    from xmc.metrics import ranking_report, train_propensities
    from xmc.models.xr_linear import XRLinear

    model = XRLinear(config).fit(train, progress=False)
    propensities = train_propensities(train.label_counts(), len(train), test.Y.shape[1])
    report = ranking_report(test.Y, model.predict(test, topk=5), propensities=propensities)
    return {key: report[key] for key in METRICS}, model.config.train.C


def run(name: str) -> dict:
    from xmc.data import read_dataset
    from xmc.models.xr_linear import XRLinearConfig
    from xmc.tuning import tune

    train_path, test_path = files(name)
    train = read_dataset(train_path)
    test = read_dataset(test_path, labels=train.labels)
    t = time.perf_counter()
    result = tune(train, progress=False)
    tune_s = time.perf_counter() - t
    default, auto_C = test_scores(XRLinearConfig(), train, test)
    if set(result.candidates[result.best].overrides) == {"train.C"} and result.config.train.C == auto_C:
        tuned, tuned_C = default, auto_C  # the tuned config is the default's model: no second training
    else:
        tuned, tuned_C = test_scores(result.config, train, test)
    return {"data": name, "train_docs": len(train), "labels": len(train.labels), "folds": result.folds,
            "metric": result.metric, "tune_s": tune_s, "auto_C": auto_C, "tuned_C": tuned_C,
            "validation": [{"overrides": c.overrides, "scores": c.scores} for c in result.candidates],
            "default": default, "tuned": tuned}


def render(results_dir: str) -> str:
    rows = [json.load(open(os.path.join(results_dir, f))) for f in sorted(os.listdir(results_dir))
            if f.endswith(".json")]
    lines = [__doc__.split("\n\n", 2)[2].strip().replace("\n", " "), ""]
    for r in rows:
        lines.append(f"- {r['data']}: {r['date']}, {r['machine']}. Command: `{r['command']}`. Load average "
                     f"{r['loadavg'][0]:.1f} before, {r['loadavg'][1]:.1f} after.")
    lines += ["", "| data | train docs | labels | folds | C: auto / tuned | tune (s) | "
              + " | ".join(f"{m} default / tuned" for m in METRICS) + " | " + " | ".join(f"{m} gain" for m in METRICS)
              + " |", "|---|---:|---:|---:|---|---:|" + "---:|" * (2 * len(METRICS))]
    for r in rows:
        pair = " | ".join(f"{100 * r['default'][m]:.2f} / {100 * r['tuned'][m]:.2f}" for m in METRICS)
        gain = " | ".join(f"{100 * (r['tuned'][m] - r['default'][m]):+.2f}" for m in METRICS)
        lines.append(f"| {r['data']} | {r['train_docs']:,} | {r['labels']:,} | {r['folds']} | "
                     f"{r['auto_C']:g} / {r['tuned_C']:g} | {r['tune_s']:.1f} | {pair} | {gain} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="bibtex,ave-wdc_pave,ave-ae110k_subset,ave-myntra_fashion,ave-implicitave")
    ap.add_argument("--results-dir", default=os.path.join(_HERE, "results", "tune"))
    ap.add_argument("--write", action="store_true", help="rebuild the BENCHMARKS.md section from --results-dir")
    args = ap.parse_args(argv)
    os.makedirs(args.results_dir, exist_ok=True)
    command = markdown_section.invocation()
    for name in [d for d in args.datasets.split(",") if d]:
        load = os.getloadavg()[0]
        result = run(name)
        result.update(date=datetime.date.today().isoformat(), machine=machine(), command=command,
                      loadavg=[load, os.getloadavg()[0]])
        with open(os.path.join(args.results_dir, f"{name}.json"), "w") as f:
            json.dump(result, f, indent=1)
        print(name, {k: result[k] for k in ("folds", "auto_C", "tuned_C", "tune_s", "default", "tuned")}, flush=True)
    if args.write:
        markdown_section.write_section("tune", render(args.results_dir), "XR-Linear: xmc tune against the default")
        print("BENCHMARKS.md updated", flush=True)


if __name__ == "__main__":
    main()
