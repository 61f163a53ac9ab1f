"""X-Transformer: a transformer matcher over label clusters, then linear rankers on TF-IDF + neural features.

Chang et al., "Taming Pretrained Transformers for Extreme Multi-label Text Classification"
(KDD 2020). The pipeline reuses XR-Linear's parts rather than forking them:

1. semantic label indexing: ``pifa-tfidf``, ``pifa-neural`` or ``text-emb`` label
   representations clustered by :func:`xmc.indexing.kmeans.hierarchical_kmeans`;
2. matching: g(x, k) = w_k . phi(x) over the K leaf clusters, the encoder fine-tuned with
   the squared hinge loss on M = binarize(Y C) (:mod:`xmc.neural.matcher`);
3. ranking: the label layer of :class:`~xmc.ranker.hierarchy.HierarchicalLinear` over
   [phi_tfidf(x) || normalised phi_neural(x)], trained with ``tfn``, ``man`` or ``tfn+man``
   negatives where ``man`` comes from the matcher's top-b clusters;
4. f(x, l) = sigma(g(x, c_l), h(x, l)) for the labels of the top-b clusters (Eq. 2);
   several members (label representations, seeds) average their scores.

Every text set is encoded once per encoder state through :class:`~xmc.neural.cache.EmbeddingCache`.
"""

from ...neural.configs import EncoderConfig, MatcherConfig
from .config import LabelRepr, MemberConfig, XTransformerConfig
from .model import Inputs, XTransformer

__all__ = ["EncoderConfig", "Inputs", "LabelRepr", "MatcherConfig", "MemberConfig", "XTransformer", "XTransformerConfig"]
