"""GUDN's ablation at a GPU budget: 20,000 EURLEX57K documents, 3 epochs, fine-tuned end to end, with the
E_t collapse column.

Claims (GUDN, Wang et al.; issue 22): each guide improves on the encoder-only model (LightXML): the
rows ``lightxml``, ``feature`` (+ L_feature), ``link`` (+ L_link) and ``gudn`` (both), the four rows of
the paper's ablation; and, from this project's CPU runs (BENCHMARKS.md, "does it collapse the text
features?"), whether the feature guide still collapses the text features E_t when the classification
loss gets a real budget (column "E_t cos": mean cosine between two test documents' E_t; the
pre-trained encoder's value is printed under the table). The best XR-Linear config of BENCHMARKS.md
(``configs/xr-linear-accurate.json``) is trained by ``report`` on the same 20,000 documents on the CPU.

Three steps, one command each (README.md beside this file has them verbatim):

1. ``prepare`` (CPU, ~2 min): the seeded subsets of ``bench_gudn.eurlex_subsets`` (20,000 train,
   1,000 dev, all 6,000 test), title and text cut after the last character their first 128 tokens
   cover (:func:`common.window_cut`, checked per text), the full training set's label vocabulary and
   counts (the PSP propensities), the EUROVOC label texts' source files and MiniLM in fp16.
2. on the GPU: ``python3 benchmarks/gpu/gudn_eurlex.py device --out $OUT``: ``bench_gudn.run_row``
   for each row on the bundle's data; each row's metrics appended to ``$OUT/gudn.jsonl`` as it
   finishes; a row is skipped when the time left would not cover it.
3. ``report`` (CPU): the XR-Linear row, ``bench_gudn.markdown``'s table, the claims, BENCHMARKS.md.

Sizing (H100, all-MiniLM-L6-v2 at 128 tokens, bf16: fine-tuning 1,784 samples/s, encoding 3,063
documents/s; the guides run the encoder over each batch's label texts too, about twice the cost)::

    lightxml                     3 epochs x 20,000 / 1,784          =  34 s
    feature, link, gudn          3 x (3 x 20,000 x 2 / 1,784)       = 202 s
    dev validation per epoch     4 rows x 3 x 1,000 / 3,063         =   4 s
    test: predict + E_t + zero-shot, 4 rows x 2 x 6,000 / 3,063     =  16 s
    k-means, label texts, loading                                  ~  30 s
    total                                                          ~ 4.8 min of the 10-minute command

Transfer: MiniLM fp16 45.4 MB + 27,000 window-cut documents gzipped (~8 MB) + label files (0.3 MB)
~ 52 MiB sent (+ the repository); back: one JSON lines file of a few KB.

Smoke (CPU, a random tiny BERT, 200 documents; well under a minute)::

    python benchmarks/gpu/gudn_eurlex.py smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

import common
from common import (BUNDLES, DATA_ROOT, H100_ENCODE_PER_S, H100_FINETUNE_PER_S, REPO, check_send, claim,
                    environment_line, fresh_dir, read_json, tiny_bert, write_json)

import bench_gudn as bg  # noqa: E402

NAME = "gudn_eurlex"
ROWS = ("lightxml", "feature", "link", "gudn")
SECTION, TITLE = "gpu_gudn_eurlex", "GUDN ablation at a GPU budget (EURLEX57K, 20,000 documents)"
MARKER = "plan.json"
LABEL_FILES = ("eurovoc_descriptors.json.gz", "label_ids.txt", "labels.txt")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "device", "report", "smoke"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (a random tiny BERT)")
    p.add_argument("--data", default=os.path.join(DATA_ROOT, "eurlex57k"))
    p.add_argument("--bundle", default=os.path.join(BUNDLES, NAME))
    p.add_argument("--out", help="device: where the results go ($OUT); report: that folder as it came back")
    p.add_argument("--train-docs", type=int, default=20000)
    p.add_argument("--dev-docs", type=int, default=1000)
    p.add_argument("--test-docs", type=int, default=0, help="0 = all 6,000")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--leaf-size", type=int, default=64)
    p.add_argument("--b", type=int, default=10)
    p.add_argument("--label-source", choices=("names", "eurovoc"), default="eurovoc")
    p.add_argument("--deadline-s", type=float, default=540.0, help="device: start no row that would end later")
    common.add_rows_option(p, ROWS, "gudn.jsonl")
    p.add_argument("--model-path", help="encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--best-xr-config", default=os.path.join(REPO, "configs", "xr-linear-accurate.json"))
    p.add_argument("--device", default="auto")
    p.add_argument("--device-command", default="")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    common.check_rows(p, args, ROWS)
    if args.smoke or args.step == "smoke":
        args.smoke = True
        args.train_docs, args.dev_docs, args.test_docs = 120, 30, 60
        args.max_length, args.epochs, args.batch_size, args.leaf_size = 32, 1.0, 16, 16
    return args


def bench_args(args, data, model_path) -> argparse.Namespace:
    """The namespace bench_gudn's functions read."""
    return argparse.Namespace(data=data, seed=0, train_docs=args.train_docs, dev_docs=args.dev_docs,
                              test_docs=args.test_docs, label_source=args.label_source, model_path=model_path,
                              max_length=args.max_length, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, head_lr=args.head_lr, leaf_size=args.leaf_size, b=args.b,
                              device=args.device, progress=False, threads=os.cpu_count() or 1)


def estimate_seconds(n_train, n_dev, n_test, epochs, mean_tokens) -> float:
    scale = max(0.25, mean_tokens / 128)
    train = epochs * n_train / H100_FINETUNE_PER_S * (1 + 2 + 2 + 2)
    encode = (len(ROWS) * epochs * n_dev + len(ROWS) * 2 * n_test) / H100_ENCODE_PER_S
    return (train + encode) * scale + 30


def prepare(args) -> dict:
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    fresh_dir(args.bundle, args.overwrite, MARKER)
    train_full, train, dev, test = bg.eurlex_subsets(bench_args(args, args.data, None))
    model_path = args.model_path or common.default_encoder()
    if args.smoke:
        model_path = tiny_bert(os.path.join(args.bundle, "tiny-bert-source"), train.input_texts(), layers=4)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    whole, lengths = 0, None
    for split, ds in (("train", train), ("dev", dev), ("test", test)):
        records, w = common.cut_dataset_records(tokenizer, ds, ["title", "text"], args.max_length)
        whole += w
        common.write_jsonl_gz(os.path.join(args.bundle, f"{split}.jsonl.gz"), records)
        if split == "train":
            lengths = np.array([len(i) for i in tokenizer(ds.input_texts(), truncation=True,
                                                          max_length=args.max_length)["input_ids"]])
    for f in LABEL_FILES:
        shutil.copy(os.path.join(args.data, f), os.path.join(args.bundle, f))
    write_json(os.path.join(args.bundle, "label_space.json"),
               {"names": train_full.labels.names, "counts": train_full.label_counts().tolist(),
                "n_full": len(train_full)})
    common.save_encoder_fp16(model_path, os.path.join(args.bundle, "encoder"), pooling="cls-concat", last_layers=5)
    if args.smoke:
        shutil.rmtree(os.path.join(args.bundle, "tiny-bert-source"))
    est = estimate_seconds(len(train), len(dev), len(test), args.epochs, float(lengths.mean()))
    plan = {k: getattr(args, k) for k in ("max_length", "epochs", "batch_size", "lr", "head_lr", "leaf_size", "b",
                                          "label_source")}
    plan.update(rows=list(ROWS), train=len(train), dev=len(dev), test=len(test), n_full=len(train_full),
                mean_tokens=float(lengths.mean()), kept_whole=whole, estimated_device_seconds=round(est))
    write_json(os.path.join(args.bundle, MARKER), plan)
    print(check_send(args.bundle, args.smoke))
    print(f"{len(train)} train, {len(dev)} dev, {len(test)} test documents, {plan['mean_tokens']:.0f} tokens each on "
          f"average; device time estimated {est / 60:.1f} min; prepared in {time.perf_counter() - t0:.0f} s")
    return plan


def load_bundle(bundle: str, plan: dict):
    """bench_gudn.load's outputs from the bundle: (counts, n_full, train, dev, test, label texts)."""
    from xmc.data import read_jsonl, read_label_texts
    from xmc.data.dataset import LabelVocabulary
    from xmc.data.label_sources import eurovoc_label_texts

    space = read_json(os.path.join(bundle, "label_space.json"))
    vocab = LabelVocabulary(space["names"])  # the full training set's labels, as bench_gudn's subsets keep
    train = read_jsonl(os.path.join(bundle, "train.jsonl.gz"), labels=vocab)
    dev = read_jsonl(os.path.join(bundle, "dev.jsonl.gz"), labels=vocab)
    test = read_jsonl(os.path.join(bundle, "test.jsonl.gz"), labels=vocab)
    if plan["label_source"] == "eurovoc":
        texts = eurovoc_label_texts(os.path.join(bundle, "eurovoc_descriptors.json.gz"), test.labels,
                                    label_ids=os.path.join(bundle, "label_ids.txt"))
    else:
        texts = read_label_texts(os.path.join(bundle, "labels.txt"), test.labels)
    train.label_texts = texts[:len(train.labels)]
    return np.asarray(space["counts"]), space["n_full"], train, dev, test, texts


def _apply_plan(args, plan):
    for k in ("max_length", "epochs", "batch_size", "lr", "head_lr", "leaf_size", "b", "label_source"):
        setattr(args, k, plan[k])


def device(args) -> int:
    """On the GPU: every row, its metrics appended to OUT/gudn.jsonl as it finishes."""
    from xmc.metrics import train_propensities

    started = time.perf_counter()
    plan = read_json(os.path.join(args.bundle, MARKER))
    _apply_plan(args, plan)
    os.makedirs(args.out, exist_ok=True)
    log = os.path.join(args.out, "gudn.jsonl")
    ns = bench_args(args, args.bundle, os.path.join(args.bundle, "encoder"))
    counts, n_full, train, dev, test, texts = load_bundle(args.bundle, plan)
    propensities = train_propensities(counts, n_full)
    gpu = common.gpu_name()
    common.append_jsonl(log, {"pretrained_E_t_cos": bg.pretrained_cosine(ns, test), "gpu": gpu})
    per_unit = None  # seconds of the last row per (document x epoch x guide factor)
    for row in [r for r in plan["rows"] if args.rows is None or r in args.rows]:
        factor = 1 if row == "lightxml" else 2
        need = (per_unit or 0) * len(train) * plan["epochs"] * factor
        left = args.deadline_s - (time.perf_counter() - started)
        if need > left:
            rec = {"row": row, "skipped": f"needs ~{need:.0f} s, {left:.0f} s left"}
        else:
            report, zs, train_s, predict_s, history = bg.run_row(row, ns, train, dev, test, texts, propensities)
            per_unit = train_s / (len(train) * plan["epochs"] * factor)
            rec = {"row": row, "report": report, "zero_shot": zs, "train_s": train_s, "predict_s": predict_s,
                   "history": history, "gpu": gpu}
            print(f"{row}: P@1 {100 * report['P@1']:.2f} E_t cos {report['E_t_cos']:.4f} ({train_s:.0f} s)", flush=True)
        common.append_jsonl(log, rec)
    common.finish_log(log, started, gpu)
    print(common.check_back(args.out))
    return 0


def report(args) -> str:
    from xmc.metrics import evaluate, train_propensities
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    recs = [json.loads(line) for line in open(os.path.join(args.out, "gudn.jsonl"), encoding="utf-8")]
    plan = read_json(os.path.join(args.bundle, MARKER))
    _apply_plan(args, plan)
    counts, n_full, train, dev, test, texts = load_bundle(args.bundle, plan)
    propensities = train_propensities(counts, n_full)
    results = {r["row"]: {k: v for k, v in r.items() if k != "row"} for r in recs if "report" in r}
    skipped = [f"{r['row']} ({r['skipped']})" for r in recs if "skipped" in r and r["row"] not in results]
    pre = next((r for r in recs if "pretrained_E_t_cos" in r), {})
    gpu = pre.get("gpu", "?")
    cfg = XRLinearConfig.from_json(args.best_xr_config) if not args.smoke else XRLinearConfig()
    t = time.perf_counter()
    xr = XRLinear(cfg).fit(train, progress=False)
    xr_fit = time.perf_counter() - t
    L = len(xr.labels_)
    xr_report = evaluate(test.Y[:, :L], xr.predict(test, topk=5), ks=(1, 3, 5), propensities=propensities)
    xr_name = os.path.basename(args.best_xr_config) if not args.smoke else "default config"
    ns = bench_args(args, args.bundle, None)
    wall = common.device_wall(recs)
    parts = [("**Smoke scale (CPU, random tiny BERT): not a result.** " if args.smoke else "")
             + f"{environment_line()} (report). The device command ran on **{gpu}**: {wall}.",
             f"Budget: {plan['train']:,} training documents (seeded subset of {n_full:,}), {plan['dev']:,} dev "
             f"documents for the kept state, {plan['test']:,} test documents; all-MiniLM-L6-v2 (fp16 in the "
             f"bundle, bf16 on the GPU; E_t = [CLS] of the last 5 layers), {plan['max_length']} tokens (window-cut "
             f"on the CPU), {plan['epochs']:g} epochs, batch {plan['batch_size']}, lr {plan['lr']:g} (heads "
             f"{plan['head_lr']:g}), leaves of <= {plan['leaf_size']} labels, b = {plan['b']}; label text: "
             f"{'EUROVOC descriptors + alternative names' if plan['label_source'] == 'eurovoc' else 'names'}.",
             "Commands: `python benchmarks/gpu/gudn_eurlex.py prepare`; on the GPU "
             f"`{args.device_command or 'PYTHONPATH=src python3 benchmarks/gpu/gudn_eurlex.py device --out $OUT'}`; "
             "`python benchmarks/gpu/gudn_eurlex.py report --out RESULT --write`.",
             bg.markdown(results, ns, n_full)
             + f"\n| XR-Linear ({xr_name}), CPU | " + " | ".join(f"{100 * xr_report[k]:.2f}" for k in
                                                                ("P@1", "P@3", "P@5", "PSP@1", "PSP@3", "PSP@5"))
             + f" | 0.00 |  |  | {xr_fit:.0f} |  |",
             f"E_t cos of the pre-trained encoder on the same test documents: {pre.get('pretrained_E_t_cos', float('nan')):.4f}."]
    if skipped:
        parts.append("Skipped on the device: " + "; ".join(skipped) + ".")
    claims = []
    base = results.get("lightxml", {}).get("report")
    for row, label in (("feature", "+ feature guide"), ("link", "+ link guide"), ("gudn", "GUDN (both guides)")):
        if base and row in results:
            claims.append(claim(f"{label} beats LightXML", results[row]["report"]["P@1"], base["P@1"], 0.0))
    if "gudn" in results:
        claims.append(claim(f"GUDN beats XR-Linear ({xr_name}) on the same split", results["gudn"]["report"]["P@1"],
                            xr_report["P@1"], 0.0))
    if "feature" in results and pre:
        cos = results["feature"]["report"]["E_t_cos"]
        ok = cos <= pre["pretrained_E_t_cos"]
        claims.append(f"**the feature guide leaves E_t uncollapsed: {'held' if ok else 'not held'}** (E_t cos "
                      f"{cos:.4f} against the pre-trained encoder's {pre['pretrained_E_t_cos']:.4f}; margin "
                      f"{pre['pretrained_E_t_cos'] - cos:+.4f})")
    parts.append("Claims: " + "; ".join(claims) + ".")
    return "\n\n".join(parts)


def main(argv=None) -> int:
    return common.run_steps(parse(argv), prepare, device, report, SECTION, TITLE, "gudn")

if __name__ == "__main__":
    sys.exit(main())
