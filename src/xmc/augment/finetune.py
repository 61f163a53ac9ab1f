"""Fine-tune a trained LightXML / GUDN classifier on real + augmented documents (XDA section 2.3).

The encoder stays frozen (so every text is encoded once and its features cached); the
meta-classifier and the ranking classifier are trained with

    L = L_BCE(real) + aug_weight * L_Aug(augmented)

over each step's real documents and its share of the augmented ones (both terms are means over
their documents), where L_Aug drops the positive terms of head labels (Eq. 4; for the
meta-classifier, the positive terms of clusters that hold only head labels of the document). The parameters are
averaged over the second part of the steps (SWA), as in the paper. This works on any fitted
:class:`xmc.models.gudn.GUDN` without changing it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from ..data import XMCDataset
from ..neural.trainer import ModuleAverage, Trainer
from .configs import FinetuneConfig
from .masked_loss import head_label_mask

logger = logging.getLogger(__name__)


def _terms(network, features, Y: sp.csr_matrix, M: sp.csr_matrix, rows, clusters_to_labels, n_candidate_clusters,
           head: torch.Tensor | None, head_only_clusters: sp.csr_matrix | None):
    from ..neural.guide import candidate_bce, candidate_labels, top_cluster_ids
    from ..neural.masked_loss import dense_rows, gathered_targets

    device = features.device
    f = features[torch.from_numpy(rows).to(device)]
    cluster_logits = network.cluster_logits(f)
    index, valid = candidate_labels(top_cluster_ids(cluster_logits, n_candidate_clusters), clusters_to_labels,
                                    forced=M[rows])
    index_t, valid_t = torch.from_numpy(index).to(device), torch.from_numpy(valid).to(device)
    targets = torch.from_numpy(gathered_targets(Y, rows, index)).to(device)
    logits = network.candidate_logits(f, index_t)
    cluster_targets = dense_rows(M, rows, device)
    meta = F.binary_cross_entropy_with_logits(cluster_logits.float(), cluster_targets, reduction="none")
    if head is not None:  # Eq. 4: drop head-label positives (and clusters positive only through head labels)
        valid_t = valid_t & ~(targets.bool() & head[index_t])
        drop = dense_rows(head_only_clusters, rows, device).bool()
        meta = torch.where(drop, torch.zeros((), device=device), meta)
    return meta.mean() + candidate_bce(logits, targets, valid_t)


def finetune_with_augmented(model, train: XMCDataset, augmented: XMCDataset, config: FinetuneConfig | None = None,
                            *, cache=None, progress: bool = True) -> dict:
    """Fine-tune ``model.network_`` (a fitted GUDN / LightXML) in place; return the history.

    Args:
        model: a fitted :class:`xmc.models.gudn.GUDN` (or LightXML).
        train: the real training documents, over ``model.labels_``.
        augmented: the augmented documents over the same vocabulary
            (:func:`xmc.augment.corpus.augmented_dataset`).
        config: a :class:`FinetuneConfig`.
        cache: an :class:`xmc.neural.cache.EmbeddingCache` for the real documents' features, so that
            several fine-tuning runs from the same frozen encoder (ablation rows) encode them once.
    """
    config = config or FinetuneConfig()
    network = model.network_
    if network is None:
        raise RuntimeError("model is not fitted; fit or load it before fine-tuning with augmented data")
    for p in network.encoder.parameters():
        p.requires_grad_(False)
    device = next(network.parameters()).device
    leaves = model._leaves()
    clusters_to_labels = sp.csr_matrix(leaves.T)
    L = leaves.shape[0]
    Y = sp.csr_matrix(train.Y[:, :L], dtype=np.float32)
    A = sp.csr_matrix(augmented.Y[:, :L], dtype=np.float32)
    M = sp.csr_matrix((Y @ leaves) > 0, dtype=np.float32)
    MA = sp.csr_matrix((A @ leaves) > 0, dtype=np.float32)
    head_np = head_label_mask(np.asarray((Y > 0).sum(axis=0)).ravel(), config.tail_threshold)
    head = torch.from_numpy(head_np).to(device) if config.mask else None
    tail_clusters = sp.csr_matrix((A @ sp.diags((~head_np).astype(np.float32)) @ leaves) > 0, dtype=np.float32)
    head_only = sp.csr_matrix(MA - MA.multiply(tail_clusters), dtype=np.float32)
    # E_t in eval mode; the real documents' through the cache (keyed by the encoder's weights and the texts)
    feats = torch.from_numpy(model.encode(train, cache=cache)).to(device)
    aug_feats = torch.from_numpy(model.encode(augmented)).to(device)
    heads = torch.nn.ParameterList([p for name, p in network.named_parameters() if not name.startswith("encoder.")])
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)  # the heads' dropout: equal seeds give equal fine-tuned models
    n, n_aug = len(train), len(augmented)
    per_epoch = math.ceil(n / config.batch_size)
    aug_per_step = config.augmented_per_step(n, n_aug)
    aug_weight = config.resolved_aug_weight(n, n_aug)
    n_candidates = model.config.n_candidate_clusters

    def epoch():
        order, aug_order = rng.permutation(n), rng.permutation(n_aug)
        return [(order[s * config.batch_size:(s + 1) * config.batch_size], aug_order[s * aug_per_step:(s + 1) * aug_per_step])
                for s in range(per_epoch)]

    def step(batch):
        rows, aug_rows = batch
        loss = _terms(network, feats, Y, M, rows, clusters_to_labels, n_candidates, None, None)
        if len(aug_rows):
            loss = loss + aug_weight * _terms(network, aug_feats, A, MA, aug_rows, clusters_to_labels, n_candidates,
                                              head, head_only)
        return loss

    def train_mode():
        network.train()
        network.encoder.eval()  # frozen: no dropout inside the encoder either (features are cached anyway)

    # Constant learning rate, AdamW's default weight decay, no clipping; the heads averaged over the
    # steps after swa_start (kept without validation, as in the paper).
    trainer = Trainer(heads, [{"params": heads.parameters(), "lr": config.learning_rate}],
                      total_steps=per_epoch * config.epochs, weight_decay=0.01, schedule=None, max_grad_norm=None,
                      device=device, swa=ModuleAverage(heads), swa_start=config.swa_start, rng=rng,
                      train_mode=train_mode, progress=progress, desc="XDA fine-tuning")
    trained = trainer.fit(epoch, step, samples=lambda batch: len(batch[0]))
    network.eval()
    return {"steps": trained.steps, "augmented_docs": n_aug, "head_labels": int(head_np.sum()), "mask": config.mask,
            "aug_weight": aug_weight, "first_loss": trained.first_loss, "last_loss": trained.last_loss,
            "swa_averaged_steps": (trained.swa or {}).get("averaged_steps", 0)}
