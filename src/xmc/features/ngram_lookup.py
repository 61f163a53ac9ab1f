"""Vocabulary ids of a document's word n-grams, looked up from its tokens' ids.

scikit-learn's ``CountVectorizer.transform`` builds every n-gram as a string (``" ".join`` of the
tokens) and looks each one up in its vocabulary dict: on a EURLEX57K document, 770 tokens make
1,540 strings and lookups, most of them misses in a 200,000-term dict, and that is about half of
a served XR-Linear request. Here each token is looked up once, in a dict of the words that occur
in the vocabulary's terms (29,000 on EURLEX57K), and an n-gram becomes an integer key
(:class:`NgramKeys`) searched among the vocabulary's n-gram keys with NumPy.
No maintained library maps n-grams to a fitted vocabulary faster; ``tests/test_tfidf.py`` checks
that the counts are scikit-learn's, bit for bit.

The key of an n-gram is exact only when no token contains a space: then ``" ".join`` of n tokens
has n - 1 spaces and splits back into those tokens alone. A document with such a token (a custom
``token_pattern`` can match spaces) gets ``None``, and the caller falls back to the strings.
"""

from __future__ import annotations

from itertools import repeat
from typing import Sequence

import numpy as np


class NgramKeys:
    """Word n-grams as one int64 each: the n word ids, ``word_bits`` bits each, and n above them,
    so that n-grams of different lengths never share a key. Used to fit a vocabulary
    (:mod:`xmc.features.vocabulary`) and to look n-grams up in one (:class:`NgramLookup`).

    Args:
        max_n: the longest n-gram (``ngram_range[1]``).
    """

    def __init__(self, max_n: int):
        self.length_shift = 63 - max_n.bit_length()
        self.word_bits = self.length_shift // max_n
        self.largest_id = (1 << self.word_bits) - 1

    def pack(self, ids: Sequence[np.ndarray], n: int) -> np.ndarray:
        """Keys of the n-grams whose k-th words have the ids ``ids[k]`` (n equal-length arrays of ids
        in ``0 .. largest_id``)."""
        keys = np.array(ids[0], dtype=np.int64)
        for k in range(1, n):
            keys <<= self.word_bits
            keys |= ids[k]
        keys |= n << self.length_shift
        return keys

    @staticmethod
    def windows(ids: np.ndarray, n: int) -> list[np.ndarray]:
        """The k-th word ids of every n-gram of a document's ids, for k = 0 .. n - 1 (views)."""
        starts = max(len(ids) - n + 1, 0)
        return [ids[k:k + starts] for k in range(n)]

    def strings(self, keys: np.ndarray, words: list[str]) -> list[str]:
        """The n-grams of ``keys`` as scikit-learn writes them (words joined by one space);
        ``words[i]`` is the word of id i."""
        lengths = keys >> self.length_shift
        out = [""] * len(keys)
        for n in np.unique(lengths).tolist():
            at = np.flatnonzero(lengths == n)
            parts = [((keys[at] >> (self.word_bits * (n - 1 - k))) & self.largest_id).tolist() for k in range(n)]
            for i, term in zip(at.tolist(), map(" ".join, zip(*([words[w] for w in part] for part in parts)))):
                out[i] = term
        return out


class NgramLookup:
    """Maps a document's tokens to the vocabulary ids of its 1- to ``max_n``-grams.

    Args:
        vocabulary: term -> column, as ``CountVectorizer.vocabulary_`` (n-grams joined by one space).
        min_n, max_n: the vectoriser's ``ngram_range``.
    """

    def __init__(self, vocabulary: dict[str, int], min_n: int, max_n: int):
        self.min_n, self.max_n = min_n, max_n
        terms = list(vocabulary)
        columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(terms))
        n_words = np.fromiter(map(str.count, terms, repeat(" ")), dtype=np.int64, count=len(terms)) + 1
        # Unigram terms first, so that a token id below len(unigrams) is that term's position.
        unigrams = np.flatnonzero(n_words == 1)
        self.token_id: dict[str, int] = dict(zip((terms[i] for i in unigrams), range(len(unigrams))))
        # An n-gram's words, split in one call over all n-grams of that length (a split per term
        # took 0.4 s on 171,000 bigrams).
        ngrams = {n: np.flatnonzero(n_words == n) for n in range(2, max_n + 1)}
        words = {n: " ".join(terms[i] for i in at).split(" ") if len(at) else [] for n, at in ngrams.items()}
        for n_words_list in words.values():
            for word in set(n_words_list).difference(self.token_id):  # words that are not terms themselves
                self.token_id[word] = len(self.token_id)
        self.token_column = np.full(len(self.token_id), -1, dtype=np.int64)
        self.token_column[:len(unigrams)] = columns[unigrams]
        self.ngram_keys = NgramKeys(max_n)
        # Every word id must fit its bits; otherwise strings (None below).
        self.exact = len(self.token_id) - 1 <= self.ngram_keys.largest_id
        self.keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # n -> (sorted keys, their columns)
        if self.exact:
            for n, at in ngrams.items():
                ids = np.fromiter(map(self.token_id.__getitem__, words[n]), dtype=np.int64, count=len(words[n]))
                keys = self.ngram_keys.pack(ids.reshape(-1, n).T, n)
                order = np.argsort(keys, kind="stable")
                self.keys[n] = (keys[order], columns[at][order])

    def columns(self, tokens: list[str]) -> np.ndarray | None:
        """Vocabulary columns of the document's n-grams (one per occurrence, any order), or None when
        a token contains a space (the caller then joins the n-grams as strings)."""
        if not self.exact or " " in "".join(tokens):
            return None
        ids = np.fromiter(map(self.token_id.get, tokens, repeat(-1)), dtype=np.int64, count=len(tokens))
        found = []
        if self.min_n == 1:
            known = self.token_column[ids[ids >= 0]]
            found.append(known[known >= 0])
        for n in range(max(self.min_n, 2), self.max_n + 1):
            if len(ids) < n or n not in self.keys:
                continue
            windows = self.ngram_keys.windows(ids, n)
            whole = windows[0] >= 0  # every token of the n-gram is a word of the vocabulary's terms
            for window in windows[1:]:
                whole &= window >= 0
            keys = self.ngram_keys.pack([window[whole] for window in windows], n)
            sorted_keys, sorted_columns = self.keys[n]
            at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
            found.append(sorted_columns[at[sorted_keys[at] == keys]] if len(sorted_keys) else at[:0])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
