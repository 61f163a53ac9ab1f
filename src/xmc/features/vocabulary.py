"""Fitting a word n-gram vocabulary with integer n-gram keys: ``CountVectorizer.fit_transform``'s result, faster.

scikit-learn's ``CountVectorizer.fit_transform`` builds every n-gram of every training document
as a string and counts it in Python dicts. Here each token is looked up once in a dict of the
corpus's words, an n-gram is one integer (:class:`~xmc.features.ngram_lookup.NgramKeys`), documents
are counted with ``np.unique``, and only the n-grams that survive ``min_df`` / ``max_df`` become
strings, to be sorted and limited exactly as scikit-learn does: the ``max_features`` most
frequent, ties broken by the same ``argsort`` over the same alphabetically ordered float32
totals, and each row's entries in scikit-learn's order (first appearance in the corpus, which
is the order its row norms are summed in). On EURLEX57K's 45,000 training documents: 30 against
56 s, at 0.90x scikit-learn's peak RSS (``benchmarks/bench_featurize.py``). No maintained library
fits scikit-learn's vocabulary faster;
``tests/test_tfidf.py`` checks the vocabulary, the IDF and the matrix against scikit-learn's, bit
for bit.

Documents are summarised in chunks (each chunk's distinct n-grams, their document counts, totals
and first appearance), so the temporaries are those of one chunk plus the summaries, not of
every (document, n-gram) pair at once.

:func:`count_vocabulary` returns None where that equivalence is not certain (a token with a space
in it, more words than the key bits hold, a term total beyond float32's exact integers, or an
input scikit-learn refuses), and the caller then runs scikit-learn itself, for its result or its
error message.
"""

from __future__ import annotations

from collections import defaultdict
from numbers import Integral
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from .ngram_lookup import NgramKeys

_EXACT_FLOAT32 = 1 << 24  # integers up to this are exact in float32 (scikit-learn sums counts in float32)


def _document(ids: np.ndarray, ns: range, keys: NgramKeys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A document's distinct n-gram keys, their counts and first positions in the order scikit-learn's
    analyser emits n-grams (by length, then by position)."""
    windows = np.concatenate([keys.pack(keys.windows(ids, n), n) for n in ns])
    distinct, first, occurrences = np.unique(windows, return_index=True, return_counts=True)
    return distinct, occurrences, first


class _Chunk:
    """A chunk of documents: each entry (document, n-gram) as an index into the chunk's distinct
    keys and its count; per distinct key its document frequency, total and first appearance
    (document index << 32 | position in the analyser's output)."""

    def __init__(self, docs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], first_doc: int):
        self.lengths = np.fromiter((len(d[0]) for d in docs), dtype=np.int64, count=len(docs))
        doc = np.repeat(np.arange(first_doc, first_doc + len(docs), dtype=np.int64), self.lengths)
        entries, counts, positions = (np.concatenate([d[i] for d in docs]) if docs else np.zeros(0, np.int64)
                                      for i in range(3))
        # return_index is the entry of the key's first document in the chunk (a stable sort)
        self.keys, first, inverse, df = np.unique(entries, return_index=True, return_inverse=True, return_counts=True)
        self.df = df.astype(np.int64)
        self.total = np.bincount(inverse, weights=counts, minlength=len(self.keys)).astype(np.int64)
        self.first = (doc[first] << 32) | positions[first].astype(np.int64)
        self.entry_key = inverse.astype(np.int32 if len(self.keys) < 1 << 31 else np.int64)
        self.entry_count = counts.astype(np.int32)


def count_vocabulary(texts: Iterable[str], vectorizer, chunk_docs: int = 4096
                     ) -> tuple[dict[str, int], sp.csr_matrix] | None:
    """The vocabulary and (n, d) float32 count matrix ``vectorizer``'s ``CountVectorizer.fit_transform``
    would give for ``texts``, or None (see the module docstring). ``vectorizer`` is not modified.

    Args:
        texts: the training documents (iterated once).
        vectorizer: an unfitted ``TfidfVectorizer`` / ``CountVectorizer`` with the word analyser,
            no stop words, no fixed vocabulary and ``binary=False`` (as ``TfidfFeaturizer`` makes it).
        chunk_docs: documents summarised together (memory against per-chunk overhead).
    """
    v = vectorizer
    if v.analyzer != "word" or v.stop_words is not None or v.vocabulary is not None or v.binary:
        return None
    min_n, max_n = v.ngram_range
    if not 1 <= min_n <= max_n:
        return None
    keys = NgramKeys(max_n)
    if keys.word_bits < 8:
        return None
    ns = range(min_n, max_n + 1)
    preprocess, tokenize, decode = v.build_preprocessor(), v.build_tokenizer(), v.decode
    word_id: defaultdict[str, int] = defaultdict()
    word_id.default_factory = word_id.__len__  # a new word gets the next id
    chunks: list[_Chunk] = []
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_done = 0
    for text in texts:
        tokens = tokenize(preprocess(decode(text)))
        if " " in "".join(tokens) or len(tokens) * len(ns) >= 1 << 32:  # positions must fit 32 bits
            return None
        pending.append(_document(np.fromiter(map(word_id.__getitem__, tokens), dtype=np.int64, count=len(tokens)),
                                 ns, keys))
        if len(pending) == chunk_docs:
            chunks.append(_Chunk(pending, n_done))
            n_done += len(pending)
            pending = []
    if pending or not chunks:
        chunks.append(_Chunk(pending, n_done))
    n_docs = sum(len(c.lengths) for c in chunks)
    if len(word_id) - 1 > keys.largest_id or n_docs == 0:
        return None
    max_df = v.max_df if isinstance(v.max_df, Integral) else v.max_df * n_docs
    min_df = v.min_df if isinstance(v.min_df, Integral) else v.min_df * n_docs
    if max_df < min_df:
        return None

    # The corpus's distinct n-grams from the chunks' summaries: df and total summed, the first
    # appearance from the earliest chunk (a stable sort keeps the chunks in order).
    every = np.concatenate([c.keys for c in chunks])
    if len(every) == 0:
        return None  # no token at all: scikit-learn's "empty vocabulary"
    order = np.argsort(every, kind="stable")
    every = every[order]
    starts = np.flatnonzero(np.concatenate(([True], every[1:] != every[:-1])))
    distinct = every[starts]
    del every
    df = np.add.reduceat(np.concatenate([c.df for c in chunks])[order], starts)
    total = np.add.reduceat(np.concatenate([c.total for c in chunks])[order], starts)
    first = np.concatenate([c.first for c in chunks])[order][starts]
    del order
    survives = np.flatnonzero((df <= max_df) & (df >= min_df))
    if len(survives) == 0:
        return None  # scikit-learn's "empty vocabulary" or "no terms remain" error
    if total[survives].max() >= _EXACT_FLOAT32:
        return None
    terms = keys.strings(distinct[survives], list(word_id))
    alphabetical = np.array(sorted(range(len(terms)), key=terms.__getitem__), dtype=np.int64)
    kept = alphabetical
    if v.max_features is not None and len(terms) > v.max_features:
        # scikit-learn's _limit_features: the most frequent, over float32 totals in alphabetical order
        tfs = total[survives][alphabetical].astype(np.float32)
        chosen = np.zeros(len(terms), dtype=bool)
        chosen[alphabetical[(-tfs).argsort()[:v.max_features]]] = True
        kept = alphabetical[chosen[alphabetical]]
    vocabulary = {terms[i]: j for j, i in enumerate(kept.tolist())}
    # scikit-learn's rows hold their terms in vocabulary-id order, which is first appearance.
    by_appearance = kept[np.argsort(first[survives][kept], kind="stable")]  # indices into terms
    rank_of_distinct = np.full(len(distinct), -1, dtype=np.int64)
    rank_of_distinct[survives[by_appearance]] = np.arange(len(kept))
    column = np.empty(len(terms), dtype=np.int64)
    column[kept] = np.arange(len(kept))
    column_of_rank = column[by_appearance]

    # The count matrix, a chunk at a time (each chunk freed as it is done): entries sorted by rank
    # within each row, then labelled with their columns.
    index_type = np.int32 if len(kept) < 1 << 31 else np.int64
    indices, data, row_nnz = [], [], []
    for i, chunk in enumerate(chunks):
        chunks[i] = None
        rank = rank_of_distinct[np.searchsorted(distinct, chunk.keys)][chunk.entry_key]
        keep = rank >= 0
        rows = np.repeat(np.arange(len(chunk.lengths), dtype=np.int64), chunk.lengths)[keep]
        block = sp.csr_matrix((chunk.entry_count[keep].astype(np.float32), (rows, rank[keep])),
                              shape=(len(chunk.lengths), len(kept)))
        del chunk, rank, keep, rows
        block.sort_indices()
        indices.append(column_of_rank[block.indices].astype(index_type))
        data.append(block.data)
        row_nnz.append(np.diff(block.indptr))
        del block
    row_nnz = np.concatenate(row_nnz)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(row_nnz, out=indptr[1:])
    indptr_type = np.int32 if indptr[-1] <= np.iinfo(np.int32).max else np.int64  # as scikit-learn's
    X = sp.csr_matrix((np.concatenate(data), np.concatenate(indices).astype(indptr_type, copy=False),
                       indptr.astype(indptr_type)), shape=(n_docs, len(kept)), copy=False)
    X.has_sorted_indices = False
    return vocabulary, X
