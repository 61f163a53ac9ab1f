"""GUDN / LightXML prediction over the label tree and the training loop (through
:mod:`xmc.neural.trainer`); torch is imported inside."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.sparse as sp

from ...metrics import evaluate, top_k, topk_to_csr
from ...ranker.negatives import binarize

if TYPE_CHECKING:
    from .model import GUDN

logger = logging.getLogger(__name__)


def _batch(network, token_ids: Sequence[Sequence[int]], rows, device) -> dict:
    return {k: v.to(device) for k, v in network.encoder.collate([token_ids[i] for i in rows]).items()}


def predict_scores(network, token_ids: Sequence[Sequence[int]] | None, leaves: sp.csr_matrix, *, topk: int,
                   beam_size: int, batch_size: int = 64, amp: bool = True, progress: bool = False,
                   features=None) -> sp.csr_matrix:
    """Top-k scores CSR (n, L) from the text path: the labels of the top-``beam_size`` clusters.

    Args:
        token_ids: pre-tokenised texts, length n (None when ``features`` are given).
        leaves: (L, K) label-to-cluster indicator.
        features: precomputed text features E_t, a (n, dim) tensor, instead of running the encoder.
    """
    import torch

    from ...neural.guide import candidate_labels, top_cluster_ids
    from ...neural.inference import for_each_batch, sorted_batches, token_lengths

    n, L = (len(token_ids) if features is None else features.shape[0]), leaves.shape[0]
    clusters_to_labels = sp.csr_matrix(leaves.T)
    label_cluster = np.asarray(leaves.argmax(axis=1)).ravel()
    device = next(network.parameters()).device
    if features is None:  # longest first: batches of similar lengths pad less
        lengths = token_lengths(token_ids)
    else:
        lengths, features = np.zeros(n, dtype=np.int64), features.to(device)
    k = min(topk, L)
    indices = np.full((n, k), -1, dtype=np.int64)
    values = np.zeros((n, k), dtype=np.float32)

    def run(_, rows):
        if features is None:
            batch_features = network.text_features(**_batch(network, token_ids, rows, device))
        else:
            batch_features = features[torch.from_numpy(rows).to(device)]
        cluster_logits = network.cluster_logits(batch_features)
        index, valid = candidate_labels(top_cluster_ids(cluster_logits, beam_size), clusters_to_labels)
        logits = network.candidate_logits(batch_features, torch.from_numpy(index).to(device))
        meta = torch.sigmoid(cluster_logits.float()).cpu().numpy()
        scores = torch.sigmoid(logits.float()).cpu().numpy() * np.take_along_axis(meta, label_cluster[index], 1)
        scores = np.where(valid, scores, -1.0)
        kk = min(k, scores.shape[1])
        ids, vals = top_k(scores, kk)
        labels = np.take_along_axis(index, np.maximum(ids, 0), 1)
        labels = np.where((ids >= 0) & (vals >= 0), labels, -1)
        indices[rows, :kk] = labels
        values[rows, :kk] = np.where(labels >= 0, vals, 0.0)

    for_each_batch(network, sorted_batches(lengths, batch_size), run, device=device, amp=amp, progress=progress,
                   desc="predicting")
    return topk_to_csr(indices, values, L)


def _validate(model: GUDN, tokens, Y, metric: str, features=None) -> tuple[float, float]:
    scores = predict_scores(model.network_, tokens, model._leaves(), topk=5, beam_size=model.config.predict.beam_size,
                            batch_size=model.config.encoder.batch_size, amp=model.config.train.amp,
                            features=features)
    report = evaluate(Y, scores, ks=(1,), threshold=None if metric == "p@1" else 0.5)
    return float(report["P@1" if metric == "p@1" else metric]), float(report["P@1"])


def _frozen_features(network, tokens, batch_size: int, device, amp: bool, progress: bool):
    """E_t of every training text under the frozen encoder (eval mode), kept on ``device``."""
    import torch

    from ...neural.inference import encode_tokens

    return torch.from_numpy(encode_tokens(network, tokens, network.text_features, network.encoder.collate,
                                          batch_size=batch_size, dim=network.encoder.dim, amp=amp, progress=progress,
                                          desc="encoding (frozen encoder)")).to(device)


def _frozen_label_states(network, tokens, batch_size: int, device, amp: bool, progress: bool):
    """E_l's unprojected [CLS] states of every label-side input under the frozen encoder, kept on ``device``."""
    import torch

    from ...neural.inference import encode_tokens

    return torch.from_numpy(encode_tokens(network, tokens, network.label_states, network.encoder.collate,
                                          batch_size=batch_size, amp=amp, progress=progress,
                                          desc="encoding label texts (frozen encoder)")).to(device)


def train_gudn(model: GUDN, tokens: Sequence[Sequence[int]], Y: sp.csr_matrix,
               label_tokens: Sequence[Sequence[int]] | None, *, valid_tokens: Sequence[Sequence[int]],
               valid_Y: sp.csr_matrix, progress: bool = True) -> dict:
    """Train ``model.network_`` in place with L_overall = L_guide + L_class.

    Args:
        tokens: pre-tokenised training texts (n).
        Y: (n, L) labels.
        label_tokens: pre-tokenised label-side inputs (``label_input: text`` with a guide), else None.
        valid_tokens / valid_Y: the early-stopping data.

    Returns:
        The history: steps, validations, kept state, loss terms of the last steps, throughput.
    """
    import torch

    from ...neural.guide import (candidate_bce, candidate_labels, feature_guide_loss, link_guide_loss, meta_loss,
                                top_cluster_ids)
    from ...neural.masked_loss import dense_rows, gathered_targets, padded_indices
    from ...neural.trainer import EarlyStopping, ModuleAverage, Trainer, shuffled_batches

    cfg, config, network = model.config, model.config.train, model.network_
    device = next(network.parameters()).device
    leaves = model._leaves()
    clusters_to_labels = sp.csr_matrix(leaves.T)
    M = sp.csr_matrix(binarize(Y @ leaves), dtype=np.float32)
    n = len(tokens)
    rng = np.random.default_rng(config.seed)
    n_batches = math.ceil(n / config.batch_size)
    steps_per_epoch = max(1, math.ceil(n_batches / config.grad_accum))
    heads = [p for name, p in network.named_parameters() if not name.startswith("encoder.")]
    groups = [{"params": heads, "lr": config.head_learning_rate or config.learning_rate}]
    cached = valid_cached = label_cached = None
    if config.freeze_encoder:  # encode every training and validation text once; the heads' dropout still applies
        network.encoder.requires_grad_(False)
        cached = _frozen_features(network, tokens, cfg.encoder.batch_size, device, config.amp, progress)
        valid_cached = _frozen_features(network, valid_tokens, cfg.encoder.batch_size, device, config.amp, progress)
        if cfg.label_path and cfg.label_input == "text":
            # E_l's encoder states are fixed too: the guides train its projection and the shared classifiers.
            label_cached = _frozen_label_states(network, label_tokens, cfg.encoder.batch_size, device, config.amp,
                                                progress)
    else:
        groups.insert(0, {"params": network.encoder.parameters(), "lr": config.learning_rate})
    loss_terms: dict[str, float] = {}

    def step(rows):
        if cached is None:
            features = network.text_features(**_batch(network, tokens, rows, device))
        else:
            features = cached[torch.from_numpy(rows).to(device)]
        cluster_logits = network.cluster_logits(features)
        index, valid = candidate_labels(top_cluster_ids(cluster_logits, cfg.n_candidate_clusters),
                                        clusters_to_labels, forced=M[rows])
        index_t, valid_t = torch.from_numpy(index).to(device), torch.from_numpy(valid).to(device)
        targets = torch.from_numpy(gathered_targets(Y, rows, index)).to(device)
        logits = network.candidate_logits(features, index_t)
        terms = {"meta": meta_loss(cluster_logits, dense_rows(M, rows, device)),
                 "rank": candidate_bce(logits, targets, valid_t)}
        if cfg.label_path:
            if label_cached is not None:
                label_features = network.label_proj(label_cached[torch.from_numpy(rows).to(device)])
            elif cfg.label_input == "text":
                label_features = network.label_features(**_batch(network, label_tokens, rows, device))
            else:
                label_index, label_valid = padded_indices(Y, rows)
                label_features = network.label_features(label_index=torch.from_numpy(label_index).to(device),
                                                        label_valid=torch.from_numpy(label_valid).to(device))
            if cfg.feature_guide:
                terms["feature"] = feature_guide_loss(features, label_features)
            if cfg.link_guide:
                terms["link"] = link_guide_loss(network.candidate_logits(label_features, index_t), targets, valid_t)
        return sum(terms.values()), {k: v.detach() for k, v in terms.items()}

    def evaluate():
        loss_terms.clear()
        loss_terms.update(trainer.log_means())
        score = _validate(model, valid_tokens, valid_Y, config.select_metric, valid_cached)
        logger.info("step %d: validation %s %.4f (P@1 %.4f)", trainer.history.steps, config.select_metric, *score)
        return score, {config.select_metric: score[0], "P@1": score[1], **loss_terms}

    def train_mode():
        network.train()
        if cached is not None:
            network.encoder.eval()  # frozen: its dropout would make the cached features stale

    trainer = Trainer(
        network, groups, total_steps=max(1, int(round(steps_per_epoch * config.epochs))),
        grad_accum=config.grad_accum, weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio,
        amp=config.amp, device=device, swa=ModuleAverage(network) if config.swa else None,
        swa_start=config.swa_start,
        early_stopping=EarlyStopping(evaluate, config.eval_every or steps_per_epoch, config.patience),
        rng=rng, train_mode=train_mode, progress=progress, desc=f"training {model.name}")
    h = trainer.fit(lambda: shuffled_batches(n, config.batch_size, rng), step)
    history = {"steps": h.steps, "total_steps": h.total_steps, "evaluations": h.evaluations,
               "best_step": h.best_step, "kept": h.kept, "loss_terms": dict(loss_terms), "seconds": h.seconds,
               "samples_per_second": h.samples_per_second}
    if h.swa is not None:
        history["swa"] = h.swa
    network.eval()
    logger.info("kept %s", history["kept"])
    return history
