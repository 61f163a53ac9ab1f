"""A seeded generator of large sparse XMC problems (feature matrices, not texts).

For benchmarks at extreme scale (10^5 - 10^7 labels), where building a text corpus and a
TF-IDF vocabulary would cost more than the model. The problem has a hidden, learnable
two-level label structure and a long tail:

* labels are grouped into ``n_topics`` topics, topics into ``n_groups`` groups (the hidden
  hierarchy a label tree should recover);
* every label owns ``features_per_label`` features, every topic ``features_per_topic`` and
  every group ``features_per_group`` (drawn at random from the whole feature space, so at
  scale unrelated labels share some features by chance: the problem is not trivially separable);
* label popularity is Zipf (``p(rank r) ~ r ** -zipf_exponent``, ranks shuffled over label
  ids), so most labels are rare and many never occur in a sample;
* a document draws its first label by popularity, then ``Poisson(extra_labels_mean)`` more
  (at most ``max_labels_per_doc`` in all, duplicates dropped) from the same topic, again by
  popularity; it then emits ``label_tokens`` tokens per label from the label's own features,
  ``topic_tokens`` from its topic's, ``group_tokens`` from its group's, and ``noise_tokens``
  background tokens from a power-law (``1/rank``) distribution over all features;
* feature values are TF-IDF as a text front end gives them: ``(1 + log(term frequency)) * idf``
  with scikit-learn's smooth idf over the training split (``idf=False``: no idf, the data of
  xmc before 2026-12-02), rows L2-normalised (X is CSR float32); Y is binary CSR float32.
  Without idf the background tokens dominate every row, and a label tree clustered on such
  features was worse than a random one (BENCHMARKS.md, "Choosing a default", last bullet).

Generation is vectorised numpy in fixed chunks of documents (memory stays at a few hundred
bytes per document on top of the output); 1M labels x 1M documents (2M features) take 4-9 s
and 0.7 GB peak on a 2-core box. Each chunk has its own random stream derived from ``(seed, split, chunk)``,
so equal arguments give equal data, and train and test come from the same distribution with
independent streams.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError

log = logging.getLogger(__name__)

_CHUNK_DOCS = 65536  # fixed: part of the definition of the data for a seed (not a tuning knob)


class GeneratorConfigError(ConfigError):
    """An argument of :func:`make_sparse_problem` is out of range."""


@dataclasses.dataclass
class SparseProblem:
    """A generated problem: matrices for both splits and the hidden structure.

    Attributes:
        X_train / X_test: CSR float32, L2-normalised rows (documents x features).
        Y_train / Y_test: CSR float32 with 1.0 entries (documents x labels).
        label_topic: topic id of every label (int32, length n_labels).
        topic_group: group id of every topic (int32, length n_topics).
        label_popularity: the probability of each label being a document's first label.
    """

    X_train: sp.csr_matrix
    Y_train: sp.csr_matrix
    X_test: sp.csr_matrix
    Y_test: sp.csr_matrix
    label_topic: np.ndarray
    topic_group: np.ndarray
    label_popularity: np.ndarray

    @property
    def n_labels(self) -> int:
        return self.Y_train.shape[1]

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


@dataclasses.dataclass
class _Structure:
    """The hidden model shared by both splits (labels sorted by topic for fast within-topic draws)."""

    label_of_slot: np.ndarray  # slot (position in topic-sorted order) -> label id
    cum_pop: np.ndarray  # cumulative popularity over slots, float64, ends at 1.0
    topic_of_slot: np.ndarray
    topic_start: np.ndarray  # first slot of each topic (length n_topics + 1)
    label_feats: np.ndarray  # (n_labels, features_per_label)
    topic_feats: np.ndarray  # (n_topics, features_per_topic)
    group_feats: np.ndarray  # (n_groups, features_per_group)
    topic_group: np.ndarray
    noise_perm: np.ndarray  # rank -> feature id of the background distribution
    label_topic: np.ndarray
    popularity: np.ndarray


def _check(name: str, value, low, high=None) -> None:
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        error = GeneratorConfigError(f"make_sparse_problem: {name}={value!r} must be {rng}")
        error.argument, error.rule = name, f"must be {rng}"  # for callers that name it their own way (CLI flags)
        raise error


def _structure(n_labels, n_features, n_topics, n_groups, features_per_label, features_per_topic,
               features_per_group, zipf_exponent, seed) -> _Structure:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    # Topic sizes vary (Dirichlet-like via sorting random cut points), every topic non-empty.
    label_topic = np.empty(n_labels, dtype=np.int32)
    perm = rng.permutation(n_labels).astype(np.int32)
    cuts = np.sort(rng.choice(np.arange(1, n_labels), size=n_topics - 1, replace=False)) if n_topics > 1 else []
    topic_start = np.concatenate([[0], cuts, [n_labels]]).astype(np.int64)
    sizes = np.diff(topic_start)
    label_topic[perm] = np.repeat(np.arange(n_topics, dtype=np.int32), sizes)
    topic_group = rng.integers(0, n_groups, size=n_topics, dtype=np.int32)
    topic_group[:n_groups] = np.arange(min(n_groups, n_topics), dtype=np.int32)  # every group used
    # Zipf popularity over shuffled ranks.
    rank = rng.permutation(n_labels)
    popularity = 1.0 / (rank + 1.0) ** zipf_exponent
    popularity /= popularity.sum()
    label_of_slot = perm  # slots are topic-sorted: topic t owns slots topic_start[t]:topic_start[t+1]
    cum_pop = np.cumsum(popularity[label_of_slot])
    cum_pop /= cum_pop[-1]
    topic_of_slot = np.repeat(np.arange(n_topics, dtype=np.int32), sizes)
    label_feats = rng.integers(0, n_features, size=(n_labels, features_per_label), dtype=np.int32)
    topic_feats = rng.integers(0, n_features, size=(n_topics, features_per_topic), dtype=np.int32)
    group_feats = rng.integers(0, n_features, size=(n_groups, features_per_group), dtype=np.int32)
    noise_perm = rng.permutation(n_features).astype(np.int32)
    return _Structure(label_of_slot, cum_pop, topic_of_slot, topic_start, label_feats, topic_feats,
                      group_feats, topic_group, noise_perm, label_topic, popularity)


def _chunk(s: _Structure, n: int, rng: np.random.Generator, *, n_features, max_labels_per_doc,
           extra_labels_mean, label_tokens, topic_tokens, group_tokens, noise_tokens):
    """One chunk of ``n`` documents: (X, Y) as CSR."""
    n_slots = len(s.label_of_slot)
    # First label by global popularity (searchsorted on the cumulative distribution).
    first = np.minimum(np.searchsorted(s.cum_pop, rng.random(n), side="right"), n_slots - 1)
    topic = s.topic_of_slot[first]
    n_lab = np.minimum(1 + rng.poisson(extra_labels_mean, size=n), max_labels_per_doc)
    # Extra labels: within the first label's topic, by popularity.
    n_extra = n_lab - 1
    doc_of_extra = np.repeat(np.arange(n), n_extra)
    t = topic[doc_of_extra]
    lo = np.where(s.topic_start[t] > 0, s.cum_pop[np.maximum(s.topic_start[t] - 1, 0)], 0.0)
    hi = s.cum_pop[s.topic_start[t + 1] - 1]
    u = lo + rng.random(len(t)) * (hi - lo)
    extra = np.searchsorted(s.cum_pop, u, side="right")
    extra = np.clip(extra, s.topic_start[t], s.topic_start[t + 1] - 1)  # float round-off at the edges
    rows = np.concatenate([np.arange(n), doc_of_extra])
    labels = s.label_of_slot[np.concatenate([first, extra])]
    Y = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, labels)), shape=(n, n_slots))
    Y.sum_duplicates()
    Y.data[:] = 1.0  # a label drawn twice is one label
    Y.sort_indices()

    # Tokens: per (document, label) pair from the label's features, per document from topic/group/noise.
    lab_rows = np.repeat(np.arange(n), np.diff(Y.indptr))
    tok_rows = [np.repeat(lab_rows, label_tokens)]
    lab = np.repeat(Y.indices, label_tokens)
    tok_cols = [s.label_feats[lab, rng.integers(0, s.label_feats.shape[1], size=len(lab))]]
    doc_topic = np.repeat(topic, topic_tokens)
    tok_rows.append(np.repeat(np.arange(n), topic_tokens))
    tok_cols.append(s.topic_feats[doc_topic, rng.integers(0, s.topic_feats.shape[1], size=len(doc_topic))])
    doc_group = np.repeat(s.topic_group[topic], group_tokens)
    tok_rows.append(np.repeat(np.arange(n), group_tokens))
    tok_cols.append(s.group_feats[doc_group, rng.integers(0, s.group_feats.shape[1], size=len(doc_group))])
    # Background: p(rank r) ~ 1/r over all features (inverse CDF of the log-uniform), ranks shuffled.
    n_noise = rng.poisson(noise_tokens, size=n)
    r = np.minimum(np.exp(rng.random(int(n_noise.sum())) * np.log(n_features)).astype(np.int64) - 1, n_features - 1)
    tok_rows.append(np.repeat(np.arange(n), n_noise))
    tok_cols.append(s.noise_perm[r])
    rows = np.concatenate(tok_rows)
    cols = np.concatenate(tok_cols)
    X = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n_features))
    X.sum_duplicates()  # counts
    X.data = (1.0 + np.log(X.data)).astype(np.float32)
    return X, Y


def _idf(chunks: list[sp.csr_matrix], n_docs: int, n_features: int) -> np.ndarray:
    """scikit-learn's smooth idf, ``ln((1 + n) / (1 + df)) + 1``, over the given (training) chunks.

    Computed here chunk by chunk rather than with ``TfidfTransformer`` so that a problem of
    10M documents is never copied whole (the transformer returns a new matrix).
    """
    df = np.zeros(n_features, dtype=np.int64)
    for X in chunks:
        df += np.bincount(X.indices, minlength=n_features)  # one entry per (document, feature)
    return (np.log((1.0 + n_docs) / (1.0 + df)) + 1.0).astype(np.float32)


def _weigh_and_normalise(X: sp.csr_matrix, weights: np.ndarray | None) -> sp.csr_matrix:
    """Feature weights (idf) applied in place, then every row scaled to unit L2 norm."""
    if weights is not None:
        X.data *= weights[X.indices]
    n = X.shape[0]
    norms = np.sqrt(np.add.reduceat(X.data.astype(np.float64) ** 2, X.indptr[:-1])) if X.nnz else np.ones(n)
    X.data /= np.repeat(norms, np.diff(X.indptr)).astype(np.float32)  # every row has >= 1 token
    return X


def _vstack(parts: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """Stack CSR chunks with int32 indices where they fit (scipy's vstack may widen to int64)."""
    nnz = sum(p.nnz for p in parts)
    idx_dtype = np.int32 if nnz < 2**31 else np.int64
    indptr = np.zeros(sum(p.shape[0] for p in parts) + 1, dtype=idx_dtype)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    row = pos = 0
    for p in parts:
        indptr[row + 1:row + 1 + p.shape[0]] = p.indptr[1:] + pos
        indices[pos:pos + p.nnz] = p.indices
        data[pos:pos + p.nnz] = p.data
        row += p.shape[0]
        pos += p.nnz
    return sp.csr_matrix((data, indices, indptr), shape=(row, n_cols))


def make_sparse_problem(
    n_labels: int = 100_000,
    n_train: int = 200_000,
    n_test: int = 20_000,
    n_features: int = 1_000_000,
    *,
    n_topics: int | None = None,
    n_groups: int | None = None,
    features_per_label: int = 4,
    features_per_topic: int = 16,
    features_per_group: int = 64,
    max_labels_per_doc: int = 5,
    extra_labels_mean: float = 1.0,
    label_tokens: int = 3,
    topic_tokens: int = 4,
    group_tokens: int = 4,
    noise_tokens: float = 20.0,
    zipf_exponent: float = 1.0,
    idf: bool = True,
    seed: int = 0,
) -> SparseProblem:
    """Generate train and test splits of a sparse XMC problem; equal arguments give equal data.

    Args:
        n_labels / n_train / n_test / n_features: the problem's size.
        n_topics: label topics (default ``round(sqrt(n_labels))``, at least 1).
        n_groups: topic groups (default ``round(sqrt(n_topics))``).
        features_per_label / features_per_topic / features_per_group: features each label,
            topic and group owns.
        max_labels_per_doc: cap on labels per document (``>= 1``).
        extra_labels_mean: mean of the Poisson number of labels after the first.
        label_tokens: tokens each of a document's labels emits from its own features.
        topic_tokens / group_tokens: tokens from the document's topic's / group's features.
        noise_tokens: mean number of background tokens per document (``1/rank`` distribution).
        zipf_exponent: label popularity ``~ rank ** -zipf_exponent`` (larger: longer tail).
        idf: weigh features by their smooth idf over the training split (both splits), as a
            TF-IDF front end does; False reproduces the data generated before this option.
        seed: random seed.

    Raises:
        GeneratorConfigError: an argument is out of range.
    """
    # The defaults are computed from counts clamped at 1, so that a negative one reaches its range check.
    n_topics = max(1, round(max(n_labels, 1) ** 0.5)) if n_topics is None else n_topics
    n_groups = max(1, round(max(n_topics, 1) ** 0.5)) if n_groups is None else n_groups
    for name, value, low, high in (
        ("n_labels", n_labels, 1, 2**31 - 1), ("n_train", n_train, 1, None), ("n_test", n_test, 0, None),
        ("n_features", n_features, 2, 2**31 - 1), ("n_topics", n_topics, 1, n_labels),
        ("n_groups", n_groups, 1, n_topics), ("features_per_label", features_per_label, 1, None),
        ("features_per_topic", features_per_topic, 1, None), ("features_per_group", features_per_group, 1, None),
        ("max_labels_per_doc", max_labels_per_doc, 1, None), ("extra_labels_mean", extra_labels_mean, 0, None),
        ("label_tokens", label_tokens, 1, None), ("topic_tokens", topic_tokens, 0, None),
        ("group_tokens", group_tokens, 0, None), ("noise_tokens", noise_tokens, 0, None),
        ("zipf_exponent", zipf_exponent, 0, None), ("seed", seed, 0, 2**32 - 1),
    ):
        _check(name, value, low, high)
    s = _structure(n_labels, n_features, n_topics, n_groups, features_per_label, features_per_topic,
                   features_per_group, zipf_exponent, seed)
    opts = dict(n_features=n_features, max_labels_per_doc=max_labels_per_doc, extra_labels_mean=extra_labels_mean,
                label_tokens=label_tokens, topic_tokens=topic_tokens, group_tokens=group_tokens,
                noise_tokens=noise_tokens)

    def chunks(n: int, split_id: int) -> tuple[list[sp.csr_matrix], list[sp.csr_matrix]]:
        xs, ys = [], []
        for c, start in enumerate(range(0, n, _CHUNK_DOCS)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, split_id, c]))
            X, Y = _chunk(s, min(_CHUNK_DOCS, n - start), rng, **opts)
            xs.append(X)
            ys.append(Y)
            log.debug("split %d: %d / %d documents", split_id, start + X.shape[0], n)
        return xs, ys

    def stack(xs, ys, weights) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if not xs:
            return sp.csr_matrix((0, n_features), dtype=np.float32), sp.csr_matrix((0, n_labels), dtype=np.float32)
        return _vstack([_weigh_and_normalise(X, weights) for X in xs], n_features), _vstack(ys, n_labels)

    train_xs, train_ys = chunks(n_train, 1)
    weights = _idf(train_xs, n_train, n_features) if idf else None
    X_train, Y_train = stack(train_xs, train_ys, weights)
    del train_xs, train_ys
    X_test, Y_test = stack(*chunks(n_test, 2), weights)
    return SparseProblem(X_train, Y_train, X_test, Y_test, s.label_topic, s.topic_group, s.popularity)
