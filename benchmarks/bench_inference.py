"""Dynamic padding in the shared inference loop and training engine: MiniLM throughput and peak RSS.

Two data sets with opposite text lengths: EURLEX57K title + text (long: every document reaches the
token cap) and ave-myntra_fashion titles (short product titles). For each, with the default encoder
(all-MiniLM-L6-v2):

Encoding (:mod:`xmc.neural.inference`), the same texts three ways:

* ``sorted + dynamic padding``: :func:`xmc.neural.inference.encode_tokens` (every encode path now);
* ``input order + dynamic padding``: batches in input order, each padded to its own longest text
  (GUDN / LightXML frozen features before the shared loop);
* ``input order + full padding``: every batch padded to ``max_length``.

Training (:class:`xmc.neural.trainer.Trainer`): a few dozen AdamW steps of the encoder plus a
linear label head under BCE (the shape of every fine-tuning model's step), three ways:

* ``random + full padding``: shuffled batches, each padded to ``max_length``;
* ``random + dynamic padding``: shuffled batches padded to their longest text (what the models do);
* ``length buckets + dynamic padding``: the shuffled order cut into chunks of 50 batches, each
  sorted by length before batching (batches of similar lengths, still in random order).

Every row runs in its own process, so its peak RSS (``ru_maxrss``) is its own: the model, the
tokenised texts and the loop's activations. Encoding reports the median of ``--repeats`` runs and
the largest difference to the sorted vectors; training the median of ``--repeats`` runs' samples/s
(each over all its steps).

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_inference.py --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

import markdown_section  # benchmarks/ is the script's directory

DATASETS = {  # name -> (directory, file, fields, what the text is)
    "eurlex57k": ("/work/shared/data/eurlex57k", "test.jsonl.gz", "title,text", "title + text (long)"),
    "ave-myntra_fashion": ("/work/shared/data/ave-myntra_fashion", "test.jsonl", "title", "title (short)"),
}
ENCODE_LOOPS = ["sorted + dynamic padding (encode_tokens)", "input order + dynamic padding",
                "input order + full padding"]
TRAIN_LOOPS = ["random + full padding", "random + dynamic padding", "length buckets + dynamic padding"]


def _data(name: str, docs: int, seed: int = 0):
    """``docs`` documents of ``name``'s test split: EURLEX57K's first ones, a random sample of the
    category-sorted myntra file (its first rows are all one category)."""
    from xmc.data import read_jsonl

    directory, file, _, _ = DATASETS[name]
    if name == "eurlex57k":
        return read_jsonl(os.path.join(directory, file), max_docs=docs)
    data = read_jsonl(os.path.join(directory, file))
    rows = np.sort(np.random.default_rng(seed).choice(len(data), min(docs, len(data)), replace=False))
    return data.subset(rows)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_encode(spec: dict) -> dict:
    import torch

    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder
    from xmc.neural.inference import encode_tokens

    torch.set_num_threads(spec["threads"])
    data = _data(spec["data"], spec["docs"])
    encoder = TextEncoder.from_pretrained(EncoderConfig(max_length=spec["max_length"])).eval()
    tokens = encoder.pretokenize(data.input_texts(DATASETS[spec["data"]][2].split(",")))
    batch_size, max_length = spec["batch_size"], spec["max_length"]

    def unsorted(full: bool) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(tokens), batch_size):
                batch = encoder.tokenizer.pad({"input_ids": tokens[s:s + batch_size]},
                                              padding="max_length" if full else True, max_length=max_length,
                                              return_tensors="pt")
                out.append(encoder(**batch).numpy())
        return np.concatenate(out)

    run = {
        ENCODE_LOOPS[0]: lambda: encode_tokens(encoder, tokens, encoder, encoder.collate, batch_size=batch_size,
                                               dim=encoder.dim),
        ENCODE_LOOPS[1]: lambda: unsorted(False),
        ENCODE_LOOPS[2]: lambda: unsorted(True),
    }[spec["loop"]]
    encode_tokens(encoder, encoder.pretokenize(["warm up"] * 8), encoder, encoder.collate, batch_size=8)
    times = []
    for _ in range(spec["repeats"]):
        t = time.perf_counter()
        vectors = run()
        times.append(time.perf_counter() - t)
    np.save(spec["vectors"], vectors)
    lengths = np.array([len(t) for t in tokens])
    return {"times": times, "n": len(tokens), "rss_mb": _peak_rss_mb(), "median_tokens": float(np.median(lengths)),
            "truncated": float(np.mean(lengths >= max_length))}


def run_train(spec: dict) -> dict:
    import torch

    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder
    from xmc.neural.trainer import Trainer, shuffled_batches

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    data = _data(spec["data"], spec["docs"])
    encoder = TextEncoder.from_pretrained(EncoderConfig(max_length=spec["max_length"]))
    tokens = encoder.pretokenize(data.input_texts(DATASETS[spec["data"]][2].split(",")))
    lengths = np.array([len(t) for t in tokens])
    Y = data.Y.tocsr().astype(np.float32)
    network = torch.nn.ModuleDict({"encoder": encoder, "head": torch.nn.Linear(encoder.dim, Y.shape[1])})
    batch_size, steps, max_length = spec["batch_size"], spec["steps"], spec["max_length"]
    rng = np.random.default_rng(0)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch_batches():
        batches = shuffled_batches(len(tokens), batch_size, rng)
        if spec["loop"].startswith("length buckets"):
            order = np.concatenate(batches)
            chunk = 50 * batch_size
            order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                                    for c in (order[s:s + chunk] for s in range(0, len(order), chunk))])
            batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    full = spec["loop"].endswith("full padding")

    def step(rows):
        ids = [tokens[i] for i in rows]
        batch = (encoder.tokenizer.pad({"input_ids": ids}, padding="max_length", max_length=max_length,
                                       return_tensors="pt") if full else encoder.collate(ids))
        logits = network["head"](encoder(batch["input_ids"], batch["attention_mask"]))
        target = torch.from_numpy(Y[rows].toarray())
        return loss_fn(logits, target)

    trainer = Trainer(network, [{"params": network.parameters(), "lr": 5e-5}], total_steps=steps,
                      schedule=None, progress=False, rng=rng)
    history = trainer.fit(epoch_batches, step)
    return {"samples_per_second": history.samples_per_second, "samples": history.samples, "steps": history.steps,
            "seconds": history.seconds, "rss_mb": _peak_rss_mb(), "median_tokens": float(np.median(lengths))}


def child(spec: dict) -> dict:
    """Run one row in a fresh process (its peak RSS is the row's own)."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                         env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if out.returncode:
        sys.exit(f"row {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--docs", type=int, default=500, help="documents encoded per data set")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=24, help="optimiser steps per training row (0: none)")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write the tables to BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(run_train(spec) if spec["kind"] == "train" else run_encode(spec)))
        return

    encode_rows, train_rows, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.data:
            what = DATASETS[name][3]
            reference = None
            for k, loop in enumerate(ENCODE_LOOPS):
                spec = {"kind": "encode", "data": name, "loop": loop, "docs": args.docs, "threads": args.threads,
                        "max_length": args.max_length, "batch_size": args.batch_size, "repeats": args.repeats,
                        "vectors": os.path.join(tmp, f"{name}-{k}.npy")}
                r = child(spec)
                vectors = np.load(spec["vectors"])
                reference = vectors if reference is None else reference
                med = float(np.median(r["times"]))
                encode_rows.append(
                    f"| {name} | {what} | {loop} | {med:.2f} ({min(r['times']):.2f}-{max(r['times']):.2f}) | "
                    f"{r['n'] / med:.0f} | {r['rss_mb']:.0f} | {float(np.abs(vectors - reference).max()):.1e} |")
                print(encode_rows[-1], flush=True)
            notes.append(f"{name} {what}: median {r['median_tokens']:.0f} tokens, {100 * r['truncated']:.0f}% "
                         f"truncated")
            runs: dict[str, list[dict]] = {loop: [] for loop in TRAIN_LOOPS}
            for _ in range(args.repeats if args.train_steps else 0):  # the loops interleaved: load spikes hit all
                for loop in TRAIN_LOOPS:
                    spec = {"kind": "train", "data": name, "loop": loop, "docs": max(args.docs, 2000),
                            "threads": args.threads, "max_length": args.max_length, "batch_size": args.train_batch,
                            "steps": args.train_steps}
                    runs[loop].append(child(spec))
                    print(loop, runs[loop][-1], flush=True)
            for loop, rs in runs.items():
                if not rs:
                    continue
                rates = [r["samples_per_second"] for r in rs]
                train_rows.append(f"| {name} | {what} | {loop} | {rs[0]['steps']} | {rs[0]['samples']} | "
                                  f"{np.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
                                  f"{max(r['rss_mb'] for r in rs):.0f} |")
                print(train_rows[-1], flush=True)

    import torch

    body = "\n".join([
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores (shared with other jobs), {args.threads} torch "
        f"threads; Python {platform.python_version()}, torch {torch.__version__}; {datetime.date.today()}.",
        f"Data: all-MiniLM-L6-v2, max length {args.max_length} tokens; {'; '.join(notes)}. Encoding: "
        f"{args.docs} test documents per data set (EURLEX57K's first ones, a seeded sample of myntra's), batch "
        f"{args.batch_size}, median of {args.repeats} runs (min-max). Training: {args.train_steps} AdamW steps "
        f"(encoder + linear label head, BCE, lr 5e-5) of batch {args.train_batch} through the shared engine, "
        f"median (min-max) of {args.repeats} runs, each in a new process, the three loops interleaved. "
        "Peak RSS: the row's own process (model, tokenised texts, activations).",
        f"Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_inference.py --data {' '.join(args.data)} "
        f"--docs {args.docs} --max-length {args.max_length} --batch-size {args.batch_size} --repeats {args.repeats} "
        f"--train-steps {args.train_steps} --train-batch {args.train_batch} --write`",
        "",
        "| data | text | encoding loop | seconds | texts/s | peak RSS MB | max abs diff to sorted |",
        "|---|---|---|---:|---:|---:|---:|",
        *encode_rows,
        "",
        "| data | text | training batches | steps | samples | samples/s | peak RSS MB |",
        "|---|---|---|---:|---:|---:|---:|",
        *train_rows,
    ])
    if args.write:
        markdown_section.write_section("inference", body, "One inference loop: length-sorted dynamic padding (CPU)")
    print(body)


if __name__ == "__main__":
    main()
