"""A deterministic synthetic long-tailed corpus for the demo and unit tests.

Each label owns a few characteristic words; label frequencies follow a Zipf
law so most labels are rare (the long tail of real XMC data). Labels belong to
top categories; each document has a leaf category and draws its labels from
that category's labels, so the generated taxonomy (category -> relevant
labels) is exact. Accuracy claims are never made on this data.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..data.dataset import LabelVocabulary, XMCDataset, labels_to_csr

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "di", "fe", "go", "hu", "ji"]


@dataclasses.dataclass
class SyntheticCorpus:
    """Train and test splits, the label texts and the category taxonomy."""

    train: XMCDataset
    test: XMCDataset
    taxonomy: dict[str, list[str]]


def _word(rng: np.random.Generator, n_syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES, size=n_syllables))


def make_corpus(
    n_train: int = 2000,
    n_test: int = 500,
    n_labels: int = 200,
    n_top_categories: int = 4,
    leaves_per_category: int = 3,
    words_per_label: int = 6,
    noise_words: int = 2000,
    doc_length: int = 60,
    zipf_exponent: float = 1.1,
    seed: int = 0,
) -> SyntheticCorpus:
    """Generate the corpus; equal arguments always give equal data.

    Args:
        n_train / n_test: documents per split.
        n_labels: size of the label space.
        n_top_categories / leaves_per_category: the category tree ("Top i > Leaf j").
        words_per_label: characteristic words owned by each label.
        noise_words: size of the background vocabulary.
        doc_length: words per document.
        zipf_exponent: label frequency ~ rank ** -zipf_exponent.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    vocab = sorted({_word(rng, 3) for _ in range(noise_words + n_labels * words_per_label * 2)})
    if len(vocab) <= n_labels * words_per_label:
        # Three of 16 syllables make 4,096 distinct words: enough for the demo's few hundred labels.
        raise ValueError(f"make_corpus: {n_labels} labels x {words_per_label} words per label need "
                         f"{n_labels * words_per_label:,} distinct words and a background, but only {len(vocab):,} "
                         "were drawn (at most 4,096 exist); lower n_labels or words_per_label "
                         "(xmc.datasets.sparse generates large label spaces)")
    vocab = list(rng.permutation(vocab))
    label_words = [vocab[i * words_per_label:(i + 1) * words_per_label] for i in range(n_labels)]
    background = vocab[n_labels * words_per_label:]
    names = [f"{label_words[i][0]} {label_words[i][1]}" for i in range(n_labels)]
    # Label i belongs to top category i % n_top: every category gets head and tail labels.
    top_of_label = np.arange(n_labels) % n_top_categories
    leaves = [f"Top {t} > Leaf {j}" for t in range(n_top_categories) for j in range(leaves_per_category)]
    weights = 1.0 / np.arange(1, n_labels + 1) ** zipf_exponent

    def generate(n: int, offset: int) -> tuple[list[str], list[str], list[list[int]], list[str], list[str]]:
        texts, titles, label_ids, categories, ids = [], [], [], [], []
        for k in range(n):
            leaf = leaves[rng.integers(len(leaves))]
            top = int(leaf.split(" ")[1])
            allowed = np.flatnonzero(top_of_label == top)
            p = weights[allowed] / weights[allowed].sum()
            n_pos = min(len(allowed), 1 + rng.poisson(1.5))
            chosen = sorted(rng.choice(allowed, size=n_pos, replace=False, p=p).tolist())
            words = list(rng.choice(background, size=doc_length))
            for lab in chosen:
                for pos in rng.integers(0, doc_length, size=4):
                    words[pos] = label_words[lab][rng.integers(words_per_label)]
            texts.append(" ".join(words))
            titles.append(" ".join(label_words[chosen[0]][:2]) + " " + " ".join(rng.choice(background, size=3)))
            label_ids.append(chosen)
            categories.append(leaf)
            ids.append(f"doc{offset + k}")
        return ids, texts, label_ids, categories, titles

    labels = LabelVocabulary(names)

    def dataset(n: int, offset: int) -> XMCDataset:
        ids, texts, label_ids, categories, titles = generate(n, offset)
        return XMCDataset(
            ids=ids, texts=texts, titles=titles, Y=labels_to_csr(label_ids, n_labels), labels=labels,
            categories=categories, label_texts=[" ".join(words) for words in label_words], source="synthetic",
        )

    train = dataset(n_train, 0)
    test = dataset(n_test, n_train)
    taxonomy = {leaf: [names[i] for i in np.flatnonzero(top_of_label == int(leaf.split(" ")[1]))] for leaf in leaves}
    return SyntheticCorpus(train=train, test=test, taxonomy=taxonomy)
