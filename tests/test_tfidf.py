"""TF-IDF features: the fast transform equals scikit-learn's bit for bit; n-gram lookup by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.datasets.synthetic import make_corpus
from xmc.features.ngram_lookup import NgramLookup
from xmc.features.tfidf import TfidfConfig, TfidfFeaturizer


@pytest.fixture(scope="module")
def texts():
    corpus = make_corpus(n_train=250, n_test=60, n_labels=30, seed=3)
    return corpus.train.input_texts(), corpus.test.input_texts()


def assert_scikit_learns(featurizer: TfidfFeaturizer, queries: list[str]) -> None:
    ours = featurizer.transform(queries)
    theirs = sp.csr_matrix(featurizer.vectorizer_.transform(queries), dtype=np.float32)
    theirs.sort_indices()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    for a, b in ((ours.indptr, theirs.indptr), (ours.indices, theirs.indices), (ours.data, theirs.data)):
        assert np.array_equal(a, b)
    for i, query in enumerate(queries[:5]):  # one document at a time: the serving path
        one = featurizer.transform([query])
        assert np.array_equal(one.indices, theirs[i].indices) and np.array_equal(one.data, theirs[i].data)


@pytest.mark.parametrize("sublinear", [True, False])
@pytest.mark.parametrize("max_ngram", [1, 2, 3])
def test_tfidf_transform_is_scikit_learns_bit_for_bit(tmp_path, texts, sublinear, max_ngram):
    train, test = texts
    # max_features keeps some bigrams whose words are not terms themselves (looked up as words only)
    config = TfidfConfig(min_df=1, sublinear_tf=sublinear, max_ngram=max_ngram, max_features=800)
    fitted = TfidfFeaturizer(config).fit(train)
    fitted.save(tmp_path / "f")
    queries = test[:50] + ["", "zzzz-unseen words only", "one", train[0] + " " + train[0]]
    for featurizer in (fitted, TfidfFeaturizer.load(tmp_path / "f")):
        assert_scikit_learns(featurizer, queries)


def test_tokens_with_spaces_and_keys_beyond_int64_fall_back_to_scikit_learns_strings(texts):
    train, test = texts
    # Tokens with spaces in them: an n-gram's joined string no longer splits into its tokens.
    phrases = ["new york, big city. new york", "big city,new york", "old town,big city. new", "new,york"]
    spaced = TfidfFeaturizer(TfidfConfig(min_df=1, token_pattern=r"[^.,]+")).fit(phrases)
    assert "new york" in spaced.vectorizer_.vocabulary_ and "new york  big city" in spaced.vectorizer_.vocabulary_
    assert_scikit_learns(spaced, phrases + ["new york,big city", "new,york,new york", "york"])
    # 64-grams: a key of 64 token ids does not fit in int64.
    long = TfidfFeaturizer(TfidfConfig(min_df=1, max_ngram=64)).fit(train[:50])
    assert not long._ngram_lookup().exact
    assert_scikit_learns(long, test[:10])


def test_ngram_lookup_counts_each_occurrence_by_hand():
    # "c" is a word of a bigram only; "d" is in no term.
    lookup = NgramLookup({"a": 0, "b": 1, "a b": 2, "b c": 3, "c a": 4}, 1, 2)
    assert sorted(lookup.columns(["a", "b", "c", "d", "a", "b"])) == [0, 0, 1, 1, 2, 2, 3]
    assert sorted(lookup.columns(["c"])) == [] and sorted(lookup.columns([])) == []
    assert lookup.columns(["a b", "c"]) is None  # a token with a space: the caller joins strings
    bigrams_only = NgramLookup({"a b": 0, "b a": 1}, 2, 2)
    assert sorted(bigrams_only.columns(["a", "b", "a"])) == [0, 1]
