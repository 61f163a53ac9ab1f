"""X-Transformer ablation on EURLEX57K in the form of the paper's Table 5.

Rows (all on the same TF-IDF features; the matcher's early stopping uses ``dev``, the report ``test``):

    xr-linear            linear tree matcher, ranker on TF-IDF, TFN       (xmc's XR-Linear baseline)
    linear+neural        linear tree matcher on [TF-IDF || pre-trained phi], TFN
    frozen               pre-trained encoder (no fine-tuning) + trained cluster head, ranker TF-IDF+neural, TFN+MAN
    ft-tfidf-tfn         fine-tuned matcher (pifa-tfidf), ranker on TF-IDF, TFN
    ft-neural-tfn        fine-tuned matcher (pifa-tfidf), ranker on TF-IDF+neural, TFN
    ft-neural-tfn+man    ... TFN+MAN
    ft-pifa-neural       fine-tuned matcher on a pifa-neural tree, TF-IDF+neural, TFN+MAN
    ft-text-emb          fine-tuned matcher on a text-emb tree (label names), TF-IDF+neural, TFN+MAN
    ensemble             score average of ft-neural-tfn+man, ft-pifa-neural, ft-text-emb

Fine-tuned rows with equal trees share one matcher through ``--work-dir`` checkpoints, and all
rows share encoded embeddings through ``--cache-dir``. Every row's test top-100 is saved under
``--predictions-dir`` so ensembles can be recomputed offline.

CPU budget (this machine)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xtransformer.py --train-docs 6000 \\
        --test-docs 1000 --max-length 64 --epochs 1 --write --section cpu

Full scale (GPU)::

    python benchmarks/bench_xtransformer.py --max-length 128 --epochs 3 --batch-size 32 --write --section gpu
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from xmc.data.readers import read_dataset  # noqa: E402
from xmc.ensemble import average_scores  # noqa: E402
from xmc.features.tfidf import TfidfFeaturizer  # noqa: E402
from xmc.metrics import evaluate  # noqa: E402
from xmc.metrics.propensity import train_propensities  # noqa: E402
from xmc.models.xtransformer import MemberConfig, XTransformer, XTransformerConfig  # noqa: E402
from xmc.neural.configs import EncoderConfig, MatcherConfig  # noqa: E402
from xmc.ranker.hierarchy import LinearTrainConfig, PredictConfig  # noqa: E402
import markdown_section  # noqa: E402  (benchmarks/ is the script's directory)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "eurlex57k")

# row name -> (matcher kind, label_repr, ranker_input, negatives)
ROWS = {
    "xr-linear": ("linear", "pifa-tfidf", "tfidf", "tfn"),
    "linear+neural": ("linear", "pifa-tfidf", "tfidf+neural", "tfn"),
    "frozen": ("frozen", "pifa-tfidf", "tfidf+neural", "tfn+man"),
    "ft-tfidf-tfn": ("transformer", "pifa-tfidf", "tfidf", "tfn"),
    "ft-neural-tfn": ("transformer", "pifa-tfidf", "tfidf+neural", "tfn"),
    "ft-neural-tfn+man": ("transformer", "pifa-tfidf", "tfidf+neural", "tfn+man"),
    "ft-pifa-neural": ("transformer", "pifa-neural", "tfidf+neural", "tfn+man"),
    "ft-text-emb": ("transformer", "text-emb", "tfidf+neural", "tfn+man"),
}
ENSEMBLE = ("ft-neural-tfn+man", "ft-pifa-neural", "ft-text-emb")
ENSEMBLES = {"ensemble": ENSEMBLE, "ensemble+xr-linear": ENSEMBLE + ("xr-linear",)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="folder with train/dev/test .jsonl.gz and labels")
    p.add_argument("--rows", default=",".join(list(ROWS) + list(ENSEMBLES)))
    p.add_argument("--extra-beams", default="", help="also evaluate neural rows at these beam sizes, e.g. 50,100")
    p.add_argument("--train-docs", type=int, default=None, help="first N training documents (budget)")
    p.add_argument("--test-docs", type=int, default=None, help="first N test documents")
    p.add_argument("--dev-docs", type=int, default=2000, help="dev documents for early stopping")
    p.add_argument("--model-path", default=None, help="local Hugging Face encoder (default: packaged MiniLM)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--encode-batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--beam", type=int, default=20, help="clusters passed from matcher to ranker")
    p.add_argument("--max-leaf-size", type=int, default=100)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=".bench_cache/xtransformer/embeddings")
    p.add_argument("--work-dir", default=".bench_cache/xtransformer/work")
    p.add_argument("--predictions-dir", default=None)
    p.add_argument("--json", default=None, help="append each row's result here as it finishes")
    p.add_argument("--latency-docs", type=int, default=50)
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    p.add_argument("--section", default="cpu", help="BENCHMARKS.md section suffix (cpu / gpu)")
    p.add_argument("--note", default="", help="a paragraph appended under the table")
    p.add_argument("--drop-latency", action="store_true", help="leave the latency column empty (from-json)")
    p.add_argument("--from-json", nargs="*", default=None,
                   help="only render the table from result JSON files (e.g. a GPU run's)")
    return p.parse_args(argv)


def row_config(name: str, args) -> XTransformerConfig:
    kind, label_repr, ranker_input, negatives = ROWS[name]
    return XTransformerConfig(
        encoder=EncoderConfig(model_path=args.model_path, max_length=args.max_length, batch_size=args.encode_batch_size),
        members=[MemberConfig(label_repr=label_repr, max_leaf_size=args.max_leaf_size)],
        matcher=MatcherConfig(kind=kind, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                              eval_every=args.eval_every, device=args.device),
        ranker_input=ranker_input,
        ranker=LinearTrainConfig(negatives=negatives),
        predict=PredictConfig(beam_size=args.beam if kind != "linear" else 10),
        cache_dir=args.cache_dir,
        work_dir=args.work_dir,
    )


def load(args):
    t = time.perf_counter()
    train = read_dataset(os.path.join(args.data, "train.jsonl.gz"), max_docs=args.train_docs)
    dev = read_dataset(os.path.join(args.data, "dev.jsonl.gz"), labels=train.labels, max_docs=args.dev_docs)
    test = read_dataset(os.path.join(args.data, "test.jsonl.gz"), labels=train.labels, max_docs=args.test_docs)
    print(f"data: {len(train)} train, {len(dev)} dev, {len(test)} test docs, {len(train.labels)} labels "
          f"({time.perf_counter() - t:.1f} s)", flush=True)
    return train, dev, test


def metrics(test, scores, propensities) -> dict:
    report = evaluate(test.Y, scores, ks=(1, 3, 5), propensities=propensities)
    return {k: report[k] for k in ("P@1", "P@3", "P@5", "R@1", "R@3", "R@5", "PSP@5")}


def run_row(name, args, train, dev, test, propensities, tfidf) -> tuple[dict, sp.csr_matrix]:
    model = XTransformer(row_config(name, args))
    t = time.perf_counter()
    model.fit(train, valid=dev, tfidf=tfidf)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    scores = model.predict(test, topk=100)
    predict_s = time.perf_counter() - t
    extra = {}
    for b in [int(v) for v in args.extra_beams.split(",") if v]:
        if model.members_[0].head is not None:
            extra[f"beam{b}"] = metrics(test, model.predict(test, topk=100, beam_size=b), propensities)
    texts = test.input_texts(["title", "text"])[: args.latency_docs]
    lat = []
    for text in texts:
        s = time.perf_counter()
        model.predict([text], topk=10)
        lat.append(time.perf_counter() - s)
    history = model.histories_[0] if model.histories_ else {}
    result = {
        "row": name, **metrics(test, scores, propensities),
        "fit_s": fit_s, "predict_s": predict_s, "predict_ms_per_doc": 1000 * predict_s / len(test),
        "latency_p50_ms": 1000 * float(np.median(lat)) if lat else None,
        "stages": {k: round(v, 2) for k, v in model.timings_.items()},
        "finetune_samples_per_s": history.get("samples_per_second"),
        "valid_cluster_recall": history.get("best_recall"),
        "finetune_steps": history.get("steps"),
        **extra,
    }
    return result, scores


def encoding_throughput(args, test, n: int = 1000) -> dict:
    """Pre-trained encoder throughput on raw test texts, without any cache."""
    from xmc.neural.device import select_device
    from xmc.neural.encoder import TextEncoder

    cfg = row_config("frozen", args)
    encoder = TextEncoder.from_pretrained(cfg.encoder).to(select_device(args.device))
    texts = test.input_texts(cfg.text_fields)[:n]
    encoder.encode(texts[:64], progress=False)  # warm-up
    t = time.perf_counter()
    encoder.encode(texts, progress=False)
    return {"encode_docs": len(texts), "encode_docs_per_s": len(texts) / (time.perf_counter() - t)}


def environment(args) -> dict:
    import torch

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else \
        f"cpu ({os.cpu_count()} cores)"
    return {"machine": f"{platform.platform()}, {device}", "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def render(results: list[dict], env: dict, args_line: str, budget: str) -> str:
    base = next((r for r in results if r["row"] == "xr-linear"), None)
    lines = [
        f"Machine: {env['machine']}; Python {env['python']}, torch {env['torch']}; {env['date']}.",
        f"Budget: {budget}.",
        f"Command: `{args_line}`",
        "",
        "| row | matcher | indexing | ranker input | negatives | P@1 | P@3 | P@5 | R@1 | R@3 | R@5 | PSP@5 | "
        "ΔP@1 vs xr-linear | train s | stages (s) | predict ms/doc | latency p50 ms |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        n_members = len(r.get("members", ()))
        kind, rep, inp, neg = ROWS.get(r["row"], ("ensemble", f"{n_members} members", "see members", "see members"))
        pct = lambda k: f"{100 * r[k]:.2f}"  # noqa: E731
        delta = f"{100 * (r['P@1'] - base['P@1']):+.2f}" if base else ""
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r.get("stages", {}).items())
        lat = f"{r['latency_p50_ms']:.1f}" if r.get("latency_p50_ms") else ""
        ms = f"{r['predict_ms_per_doc']:.2f}" if r.get("predict_ms_per_doc") else ""
        fit = f"{r['fit_s']:.0f}" if r.get("fit_s") else ""
        lines.append(f"| {r['row']} | {kind} | {rep} | {inp} | {neg} | {pct('P@1')} | {pct('P@3')} | {pct('P@5')} | "
                     f"{pct('R@1')} | {pct('R@3')} | {pct('R@5')} | {pct('PSP@5')} | {delta} | {fit} | {stages} | "
                     f"{ms} | {lat} |")
    ft = [r["finetune_samples_per_s"] for r in results
          if r.get("finetune_samples_per_s") and r["row"].startswith("ft") and r.get("finetune_steps")]
    lines.append("")
    lines.append(f"TF-IDF (fitted once, shared by all rows; not in the train column): {env.get('tfidf_s', 0):.0f} s. "
                 f"Encoding throughput (pre-trained encoder, {env.get('encode_docs', 0)} test texts, no cache): "
                 f"{env.get('encode_docs_per_s', 0):.1f} docs/s. "
                 + (f"Fine-tuning throughput: {np.median(ft):.1f} samples/s (median over fine-tuned rows). " if ft else "")
                 + "Rows with the same tree reuse one fine-tuned matcher (its time is counted in the first such row).")
    return "\n".join(lines)


def write_section(text: str, section: str) -> None:
    title = {"cpu": "X-Transformer on EURLEX57K: CPU budget", "gpu": "X-Transformer on EURLEX57K: full scale (GPU)",
             "cpu-full": "X-Transformer on EURLEX57K: all documents on CPU, pre-trained encoder"}
    markdown_section.write_section(f"xtransformer_{section}", text, title.get(section, "X-Transformer " + section))


def budget_line(args, n_train, n_test) -> str:
    return (f"{n_train} training documents, {n_test} test documents, {args.dev_docs} dev documents for early stopping; "
            f"encoder {'packaged all-MiniLM-L6-v2' if not args.model_path else args.model_path}, max length "
            f"{args.max_length} tokens, {args.epochs:g} epoch(s) of fine-tuning, batch {args.batch_size}, lr {args.lr:g}, "
            f"beam b={args.beam}")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    args_line = "python benchmarks/bench_xtransformer.py " + " ".join(sys.argv[1:])
    if args.from_json is not None:
        results, meta = [], {}
        for path in args.from_json:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    rec = json.loads(line)
                    if "meta" in rec:
                        meta = rec["meta"]
                    else:
                        results.append(rec)
        if args.drop_latency:
            for r in results:
                r["latency_p50_ms"] = None
        text = render(results, meta["env"], meta["command"], meta["budget"])
        if args.note:
            text += "\n\n" + args.note
        print(text)
        if args.write:
            write_section(text, args.section)
        return 0
    train, dev, test = load(args)
    # xmc.metrics' one definition: test-only labels have training count 0 (until 2026-12-02 this script
    # gave them propensity 1, so its PSP@k were below bench_xr_linear's for the same scores).
    propensities = train_propensities(train.label_counts(), len(train), test.Y.shape[1])
    env = environment(args)
    t = time.perf_counter()
    featurizer = TfidfFeaturizer(row_config("xr-linear", args).features)
    X_train = featurizer.fit_transform(train.input_texts(featurizer.config.fields))
    env["tfidf_s"] = time.perf_counter() - t
    env.update(encoding_throughput(args, test))
    budget = budget_line(args, len(train), len(test))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"meta": {"env": env, "command": args_line, "budget": budget}}) + "\n")
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    results, scores = [], {}
    for name in wanted:
        if name in ENSEMBLES:
            members = [scores[m] for m in ENSEMBLES[name] if m in scores]
            if len(members) < 2:
                print(f"{name}: needs at least two of", ENSEMBLES[name], flush=True)
                continue
            result = {"row": name, **metrics(test, average_scores(members, 100), propensities),
                      "members": [m for m in ENSEMBLES[name] if m in scores]}
            result["fit_s"] = sum(r["fit_s"] for r in results if r["row"] in result["members"])
        else:
            print(f"=== {name}", flush=True)
            result, scores[name] = run_row(name, args, train, dev, test, propensities, (featurizer, X_train))
            if args.predictions_dir and name in ENSEMBLES["ensemble+xr-linear"]:
                os.makedirs(args.predictions_dir, exist_ok=True)
                file_name = name.replace("+", "_plus_") + ".npz"
                sp.save_npz(os.path.join(args.predictions_dir, file_name), scores[name])
        print(json.dumps(result), flush=True)
        results.append(result)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(result) + "\n")
    text = render(results, env, args_line, budget)
    print(text)
    if args.write:
        write_section(text, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
