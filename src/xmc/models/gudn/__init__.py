"""GUDN (a guide network over raw label text) and its LightXML-style baseline.

Wang et al., "GUDN: A novel guide network for extreme multi-label text classification".
One encoder reads the document text (E_t) and, during training only, the document's label
texts joined as one input (E_l, [CLS] states of the last ``label_last_layers`` layers). The
feature guide pulls E_t towards E_l (MSE), the link guide asks E_l to predict the labels
(BCE); the classifier is LightXML's: a meta-classifier over label clusters from xmc's
indexer (PIFA over TF-IDF, balanced hierarchical k-means leaves), candidates from the top-b
clusters, and a ranking classifier (one embedding per label) over the candidates. The loss
terms and the network live in :mod:`xmc.neural.guide`.

``LightXML`` is the same model with both guides off (the label path is never built).
Prediction reads the text alone: top-b clusters -> their labels -> sigmoid(meta) *
sigmoid(rank) -> top-k.

Training reuses the label-masking model's training settings (``MaskedTrainConfig``: AdamW,
linear warm-up, SWA, early stopping on a validation split, never on test data), through the
shared engine (:mod:`xmc.neural.trainer`); encoding and prediction go through
:mod:`xmc.neural.inference`.
"""

from .config import GUDNPredictConfig, GUDNConfig, LightXMLConfig
from .model import Inputs, joined_label_texts, GUDN, LightXML
from .network import predict_scores, train_gudn

__all__ = ["GUDN", "GUDNConfig", "GUDNPredictConfig", "Inputs", "LightXML", "LightXMLConfig", "joined_label_texts", "predict_scores", "train_gudn"]
