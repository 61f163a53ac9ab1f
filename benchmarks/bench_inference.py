"""The one inference loop (xmc.neural.inference): length-sorted dynamic padding against the loops it replaced.

Encodes the same EURLEX57K texts with the default encoder (all-MiniLM-L6-v2) three ways:

* ``sorted + dynamic padding``: :func:`xmc.neural.inference.encode_tokens` (every encode path now);
* ``input order + dynamic padding``: batches in input order, each padded to its own longest text
  (GUDN / LightXML frozen features before);
* ``input order + full padding``: every batch padded to ``max_length``.

Reports the median seconds of ``--repeats`` runs and the largest difference to the sorted vectors.

    PYTHONPATH=src OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_inference.py --docs 1000 --write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np

import markdown_section  # benchmarks/ is the script's directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/eurlex57k")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--fields", nargs="+", default=["title", "title,text"],
                        help="one run per entry: the document fields joined into the encoded text")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="write the table to BENCHMARKS.md")
    args = parser.parse_args()

    import torch

    from xmc.data import read_jsonl
    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder
    from xmc.neural.inference import encode_tokens

    torch.set_num_threads(args.threads)
    test = read_jsonl(os.path.join(args.data, "test.jsonl.gz"), max_docs=args.docs)
    encoder = TextEncoder.from_pretrained(EncoderConfig(max_length=args.max_length)).eval()
    rows, notes = [], []
    encode_tokens(encoder, encoder.pretokenize(["warm up"] * 8), encoder, encoder.collate, batch_size=8)
    for fields in args.fields:
        tokens = encoder.pretokenize(test.input_texts(fields.split(",")))
        lengths = np.array([len(t) for t in tokens])
        notes.append(f"`{fields}`: median {int(np.median(lengths))} tokens, "
                     f"{100 * np.mean(lengths == args.max_length):.0f}% truncated")

        def unsorted(full: bool, tokens=tokens) -> np.ndarray:
            out = []
            with torch.no_grad():
                for s in range(0, len(tokens), args.batch_size):
                    batch = encoder.tokenizer.pad({"input_ids": tokens[s:s + args.batch_size]},
                                                  padding="max_length" if full else True, max_length=args.max_length,
                                                  return_tensors="pt")
                    out.append(encoder(**batch).numpy())
            return np.concatenate(out)

        ways = {
            "sorted + dynamic padding (encode_tokens)": lambda tokens=tokens: encode_tokens(
                encoder, tokens, encoder, encoder.collate, batch_size=args.batch_size, dim=encoder.dim),
            "input order + dynamic padding": lambda: unsorted(False),
            "input order + full padding": lambda: unsorted(True),
        }
        reference = None
        for name, run in ways.items():
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                vectors = run()
                times.append(time.perf_counter() - t)
            reference = vectors if reference is None else reference
            diff = float(np.abs(vectors - reference).max())
            rows.append(f"| `{fields}` | {name} | {np.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) | "
                        f"{len(tokens) / np.median(times):.0f} | {diff:.1e} |")
            print(rows[-1], flush=True)
    body = "\n".join([
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores (shared with other jobs), {args.threads} torch "
        f"threads; Python {platform.python_version()}, torch {torch.__version__}; {datetime.date.today()}.",
        f"Data: the first {len(test)} EURLEX57K test documents, all-MiniLM-L6-v2, max length {args.max_length} "
        f"tokens ({'; '.join(notes)}), batch {args.batch_size}; median of {args.repeats} runs (min-max).",
        f"Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_inference.py --docs {args.docs} "
        f"--max-length {args.max_length} --batch-size {args.batch_size} --fields {' '.join(args.fields)} --write`",
        "",
        "| text | loop | seconds | texts/s | max abs diff to sorted |",
        "|---|---|---:|---:|---:|",
        *rows,
    ])
    if args.write:
        markdown_section.write_section("inference", body, "One inference loop: length-sorted dynamic padding (CPU)")
    print(body)


if __name__ == "__main__":
    main()
