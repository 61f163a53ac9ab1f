"""Choose the CPU budget's head-training settings on a validation split of the training data (never test).

    python benchmarks/validate_cpu_budget.py [--docs 800] [--models lightxml,gudn]

For each candidate (head learning rate, patience) the model is fitted with its CPU defaults
(frozen encoder, 256 tokens, 30 epochs at most) on the same seeded EURLEX57K training sample
as ``bench_cpu_defaults.py``; the figure is the best P@1 on the model's own validation split
(``train.valid_fraction`` of that sample), as recorded in its history. Prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from bench_cpu_defaults import DATA, sample_lines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--models", default="lightxml,gudn")
    parser.add_argument("--grid", default="0.003:2,0.003:5,0.01:5", help="head_lr:patience,...")
    parser.add_argument("--work", default="/tmp/xmc-bench-cpu-defaults")
    args = parser.parse_args()
    from xmc.data import read_jsonl, read_label_texts
    from xmc.models.registry import model_class

    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, "eurlex-train.jsonl")
    if not os.path.exists(path):
        sample_lines(os.path.join(DATA, "eurlex57k", "train.jsonl.gz"), path, args.docs, seed=0)
    data = read_jsonl(path)
    data.label_texts = read_label_texts(os.path.join(DATA, "eurlex57k", "labels.txt"), data.labels)
    for name in args.models.split(","):
        cls = model_class(name)
        for cell in args.grid.split(","):
            lr, patience = cell.split(":")
            config = cls.config_class.from_dict({"train": {"head_learning_rate": float(lr), "patience": int(patience)}})
            t = time.perf_counter()
            model = cls(config).fit(data, progress=False)
            h = model.history_
            best = max(e["P@1"] for e in h["evaluations"])
            print(json.dumps({"model": name, "head_lr": float(lr), "patience": int(patience),
                              "valid_best_P@1": best, "kept": h["kept"], "steps": h["steps"],
                              "seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
