"""Fixtures shared by several test files.

``tiny_bert_dir`` builds a random BERT small enough for a CPU test (a WordPiece vocabulary of the
given words, saved like a hub model); torch and transformers are imported only when it is called,
so the linear tests never import them.
"""

from __future__ import annotations

import os

import pytest


def build_tiny_bert(directory: str | os.PathLike, words, *, hidden_size: int = 16, layers: int = 2,
                    intermediate_size: int = 32, extra_tokens=()) -> str:
    """Write a random BERT (weights from ``torch.manual_seed(0)``) whose vocabulary is the special
    tokens, ``extra_tokens`` and ``words`` (in that order) into ``directory``; return its path."""
    import torch
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra_tokens]
    vocab += [w for w in words if w not in vocab]
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=os.path.join(directory, "vocab.txt")).save_pretrained(str(directory))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=layers,
                                     num_attention_heads=2, intermediate_size=intermediate_size,
                                     max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(str(directory))
    return str(directory)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """``make(name, words, **sizes)``: a tiny random BERT directory (see :func:`build_tiny_bert`)."""
    def make(name: str, words, **sizes) -> str:
        return build_tiny_bert(tmp_path_factory.mktemp(name), words, **sizes)

    return make
