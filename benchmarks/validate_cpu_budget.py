"""Choose the CPU budget's settings on validation data carved from the training sample (never test).

    python benchmarks/validate_cpu_budget.py [--docs 800] [--models lightxml,gudn] [--grid 0.01:5,0.01:10]
    python benchmarks/validate_cpu_budget.py --models gudn --folds 5 \\
        --candidates "default;encoder.pooling=mean;encoder.pooling=mean&encoder.max_length=512"

Every candidate is the model's CPU defaults (``"auto"`` resolved for a CPU: frozen encoder, cached
features) with some values overridden, fitted on the same seeded EURLEX57K training sample as
``bench_cpu_defaults.py``.

* ``--grid head_lr:patience,...`` (the first selection): one fit per cell; the figure is the best
  P@1 on the model's own validation split (``train.valid_fraction`` of the sample, 80 documents).
* ``--folds K --candidates A;B;...`` (each candidate ``dotted.key=value&...`` or ``default``): K-fold
  cross-validation over the whole sample. Each fold's model early-stops on its held-out fold
  (passed as ``valid``) and is then scored there (P@1 / P@5 of its kept state); the figure is the mean
  over the folds (all 800 documents scored once), with the per-fold values. 80 documents separate
  P@1 only in steps of 1.25 points with a standard error of about 5; 800 give 0.125 and about 1.7.

The encoder is frozen under these budgets, so a text's features do not depend on the fold: they
are memoised in this process (keyed by the encoder settings and the token ids) and each text is
encoded once per encoder setting, not once per fold. Prints one JSON line per fold and candidate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from bench_cpu_defaults import DATA, sample_lines  # noqa: E402


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides(candidate: str) -> dict:
    """``a.b=1&c=x`` -> {"a": {"b": 1}, "c": "x"} (``default``: no override)."""
    out: dict = {}
    if candidate.strip() in ("", "default"):
        return out
    for item in candidate.split("&"):
        key, value = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _parse_value(value.strip())
    return out


def memoise_frozen_features() -> None:
    """Memoise the frozen encoder's per-text outputs across fits (see the module docstring)."""
    import torch

    from xmc.models.gudn import network as gudn_network

    memo: dict[bytes, np.ndarray] = {}

    def wrap(compute, tag: str):
        def cached(network, tokens, batch_size, device, amp, progress):
            enc = network.encoder.config
            prefix = f"{tag}|{enc.model_path}|{enc.pooling}|{enc.last_layers}|{getattr(network, 'label_layers', 0)}|"

            def key(ids) -> bytes:
                return hashlib.sha1((prefix + ",".join(map(str, ids))).encode()).digest()

            keys = [key(ids) for ids in tokens]
            missing = list({k: i for i, k in enumerate(keys) if k not in memo}.values())
            if missing:
                values = compute(network, [tokens[i] for i in missing], batch_size, device, amp, progress)
                for i, row in zip(missing, values.cpu().numpy()):
                    memo[keys[i]] = row
            return torch.from_numpy(np.stack([memo[k] for k in keys])).to(device)

        return cached

    gudn_network._frozen_features = wrap(gudn_network._frozen_features, "text")
    gudn_network._frozen_label_states = wrap(gudn_network._frozen_label_states, "label")


def _predict_memoised(model, data):
    """``model.predict(data, topk=5)`` over the memoised features (the frozen encoder saw them in fit)."""
    from xmc.models.gudn import network as gudn_network

    net, cfg = model.network_, model.config
    net.eval()
    features = gudn_network._frozen_features(net, net.encoder.pretokenize(data.input_texts(cfg.text_fields)),
                                             cfg.encoder.batch_size, next(net.parameters()).device, cfg.train.amp,
                                             False)
    return gudn_network.predict_scores(net, None, model._leaves(), topk=5, beam_size=cfg.predict.beam_size,
                                       features=features)


def run_grid(args, data, name: str) -> None:
    from xmc.models.registry import model_class

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


def run_folds(args, data, name: str) -> None:
    from xmc.metrics import evaluate
    from xmc.models.registry import model_class

    cls = model_class(name)
    memoise_frozen_features()
    folds = np.array_split(np.random.default_rng(args.fold_seed).permutation(len(data)), args.folds)
    for candidate in args.candidates.split(";"):
        config = cls.config_class.from_dict(overrides(candidate))
        p1, p5, steps, seconds = [], [], [], []
        for f, held in enumerate(folds):
            rest = np.sort(np.concatenate([folds[g] for g in range(args.folds) if g != f]))
            fit_data, valid = data.subset(rest), data.subset(np.sort(held))
            t = time.perf_counter()
            model = cls(config).fit(fit_data, valid=valid, progress=False)
            seconds.append(time.perf_counter() - t)
            report = evaluate(valid.Y, _predict_memoised(model, valid), ks=(1, 5))
            p1.append(report["P@1"])
            p5.append(report["P@5"])
            steps.append(model.history_["steps"])
            print(json.dumps({"model": name, "candidate": candidate, "fold": f, "P@1": report["P@1"],
                              "P@5": report["P@5"], "steps": steps[-1], "kept": model.history_["kept"],
                              "seconds": round(seconds[-1], 1)}), flush=True)
        print(json.dumps({"model": name, "candidate": candidate, "folds": args.folds,
                          "mean_P@1": round(float(np.mean(p1)), 4), "mean_P@5": round(float(np.mean(p5)), 4),
                          "fold_P@1": [round(x, 4) for x in p1], "mean_steps": float(np.mean(steps)),
                          "seconds_per_fold": round(float(np.mean(seconds)), 1), "summary": True}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--models", default="lightxml,gudn")
    parser.add_argument("--grid", default="0.003:2,0.003:5,0.01:5", help="head_lr:patience,... (without --folds)")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation of --candidates (0: --grid)")
    parser.add_argument("--candidates", default="default", help="';'-separated, each 'a.b=v&c=w' or 'default'")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/xmc-bench-cpu-defaults")
    args = parser.parse_args()
    from xmc.data import read_jsonl, read_label_texts

    os.makedirs(args.work, exist_ok=True)
    path = os.path.join(args.work, "eurlex-train.jsonl")
    if not os.path.exists(path):
        sample_lines(os.path.join(DATA, "eurlex57k", "train.jsonl.gz"), path, args.docs, seed=0)
    data = read_jsonl(path)
    data.label_texts = read_label_texts(os.path.join(DATA, "eurlex57k", "labels.txt"), data.labels)
    for name in args.models.split(","):
        if args.folds:
            run_folds(args, data, name)
        else:
            run_grid(args, data, name)


if __name__ == "__main__":
    main()
