"""The ``xmc augment`` pipeline: pick tail documents, generate, score with f0, filter, record provenance."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..data import XMCDataset
from ..errors import ConfigError
from .configs import AugmentConfig
from .corpus import AugmentedDocument
from .filtering import Scorer, keep_mask, label_prior, score_augmented

logger = logging.getLogger(__name__)


def tail_documents(Y: sp.csr_matrix, label_counts: np.ndarray, tail_threshold: int) -> np.ndarray:
    """Rows of ``Y`` (n, L) holding at least one tail label (<= N_t training documents), rarest first.

    Rows are ordered by the training count of their rarest label (ties by row), so a
    ``max_augment_docs`` budget goes to the documents of the rarest labels.
    """
    Y = sp.csr_matrix(Y)
    counts = np.asarray(label_counts, dtype=np.int64)
    if Y.nnz == 0:
        return np.zeros(0, dtype=np.int64)
    entry_counts = counts[Y.indices]
    rows = np.repeat(np.arange(Y.shape[0]), np.diff(Y.indptr))
    rarest = np.full(Y.shape[0], np.iinfo(np.int64).max)
    np.minimum.at(rarest, rows, entry_counts)
    chosen = np.flatnonzero(rarest <= tail_threshold)
    return chosen[np.argsort(rarest[chosen], kind="stable")]


def same_text(candidate: str, source: str, max_words: int) -> bool:
    """Whether ``candidate`` is, up to whitespace, ``source`` or its first ``max_words`` words (the masked window)."""
    words = candidate.split()
    source_words = source.split()
    return words == source_words or words == source_words[:max_words]


def label_names_per_document(data: XMCDataset) -> list[list[str]]:
    """Each document's label names, as the generator sees them (label texts when present)."""
    names = data.label_texts or data.labels.names
    return [[names[j] for j in data.Y.indices[data.Y.indptr[i]:data.Y.indptr[i + 1]]] for i in range(len(data))]


def train_default_f0(train: XMCDataset) -> Scorer:
    """An XR-Linear with its default config, fitted on ``train`` (f0 when none is given)."""
    from ..models.xr_linear import XRLinear, XRLinearConfig

    return XRLinear(XRLinearConfig()).fit(train)


def augment(train: XMCDataset, config: AugmentConfig, *, generator=None, f0: Scorer | None = None,
            progress: bool = True) -> list[AugmentedDocument]:
    """Generate, score and filter augmented documents for the tail documents of ``train``.

    Args:
        train: the training data (label names / texts condition the generator).
        config: an :class:`AugmentConfig`.
        generator: a fitted or unfitted :class:`~xmc.augment.generator.PromptGenerator`;
            None = build one from ``config.generator`` (and train its prompt on ``train``).
        f0: the pre-trained XMC model of the filter; None = ``config.f0_model`` or a default XR-Linear.

    Returns:
        The kept documents (all candidates when ``config.filter.enabled`` is False), each with
        its S_Con / S_Div scores and the generator config.
    """
    from ..models.registry import load_model
    from ..neural.budget import resolve_budget
    from .generator import PromptGenerator

    config = resolve_budget(config, len(train))  # "auto" values by device (the generator's)
    texts = train.input_texts()
    names = label_names_per_document(train)
    counts = train.label_counts()
    rows = tail_documents(train.Y, counts, config.tail_threshold)
    if config.max_augment_docs is not None:
        rows = rows[: config.max_augment_docs]
    logger.info("%d documents hold a label with <= %d training documents", len(rows), config.tail_threshold)
    if f0 is None and config.f0_model:  # before the generator's fit: a wrong model is refused at once
        f0 = load_model(config.f0_model)
        if list(f0.labels_.names) != list(train.labels.names):  # scores would index another label prior
            raise ConfigError(f"f0_model {config.f0_model}: its {len(f0.labels_)} labels are not the training "
                              f"data's {len(train.labels)} (in name and order); give a model trained on this file")
    if generator is None:
        generator = PromptGenerator(config.generator).fit(texts, names, progress=progress)
    if f0 is None:
        f0 = train_default_f0(train)
    generated = generator.generate([texts[i] for i in rows], [names[i] for i in rows], progress=progress)
    # A filler that restores the masked words verbatim gives back the source (its window): no new document.
    generated = [[t for t in per_doc if not same_text(t, texts[row], config.generator.max_words)]
                 for row, per_doc in zip(rows, generated)]
    aug_texts = [t for per_doc in generated for t in per_doc]
    source = np.array([k for k, per_doc in enumerate(generated) for _ in per_doc], dtype=np.int64)
    if not aug_texts:
        return []
    n_labels = np.diff(train.Y.indptr)[rows]
    prior = label_prior(counts, config.filter.prior_smoothing)
    consistency, diversity = score_augmented(f0, aug_texts, [texts[i] for i in rows], source, n_labels, prior,
                                             beam_size=config.f0_beam_size)
    keep = keep_mask(consistency, diversity, config.filter)
    provenance = generator.provenance()
    docs, copy = [], {}
    for j, text in enumerate(aug_texts):
        row = int(rows[source[j]])
        copy[row] = copy.get(row, -1) + 1
        if keep[j]:
            docs.append(AugmentedDocument(
                id=f"{train.ids[row]}#aug{copy[row]}", source_id=train.ids[row], text=text,
                labels=train.label_names_of(row),
                scores={"consistency": float(consistency[j]), "diversity": float(diversity[j])},
                generator=provenance))
    logger.info("kept %d of %d augmented documents", len(docs), len(aug_texts))
    return docs
