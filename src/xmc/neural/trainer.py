"""One training engine for every neural model and for prompt tuning.

A model supplies its batches (one epoch's list at a time) and its batch -> loss step; the engine
does the rest, the same way for everyone:

* AdamW over parameter groups (e.g. encoder / heads learning rates) with a linear warm-up
  schedule (or a caller's schedule, or none);
* gradient accumulation over ``grad_accum`` micro-batches, the leftovers of an epoch stepped
  (never dropped), gradients clipped before each step;
* autocast on CUDA (bf16, fp16 with a gradient scaler where bf16 is missing);
* early stopping on a validation callback, with the best state restored;
* stochastic weight averaging (``torch.optim.swa_utils.AveragedModel``) over the steps after
  ``swa_start``, kept when it validates at least as well as the kept state (or always, without
  validation);
* a checkpoint after every epoch (weights, optimiser, schedule, RNG states, best state, averages)
  that a later run with the same directory resumes from, so an interrupted run ends where an
  uninterrupted one does;
* a progress bar with the loss and an ETA (:func:`xmc.progress.progress_bar`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelFormatError
from ..io import Marker, atomic_directory
from ..progress import progress_bar
from .device import autocast
from .state_file import load_state, save_state

logger = logging.getLogger(__name__)

# A step returns the loss (a mean over its micro-batch) or (loss, {name: tensor or float}) for the bar and history.
StepFn = Callable[[Any], "torch.Tensor | tuple[torch.Tensor, dict]"]


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: a permutation of ``range(n)`` cut into ``batch_size`` row ids (the last may be short)."""
    order = rng.permutation(n)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


@dataclasses.dataclass
class EarlyStopping:
    """Validation every ``every`` optimiser steps (and after the last); stop after ``patience`` without a gain.

    ``evaluate()`` returns ``(score, record)``: a score where higher is better (numbers or tuples
    compare) and a dict stored in the history next to the step.
    """

    evaluate: Callable[[], tuple[Any, dict]]
    every: int
    patience: int


_STATE = "training_state"  # the checkpoint's optimizer, scheduler, scaler, RNG and best weights


class ModuleAverage:
    """SWA of one module: ``AveragedModel`` plus the engine's hooks."""

    def __init__(self, module: nn.Module):
        from torch.optim.swa_utils import AveragedModel

        self.module = module
        self.average = AveragedModel(module)

    @property
    def n_averaged(self) -> int:
        return int(self.average.n_averaged.item())

    def update(self) -> None:
        self.average.update_parameters(self.module)

    def load_into(self) -> None:
        self.module.load_state_dict(self.average.module.state_dict())

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)


@dataclasses.dataclass
class TrainHistory:
    """What a run did: steps, validations, the kept state, throughput."""

    steps: int = 0
    total_steps: int = 0
    epochs: int = 0
    evaluations: list = dataclasses.field(default_factory=list)
    best_score: Any = None
    best_step: int = 0
    bad_evaluations: int = 0
    kept: str = "final"
    swa: dict | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    samples: int = 0
    seconds: float = 0.0
    finished: bool = False

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class Trainer:
    """Trains ``module`` by ``step`` over the batches of each epoch; see the module docstring.

    Args:
        module: the trained state: what early stopping snapshots, checkpoints save and SWA
            falls back to (e.g. only the heads when the encoder is frozen).
        param_groups: AdamW parameter groups (``{"params": ..., "lr": ...}``); their
            parameters are the ones clipped.
        total_steps: optimiser steps of the run (the schedule's length; training stops there).
        grad_accum: micro-batches per optimiser step.
        weight_decay: AdamW weight decay.
        schedule: ``"linear"`` (warm-up then linear decay), None (constant) or a callable
            ``(optimizer, total_steps) -> LR scheduler``.
        warmup_ratio: share of the steps warming up (``"linear"`` only).
        max_grad_norm: clip the gradients' global norm to this before each step (None: no clipping).
        amp: autocast the step on CUDA.
        device: where the step runs (for autocast); default: the module's.
        swa: an averager (:class:`ModuleAverage` or one with ``update``, ``load_into``,
            ``n_averaged``), updated after every step past ``swa_start`` x ``total_steps``.
        swa_start: share of the steps before averaging starts.
        early_stopping: validation, its frequency and patience (None: train all steps).
        checkpoint_dir: write a checkpoint after each epoch and at the end; resume from it.
        save_module / load_module: ``f(directory)`` writing / reading the module's weights in a
            checkpoint (default: ``model.safetensors`` of ``module``).
        is_main: this process writes checkpoints (False on the other ranks of a distributed run).
        rng: the numpy generator the caller's batches draw from (saved in checkpoints).
        train_mode: sets train/eval modes before each epoch and after each validation
            (default: ``module.train()``), e.g. to keep a frozen encoder in eval mode.
        progress / desc: the progress bar.
    """

    def __init__(self, module: nn.Module, param_groups: Sequence[dict], *, total_steps: int, grad_accum: int = 1,
                 weight_decay: float = 0.0, schedule: str | Callable | None = "linear", warmup_ratio: float = 0.0,
                 max_grad_norm: float | None = 1.0, amp: bool = False, device: torch.device | None = None,
                 swa=None, swa_start: float = 0.0, early_stopping: EarlyStopping | None = None,
                 checkpoint_dir: str | None = None, save_module: Callable[[str], None] | None = None,
                 load_module: Callable[[str], None] | None = None, is_main: bool = True,
                 rng: np.random.Generator | None = None, train_mode: Callable[[], None] | None = None,
                 progress: bool = True, desc: str = "training"):
        if grad_accum < 1:
            raise ValueError("grad_accum must be >= 1")
        self.module = module
        self.param_groups = [dict(g, params=list(g["params"])) for g in param_groups]
        self.params = [p for g in self.param_groups for p in g["params"]]
        self.total_steps = max(1, int(total_steps))
        self.grad_accum = grad_accum
        self.optimizer = torch.optim.AdamW(self.param_groups, weight_decay=weight_decay)
        if schedule == "linear":
            from transformers import get_linear_schedule_with_warmup

            self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(warmup_ratio * self.total_steps),
                                                             self.total_steps)
        elif schedule is None:
            self.scheduler = None
        else:
            self.scheduler = schedule(self.optimizer, self.total_steps)
        self.max_grad_norm = max_grad_norm
        self.device = device if device is not None else next(module.parameters()).device
        self.amp = amp
        use_fp16 = amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)
        self.swa = swa
        self.swa_from = int(swa_start * self.total_steps)
        self.early_stopping = early_stopping
        self.checkpoint_dir = checkpoint_dir
        self.save_module = save_module or self._save_module
        self.load_module = load_module or self._load_module
        self.is_main = is_main
        self.rng = rng
        self.train_mode = train_mode or module.train
        self.progress, self.desc = progress, desc
        self.history = TrainHistory(total_steps=self.total_steps)
        self._best_state: dict | None = None
        self._log_sums: dict[str, float] = {}
        self._log_count = 0

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, epoch_batches: Callable[[], Iterable], step: StepFn,
            samples: Callable[[Any], int] = len) -> TrainHistory:
        """Train until ``total_steps`` optimiser steps or early stopping; return the history.

        ``epoch_batches()`` gives one epoch's batches (called once per epoch; draw the shuffle
        from ``rng``); ``step(batch)`` runs the forward pass and returns the mean loss.
        """
        if self.checkpoint_dir and os.path.exists(os.path.join(self.checkpoint_dir, "history.json")):
            self._resume()
            h = self.history
            logger.info("resumed %s from %s after epoch %d", self.desc, self.checkpoint_dir, h.epochs)
            if h.finished:  # a completed run: its kept state is what was saved
                return h
        h = self.history
        started = time.perf_counter() - h.seconds
        stop = h.steps >= self.total_steps
        bar = progress_bar(total=self.total_steps, initial=h.steps, desc=self.desc, disable=not self.progress)
        try:
            while not stop:
                batches = list(epoch_batches())
                if not batches:  # nothing to train on: no step can ever be taken
                    logger.warning("%s: no training batches; nothing trained", self.desc)
                    break
                stop = self._epoch(batches, step, samples, bar)
                h.epochs += 1
                h.seconds = time.perf_counter() - started
                if not stop and self.checkpoint_dir:
                    self._save_checkpoint()
        finally:
            bar.close()
        h.seconds = time.perf_counter() - started
        self._keep_final_state()
        h.finished = True
        if self.checkpoint_dir:
            self._save_checkpoint()
        return h

    def _epoch(self, batches: list, step: StepFn, samples, bar) -> bool:
        h = self.history
        self.train_mode()
        self._log_sums, self._log_count = {}, 0
        micro, step_losses = 0, []
        for batch in batches:
            with autocast(self.device, self.amp):
                out = step(batch)
            loss, logs = out if isinstance(out, tuple) else (out, {})
            self.scaler.scale(loss.float() / self.grad_accum).backward()
            step_losses.append(float(loss.item()))
            for key, value in logs.items():
                self._log_sums[key] = self._log_sums.get(key, 0.0) + float(value)
            self._log_count += 1
            h.samples += samples(batch)
            micro += 1
            if micro % self.grad_accum and micro < len(batches):
                continue  # leftovers at the end of the epoch are stepped, never dropped
            self._optimizer_step()
            h.last_loss = float(np.mean(step_losses))
            if h.first_loss is None:
                h.first_loss = h.last_loss
            step_losses = []
            bar.update(1)
            bar.set_postfix(self.log_means() or {"loss": f"{h.last_loss:.3f}"})
            done = h.steps >= self.total_steps
            es = self.early_stopping
            if es is not None and (h.steps % max(1, es.every) == 0 or done):
                if self._validate():
                    logger.info("early stop at step %d (best %d)", h.steps, h.best_step)
                    return True
                self.train_mode()
            if done:
                return True
        return False

    def _optimizer_step(self) -> None:
        if self.max_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.history.steps += 1
        if self.swa is not None and self.history.steps > self.swa_from:
            self.swa.update()  # before zero_grad: an averager may ask which parts had gradients
        self.optimizer.zero_grad(set_to_none=True)

    def log_means(self) -> dict[str, float]:
        """The step's named terms averaged over this epoch's micro-batches so far."""
        return {k: v / max(self._log_count, 1) for k, v in self._log_sums.items()}

    def _validate(self) -> bool:
        """Validate, remember the best state; True when patience is exhausted."""
        h, es = self.history, self.early_stopping
        score, record = es.evaluate()
        h.evaluations.append({"step": h.steps, **record})
        if h.best_score is None or score > h.best_score:
            h.best_score, h.best_step, h.bad_evaluations = score, h.steps, 0
            self._best_state = _cpu_state(self.module)
            return False
        h.bad_evaluations += 1
        return h.bad_evaluations >= es.patience

    def _keep_final_state(self) -> None:
        h = self.history
        if self._best_state is not None and h.best_step != h.steps:
            self.module.load_state_dict(self._best_state)
            h.kept = f"best checkpoint (step {h.best_step})"
        if self.swa is None or self.swa.n_averaged == 0:
            return
        if self.early_stopping is None:
            self.swa.load_into()
            h.kept = f"SWA average of {self.swa.n_averaged} steps"
            h.swa = {"averaged_steps": self.swa.n_averaged}
            return
        current = h.best_score if h.best_score is not None else self.early_stopping.evaluate()[0]
        kept_state = _cpu_state(self.module)
        self.swa.load_into()
        score, record = self.early_stopping.evaluate()
        h.swa = {"averaged_steps": self.swa.n_averaged, **record}
        if score >= current:
            h.kept = f"SWA average of {self.swa.n_averaged} steps"
        else:
            self.module.load_state_dict(kept_state)

    # ---- checkpoints -----------------------------------------------------------------------
    def _save_module(self, directory: str) -> None:
        from safetensors.torch import save_model

        save_model(self.module, os.path.join(directory, "model.safetensors"))

    def _load_module(self, directory: str) -> None:
        from safetensors.torch import load_model

        load_model(self.module, os.path.join(directory, "model.safetensors"), device=str(self.device))

    def _save_checkpoint(self) -> None:
        if not self.is_main:
            return
        h = self.history
        # Replaces its own previous epoch (recognised by history.json), nothing else.
        marker = Marker("history.json", accepts=lambda c: isinstance(c.get("history"), dict))
        with atomic_directory(self.checkpoint_dir, overwrite=True, marker=marker, what="checkpoint") as tmp:
            self.save_module(tmp)
            # Tensors and numbers only, as safetensors + JSON: resuming unpickles nothing.
            state = {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                     "scaler": self.scaler.state_dict()}
            if self.scheduler is not None:
                state["scheduler"] = self.scheduler.state_dict()
            if self.device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
            if self._best_state is not None:
                state["best_state"] = self._best_state
            if self.swa is not None and hasattr(self.swa, "state_dict"):
                state["swa"] = self.swa.state_dict()
            save_state(state, tmp, _STATE)
            record = dataclasses.asdict(h)
            with open(os.path.join(tmp, "history.json"), "w", encoding="utf-8") as fh:
                json.dump({"history": record, "rng": self.rng.bit_generator.state if self.rng else None}, fh)

    def _resume(self) -> None:
        directory = self.checkpoint_dir
        with open(os.path.join(directory, "history.json"), encoding="utf-8") as fh:
            saved = json.load(fh)
        record = saved.get("history")
        fields = {f.name for f in dataclasses.fields(TrainHistory)}
        foreign = ModelFormatError(f"{directory}: not a checkpoint of this xmc version's trainer; "
                                   "choose another checkpoint directory or remove this one")
        if not isinstance(record, dict) or not set(record) <= fields:
            raise foreign
        if isinstance(record.get("best_score"), list):  # tuples come back from JSON as lists
            record["best_score"] = tuple(record["best_score"])
        try:  # an older xmc's optimizer.pt (a pickle) is never read
            state = load_state(directory, _STATE)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise foreign from exc
        self.history = TrainHistory(**record)
        self.load_module(directory)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self._best_state = state.get("best_state")
        if self._best_state is not None:
            self._best_state = {k: v.cpu() for k, v in self._best_state.items()}
        if self.swa is not None and "swa" in state:
            self.swa.load_state_dict(state["swa"])
        if self.rng is not None and saved.get("rng"):
            self.rng.bit_generator.state = saved["rng"]
