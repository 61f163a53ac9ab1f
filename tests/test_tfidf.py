"""TF-IDF features: the fast transform equals scikit-learn's bit for bit; n-gram lookup by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.datasets.synthetic import make_corpus
from xmc.errors import ConfigError
from xmc.features.ngram_lookup import NgramKeys, NgramLookup
from xmc.features.tfidf import TfidfConfig, TfidfFeaturizer
from xmc.features.vocabulary import count_vocabulary


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


@pytest.mark.parametrize("settings", [
    {"min_df": 1}, {"min_df": 2}, {"min_df": 2, "max_features": 300},
    {"min_df": 1, "max_features": 1000, "max_ngram": 3}, {"min_df": 3, "max_df": 0.5, "max_ngram": 1},
    {"min_df": 2, "max_features": 50, "sublinear_tf": False}])
def test_fit_is_scikit_learns_bit_for_bit(texts, settings):
    """Vocabulary, IDF and the training matrix, down to the order of each row's entries (scikit-learn
    keeps them in order of first appearance, and the row norms are summed in that order)."""
    train, _ = texts
    featurizer = TfidfFeaturizer(TfidfConfig(**settings))
    ours = featurizer.fit_transform(train, progress=False)
    reference = featurizer._make_vectorizer()
    theirs = sp.csr_matrix(reference.fit_transform(train), dtype=np.float32)
    assert featurizer.vectorizer_.vocabulary_ == reference.vocabulary_
    assert np.array_equal(featurizer.vectorizer_.idf_, reference.idf_)
    assert ours.shape == theirs.shape and not theirs.has_sorted_indices
    for a, b in ((ours.indptr, theirs.indptr), (ours.indices, theirs.indices), (ours.data, theirs.data)):
        assert np.array_equal(a, b)
    # Summarised in chunks of 7 documents (the last one shorter): the same vocabulary and counts.
    vocabulary, counts = count_vocabulary(train, featurizer._make_vectorizer(), chunk_docs=7)
    _, whole = count_vocabulary(train, featurizer._make_vectorizer())
    assert vocabulary == reference.vocabulary_
    for a, b in ((counts.indptr, whole.indptr), (counts.indices, whole.indices), (counts.data, whole.data)):
        assert np.array_equal(a, b)


def test_unfittable_settings_are_scikit_learns_errors():
    docs = ["alpha beta", "gamma delta", "alpha gamma"]
    for settings, docs_, message in [({"min_df": 3}, docs, "no terms remain"),
                                     ({"min_df": 2, "max_df": 0.3}, docs, "max_df corresponds to < documents"),
                                     ({"min_df": 1}, ["a", "."], "empty vocabulary"),
                                     ({"min_df": 1}, ["alpha beta", np.nan], "np.nan is an invalid document")]:
        with pytest.raises(ConfigError, match=message):
            TfidfFeaturizer(TfidfConfig(**settings)).fit_transform(docs_, progress=False)


def test_tokens_with_spaces_and_keys_beyond_int64_fall_back_to_scikit_learns_strings(texts):
    train, test = texts
    # Tokens with spaces in them: an n-gram's joined string no longer splits into its tokens.
    phrases = ["new york, big city. new york", "big city,new york", "old town,big city. new", "new,york"]
    spaced = TfidfFeaturizer(TfidfConfig(min_df=1, token_pattern=r"[^.,]+")).fit(phrases)
    assert "new york" in spaced.vectorizer_.vocabulary_ and "new york  big city" in spaced.vectorizer_.vocabulary_
    assert spaced.vectorizer_.vocabulary_ == spaced._make_vectorizer().fit(phrases).vocabulary_
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


def test_ngram_keys_round_trip_and_never_collide_across_lengths():
    keys = NgramKeys(3)
    assert keys.word_bits == 20 and keys.largest_id == 2 ** 20 - 1
    words = ["a", "b", "c"]
    ids = np.array([0, 1, 2, 0], dtype=np.int64)
    packed = {n: keys.pack(keys.windows(ids, n), n) for n in (1, 2, 3)}
    assert [keys.strings(packed[n], words) for n in (1, 2, 3)] == [
        ["a", "b", "c", "a"], ["a b", "b c", "c a"], ["a b c", "b c a"]]
    # "a" (id 0) alone, "a a" and "a a a" pack the same ids; the length bits keep them apart
    zeros = [keys.pack([np.zeros(1, np.int64)] * n, n)[0] for n in (1, 2, 3)]
    assert len(set(zeros)) == 3 and min(zeros) >= 0
    assert all(len(keys.windows(ids[:1], n)[0]) == (1 if n == 1 else 0) for n in (1, 2, 3))
    largest = keys.pack([np.full(1, keys.largest_id, np.int64)] * 3, 3)[0]
    assert 0 < largest < 2 ** 63 and keys.strings(np.array([largest]), {keys.largest_id: "z"}) == ["z z z"]


def test_max_df_is_a_fraction_and_min_df_a_count_whatever_their_python_type():
    # "alpha" is in every document: max_df=1 (an int, which scikit-learn would read as "at most one
    # document") keeps it, exactly as max_df=1.0 and a JSON config's "max_df": 1 do.
    docs = ["alpha beta", "alpha gamma", "alpha beta gamma"]
    vocabularies = [TfidfFeaturizer(config).fit(docs).vectorizer_.vocabulary_ for config in
                    (TfidfConfig(min_df=1, max_df=1), TfidfConfig(min_df=1, max_df=1.0),
                     TfidfConfig.from_dict({"min_df": 1, "max_df": 1}), TfidfConfig(min_df=1.0, max_df=1))]
    assert all(v == vocabularies[0] for v in vocabularies) and "alpha" in vocabularies[0]
    # min_df=2.0 is two documents (scikit-learn would reject a float above 1); 2.5 is no count.
    kept = TfidfFeaturizer(TfidfConfig(min_df=2.0, max_ngram=1)).fit(docs).vectorizer_.vocabulary_
    assert sorted(kept) == ["alpha", "beta", "gamma"]
    with pytest.raises(ConfigError, match="min_df must be a whole number"):
        TfidfConfig(min_df=2.5)
