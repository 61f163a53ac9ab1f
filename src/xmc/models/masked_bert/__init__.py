"""Attribute value extraction as XMC with taxonomy label masking.

Chen, Xia and Shinzato, "Extreme Multi-Label Classification with Label Masking for Product
Attribute Value Extraction" (ECNLP 2023). A product is "[CLS] title [SEP] description"
(NFKC-normalised, the tokenizer's text-pair encoding); the encoder's [CLS] states of the last
l layers are concatenated (``encoder.pooling = "cls-concat"``, l = 5), passed through dropout
and one linear layer with a sigmoid per attribute-value label. With ``masking`` the binary
cross-entropy sums over the labels relevant to the product's category only
(:mod:`xmc.neural.masked_loss`, M(x) from :mod:`xmc.neural.taxonomy`), and predictions are
made among those labels.

The paper's baselines come from the same class: ``masking: false`` (plain BERT; its
predictions are still restricted to the relevant labels when ``filter_predictions``) and
``heads: "leaf" | "top"`` (one output layer per leaf / top-level category over a shared
encoder, mini-batches drawn from one category group at a time).

Training: AdamW with linear warm-up, gradient accumulation, stochastic weight averaging
(``torch.optim.swa_utils.AveragedModel``; per head for multi-head networks, see ``StepAverages``)
and early stopping on a validation split carved
from the training data (or given), never the test data. With ``train.freeze_encoder`` the
encoder keeps its pre-trained weights: every product is encoded once (pooled features,
optionally cached on disk) and only dropout + output layers are trained, by the same loop
(linear probing; a CPU budget that covers whole datasets). The loop is the shared engine
(:mod:`xmc.neural.trainer`); encoding and prediction go through :mod:`xmc.neural.inference`.
"""

from .config import MaskedTrainConfig, MaskedPredictConfig, MaskedBertConfig
from .model import Inputs, normalize_text, product_pairs, tokenize_pairs, MaskedBert
from .network import build_network, Products, head_logits, network_logits, batch_logits, group_batches, pooled_features, predict_probabilities, StepAverages, train_network

__all__ = ["Inputs", "MaskedBert", "MaskedBertConfig", "MaskedPredictConfig", "MaskedTrainConfig", "Products", "StepAverages", "batch_logits", "build_network", "group_batches", "head_logits", "network_logits", "normalize_text", "pooled_features", "predict_probabilities", "product_pairs", "tokenize_pairs", "train_network"]
