"""Datasets: the in-memory type, readers and writers, splits and statistics."""

from xmc.data.dataset import LabelVocabulary, XMCDataset, labels_to_csr
from xmc.data.readers import (
    duplicate_ids,
    read_attentionxml,
    read_dataset,
    read_jsonl,
    read_label_names,
    read_label_texts,
    read_predictions,
    read_taxonomy,
    read_xc_sparse,
    write_predictions,
    write_xc_sparse,
)
from xmc.data.split import train_valid_split
from xmc.data.stats import dataset_stats, format_stats

__all__ = [
    "LabelVocabulary",
    "XMCDataset",
    "labels_to_csr",
    "duplicate_ids",
    "read_attentionxml",
    "read_dataset",
    "read_jsonl",
    "read_label_names",
    "read_label_texts",
    "read_predictions",
    "read_taxonomy",
    "read_xc_sparse",
    "write_predictions",
    "write_xc_sparse",
    "train_valid_split",
    "dataset_stats",
    "format_stats",
]
