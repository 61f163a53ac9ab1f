"""The synthetic long-tailed corpus: determinism, Zipf tail, taxonomy consistency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from xmc.datasets.synthetic import make_corpus

SMALL = dict(n_train=200, n_test=50, n_labels=30, noise_words=300)


def _same_dataset(a, b) -> bool:
    return (
        a.ids == b.ids and a.texts == b.texts and a.titles == b.titles and a.categories == b.categories
        and a.labels.names == b.labels.names and a.label_texts == b.label_texts
        and a.Y.shape == b.Y.shape and (a.Y != b.Y).nnz == 0
    )


@pytest.fixture(scope="module")
def tail_corpus():
    return make_corpus(n_train=1000, n_test=100, n_labels=100, seed=2)


def test_same_seed_gives_identical_corpus():
    a, b = make_corpus(seed=7, **SMALL), make_corpus(seed=7, **SMALL)
    assert _same_dataset(a.train, b.train)
    assert _same_dataset(a.test, b.test)
    assert a.taxonomy == b.taxonomy


def test_different_seed_gives_different_corpus():
    a, b = make_corpus(seed=7, **SMALL), make_corpus(seed=8, **SMALL)
    assert a.train.texts != b.train.texts
    assert a.train.labels.names != b.train.labels.names
    # Not only the words: the label assignments differ too.
    assert [sorted(r.indices) for r in a.train.Y] != [sorted(r.indices) for r in b.train.Y]


def test_shapes_and_ids():
    c = make_corpus(seed=1, **SMALL)
    assert len(c.train) == 200 and len(c.test) == 50
    assert c.train.Y.shape == (200, 30) and c.test.Y.shape == (50, 30)
    assert c.train.labels == c.test.labels
    assert len(set(c.train.ids) | set(c.test.ids)) == 250  # ids unique across the splits
    assert len(set(c.train.labels.names)) == 30
    per_doc = np.diff(c.train.Y.indptr)
    assert per_doc.min() >= 1  # every document has at least one label
    assert set(np.unique(c.train.Y.data)) == {1.0}
    assert all(len(t.split()) == 60 for t in c.train.texts)  # doc_length words


def test_zipf_long_tail(tail_corpus):
    counts = tail_corpus.train.label_counts()
    assert counts.max() >= 5 * np.median(counts)
    # Frequency falls with the label's Zipf rank (its id).
    rho = spearmanr(np.arange(len(counts)), counts).statistic
    assert rho < -0.7
    # The head: the 10% most frequent labels carry a large share of all assignments.
    top = np.sort(counts)[::-1][: len(counts) // 10]
    assert top.sum() >= 0.35 * counts.sum()


def test_every_document_labels_lie_in_its_category_taxonomy(tail_corpus):
    taxonomy = tail_corpus.taxonomy
    for ds in (tail_corpus.train, tail_corpus.test):
        assert set(ds.categories) <= set(taxonomy)
        for i in range(len(ds)):
            names = ds.label_names_of(i)
            assert names, f"document {ds.ids[i]} has no label"
            assert set(names) <= set(taxonomy[ds.categories[i]]), (ds.ids[i], ds.categories[i], names)


def test_taxonomy_structure(tail_corpus):
    taxonomy = tail_corpus.taxonomy
    names = set(tail_corpus.train.labels.names)
    assert len(taxonomy) == 4 * 3  # n_top_categories * leaves_per_category
    tops: dict[str, set[str]] = {}
    for leaf, labels in taxonomy.items():
        assert set(labels) <= names and labels
        top = leaf.split(" > ")[0]
        # Leaves of one top category share its label list.
        assert tops.setdefault(top, set(labels)) == set(labels)
    assert len(tops) == 4
    # Top categories partition the label space.
    assert sum(len(s) for s in tops.values()) == len(names)
    assert set().union(*tops.values()) == names


def test_titles_and_label_texts_carry_the_label_words(tail_corpus):
    ds = tail_corpus.train
    for j, name in enumerate(ds.labels.names):
        assert ds.label_texts[j].startswith(name + " ")
    for i in range(len(ds)):
        first = ds.labels.names[ds.Y.indices[ds.Y.indptr[i]:ds.Y.indptr[i + 1]].min()]
        assert ds.titles[i].startswith(first + " ")


def test_too_many_labels_for_the_vocabulary_is_one_clear_error():
    """700 labels x 6 words need more distinct words than three syllables make: a ValueError that
    says so, not an IndexError from deep inside the generator."""
    with pytest.raises(ValueError, match="700 labels x 6 words per label need 4,200 distinct words"):
        make_corpus(n_train=10, n_test=5, n_labels=700)
