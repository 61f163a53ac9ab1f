"""X-Transformer on all of EURLEX57K, its transformer stage on one GPU: the paper's Table 5 rows.

Claim (X-Transformer, Chang et al. 2020; issue 22): the fine-tuned matchers on pifa-tfidf,
pifa-neural and text-emb trees, with TF-IDF ⊕ neural rankers trained on TFN+MAN negatives, and their
ensemble (with XR-Linear), beat XR-Linear by +2 P@1 on EURLEX57K.

Three steps, one command each (README.md beside this file has them verbatim):

1. ``prepare`` (CPU, 3.5 min here): TF-IDF, the pifa-tfidf tree, token ids of the 45,000 training,
   2,000 dev (early stopping) and 6,000 test documents, the packaged MiniLM in fp16: an
   ``xmc stage export`` bundle with 3 members, embeddings brought back as int8 and no encoders (the
   three fine-tuned encoders would not fit the 64 MiB that comes back; the test documents travel
   in the bundle instead and are encoded there).
2. on the GPU: ``python3 -m xmc.cli.main stage run BUNDLE --out $OUT/result`` (the xmc CLI itself).
3. ``report`` (CPU, about 30 min on these 2 cores: TF-IDF 2.5 min, five rankers of 4-6 min each
   as in BENCHMARKS.md's full-data CPU table): ``xmc stage import``'s function with the result, the rankers, and
   the rows scored on test; the in-run XR-Linear baseline (same TF-IDF, same tree) and the best
   XR-Linear config of BENCHMARKS.md (``configs/xr-linear-accurate.json``) trained on the same split;
   the table and the claim into BENCHMARKS.md.

Sizing (H100 throughput of all-MiniLM-L6-v2 at 128 tokens, bf16: fine-tuning 1,784 samples/s,
encoding 3,063 documents/s; an H200 is at least as fast)::

    pre-trained encoding (pifa-neural tree)      45,000 / 3,063            =  15 s
    per member: fine-tuning 3 epochs             3 x 45,000 / 1,784        =  76 s
                dev validation, once per epoch   3 x 2,000 / 3,063         =   2 s
                encoding train + test            51,000 / 3,063            =  17 s
    3 members                                    3 x 95 s                  = 285 s
    label texts (text-emb), k-means on 16 cores, loading, writing          ~  30 s
    total                                                                  ~ 5.5 min of the 10-minute command

Transfer (computed by ``prepare`` and printed; measured 2026-12-02 on the real data)::

    sent:  token ids 53,000 x 128 x uint16 = 13.6 MB, labels and tree ~ 1 MB, MiniLM fp16 45.4 MB,
           tokenizer 0.7 MB: bundle 59.1 MiB in 6 files; + the repository (1.4 MiB) = 60.5 MiB of 64 MiB
    back:  per member int8 embeddings 51,000 x 384 + row scales = 19.8 MB, top-10 clusters
           45,000 x 10 x uint16 = 0.9 MB, head 0.4 MB: 3 members = 60.1 MiB of 64 MiB,
           in 5 shards of <= 16 MiB + manifest.json (6 of the 8 files)

Smoke (CPU, a random tiny BERT, 300 documents; well under a minute)::

    python benchmarks/gpu/xtransformer_eurlex.py smoke
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time

import common  # noqa: F401  (puts src/ and benchmarks/ on the path)
from common import (BUNDLES, DATA_ROOT, H100_ENCODE_PER_S, H100_FINETUNE_PER_S, REPO, check_send, claim,
                    environment_line, fmt_bytes, read_json, tiny_bert, write_json)

import bench_xtransformer as bx  # noqa: E402
from xmc.data import read_label_texts  # noqa: E402
from xmc.ensemble import average_scores  # noqa: E402
from xmc.metrics import train_propensities  # noqa: E402
from xmc.models.xtransformer import MemberConfig, XTransformerConfig  # noqa: E402
from xmc.models.xtransformer.stage import StageOptions, export_bundle, import_result  # noqa: E402
from xmc.neural.configs import EncoderConfig, MatcherConfig  # noqa: E402
from xmc.ranker.hierarchy import LinearTrainConfig, PredictConfig  # noqa: E402

NAME = "xtransformer_eurlex"
MEMBERS = {"ft-neural-tfn+man": "pifa-tfidf", "ft-pifa-neural": "pifa-neural", "ft-text-emb": "text-emb"}
SECTION, TITLE = "gpu_xtransformer_eurlex", "X-Transformer on all of EURLEX57K (GPU stage on one H200)"
CLAIM_GAIN = 2.0  # P@1 points over XR-Linear


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["prepare", "report", "smoke"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (a random tiny BERT)")
    p.add_argument("--data", default=os.path.join(DATA_ROOT, "eurlex57k"))
    p.add_argument("--bundle", default=os.path.join(BUNDLES, NAME))
    p.add_argument("--result", help="report: the result directory the device command wrote ($OUT/result)")
    p.add_argument("--train-docs", type=int, default=None)
    p.add_argument("--dev-docs", type=int, default=2000)
    p.add_argument("--test-docs", type=int, default=None)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--max-leaf-size", type=int, default=100)
    p.add_argument("--model-path", help="encoder directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--best-xr-config", default=os.path.join(REPO, "configs", "xr-linear-accurate.json"))
    p.add_argument("--device-command", default="", help="report: the device command as run (for the table)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--write", action="store_true", help="report: write the table into BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.smoke or args.step == "smoke":
        args.smoke = True
        args.train_docs, args.dev_docs, args.test_docs = 300, 60, 100
        args.epochs, args.max_length, args.batch_size, args.lr, args.max_leaf_size = 1.0, 32, 32, 1e-3, 8
    return args


def load(args):
    """train, dev, test; label texts are the EUROVOC descriptor names (labels.txt)."""
    ns = argparse.Namespace(data=args.data, train_docs=args.train_docs, dev_docs=args.dev_docs,
                            test_docs=args.test_docs)
    train, dev, test = bx.load(ns)
    train.label_texts = read_label_texts(os.path.join(args.data, "labels.txt"), train.labels)
    return train, dev, test


def config(args, model_path) -> XTransformerConfig:
    return XTransformerConfig(
        encoder=EncoderConfig(model_path=model_path, max_length=args.max_length, batch_size=256),
        members=[MemberConfig(label_repr=rep, max_leaf_size=args.max_leaf_size) for rep in MEMBERS.values()],
        matcher=MatcherConfig(kind="transformer", epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.lr, device="auto"),
        ranker_input="tfidf+neural", ranker=LinearTrainConfig(negatives="tfn+man"),
        predict=PredictConfig(beam_size=args.beam))


def estimate_seconds(n_train: int, n_dev: int, n_test: int, epochs: float, mean_tokens: float, members: int) -> float:
    """The docstring's arithmetic (H100 throughput at 128 tokens, scaled by the mean token length)."""
    scale = max(0.25, mean_tokens / 128)
    per_member = (epochs * n_train / H100_FINETUNE_PER_S + epochs * n_dev / H100_ENCODE_PER_S
                  + (n_train + n_test) / H100_ENCODE_PER_S) * scale
    return n_train / H100_ENCODE_PER_S * scale + members * per_member + 30


def prepare(args) -> dict:
    t0 = time.perf_counter()
    train, dev, test = load(args)
    model_path = args.model_path
    if args.smoke:
        model_path = tiny_bert(os.path.join(args.bundle + "-tiny-bert"), train.input_texts())
    cfg = config(args, model_path)
    options = StageOptions(precision="float16", embeddings="int8", return_encoders=False, limits=not args.smoke)
    s = export_bundle(cfg, train, args.bundle, valid=dev, extra=test, options=options, overwrite=args.overwrite,
                      progress=not args.smoke)
    est = estimate_seconds(len(train), len(dev), len(test), args.epochs, s["mean_tokens"], len(cfg.members))
    info = {**s, "estimated_device_seconds": round(est), "prepare_seconds": round(time.perf_counter() - t0, 1),
            "send_line": check_send(args.bundle, args.smoke)}
    print(info["send_line"])
    print(f"result expected: {fmt_bytes(s['estimated_result_bytes'])} in {s['estimated_result_files']} files; "
          f"device time estimated {est / 60:.1f} min (H100 throughput, {s['mean_tokens']:.0f} tokens per document)")
    return info


def report(args, result: str) -> str:
    train, dev, test = load(args)
    propensities = train_propensities(train.label_counts(), len(train), test.Y.shape[1])
    t = time.perf_counter()
    model = import_result(args.bundle, result, train, valid=dev, require_encoders=False, progress=not args.smoke)
    import_s = time.perf_counter() - t
    X_test = model.featurizer_.transform(test.input_texts(model.featurizer_.config.fields))
    rows, scores = [], {}
    for k, name in enumerate(MEMBERS):  # each member alone, then the ensembles (bench_xtransformer's rows)
        view = copy.copy(model)
        view.members_ = [model.members_[k]]
        scores[name] = view.predict_embedded(X_test, [model.extra_embeddings_[k]], topk=100)
        hist = model.histories_[k]
        rows.append({"row": name, **bx.metrics(test, scores[name], propensities),
                     "valid_cluster_recall": hist.get("best_recall"),
                     "samples_per_s": hist.get("samples_per_second"), "steps": hist.get("steps")})
    # The in-run baseline: XR-Linear's tree over the same TF-IDF (bench_xtransformer's xr-linear row).
    ns = bx.parse_args(["--max-leaf-size", str(args.max_leaf_size), "--device", "cpu", "--cache-dir", "",
                        "--work-dir", "", "--latency-docs", "0"])
    ns.cache_dir = ns.work_dir = None
    X_train = model.featurizer_.transform(train.input_texts(model.featurizer_.config.fields))
    base, scores["xr-linear"] = bx.run_row("xr-linear", ns, train, dev, test, propensities,
                                           (model.featurizer_, X_train))
    rows.insert(0, {**base, "row": "xr-linear"})
    for name, members in bx.ENSEMBLES.items():
        rows.append({"row": name, **bx.metrics(test, average_scores([scores[m] for m in members], 100), propensities)})
    best = best_xr_linear(args, train, test, propensities)
    rows.append(best)
    result_manifest = read_json(os.path.join(result, "manifest.json"))["summary"]
    text = render(args, rows, result_manifest, import_s, len(train), len(dev), len(test))
    return text


def best_xr_linear(args, train, test, propensities) -> dict:
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    cfg = XRLinearConfig.from_json(args.best_xr_config) if not args.smoke else XRLinearConfig()
    t = time.perf_counter()
    model = XRLinear(cfg).fit(train, progress=False)
    fit_s = time.perf_counter() - t
    name = os.path.basename(args.best_xr_config) if not args.smoke else "default config"
    return {"row": f"XR-Linear ({name})", **bx.metrics(test, model.predict(test, topk=100), propensities),
            "fit_s": fit_s}


def render(args, rows, device, import_s, n_train, n_dev, n_test) -> str:
    by = {r["row"]: r for r in rows}
    base, best = by["xr-linear"], rows[-1]
    lines = [("**Smoke scale (CPU, random tiny BERT): not a result.** " if args.smoke else "")
             + f"{environment_line()}. The GPU stage ran on **{device['device']}** in **{device['seconds']:.0f} s** "
             f"(wall time of `xmc stage run`; per stage: "
             + ", ".join(f"{k} {v:.0f}" for k, v in device.get("timings", {}).items()) + f"); import and rankers "
             f"on the CPU {import_s:.0f} s.",
             f"Data: EURLEX57K, {n_train:,} training documents, {n_dev:,} dev documents (matcher early stopping), "
             f"{n_test:,} test documents; all-MiniLM-L6-v2 (fp16 in the bundle, fine-tuned in bf16), "
             f"{args.max_length} tokens, {args.epochs:g} epochs, batch {args.batch_size}, lr {args.lr:g}, "
             f"leaves of <= {args.max_leaf_size} labels, beam b = {args.beam}; embeddings returned as int8 "
             f"(one scale per row).",
             f"Commands: `python benchmarks/gpu/xtransformer_eurlex.py prepare`; on the GPU "
             f"`{args.device_command or 'PYTHONPATH=src python3 -m xmc.cli.main stage run benchmarks/gpu/bundles/xtransformer_eurlex --out $OUT/result'}`; "
             f"`python benchmarks/gpu/xtransformer_eurlex.py report --result RESULT --write`.", "",
             "| row | P@1 | P@3 | P@5 | PSP@5 | ΔP@1 vs in-run XR-Linear | ΔP@1 vs best XR-Linear | dev cluster recall | fine-tune samples/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rec = f"{r['valid_cluster_recall']:.3f}" if r.get("valid_cluster_recall") is not None else ""
        sps = f"{r['samples_per_s']:.0f}" if r.get("samples_per_s") else ""
        lines.append(f"| {r['row']} | {100 * r['P@1']:.2f} | {100 * r['P@3']:.2f} | {100 * r['P@5']:.2f} | "
                     f"{100 * r['PSP@5']:.2f} | {100 * (r['P@1'] - base['P@1']):+.2f} | "
                     f"{100 * (r['P@1'] - best['P@1']):+.2f} | {rec} | {sps} |")
    top = max((r for r in rows if r["row"].startswith(("ft-", "ensemble"))), key=lambda r: r["P@1"])
    lines += ["", f"Best X-Transformer row: {top['row']}. "
              + claim("+2 P@1 over the in-run XR-Linear", top["P@1"], base["P@1"], CLAIM_GAIN) + "; "
              + claim(f"+2 P@1 over {best['row']}", top["P@1"], best["P@1"], CLAIM_GAIN) + "."]
    return "\n".join(lines)


def smoke(args) -> int:
    from xmc.cli.main import main as xmc

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-smoke-xt-") as tmp:
        args.bundle = os.path.join(tmp, "bundle")
        info = prepare(args)
        result = os.path.join(tmp, "out", "result")
        if xmc(["stage", "run", args.bundle, "--out", result, "--device", "cpu", "-q"]) != 0:
            return 1
        print(common.check_back(os.path.join(tmp, "out")))
        print(report(args, result))
    print(f"smoke finished in {time.perf_counter() - t0:.1f} s (bundle {fmt_bytes(info['bundle_bytes'])})")
    return 0


def main(argv=None) -> int:
    args = parse(argv)
    if args.step == "smoke":
        return smoke(args)
    if args.step == "prepare":
        write_json(os.path.join(args.bundle + "-prepare.json"), prepare(args))
        return 0
    if not args.result:
        sys.exit("error: report needs --result (the directory the device command wrote)")
    text = report(args, args.result)
    print(text)
    if args.write and not args.smoke:
        common.markdown_section_write(SECTION, text, TITLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
