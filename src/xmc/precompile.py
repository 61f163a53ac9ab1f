"""Compile and cache xmc's numba kernels once, at install time (``python -m xmc.precompile``).

The kernels are compiled with ``cache=True``; without this step a new user's first ``xmc train``
and ``xmc predict`` pay the compilation (several seconds each, measured at about 7x the run time of
a small job). Training and predicting a tiny XR-Linear model reaches every kernel signature that the
CLI uses (float32 CSR features, squared-hinge and logistic solvers, TFN and TFN+MAN, beam search).
"""

from __future__ import annotations

import sys
import time


def precompile() -> float:
    """Run every kernel once on a tiny synthetic problem; returns the seconds it took."""
    from .datasets.synthetic import make_corpus
    from .models.xr_linear import XRLinear, XRLinearConfig

    start = time.perf_counter()
    # The kernels compile once per width of the stored parent ids: 8-bit up to 256 clusters in a
    # level (up to ~25k labels with the default tree), 16-bit above. A tree of 4-label leaves over
    # 40 labels has the first, 1-label leaves over 600 labels (512 leaf clusters) the second. Each
    # is built with the default int8 weights and with float32 ones (X-Transformer's rankers, and
    # XR-Linear directories written before int8 existed).
    for n_labels, leaf in ((40, 4), (600, 1)):
        corpus = make_corpus(n_train=200, n_test=20, n_labels=n_labels, words_per_label=2, noise_words=200, seed=0)
        for train in ({"loss": "squared-hinge", "negatives": "tfn"},
                      {"loss": "logistic", "negatives": "tfn+man", "weight_dtype": "float32"}):
            config = XRLinearConfig.from_dict({"features": {"min_df": 1},
                                               "indexers": [{"branching": 2, "max_leaf_size": leaf}], "train": train})
            model = XRLinear(config).fit(corpus.train, progress=False)
            model.predict(corpus.test, topk=5)
    return time.perf_counter() - start


def main() -> int:
    seconds = precompile()
    print(f"xmc: numba kernels compiled and cached in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
