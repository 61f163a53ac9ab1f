"""GUDN's guide network and LightXML-style dynamic negative sampling: losses, candidates, the network.

Wang et al., "GUDN: A novel guide network for extreme multi-label text classification";
Jiang et al., "LightXML" (AAAI 2021) for the candidate sampling.

One encoder (one parameter set) reads both inputs of a training document:

* the text path: E_t = [CLS] states of the encoder's last layers (``TextEncoder`` pooling);
* the label path: E_l = the [CLS] states of the last ``label_layers`` layers over the
  document's label texts joined as one input (or over one learnt token per label, the
  one-hot ablation), projected to E_t's size.

Losses (each a function below, checked by hand in the tests):

* L_feature = mean squared difference between E_t and E_l (GUDN Eq. 2);
* L_link = BCE of the label predictions made from E_l (Eq. 3), over the same candidates
  and the same ranking classifier as the text;
* L_class = BCE of the meta-classifier over the K label clusters + BCE of the ranking
  classifier over the candidate labels of the top-b clusters (positive clusters forced in
  during training), LightXML's dynamic negative sampling.

L_overall = L_feature + L_link + L_class. Prediction uses the text path only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from .encoder import TextEncoder
from .masked_loss import gathered_logits, padded_indices
from .matcher import ClusterHead


# ---- loss terms -------------------------------------------------------------------------------


def feature_guide_loss(text_features: torch.Tensor, label_features: torch.Tensor) -> torch.Tensor:
    """L_feature: mean over the (B, d) entries of (E_t - E_l)^2 (E_l already projected to E_t's size)."""
    return F.mse_loss(text_features.float(), label_features.float())


def candidate_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE averaged over the valid entries of padded (B, C) candidate logits / 0-1 targets / validity.

    Averaged over entries (as LightXML) rather than summed per document: the number of
    candidates varies with b and the cluster sizes, and a mean keeps the terms of L_overall
    on one scale.
    """
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets.to(torch.float32), reduction="none")
    valid = valid.to(losses.dtype)
    return (losses * valid).sum() / valid.sum().clamp_min(1.0)


def link_guide_loss(label_logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_link: :func:`candidate_bce` of the candidates scored from the label features E_l."""
    return candidate_bce(label_logits, targets, valid)


def meta_loss(cluster_logits: torch.Tensor, cluster_targets: torch.Tensor) -> torch.Tensor:
    """BCE of the meta-classifier, averaged over the (B, K) entries; targets M = binarize(Y C)."""
    return F.binary_cross_entropy_with_logits(cluster_logits.float(), cluster_targets.to(torch.float32))


# ---- candidates -----------------------------------------------------------------------------------


def candidate_labels(cluster_ids: np.ndarray, clusters_to_labels: sp.csr_matrix,
                     forced: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the chosen clusters as padded (B, C) ids and (B, C) validity.

    Args:
        cluster_ids: (B, b) top clusters of each document.
        clusters_to_labels: (K, L) 0/1, the transpose of the leaf indicator C.
        forced: optional (B, K) 0/1 clusters added to every row (the positives' clusters in training).
    """
    B, b = cluster_ids.shape
    K = clusters_to_labels.shape[0]
    chosen = sp.csr_matrix((np.ones(B * b, dtype=np.float32), (np.repeat(np.arange(B), b), cluster_ids.ravel())),
                           shape=(B, K))
    if forced is not None:
        chosen = chosen + sp.csr_matrix(forced)
    chosen.data[:] = 1.0
    return padded_indices(sp.csr_matrix(chosen @ clusters_to_labels), np.arange(B))


def top_cluster_ids(cluster_logits: torch.Tensor, b: int) -> np.ndarray:
    """(B, b) ids of the best-scoring clusters, best first."""
    return torch.topk(cluster_logits.detach().float(), min(b, cluster_logits.shape[1]), dim=1).indices.cpu().numpy()


# ---- the network -------------------------------------------------------------------------------------


class GuideNetwork(nn.Module):
    """Shared encoder, meta-classifier, ranking classifier and (optionally) the label path.

    Args:
        encoder: the text encoder (its pooling gives E_t); the label path runs its backbone too.
        n_labels / n_clusters: L and K.
        hidden_dim: size of the ranking space (text features projected, one embedding per label).
        dropout: dropout on the features before both classifiers.
        label_path: build the label-side modules (any guide on).
        label_input: ``text`` (label texts through the tokenizer) or ``onehot`` (one learnt
            input embedding per label, fed to the same encoder).
        label_layers: [CLS] states of this many last layers make E_l.
    """

    def __init__(self, encoder: TextEncoder, n_labels: int, n_clusters: int, *, hidden_dim: int, dropout: float,
                 label_path: bool, label_input: str = "text", label_layers: int = 1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.meta = ClusterHead(encoder.dim, n_clusters)
        self.rank_proj = nn.Linear(encoder.dim, hidden_dim)
        self.label_emb = nn.Embedding(n_labels, hidden_dim)
        nn.init.xavier_uniform_(self.label_emb.weight)
        self.label_bias = nn.Parameter(torch.zeros(n_labels))
        self.label_input = label_input
        self.label_layers = label_layers
        if label_path:
            hidden = encoder.backbone.config.hidden_size
            label_dim = hidden * label_layers
            self.label_proj = nn.Linear(label_dim, encoder.dim) if label_dim != encoder.dim else nn.Identity()
            if label_input == "onehot":
                self.label_tokens = nn.Embedding(n_labels, hidden)
                nn.init.normal_(self.label_tokens.weight, std=0.02)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """E_t: (B, dim)."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask)

    def label_features(self, *, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       label_index: torch.Tensor | None = None, label_valid: torch.Tensor | None = None) -> torch.Tensor:
        """E_l projected to E_t's size: (B, dim).

        ``text`` input: token ids of the joined label texts. ``onehot`` input: (B, P) label ids and
        their validity; the sequence is [CLS] e(l_1) ... e(l_P) [SEP] with the padding masked.
        """
        return self.label_proj(self.label_states(input_ids=input_ids, attention_mask=attention_mask,
                                                 label_index=label_index, label_valid=label_valid))

    def label_states(self, *, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                     label_index: torch.Tensor | None = None, label_valid: torch.Tensor | None = None) -> torch.Tensor:
        """E_l before its projection: the concatenated [CLS] states, (B, hidden * label_layers).

        Under a frozen encoder with ``text`` input they are fixed: computed once and cached.
        """
        backbone = self.encoder.backbone
        if self.label_input == "onehot":
            words = backbone.get_input_embeddings()
            B = label_index.shape[0]
            ids = torch.tensor([self.encoder.tokenizer.cls_token_id, self.encoder.tokenizer.sep_token_id],
                               device=label_index.device)
            cls, sep = words(ids).unsqueeze(0).expand(B, 2, -1).unbind(1)
            embeds = torch.cat([cls[:, None], self.label_tokens(label_index), sep[:, None]], dim=1)
            ones = torch.ones(B, 1, dtype=torch.long, device=label_index.device)
            mask = torch.cat([ones, label_valid.long(), ones], dim=1)
            out = backbone(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
        else:
            out = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        layers = out.hidden_states[-self.label_layers:]
        return torch.cat([h[:, 0] for h in reversed(layers)], dim=-1)

    def cluster_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Meta-classifier scores (B, K)."""
        return self.meta(self.dropout(features))

    def candidate_logits(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Ranking-classifier scores (B, C) of the candidate labels ``index`` (B, C)."""
        hidden = self.rank_proj(self.dropout(features))
        return gathered_logits(hidden, self.label_emb.weight, self.label_bias, index)
