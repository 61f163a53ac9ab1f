"""Summary statistics of a dataset: size, label density and the long tail."""

from __future__ import annotations

import numpy as np

from xmc.data.dataset import XMCDataset

# Buckets of per-label document counts: [low, high) -> name.
_TAIL_BUCKETS = ((0, 1, "0"), (1, 2, "1"), (2, 5, "2-4"), (5, 10, "5-9"), (10, 100, "10-99"),
                 (100, 1000, "100-999"), (1000, None, "1000+"))


def dataset_stats(ds: XMCDataset) -> dict:
    """Statistics of ``ds`` as a JSON-serialisable dict.

    Keys: ``documents``, ``labels`` (columns of ``Y``), ``labels_with_docs``
    (labels with at least one document), ``unseen_labels``,
    ``docs_without_labels``, ``labels_per_doc_mean/median/max``,
    ``docs_per_label_mean/median`` (over all labels, zeros included),
    ``docs_per_label_mean_nonzero`` (over labels with at least one document),
    ``features`` (only when ``ds.X`` is set) and ``label_count_histogram``: the
    number of labels whose document count falls in each bucket
    ``0, 1, 2-4, 5-9, 10-99, 100-999, 1000+`` (the long tail at a glance).
    """
    Y = ds.Y
    positive = Y > 0  # robust to explicit zeros
    labels_per_doc = np.asarray(positive.sum(axis=1)).ravel()
    docs_per_label = np.asarray(positive.sum(axis=0)).ravel()
    n, n_labels = Y.shape

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if len(x) else 0.0

    def median(x: np.ndarray) -> float:
        return float(np.median(x)) if len(x) else 0.0

    histogram = {}
    for low, high, name in _TAIL_BUCKETS:
        in_bucket = docs_per_label >= low if high is None else (docs_per_label >= low) & (docs_per_label < high)
        histogram[name] = int(in_bucket.sum())
    nonzero = docs_per_label[docs_per_label > 0]
    stats = {
        "documents": int(n),
        "labels": int(n_labels),
        "labels_with_docs": int(len(nonzero)),
        "unseen_labels": len(ds.unseen_labels),
        "docs_without_labels": int((labels_per_doc == 0).sum()),
        "labels_per_doc_mean": mean(labels_per_doc),
        "labels_per_doc_median": median(labels_per_doc),
        "labels_per_doc_max": int(labels_per_doc.max()) if n else 0,
        "docs_per_label_mean": mean(docs_per_label),
        "docs_per_label_median": median(docs_per_label),
        "docs_per_label_mean_nonzero": mean(nonzero),
    }
    if ds.X is not None:
        stats["features"] = int(ds.X.shape[1])
    stats["label_count_histogram"] = histogram
    return stats


def format_stats(stats: dict) -> str:
    """Render :func:`dataset_stats` output as an aligned two-column text table."""
    rows: list[tuple[str, str]] = []
    for key, value in stats.items():
        if key == "label_count_histogram":
            continue
        text = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        rows.append((key.replace("_", " "), text))
    histogram = stats.get("label_count_histogram", {})
    total = sum(histogram.values()) or 1
    if histogram:
        rows.append(("labels by document count", ""))
        for bucket, count in histogram.items():
            rows.append((f"  {bucket}", f"{count:,} ({100 * count / total:.1f}%)"))
    width = max(len(name) for name, _ in rows)
    value_width = max(len(text) for _, text in rows)
    return "\n".join(f"{name:<{width}}  {text:>{value_width}}".rstrip() for name, text in rows)
