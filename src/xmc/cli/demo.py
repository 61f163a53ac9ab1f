"""``xmc demo``: train, save, reload and evaluate XR-Linear on the synthetic corpus, offline."""

from __future__ import annotations

import json
import os
import time

from ..data import write_predictions
from ..datasets.synthetic import make_corpus
from ..io import Marker, atomic_directory
from ..metrics import evaluate, format_report, jain_propensity, top_k
from ..models.xr_linear import XRLinear, XRLinearConfig


DEMO_MARKER = "xmc_demo.json"  # tells an earlier demo's output (which --overwrite may replace) from any other folder


def run_demo(out_dir: str, seed: int = 0, *, overwrite: bool = False) -> dict:
    """Run the demo; writes ``model/``, ``predictions.jsonl``, ``metrics.json`` and ``xmc_demo.json`` under ``out_dir``.

    ``out_dir`` must be a new path, or an earlier demo's output and ``overwrite``: a folder the demo did
    not write is refused before any work. The whole folder is written beside it and renamed when complete.
    """
    with atomic_directory(out_dir, overwrite=overwrite, marker=Marker(DEMO_MARKER, demo="xmc demo"),
                          what="demo output directory") as tmp:
        report = _run_demo(tmp, seed)
        with open(os.path.join(tmp, DEMO_MARKER), "w", encoding="utf-8") as fh:
            json.dump({"demo": "xmc demo", "seed": seed}, fh, indent=2)
    print(f"\nmodel: {os.path.join(out_dir, 'model')}\npredictions: {os.path.join(out_dir, 'predictions.jsonl')}")
    return report


def _run_demo(out_dir: str, seed: int) -> dict:
    corpus = make_corpus(seed=seed)
    train, test = corpus.train, corpus.test
    print(f"synthetic corpus: {len(train)} train / {len(test)} test documents, {train.n_labels} labels "
          f"(Zipf-distributed), {len(corpus.taxonomy)} categories")
    config = XRLinearConfig.from_dict({
        "features": {"min_df": 1},
        "indexers": [{"branching": 2, "max_leaf_size": 20, "seed": s} for s in range(3)],
    })
    start = time.perf_counter()
    model = XRLinear(config).fit(train, progress=False)
    train_s = time.perf_counter() - start
    model_dir = os.path.join(out_dir, "model")
    model.save(model_dir)
    model = XRLinear.load(model_dir)
    start = time.perf_counter()
    scores = model.predict(test.input_texts(config.features.fields))
    predict_s = time.perf_counter() - start
    propensities = jain_propensity(train.label_counts(), len(train))
    report = evaluate(test.Y, scores, ks=(1, 3, 5), propensities=propensities, threshold=0.5)
    print(f"XR-Linear, ensemble of 3 trees: trained in {train_s:.1f} s, predicted in {predict_s:.2f} s\n")
    print(format_report(report))
    indices, values = top_k(scores, config.predict.topk)
    write_predictions(os.path.join(out_dir, "predictions.jsonl"), test.ids, model.labels_.names, indices, values)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    return report
