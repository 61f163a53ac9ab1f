"""TF-IDF text features (scikit-learn), saved without pickle so a loaded model predicts from raw text."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Sequence, Sized

import numpy as np
import scipy.sparse as sp
from ..config import Config, check
from ..errors import ConfigError, ModelFormatError
from ..progress import progress_bar
from .ngram_lookup import NgramLookup
from .safe_regex import regex_problem
from .vocabulary import count_vocabulary

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer


@dataclasses.dataclass
class TfidfConfig(Config):
    """Settings of :class:`TfidfFeaturizer` (passed on to scikit-learn's ``TfidfVectorizer``).

    Attributes:
        max_ngram: word n-grams from 1 to ``max_ngram``.
        min_df: ignore terms in fewer documents than this.
        max_df: ignore terms in more than this fraction of documents.
        max_features: keep the most frequent terms only (None = all).
        sublinear_tf: use 1 + log(tf).
        lowercase: lowercase before tokenising.
        token_pattern: the regular expression of a token.
        fields: document fields joined (with a newline) into the featurised text.
    """

    max_ngram: int = 2
    min_df: int = 2
    max_df: float = 1.0
    max_features: int | None = 200_000
    sublinear_tf: bool = True
    lowercase: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"
    fields: list[str] = dataclasses.field(default_factory=lambda: ["title", "description", "text"])

    def validate(self) -> None:
        check(self.max_ngram >= 1, "max_ngram must be >= 1")
        check(float(self.min_df).is_integer() and self.min_df >= 1, "min_df must be a whole number >= 1")
        check(0 < self.max_df <= 1, "max_df must be in (0, 1]")
        check(self.max_features is None or self.max_features >= 1, "max_features must be >= 1")
        problem = regex_problem(self.token_pattern)
        check(problem is None, f"token_pattern {self.token_pattern!r}: {problem}")
        check(len(self.fields) >= 1, "fields must name at least one of title, description, text")
        bad = [f for f in self.fields if f not in ("title", "description", "text")]
        check(not bad, f"unknown text field(s) {bad}; choose from title, description, text")


def _with_progress(texts: Sequence[str], desc: str, progress: bool = True):
    """``texts`` behind a progress bar (none when ``progress`` is false): scikit-learn tokenises them
    in one pass over the iterable.

    A single string passes through unwrapped, so scikit-learn still rejects it (a wrapped string
    would be read as one document per character). So does a list of at most one document: its bar
    could not show (nothing shows before 2 s), and making one costs about 60 us, a tenth of a
    served request."""
    if isinstance(texts, str) or (isinstance(texts, Sized) and len(texts) < 2):
        return texts
    return progress_bar(texts, desc=desc, unit="doc", disable=not progress)


class TfidfFeaturizer:
    """Word n-gram TF-IDF with L2-normalised rows, float32 CSR output.

    Args:
        config: the vectoriser settings.
    """

    def __init__(self, config: TfidfConfig | None = None):
        self.config = config or TfidfConfig()
        self.vectorizer_: TfidfVectorizer | None = None
        self._lookup: NgramLookup | None = None  # of vectorizer_'s vocabulary; see _ngram_lookup

    def _make_vectorizer(self) -> TfidfVectorizer:
        # Imported here: scikit-learn costs ~1.3 s and ~100 MB to import, which models on given
        # feature matrices (XC files) never need.
        from sklearn.feature_extraction.text import TfidfVectorizer

        c = self.config
        return TfidfVectorizer(
            # scikit-learn reads an int as a document count and a float as a fraction: min_df is always
            # a count and max_df always a fraction here, so that max_df=1 keeps every term, from
            # Python as from a JSON config.
            ngram_range=(1, c.max_ngram), min_df=int(c.min_df), max_df=float(c.max_df), max_features=c.max_features,
            sublinear_tf=c.sublinear_tf, lowercase=c.lowercase, token_pattern=c.token_pattern,
            dtype=np.float32, norm="l2",
        )

    @property
    def n_features(self) -> int:
        self._check_fitted()
        return len(self.vectorizer_.vocabulary_)

    def fit_transform(self, texts: Sequence[str], *, progress: bool = True) -> sp.csr_matrix:
        """Fit the vocabulary and IDF on ``texts``; returns CSR (n, d). ``progress``: show a bar."""
        from sklearn.feature_extraction.text import TfidfTransformer

        vectorizer = self._make_vectorizer()
        self.vectorizer_, self._lookup = None, None
        # scikit-learn's vocabulary and counts, from integer n-gram keys (2x faster on EURLEX57K);
        # None where that is not certain to be exact, and scikit-learn fits them itself.
        try:
            bar = _with_progress(texts, "TF-IDF fit", progress)
            try:
                fitted = count_vocabulary(bar, vectorizer)
            finally:
                if hasattr(bar, "close"):  # a pass that stopped early (a fallback) closes its bar here
                    bar.close()
            if fitted is None:
                X = vectorizer.fit_transform(_with_progress(texts, "TF-IDF fit", progress))
            else:  # TfidfVectorizer.fit_transform's last steps, on the same counts
                vectorizer.vocabulary_, counts = fitted
                tfidf = TfidfTransformer(norm=vectorizer.norm, use_idf=vectorizer.use_idf,
                                         smooth_idf=vectorizer.smooth_idf, sublinear_tf=vectorizer.sublinear_tf)
                X = tfidf.fit(counts).transform(counts, copy=False)
                vectorizer.idf_ = tfidf.idf_
        except ValueError as exc:  # e.g. min_df above what the corpus allows, no term left, a NaN document
            raise ConfigError(f"features: TF-IDF cannot be fitted on these {len(texts)} documents ({exc})") from None
        self.vectorizer_ = vectorizer
        return sp.csr_matrix(X, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> "TfidfFeaturizer":
        self.fit_transform(texts)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """CSR (n, d) float32 features of ``texts``, bit for bit the vectoriser's ``transform``
        (``tests/test_tfidf.py`` checks it), in 0.41x its time for one EURLEX57K document (p50 0.60
        against 1.43 ms, ``benchmarks/bench_featurize.py``)."""
        self._check_fitted()
        if isinstance(texts, str):  # scikit-learn's own message; a string would be read char by char
            raise ValueError("Iterable over raw text documents expected, string object received.")
        idf = getattr(getattr(self.vectorizer_, "_tfidf", None), "idf_", None)
        if idf is None:  # a scikit-learn without that private transformer: its own path
            X = sp.csr_matrix(self.vectorizer_.transform(_with_progress(texts, "TF-IDF")), dtype=np.float32)
            X.sort_indices()
            return X
        from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2

        # TfidfTransformer.transform's steps, in its order and dtypes, without its per-call input
        # validation (about 1 ms a call, as much as featurising a long document).
        X = self._counts(_with_progress(texts, "TF-IDF"))
        if self.config.sublinear_tf:
            np.log(X.data, X.data)
            X.data += 1.0
        X.data *= idf[X.indices]
        inplace_csr_row_normalize_l2(X)
        return X

    def _counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Term counts (n, d) as ``CountVectorizer.transform`` makes them.

        The text is tokenised by the vectoriser's own preprocessor and tokenizer; its n-grams are
        mapped to columns by :class:`NgramLookup` (integer keys instead of joined strings), and
        counted by ``np.unique``. The counts are integers, so the matrix is scikit-learn's and the
        TF-IDF weighting after it is scikit-learn's own. Tokenising (the regular expression) is
        now the largest part, about a third of a EURLEX57K document's time.
        """
        vectorizer = self.vectorizer_
        preprocess, tokenize, decode = vectorizer.build_preprocessor(), vectorizer.build_tokenizer(), vectorizer.decode
        lookup = self._ngram_lookup()
        d = len(vectorizer.vocabulary_)
        found, lengths = [], []
        for i, text in enumerate(texts):
            if not isinstance(text, (str, bytes)):  # scikit-learn would fail inside its preprocessor
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not a string")
            tokens = tokenize(preprocess(decode(text)))
            columns = lookup.columns(tokens)
            if columns is None:  # a token with a space in it: scikit-learn's own n-gram strings
                get = vectorizer.vocabulary_.get
                columns = np.fromiter((j for j in map(get, vectorizer.build_analyzer()(text)) if j is not None),
                                      dtype=np.int64)
            found.append(columns)
            lengths.append(len(columns))
        rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        keys, counts = np.unique(rows * d + np.concatenate(found or [np.zeros(0, np.int64)]), return_counts=True)
        indptr = np.searchsorted(keys, np.arange(len(lengths) + 1, dtype=np.int64) * d)
        return sp.csr_matrix((counts.astype(np.float32), (keys % d).astype(np.int32), indptr.astype(np.int32)),
                             shape=(len(lengths), d))

    def _ngram_lookup(self) -> NgramLookup:
        """The vocabulary's :class:`NgramLookup`, built on first use (about 0.2 s for 200,000 terms):
        fitting and loading stay as fast as they were for a model that never transforms text.
        Two threads that race here build the same table; the second one's replaces the first."""
        lookup = self._lookup
        if lookup is None:
            lookup = NgramLookup(self.vectorizer_.vocabulary_, *self.vectorizer_.ngram_range)
            self._lookup = lookup
        return lookup

    def _check_fitted(self) -> None:
        if self.vectorizer_ is None:
            raise RuntimeError("TfidfFeaturizer is not fitted; call fit() first")

    # ---- persistence: vocabulary as JSON, IDF as .npy ----------------------------
    def save(self, directory: str | os.PathLike) -> None:
        self._check_fitted()
        os.makedirs(directory, exist_ok=True)
        vocab = self.vectorizer_.vocabulary_
        terms = [""] * len(vocab)
        for term, j in vocab.items():
            terms[j] = term
        with open(os.path.join(directory, "vocabulary.json"), "w", encoding="utf-8") as fh:
            json.dump(terms, fh, ensure_ascii=False)
        np.save(os.path.join(directory, "idf.npy"), self.vectorizer_.idf_.astype(np.float64), allow_pickle=False)
        self.config.to_json(os.path.join(directory, "config.json"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TfidfFeaturizer":
        try:
            config = TfidfConfig.from_json(os.path.join(directory, "config.json"))
            with open(os.path.join(directory, "vocabulary.json"), encoding="utf-8") as fh:
                terms = json.load(fh)
            idf = np.load(os.path.join(directory, "idf.npy"), allow_pickle=False)
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelFormatError(f"{directory}: cannot read TF-IDF featurizer ({exc or type(exc).__name__})") from exc
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ModelFormatError(f"{directory}/vocabulary.json: expected a list of terms")
        if len(set(terms)) != len(terms):  # a term given twice leaves a column without a term
            raise ModelFormatError(f"{directory}/vocabulary.json: a term is listed more than once")
        if idf.ndim != 1 or idf.dtype.kind != "f" or not np.isfinite(idf).all():
            raise ModelFormatError(f"{directory}/idf.npy: expected a 1-D array of finite floats")
        if len(idf) != len(terms):
            raise ModelFormatError(f"{directory}: {len(terms)} terms but {len(idf)} IDF values")
        featurizer = cls(config)
        vectorizer = featurizer._make_vectorizer()
        vectorizer.vocabulary_ = {term: j for j, term in enumerate(terms)}
        vectorizer.idf_ = idf
        featurizer.vectorizer_ = vectorizer
        return featurizer
