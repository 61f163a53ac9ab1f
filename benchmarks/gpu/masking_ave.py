"""Label masking at full scale on one GPU: masked vs unmasked vs multi-head BERT on ave-implicitave (all
68,604 training products) and ave-myntra_fashion (all 22,216), fine-tuned end to end.

Claim (Chen et al., label masking; issue 22): restricting the loss and the predictions to the labels
relevant to the product's category (``bert-mask``) beats the same BERT trained without masking and
filtered afterwards (``bert``) and the multi-head model with one output layer per leaf category
(``bert-leaf``), in micro and macro F1; the in-run baseline is XR-Linear filtered by the same
taxonomy (``xr-linear``, run on the CPU by ``report``).

Three steps, one command each (README.md beside this file has them verbatim):

1. ``prepare`` (CPU, ~1 min): every product's title and description cut after the last character its
   first 256 tokens cover (:func:`common.window_cut`: the cut text tokenises to exactly the ids the
   model reads; checked per text), gzip JSONL + taxonomy per dataset, all-MiniLM-L6-v2 in fp16, and
   ``plan.json`` with the epochs that fit (below).
2. on the GPU: ``python3 benchmarks/gpu/masking_ave.py device --out $OUT``: the rows of
   ``bench_masking.run_row`` on the bundle's data, each row's metrics appended to
   ``$OUT/masking.jsonl`` as it finishes (so a run cut short still brings back what it did), a row
   skipped when the time left would not cover it.
3. ``report`` (CPU): the XR-Linear rows, ``bench_masking.markdown``'s tables, the claims, BENCHMARKS.md.

Sizing (H100 throughput of all-MiniLM-L6-v2, bf16: fine-tuning 1,784 samples/s and encoding 3,063
documents/s at 128 tokens; products are short, so a batch costs what its longest product costs,
estimated from the 90th percentile of the token lengths and never counted faster than 2x the
128-token rate, since short batches are bound by the optimiser step, not attention)::

    samples/s(dataset)  = 1,784 x min(2, 128 / p90 tokens)
    epoch(dataset, row) = 0.9 x products / samples/s        (10% held out for early stopping)
    epochs(dataset)     = min(10, floor(165 s / (3 rows x epoch)))   (half of a 330 s training budget each)
    + encoding: 3 rows x (validation each epoch + test) / 3,063 docs/s,  + ~30 s loading
    => about 6 minutes of the 10-minute command; ``prepare`` prints the figures for the real lengths.

Measured (one H200, 2026-12-04): a row took 176-184 s on ave-implicitave (3 epochs of 61,744 products,
validation and test included): about 1,050 samples/s end to end, 3.4x slower than this estimate
(3,568/s), so the whole plan is about 18 minutes of device time, not 6. The device step times each row
and skips the next one that would pass ``--deadline-s``; ``--rows`` and ``--datasets`` run a part of
the plan, and ``report`` reads the appended records of several runs (the latest record of a row counts).

Transfer: MiniLM fp16 45.4 MB + the two datasets gzipped (~4 MB) ~ 50 MiB sent (+ the repository);
back: one JSON lines file of a few KB.

Smoke (CPU, a random tiny BERT, 200 products per dataset; well under a minute)::

    python benchmarks/gpu/masking_ave.py smoke
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np

import common
from common import (BUNDLES, H100_ENCODE_PER_S, H100_FINETUNE_PER_S, check_send, claim, environment_line,
                    fresh_dir, read_json, tiny_bert, write_json)

import bench_masking as bm  # noqa: E402

NAME = "masking_ave"
DATASETS = ("ave-implicitave", "ave-myntra_fashion")
ROWS = ("bert", "bert-leaf", "bert-mask")  # unmasked, multi-head (one layer per leaf category), masked
SECTION, TITLE = "gpu_masking_ave", "Label masking at full scale (GPU: masked vs unmasked vs multi-head)"
MARKER = "plan.json"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "device", "report", "smoke"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (a random tiny BERT)")
    p.add_argument("--bundle", default=os.path.join(BUNDLES, NAME))
    p.add_argument("--out", help="device: where the results go ($OUT); report: that folder as it came back")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--max-length", type=int, default=256, help="tokens per product (the issue: 256-512)")
    p.add_argument("--max-epochs", type=float, default=10.0)
    p.add_argument("--train-budget-s", type=float, default=330.0, help="estimated training seconds for all rows")
    p.add_argument("--deadline-s", type=float, default=540.0, help="device: start no row that would end later")
    common.add_rows_option(p, ROWS, "masking.jsonl")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--model-path", help="encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--train-docs", type=int, default=0)
    p.add_argument("--test-docs", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--device-command", default="")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    common.check_rows(p, args, ROWS)
    if args.smoke or args.step == "smoke":
        args.smoke = True
        args.train_docs, args.test_docs, args.max_length, args.max_epochs = 200, 100, 32, 1.0
    return args


def bench_args(args, data: str | None, model_path: str | None, epochs: float) -> argparse.Namespace:
    """The namespace bench_masking's functions read (its CLI defaults, this run's budget)."""
    return argparse.Namespace(data=data, seed=0, train_docs=args.train_docs, test_docs=args.test_docs,
                              model_path=model_path, max_length=args.max_length, encode_batch_size=256,
                              epochs=epochs, batch_size=args.batch_size, lr=args.lr, head_lr=None, grad_accum=1,
                              no_swa=False, device=args.device, freeze_encoder=False, cache_dir=None,
                              progress=False, threads=os.cpu_count() or 1)


def plan_epochs(args, stats: dict) -> dict:
    """The docstring's arithmetic: epochs per dataset and the estimated device seconds."""
    plan, total = {}, 30.0
    share = args.train_budget_s / len(stats)
    for name, s in stats.items():
        rate = H100_FINETUNE_PER_S * min(2.0, 128.0 / max(1.0, s["p90_tokens"]))
        epoch_s = 0.9 * s["train"] / rate
        epochs = max(1, min(int(args.max_epochs), math.floor(share / (len(ROWS) * epoch_s))))
        encode_s = len(ROWS) * (epochs * 0.1 * s["train"] + s["test"]) / H100_ENCODE_PER_S
        total += len(ROWS) * epochs * epoch_s + encode_s
        plan[name] = {"epochs": epochs, "samples_per_s": round(rate), "epoch_s": round(epoch_s, 1)}
    return {"datasets": plan, "estimated_device_seconds": round(total)}


def prepare(args) -> dict:
    from transformers import AutoTokenizer

    t0 = time.perf_counter()
    fresh_dir(args.bundle, args.overwrite, MARKER)
    model_path = args.model_path or common.default_encoder()
    stats = {}
    loaded = {}
    for name in args.datasets.split(","):
        directory, train, test, taxonomy = bm.load(bench_args(args, None, None, 1), name)
        loaded[name] = (directory, train, test)
    if args.smoke:
        texts = [t for _, tr, _ in loaded.values() for t in tr.input_texts(["title", "description"])]
        model_path = tiny_bert(os.path.join(args.bundle, "tiny-bert-source"), texts, layers=4)  # [CLS] of the last 5 hidden states
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    for name, (directory, train, test) in loaded.items():
        os.makedirs(os.path.join(args.bundle, name))
        whole = 0
        for split, ds in (("train", train), ("test", test)):
            records, w = common.cut_dataset_records(tokenizer, ds, ["title", "description"], args.max_length)
            whole += w
            # gzip content under the names bench_masking.load reads (xmc's readers detect gzip by its magic bytes)
            common.write_jsonl_gz(os.path.join(args.bundle, name, f"{split}.jsonl"), records)
        shutil.copy(os.path.join(directory, "taxonomy.json"), os.path.join(args.bundle, name, "taxonomy.json"))
        lengths = np.array([len(ids) for ids in tokenizer(train.input_texts(["title", "description"]), truncation=True,
                                                          max_length=args.max_length)["input_ids"]])
        stats[name] = {"train": len(train), "test": len(test), "mean_tokens": float(lengths.mean()),
                       "p90_tokens": float(np.percentile(lengths, 90)),
                       "truncated_share": float((lengths >= args.max_length).mean()), "kept_whole": whole}
    common.save_encoder_fp16(model_path, os.path.join(args.bundle, "encoder"), pooling="cls-concat", last_layers=5)
    if args.smoke:
        shutil.rmtree(os.path.join(args.bundle, "tiny-bert-source"))
    plan = {"max_length": args.max_length, "batch_size": args.batch_size, "lr": args.lr, "rows": list(ROWS),
            "stats": stats, **plan_epochs(args, stats)}
    write_json(os.path.join(args.bundle, MARKER), plan)
    plan["send_line"] = check_send(args.bundle, args.smoke)
    print(plan["send_line"])
    print(json.dumps({k: plan[k] for k in ("stats", "datasets", "estimated_device_seconds")}, indent=1))
    print(f"prepared in {time.perf_counter() - t0:.0f} s")
    return plan


def device(args) -> int:
    """On the GPU: every row of every dataset, metrics appended to OUT/masking.jsonl as each finishes."""
    import torch

    started = time.perf_counter()
    plan = read_json(os.path.join(args.bundle, MARKER))
    os.makedirs(args.out, exist_ok=True)
    log = os.path.join(args.out, "masking.jsonl")
    encoder = os.path.join(args.bundle, "encoder")
    gpu = common.gpu_name()
    last_rate = None  # measured seconds per (training sample x epoch) of the previous row
    for name, ds_plan in plan["datasets"].items():
        if name not in args.datasets.split(","):
            continue
        epochs = ds_plan["epochs"]
        args.max_length, args.batch_size, args.lr = plan["max_length"], plan["batch_size"], plan["lr"]
        ns = bench_args(args, os.path.join(args.bundle, name), encoder, epochs)
        ns.train_docs = ns.test_docs = 0  # the bundle holds exactly the products to use
        directory, train, test, taxonomy = bm.load(ns, None)
        counts = train.label_counts()
        for row in [r for r in plan["rows"] if args.rows is None or r in args.rows]:
            need = (last_rate or 0) * len(train) * epochs
            left = args.deadline_s - (time.perf_counter() - started)
            if need > left:
                rec = {"dataset": name, "row": row, "skipped": f"needs ~{need:.0f} s, {left:.0f} s left"}
            else:
                scores, seconds, notes = bm.run_row(row, ns, train, test, taxonomy, None)
                report, groups = bm.metrics(test, scores, counts)
                last_rate = seconds / max(1, len(train) * epochs)
                rec = {"dataset": name, "row": row, "report": report, "groups": groups, "seconds": seconds,
                       "notes": notes, "epochs": epochs, "gpu": gpu}
                print(f"{name} {row}: micro F1 {100 * report['micro_f1']:.2f} macro F1 {100 * report['macro_f1']:.2f} "
                      f"P@1 {100 * report['P@1']:.2f} ({seconds:.0f} s)", flush=True)
            common.append_jsonl(log, rec)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    common.finish_log(log, started, gpu)
    print(common.check_back(args.out))
    return 0


def report(args) -> str:
    recs = [json.loads(line) for line in open(os.path.join(args.out, "masking.jsonl"), encoding="utf-8")]
    plan = read_json(os.path.join(args.bundle, MARKER))
    wall = common.device_wall(recs)
    gpu = next((r["gpu"] for r in recs if "gpu" in r), "?")
    parts = [("**Smoke scale (CPU, random tiny BERT): not a result.** " if args.smoke else "")
             + f"{environment_line()} (report). The device command ran on **{gpu}**: {wall}. Budget: all "
             f"products, {plan['max_length']} tokens (window-cut on the CPU), batch {plan['batch_size']}, "
             f"lr {plan['lr']:g}, epochs per dataset "
             + ", ".join(f"{n} {d['epochs']}" for n, d in plan["datasets"].items())
             + "; all-MiniLM-L6-v2 fp16 in the bundle, bf16 on the GPU, [CLS] of the last 5 layers, SWA.",
             "Commands: `python benchmarks/gpu/masking_ave.py prepare`; on the GPU "
             f"`{args.device_command or 'PYTHONPATH=src python3 benchmarks/gpu/masking_ave.py device --out $OUT'}`; "
             "`python benchmarks/gpu/masking_ave.py report --out RESULT --write`."]
    for name in plan["datasets"]:
        ns = bench_args(args, os.path.join(args.bundle, name), None, 1)
        ns.train_docs = ns.test_docs = 0
        directory, train, test, taxonomy = bm.load(ns, None)
        _, stats = taxonomy.mask(test.categories, Y=test.Y)
        results = {}
        scores, seconds, notes = bm.run_row("xr-linear", ns, train, test, taxonomy, None)
        report_, groups = bm.metrics(test, scores, train.label_counts())
        results["xr-linear"] = {"report": report_, "groups": groups, "seconds": seconds, "notes": notes}
        for r in recs:
            if r.get("dataset") == name and "report" in r:
                results[r["row"]] = r
        skipped = [f"{r['row']} ({r['skipped']})" for r in recs
                   if r.get("dataset") == name and "skipped" in r and r["row"] not in results]
        table = bm.markdown(ns, results, train, test, taxonomy, directory, stats)
        lines = [table]
        if skipped:
            lines.append("Skipped on the device: " + "; ".join(skipped) + ".")
        if "bert-mask" in results:
            m = results["bert-mask"]["report"]
            claims = []
            for other, label in (("bert", "unmasked BERT"), ("bert-leaf", "multi-head BERT"),
                                 ("xr-linear", "XR-Linear (filtered)")):
                if other in results:
                    o = results[other]["report"]
                    claims.append(claim(f"masking beats {label} in micro F1", m["micro_f1"], o["micro_f1"], 0.0,
                                        "micro F1"))
                    claims.append(claim(f"masking beats {label} in macro F1", m["macro_f1"], o["macro_f1"], 0.0,
                                        "macro F1"))
            lines.append("Claims: " + "; ".join(claims) + ".")
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def main(argv=None) -> int:
    return common.run_steps(parse(argv), prepare, device, report, SECTION, TITLE, "masking")

if __name__ == "__main__":
    sys.exit(main())
