"""TF-IDF featurisation of raw text: xmc's ``TfidfFeaturizer.transform`` against scikit-learn's.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_featurize.py --write

XR-Linear and the X-Transformer's rankers featurise every raw-text document with TF-IDF before
the model sees it; for a served EURLEX57K document that is most of the request. Both sides use
the same fitted vocabulary (the default ``TfidfConfig``: word 1-2-grams, at most 200,000 terms,
fitted on EURLEX57K's training documents, or taken from ``--model``, a saved xmc model directory),
and the script first checks that xmc's matrix equals scikit-learn's bit for bit on every test
document.

Measured, over ``--rounds`` rounds (the order of the two sides alternates between rounds):

* one document: ``transform([doc])`` for each of the first ``--docs`` test documents, its p50
  and p90 per round; the table gives the medians over the rounds;
* batch: ``transform(all test documents)``, the median over the rounds;
* xmc's one-time set-up: building the n-gram lookup of a freshly loaded featurizer, done on its
  first ``transform`` (median over the rounds);
* fitting (``--fit-rounds``, 0 to skip): ``fit_transform`` on all training documents, each fit in a
  fresh process (the two sides alternate), its time and peak RSS (the training texts, about 0.65
  GB on EURLEX57K, included); the script first checks that xmc's fitted vocabulary, IDF and
  training matrix equal scikit-learn's bit for bit.

``--write`` replaces the ``bench_featurize`` block of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import resource
import subprocess
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
sys.path.insert(0, os.path.join(_ROOT, "src"))

import markdown_section  # noqa: E402
from bench_loading import machine_description  # noqa: E402
from xmc.data.readers import read_jsonl  # noqa: E402
from xmc.features.tfidf import TfidfConfig, TfidfFeaturizer  # noqa: E402


def read_texts(path: str, fields: list[str]) -> list[str]:
    """The featurised text of every document of a JSONL(.gz) file, joined as XR-Linear joins it."""
    return read_jsonl(path).input_texts(fields)


def fit_child(data: str, side: str, save: str | None) -> None:
    """One fit in this (fresh) process; prints its time and peak RSS as JSON."""
    texts = read_texts(os.path.join(data, "train.jsonl.gz"), TfidfConfig().fields)
    featurizer = TfidfFeaturizer()
    t0 = time.perf_counter()
    if side == "xmc":
        X = featurizer.fit_transform(texts, progress=False)
    else:
        featurizer.vectorizer_ = featurizer._make_vectorizer()
        X = sp.csr_matrix(featurizer.vectorizer_.fit_transform(texts), dtype=np.float32)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if save:
        featurizer.save(os.path.join(save, "featurizer"))
        np.savez(os.path.join(save, "train.npz"), indptr=X.indptr, indices=X.indices, data=X.data)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "n_terms": featurizer.n_features, "n_docs": len(texts)}))


def fit_rounds(data: str, rounds: int, save: str) -> tuple[dict, int]:
    """``rounds`` fits per side in fresh processes (alternating); the first xmc fit and the first
    scikit-learn fit are saved under ``save``/xmc and ``save``/scikit-learn and compared."""
    runs: dict[str, list[dict]] = {"xmc": [], "scikit-learn": []}
    for r in range(rounds):
        for side in (("xmc", "scikit-learn") if r % 2 == 0 else ("scikit-learn", "xmc")):
            command = [sys.executable, os.path.abspath(__file__), "--fit-child", side, "--data", data]
            if r == 0:
                command += ["--save", os.path.join(save, side)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[side].append(json.loads(out.strip().splitlines()[-1]))
            print(f"fit round {r + 1}, {side}: {runs[side][-1]}", flush=True)
    ours, theirs = (np.load(os.path.join(save, side, "train.npz")) for side in ("xmc", "scikit-learn"))
    same = all(np.array_equal(ours[k], theirs[k]) for k in ("indptr", "indices", "data"))
    a, b = (TfidfFeaturizer.load(os.path.join(save, side, "featurizer")) for side in ("xmc", "scikit-learn"))
    same = same and a.vectorizer_.vocabulary_ == b.vectorizer_.vocabulary_ and np.array_equal(a.vectorizer_.idf_,
                                                                                               b.vectorizer_.idf_)
    if not same:
        raise SystemExit("xmc's fitted TF-IDF differs from scikit-learn's: not timing a wrong answer")
    return {side: {"seconds": statistics.median(x["seconds"] for x in v),
                   "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in v),
                   "rounds_s": [x["seconds"] for x in v]} for side, v in runs.items()}, runs["xmc"][0]["n_docs"]


def scikit_learns(featurizer: TfidfFeaturizer, texts: list[str]) -> sp.csr_matrix:
    X = sp.csr_matrix(featurizer.vectorizer_.transform(texts), dtype=np.float32)
    X.sort_indices()
    return X


def per_document(transform, texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        t0 = time.perf_counter()
        transform([text])
        times.append(time.perf_counter() - t0)
    return times


def run(featurizer_dir: str, test_texts: list[str], n_docs: int, rounds: int) -> dict:
    featurizer = TfidfFeaturizer.load(featurizer_dir)
    ours, theirs = featurizer.transform(test_texts), scikit_learns(featurizer, test_texts)
    identical = all(np.array_equal(a, b) for a, b in ((ours.indptr, theirs.indptr), (ours.indices, theirs.indices),
                                                    (ours.data, theirs.data)))
    if not identical:
        raise SystemExit("xmc's TF-IDF differs from scikit-learn's: not timing a wrong answer")
    sides = {"xmc": featurizer.transform, "scikit-learn": lambda texts: scikit_learns(featurizer, texts)}
    one = {name: [] for name in sides}
    batch = {name: [] for name in sides}
    setup = []
    docs = test_texts[:n_docs]
    for r in range(rounds):
        fresh = TfidfFeaturizer.load(featurizer_dir)
        t0 = time.perf_counter()
        fresh._ngram_lookup()
        setup.append(time.perf_counter() - t0)
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            times = per_document(sides[name], docs)
            one[name].append((float(np.percentile(times, 50)), float(np.percentile(times, 90))))
            t0 = time.perf_counter()
            sides[name](test_texts)
            batch[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{n} p50 {one[n][-1][0] * 1e3:.3f} ms, batch {batch[n][-1]:.2f} s"
                                           for n in sides), flush=True)
    return {
        "identical": identical, "n_test": len(test_texts), "n_docs": len(docs), "rounds": rounds,
        "n_terms": featurizer.n_features, "ngram_range": list(featurizer.vectorizer_.ngram_range),
        "setup_s": statistics.median(setup),
        "sides": {name: {"p50_ms": 1e3 * statistics.median(p for p, _ in one[name]),
                         "p90_ms": 1e3 * statistics.median(q for _, q in one[name]),
                         "p50_rounds_ms": [1e3 * p for p, _ in one[name]],
                         "batch_s": statistics.median(batch[name]), "batch_rounds_s": batch[name]}
                  for name in sides},
    }


def markdown(result: dict, source: str, command: str) -> str:
    peer = result["sides"]["scikit-learn"]
    lines = [
        f"Machine: {machine_description()}. Date: {datetime.date.today().isoformat()}. "
        f"Command (from the repository root): `{command}`",
        "",
        f"Vocabulary: {result['n_terms']:,} terms, word {result['ngram_range'][0]}-{result['ngram_range'][1]}-grams "
        f"({source}). Documents: EURLEX57K test (title and text). xmc's matrix equals scikit-learn's bit for bit "
        f"on all {result['n_test']:,} test documents (checked before timing). One document: `transform([doc])` "
        f"on each of the first {result['n_docs']:,} test documents; batch: one `transform` of all "
        f"{result['n_test']:,}. Medians over {result['rounds']} rounds (the order of the sides alternates).",
        "",
        "| featuriser | one document p50 (ms) | p90 (ms) | p50 / scikit-learn | batch (s) | batch / scikit-learn | "
        "p50 per round (ms) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, side in result["sides"].items():
        lines.append(
            f"| {name} | {side['p50_ms']:.3f} | {side['p90_ms']:.3f} | {side['p50_ms'] / peer['p50_ms']:.2f} | "
            f"{side['batch_s']:.2f} | {side['batch_s'] / peer['batch_s']:.2f} | "
            + ", ".join(f"{p:.3f}" for p in side["p50_rounds_ms"]) + " |")
    lines += ["", f"xmc's one-time set-up (the n-gram lookup, built on a loaded featurizer's first `transform`): "
                  f"{result['setup_s']:.2f} s."]
    fit = result.get("fit")
    if fit:
        peer = fit["scikit-learn"]
        lines += ["", f"Fitting on EURLEX57K's {result['n_train']:,} training documents (`fit_transform`, each in a fresh "
                      f"process, median of {len(peer['rounds_s'])}; vocabulary, IDF and training matrix checked equal "
                      f"to scikit-learn's bit for bit):", "",
                  "| featuriser | fit (s) | fit / scikit-learn | peak RSS (MB) | RSS / scikit-learn | fit per round (s) |",
                  "|---|---:|---:|---:|---:|---|"]
        for name, side in fit.items():
            lines.append(f"| {name} | {side['seconds']:.1f} | {side['seconds'] / peer['seconds']:.2f} | "
                         f"{side['peak_rss_mb']:.0f} | {side['peak_rss_mb'] / peer['peak_rss_mb']:.2f} | "
                         + ", ".join(f"{x:.1f}" for x in side["rounds_s"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(_ROOT, "..", "shared", "data", "eurlex57k"))
    ap.add_argument("--model", help="a saved xmc model directory whose featurizer/ to time transform with "
                                    "(default: the one fitted by the first xmc fit)")
    ap.add_argument("--docs", type=int, default=1000, help="documents timed one at a time")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fit-rounds", type=int, default=3, help="fits per side (0: fit once, untimed, for transform)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--write", action="store_true", help="replace the bench_featurize block of BENCHMARKS.md")
    ap.add_argument("--fit-child", choices=["xmc", "scikit-learn"], help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fit_child:
        fit_child(args.data, args.fit_child, args.save)
        return 0
    config = TfidfConfig()
    test_texts = read_texts(os.path.join(args.data, "test.jsonl.gz"), config.fields)
    with tempfile.TemporaryDirectory() as tmp:
        fit, n_train = fit_rounds(args.data, args.fit_rounds, tmp) if args.fit_rounds else (None, None)
        if args.model:
            featurizer_dir, source = os.path.join(args.model, "featurizer"), f"the featurizer of {args.model}"
        else:
            if not fit:
                fit_child(args.data, "xmc", os.path.join(tmp, "xmc"))
            featurizer_dir = os.path.join(tmp, "xmc", "featurizer")
            source = "the default TfidfConfig fitted on EURLEX57K's training documents"
        result = run(featurizer_dir, test_texts, args.docs, args.rounds)
    result["fit"], result["n_train"] = fit, n_train
    body = markdown(result, source, markdown_section.invocation())
    print(body)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    if args.write:
        markdown_section.write_section("featurize", body, "TF-IDF featurisation of raw text")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
