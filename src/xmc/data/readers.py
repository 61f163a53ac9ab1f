"""Readers and writers for the data formats xmc understands.

Formats:

* **JSONL** (optionally gzip-compressed): one JSON object a line with a text
  and/or title, optional description / category / id, and a ``labels`` list of
  label names (EURLEX57K, the ``ave-*`` product data).
* **XC sparse** (Extreme Classification Repository): a header
  ``n_points n_features n_labels`` then ``l1,l2,... f:v f:v ...`` per document.
* **AttentionXML**: ``*_texts.txt`` (one document a line) beside
  ``*_labels.txt`` (space-separated label names, one line per document).
* Label names / label texts / taxonomies, and top-k **prediction files**
  (JSONL ``{"id", "labels", "scores"}``).

Every reader is gzip-transparent (detected by the gzip magic bytes, which also
covers a ``.gz`` suffix) and raises :class:`~xmc.errors.DataFormatError` naming
the file, the 1-based line and the problem for malformed input.

Label vocabularies: when no vocabulary is given, a reader builds one whose ids
follow the order in which label names first appear in the file (so the same
file always gives the same ids). When a vocabulary is given (e.g. the training
vocabulary for a test file), ids of known names are kept, and names that are
not in it are appended as extra columns in order of first appearance and listed
in :attr:`XMCDataset.unseen_labels`; they are never dropped, so recall still
counts them.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from typing import IO, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from xmc.data.dataset import LabelVocabulary, XMCDataset, labels_to_csr
from xmc.errors import DataFormatError
from xmc.io import JSON_ERRORS, atomic_file, json_problem
from xmc.progress import progress_bar

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

_GZIP_MAGIC = b"\x1f\x8b"
# Bytes of XC sparse lines parsed per bulk numpy conversion: bounds the
# numpy temporaries (up to ~50 bytes per input byte) on big files.
_XC_CHUNK_BYTES = 1 << 18
_XC_MAX_COUNT = 2**31 - 1
# Exact powers of ten for the vectorised decimal parser (read-only constant).
_POW10 = 10 ** np.arange(19, dtype=np.int64)
# One XC feature list / label list: the per-line syntax, used to locate errors
# and to validate chunks the vectorised parser declines.
_XC_FEATURE = r"[0-9]+:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_XC_FEATURES_RE = re.compile(rf"[ \t]*(?:{_XC_FEATURE}(?:[ \t]+{_XC_FEATURE})*)?[ \t]*".encode())
_XC_LABELS_RE = re.compile(rb"[0-9]+(?:,[0-9]+)*")
_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "number",
                    float: "number", bool: "boolean", type(None): "null"}


# ----------------------------------------------------------------------------
# Low-level helpers
# ----------------------------------------------------------------------------


def _open_binary(path: PathLike) -> IO[bytes]:
    """Open ``path`` for binary reading, decompressing gzip transparently."""
    fh = open(path, "rb")
    try:
        magic = fh.read(2)
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    if magic == _GZIP_MAGIC:
        fh.close()  # gzip.open owns (and closes) its own handle
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if os.fspath(path).endswith(".gz"):
        fh.close()
        raise DataFormatError(path, None, "has a .gz suffix but is not gzip-compressed")
    return fh


def _lines_with_progress(fh: IO[bytes], path: PathLike) -> Iterator[bytes]:
    """The lines of ``fh`` (from :func:`_open_binary`), with a progress bar over the file's bytes on disk."""
    raw = getattr(fh, "fileobj", fh)  # a gzip stream: count the compressed bytes read so far
    done = 0
    with progress_bar(total=os.path.getsize(path), desc=f"reading {os.path.basename(path)}",
                      unit="B", unit_scale=True, unit_divisor=1024) as bar:
        for i, line in enumerate(fh):
            yield line
            if i & 4095 == 4095:  # tell() is cheap, but not per line
                position = raw.tell()
                bar.update(position - done)
                done = position
        bar.update(bar.total - done)


def _read_all_text(path: PathLike) -> str:
    """The whole (possibly gzipped) file decoded as UTF-8; bad bytes are reported with their line."""
    with _open_binary(path) as fh:
        try:
            data = fh.read()
        except (OSError, EOFError) as exc:  # truncated / corrupt gzip stream
            raise DataFormatError(path, None, f"cannot decompress: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(path, line, f"invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def _read_lines(path: PathLike) -> list[str]:
    """Lines of a text file without their line terminators (``\\n`` or ``\\r\\n``).

    Splits on ``\\n`` only (``str.splitlines`` would also split on characters such
    as U+2028 that may occur inside a document). A final newline does not start
    an extra line.
    """
    text = _read_all_text(path)
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _document_id(value: object, line_no: int, path: PathLike) -> str:
    """A JSON document id as both the truth and the prediction readers read it: a string, an integer as
    its decimal string, or, when absent (or null), the 0-based line number; anything else is refused
    (a float id 0.0 would never match a truth's 0)."""
    if value is None:
        return str(line_no - 1)
    name = _label_name(value)  # the same rule as a label's name
    if name is None:
        raise DataFormatError(path, line_no, f"id must be a string or an integer, got {_json_type(value)}")
    return name


def _label_name(value: object) -> str | None:
    """A JSON label as the truth and prediction readers both name it: a string, or an integer as its
    decimal string (``1`` and ``"1"`` are one label, as in XC files); None for anything else (a float,
    bool or null would name a label no file spells the same), which the caller refuses."""
    if type(value) is str:
        return value
    return str(value) if type(value) is int else None


def _load_json_document(path: PathLike, text: str | None = None) -> object:
    """Parse a whole file (or its already-read ``text``) as one JSON value (gzip-transparent)."""
    if text is None:
        text = _read_all_text(path)
    if not text.strip():
        raise DataFormatError(path, 1, "empty file")
    try:
        return json.loads(text)
    except JSON_ERRORS as exc:
        raise DataFormatError(path, getattr(exc, "lineno", None), json_problem(exc)) from None


def _json_key_line(path: PathLike, key: str) -> int | None:
    """Best-effort 1-based line of ``"key":`` in a JSON file, to point error messages at it."""
    try:
        text = _read_all_text(path)
    except DataFormatError:
        return None
    match = re.search(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text)
    return None if match is None else text.count("\n", 0, match.start()) + 1


def _finish_vocabulary(
    path: PathLike, labels: LabelVocabulary | None, names: list[str]
) -> tuple[LabelVocabulary, list[str]]:
    """The final vocabulary and the unseen names, given ``names`` = known names + appended ones."""
    if labels is None:
        return LabelVocabulary(names), []
    unseen = names[len(labels):]
    if not unseen:
        return labels, []
    logger.warning(
        "%s: %d label(s) not in the given vocabulary of %d labels; appended as extra columns "
        "(listed in unseen_labels)", os.fspath(path), len(unseen), len(labels),
    )
    return labels.extended(unseen), unseen


def _extend_label_texts(
    label_texts: list[str] | None, n_known: int, vocab: LabelVocabulary
) -> list[str] | None:
    """Align caller-supplied label texts with the final vocabulary (unseen labels get their name)."""
    if label_texts is None:
        return None
    if len(label_texts) != n_known:
        raise ValueError(f"{len(label_texts)} label texts for a vocabulary of {n_known} labels")
    return list(label_texts) + vocab.names[n_known:]


# ----------------------------------------------------------------------------
# JSONL
# ----------------------------------------------------------------------------


def duplicate_ids(ids: Sequence[str]) -> list[str]:
    """The ids that occur more than once in ``ids``, in order of their second occurrence."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for doc_id in ids:
        if doc_id in seen:
            repeated[doc_id] = None
        seen.add(doc_id)
    return list(repeated)


def read_jsonl(
    path: PathLike,
    *,
    labels: LabelVocabulary | None = None,
    text_field: str = "text",
    title_field: str = "title",
    description_field: str = "description",
    labels_field: str = "labels",
    category_field: str = "category",
    id_field: str = "id",
    label_texts: list[str] | None = None,
    max_docs: int | None = None,
    require_text: bool = True,
    require_labels: bool = True,
) -> XMCDataset:
    """Read a JSONL file (one JSON object a line, optionally gzip-compressed).

    Each object needs ``labels_field`` (a list of label names; strings, integers
    are converted with ``str``; an empty list is fine) and ``text_field`` unless
    it has ``title_field`` (the text is then ``""``). The title, description,
    category and id fields are optional: when a field occurs in no document the
    attribute is ``None``; when it occurs in some, the others get ``""``. A
    missing id defaults to the 0-based line index as a string. Blank lines are
    skipped.

    Args:
        path: the ``.jsonl`` or ``.jsonl.gz`` file.
        labels: the vocabulary to map label names with. ``None`` builds one in
            order of first appearance in this file. Names not in a given
            vocabulary are appended as extra columns and listed in
            ``dataset.unseen_labels`` (with a logged warning).
        text_field, title_field, description_field, labels_field,
            category_field, id_field: JSON keys of each field.
        label_texts: optional text of each label, aligned with ``labels`` (or
            with the vocabulary built from the file); unseen labels get their
            name as text.
        max_docs: stop after this many documents.
        require_text: ``False`` accepts documents with neither text nor title
            (e.g. a truth file for evaluation: ids and labels only).
        require_labels: ``False`` accepts documents without ``labels_field``
            (documents to predict for); they get no label.

    A ``text_field`` other than ``"text"`` that no document has is an error
    (a misspelt field would otherwise train on titles alone). Document ids
    given twice are logged as a warning (:func:`duplicate_ids` finds them).

    Raises:
        DataFormatError: invalid UTF-8 or JSON, a line that is not an object, a
            missing required field, a field of the wrong type, or no document.
    """
    if max_docs is not None and max_docs < 0:
        raise ValueError(f"max_docs must be >= 0, got {max_docs}")
    names: list[str] = [] if labels is None else list(labels.names)
    index: dict[str, int] = {} if labels is None else dict(labels.index)
    ids: list[str] = []
    texts: list[str] = []
    titles: list[str | None] = []
    descriptions: list[str | None] = []
    categories: list[str | None] = []
    label_ids: list[list[int]] = []
    has_title = has_description = has_category = has_text = False
    missing = object()
    loads = json.loads

    def fail(line_no: int, problem: str) -> DataFormatError:
        return DataFormatError(path, line_no, problem)

    def optional_str(obj: dict, field: str, line_no: int) -> str | None:
        value = obj.get(field)
        if value is None or type(value) is str:
            return value
        raise fail(line_no, f"field {field!r} must be a string, got {_json_type(value)}")

    with _open_binary(path) as fh:
        line_no = 0
        try:
            for line_no, raw in enumerate(_lines_with_progress(fh, path), 1):
                if max_docs is not None and len(ids) >= max_docs:
                    break
                if raw.isspace():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise fail(line_no, f"invalid UTF-8 ({exc.reason} at byte {exc.start} of the line)") from None
                try:
                    obj = loads(line)
                except JSON_ERRORS as exc:
                    raise fail(line_no, json_problem(exc)) from None
                if type(obj) is not dict:
                    raise fail(line_no, f"expected a JSON object, got {_json_type(obj)}")

                title = optional_str(obj, title_field, line_no)
                text = optional_str(obj, text_field, line_no)
                if text is None:
                    if title is None and require_text:
                        raise fail(line_no, f"missing field {text_field!r} (and no {title_field!r})")
                    text = ""
                else:
                    has_text = True
                description = optional_str(obj, description_field, line_no)
                category = obj.get(category_field)
                if category is not None and type(category) is not str:
                    if isinstance(category, list) and all(type(c) is str for c in category):
                        category = " > ".join(category)  # a path given as a list
                    else:
                        raise fail(line_no, f"field {category_field!r} must be a string, got {_json_type(category)}")

                doc_labels = obj.get(labels_field, missing)
                if doc_labels is missing:
                    if require_labels:
                        raise fail(line_no, f"missing field {labels_field!r}")
                    doc_labels = []
                if type(doc_labels) is not list:
                    raise fail(line_no, f"field {labels_field!r} must be a list, got {_json_type(doc_labels)}")
                row = []
                for value in doc_labels:
                    name = _label_name(value)
                    if name is None:
                        raise fail(line_no, f"label {value!r} in field {labels_field!r} is not a string")
                    j = index.get(name)
                    if j is None:
                        j = index[name] = len(names)
                        names.append(name)
                    row.append(j)

                ids.append(_document_id(obj.get(id_field), line_no, path))
                texts.append(text)
                titles.append(title)
                descriptions.append(description)
                categories.append(category)
                label_ids.append(row)
                has_title = has_title or title is not None
                has_description = has_description or description is not None
                has_category = has_category or category is not None
        except (OSError, EOFError) as exc:  # truncated / corrupt gzip stream
            raise fail(line_no + 1, f"cannot decompress: {exc}") from None

    if not ids and max_docs != 0:
        raise DataFormatError(path, 1, "no documents (the file is empty)")
    if ids and not has_text and text_field != "text":
        raise DataFormatError(path, None, f"no document has the text field {text_field!r}")
    repeated = duplicate_ids(ids)
    if repeated:
        logger.warning("%s: %d document id(s) occur more than once, e.g. %r", os.fspath(path), len(repeated),
                       repeated[0])

    def column(values: list[str | None], present: bool) -> list[str] | None:
        return [v if v is not None else "" for v in values] if present else None

    n_known = len(names) if labels is None else len(labels)
    vocab, unseen = _finish_vocabulary(path, labels, names)
    return XMCDataset(
        ids=ids,
        texts=texts,
        Y=labels_to_csr(label_ids, len(vocab)),
        labels=vocab,
        titles=column(titles, has_title),
        descriptions=column(descriptions, has_description),
        categories=column(categories, has_category),
        label_texts=_extend_label_texts(label_texts, n_known, vocab),
        unseen_labels=unseen,
        source=os.fspath(path),
    )


# ----------------------------------------------------------------------------
# XC sparse format
# ----------------------------------------------------------------------------


def _mantissas(a: np.ndarray, digits_before: np.ndarray, seg_start: np.ndarray, seg_end: np.ndarray) -> np.ndarray:
    """Integer value of the digits of each segment ``a[seg_start[k]:seg_end[k]]`` (other bytes skipped).

    Segments are sorted, disjoint, hold 1..18 digits each and together hold
    every digit of ``a``; ``digits_before[i]`` counts the digits in ``a[:i]``.
    """
    counts = digits_before[seg_end] - digits_before[seg_start]
    digit_at = np.flatnonzero((a - np.uint8(48)) <= 9)
    segment_of_digit = np.repeat(np.arange(len(seg_start)), counts)
    digits_after = digits_before[seg_end][segment_of_digit] - digits_before[digit_at] - 1
    contributions = (a[digit_at] - np.uint8(48)).astype(np.int64) * _POW10[digits_after]
    return np.add.reduceat(contributions, digits_before[seg_start])


def _token_bounds(is_token: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) offsets of the runs of True in ``is_token``."""
    edges = np.diff(is_token.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _parse_xc_features(lines: list[bytes]) -> np.ndarray | None:
    """Parse XC feature lists into interleaved ``[index, value, index, value, ...]`` float64.

    Vectorised over the whole chunk: no Python object per feature. Values are
    assembled as exact int64 mantissas divided by exact powers of ten, which
    IEEE rounding makes identical to ``strtod`` for up to 15 digits. Returns
    ``None`` when the chunk is malformed or outside this fast path (exponents,
    ``+`` signs, long mantissas); the caller then validates line by line.
    """
    data = b"\n".join(lines)
    a = np.frombuffer(data, dtype=np.uint8)
    is_space = (a == 32) | (a == 9) | (a == 10) | (a == 13)
    is_digit = (a - np.uint8(48)) <= 9  # uint8 arithmetic wraps below '0'
    is_colon, is_dot, is_minus = a == 58, a == 46, a == 45
    if (~(is_space | is_digit | is_colon | is_dot | is_minus)).any():
        return None
    starts, ends = _token_bounds(~is_space)
    colons = np.flatnonzero(is_colon)
    # Each token 'index:value' holds exactly one colon strictly inside it: with
    # equal counts, "the k-th colon lies inside the k-th token" says just that.
    if len(colons) != len(starts) or not ((colons > starts) & (colons < ends - 1)).all():
        return None
    if len(starts) == 0:
        return np.zeros(0, dtype=np.float64)
    digits_before = np.zeros(len(a) + 1, dtype=np.int64)
    np.cumsum(is_digit, out=digits_before[1:])
    index_digits = digits_before[colons] - digits_before[starts]
    value_starts = colons + 1
    value_digits = digits_before[ends] - digits_before[value_starts]
    negative = a[value_starts] == 45
    dots = np.flatnonzero(is_dot)
    dot_token = np.searchsorted(starts, dots, side="right") - 1
    if (
        (index_digits != colons - starts).any()  # index: digits only
        or index_digits.max() > 15
        or value_digits.min() < 1
        or value_digits.max() > 15
        or not np.array_equal(np.flatnonzero(is_minus), value_starts[negative])  # '-' only leads a value
        or (len(dots) > 1 and not (np.diff(dot_token) > 0).all())  # at most one dot per value
        or (dots < value_starts[dot_token]).any()
    ):
        return None
    seg_start = np.empty(2 * len(starts), dtype=np.int64)
    seg_end = np.empty_like(seg_start)
    seg_start[0::2], seg_start[1::2] = starts, value_starts
    seg_end[0::2], seg_end[1::2] = colons, ends
    pairs = _mantissas(a, digits_before, seg_start, seg_end).astype(np.float64)
    fraction_digits = np.zeros(len(starts), dtype=np.int64)
    fraction_digits[dot_token] = digits_before[ends[dot_token]] - digits_before[dots]
    values = pairs[1::2] / _POW10[fraction_digits].astype(np.float64)
    values[negative] = -values[negative]
    pairs[1::2] = values
    return pairs


def _parse_xc_labels(heads: list[bytes]) -> np.ndarray | None:
    """Parse non-empty comma-separated label lists into one int64 array (vectorised); ``None`` if malformed."""
    data = b"\n".join(heads)
    a = np.frombuffer(data, dtype=np.uint8)
    is_digit = (a - np.uint8(48)) <= 9
    is_comma = a == 44
    if (~(is_digit | is_comma | (a == 10))).any():
        return None
    commas = np.flatnonzero(is_comma)
    if len(commas) and (commas[0] == 0 or commas[-1] == len(a) - 1
                        or not (is_digit[commas - 1] & is_digit[commas + 1]).all()):
        return None
    starts, ends = _token_bounds(is_digit)
    if len(starts) == 0 or (ends - starts).max() > 18:
        return None
    digits_before = np.zeros(len(a) + 1, dtype=np.int64)
    np.cumsum(is_digit, out=digits_before[1:])
    return _mantissas(a, digits_before, starts, ends)


def _xc_feature_problem(features: str) -> str:
    """Explain why an XC feature list failed validation (slow path, only on errors)."""
    for token in features.split():
        index, colon, value = token.partition(":")
        if not colon:
            return f"malformed feature {token!r}: expected index:value"
        try:
            idx = int(index)
        except ValueError:
            return f"malformed feature {token!r}: index {index!r} is not an integer"
        if idx < 0:
            return f"malformed feature {token!r}: negative feature index {idx}"
        try:
            float(value)
        except ValueError:
            return f"malformed feature {token!r}: value {value!r} is not a number"
        if not _XC_FEATURES_RE.fullmatch(token.encode("utf-8", "replace")):
            return f"malformed feature {token!r}"
    return f"malformed feature list {features[:80]!r}"


def _xc_label_problem(head: str) -> str:
    """Explain why an XC label list failed validation (slow path, only on errors)."""
    for token in head.split(","):
        if not token:
            return f"malformed label list {head!r}: empty label id"
        try:
            value = int(token)
        except ValueError:
            return f"label id {token!r} is not an integer"
        if value < 0:
            return f"negative label id {value}"
    return f"malformed label list {head!r}"


def read_xc_sparse(path: PathLike, *, labels: LabelVocabulary | None = None) -> XMCDataset:
    """Read a file in the Extreme Classification Repository sparse format.

    The first line is ``n_points n_features n_labels``; each of the next
    ``n_points`` lines is ``l1,l2,... f:v f:v ...`` (a line without labels
    starts with a space, or directly with its features). A whitespace-only line
    is a document without labels or features; blank lines after the last
    declared document are ignored.

    Returns a dataset with ``X`` (CSR float32, ``n x n_features``, sorted
    indices), ``Y``, empty texts and ids ``"0" .. "n-1"``.
    Without ``labels`` the vocabulary is ``"0" .. "L-1"`` (all ``L`` labels of
    the header, occurring or not); with one, label id ``j`` is looked up as the
    name ``str(j)`` and names not in it are appended (see the module docstring).

    Numbers are parsed and validated in bulk per chunk of a few MB (no Python
    object per feature); per-line regexes only run to locate an error.

    Raises:
        DataFormatError: empty file, a header of 0 data points, malformed
            header, malformed feature or label list, a feature given twice on
            one line, a feature or label id out of range, or a number of data
            lines different from the header's (reported on the header line
            when the file is short, on the first extra line when it is long).
    """
    def fail(line_no: int | None, problem: str) -> DataFormatError:
        return DataFormatError(path, line_no, problem)

    with _open_binary(path) as fh:
        header_raw = fh.readline()
        if not header_raw.strip():
            raise fail(1, "empty file or blank header: expected 'n_points n_features n_labels'")
        header = header_raw.split()
        if len(header) != 3 or not all(h.isdigit() for h in header):
            raise fail(1, f"malformed header {header_raw.decode('utf-8', 'replace').strip()!r}: "
                       "expected three non-negative integers 'n_points n_features n_labels'")
        n, d, n_labels = (int(h) for h in header)
        if n == 0:  # as an empty JSONL file: every use of a data file needs documents
            raise fail(1, "the header declares 0 data points: no documents")
        for count, what in ((d, "n_features"), (n_labels, "n_labels")):
            if count > _XC_MAX_COUNT:  # ids are int32 downstream; a larger header is corrupt, not data
                raise fail(1, f"header declares {count:,} {what}; at most {_XC_MAX_COUNT:,} are supported")

        # Row counts grow with the lines actually read: a corrupt header cannot make us allocate for it.
        feature_counts: list[int] = []
        label_counts: list[int] = []
        feature_chunks: list[np.ndarray] = []
        label_chunks: list[np.ndarray] = []
        chunk_features: list[bytes] = []
        chunk_labels: list[bytes] = []
        chunk_bytes = 0

        def flush(first_row: int) -> None:
            # Parse the chunk in bulk; on failure, find the first bad line with
            # the per-line regexes (slow, but only on errors or unusual numbers).
            heads = [h for h in chunk_labels if h]
            features = _parse_xc_features(chunk_features)
            label_ids = _parse_xc_labels(heads) if heads else np.zeros(0, dtype=np.int64)
            if features is None or label_ids is None:
                for offset, (head, feats) in enumerate(zip(chunk_labels, chunk_features)):
                    if head and not _XC_LABELS_RE.fullmatch(head):
                        raise fail(first_row + offset + 2, _xc_label_problem(head.decode("utf-8", "replace")))
                    if not _XC_FEATURES_RE.fullmatch(feats):
                        raise fail(first_row + offset + 2, _xc_feature_problem(feats.decode("utf-8", "replace")))
                if features is None:  # valid, e.g. exponent notation: the generic parser
                    text = b" ".join(chunk_features).replace(b":", b" ").decode("ascii")
                    features = np.fromstring(text, dtype=np.float64, sep=" ") if text.strip() else np.zeros(0)
                if label_ids is None:
                    label_ids = np.array([int(x) for x in b",".join(heads).split(b",")], dtype=np.float64)
            feature_chunks.append(features)
            label_chunks.append(label_ids)
            chunk_features.clear()
            chunk_labels.clear()

        row = chunk_first_row = 0
        line_no = 1
        try:
            for line_no, raw in enumerate(_lines_with_progress(fh, path), 2):
                line = raw.rstrip()
                if row == n:
                    if line.strip():
                        raise fail(line_no, f"more data lines than the {n} declared in the header")
                    continue
                if not line or line[0] in b" \t":
                    head, features = b"", line
                else:
                    head, _, features = line.partition(b" ")
                    if b":" in head:  # features without labels and without the leading space
                        head, features = b"", line
                feature_counts.append(features.count(b":"))
                label_counts.append(head.count(b",") + 1 if head else 0)
                chunk_labels.append(head)
                chunk_features.append(features)
                chunk_bytes += len(line)
                row += 1
                if chunk_bytes >= _XC_CHUNK_BYTES:
                    flush(chunk_first_row)
                    chunk_first_row, chunk_bytes = row, 0
        except (OSError, EOFError) as exc:  # truncated / corrupt gzip stream
            raise fail(line_no + 1, f"cannot decompress: {exc}") from None
        flush(chunk_first_row)
    if row < n:
        raise fail(1, f"header declares {n} data points but the file has {row} data lines")

    def line_of(indptr: np.ndarray, position: int) -> int:
        return int(np.searchsorted(indptr, position, side="right")) - 1 + 2

    x_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.asarray(feature_counts, dtype=np.int64), out=x_indptr[1:])
    pairs = np.concatenate(feature_chunks)
    if len(pairs) != 2 * x_indptr[-1]:  # cannot happen after the regex check; guard anyway
        raise fail(None, "feature lists could not be parsed")
    x_indices = pairs[0::2]
    bad = np.flatnonzero(x_indices >= d)
    if len(bad):
        pos = int(bad[0])
        raise fail(line_of(x_indptr, pos), f"feature index {int(x_indices[pos])} out of range (n_features = {d})")
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below in one line
        values = pairs[1::2].astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):  # inf / nan, or beyond float32's range: it would be trained on as infinity
        pos = int(bad[0])
        raise fail(line_of(x_indptr, pos), f"feature {int(x_indices[pos])} has value {pairs[2 * pos + 1]!r}: "
                   "not a finite float32 number")
    index_dtype = np.int32 if max(d, int(x_indptr[-1])) < 2**31 else np.int64
    X = sp.csr_matrix(
        (values, x_indices.astype(index_dtype), x_indptr.astype(index_dtype)),
        shape=(n, d),
    )
    stored = X.nnz
    X.sum_duplicates()
    if X.nnz != stored:  # "3:1 3:2" would silently be 3.0: the line is malformed, not a sum
        rows = np.repeat(np.arange(n), np.diff(x_indptr))
        order = np.lexsort((x_indices, rows))
        twice = np.flatnonzero((np.diff(rows[order]) == 0) & (np.diff(x_indices[order]) == 0))
        pos = int(order[twice[0] + 1])
        raise fail(line_of(x_indptr, pos), f"feature {int(x_indices[pos])} is given more than once")

    y_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.asarray(label_counts, dtype=np.int64), out=y_indptr[1:])
    y_indices = np.concatenate(label_chunks).astype(np.int64)
    if len(y_indices) != y_indptr[-1]:
        raise fail(None, "label lists could not be parsed")
    bad = np.flatnonzero(y_indices >= n_labels)
    if len(bad):
        pos = int(bad[0])
        raise fail(line_of(y_indptr, pos), f"label id {int(y_indices[pos])} out of range (n_labels = {n_labels})")
    if labels is None:
        vocab, unseen = LabelVocabulary(str(j) for j in range(n_labels)), []
    else:
        names = list(labels.names)
        index = dict(labels.index)
        column = np.zeros(n_labels, dtype=np.int64)
        for j in np.unique(y_indices).tolist():
            name = str(j)
            if name not in index:
                index[name] = len(names)
                names.append(name)
            column[j] = index[name]
        y_indices = column[y_indices]
        vocab, unseen = _finish_vocabulary(path, labels, names)
    Y = sp.csr_matrix(
        (np.ones(len(y_indices), dtype=np.float32), y_indices.astype(np.int32), y_indptr), shape=(n, len(vocab))
    )
    Y.sum_duplicates()
    Y.data[:] = 1.0
    return XMCDataset(
        ids=[str(i) for i in range(n)],
        texts=[""] * n,
        Y=Y,
        labels=vocab,
        X=X,
        unseen_labels=unseen,
        source=os.fspath(path),
    )


def write_xc_sparse(path: PathLike, X: sp.spmatrix | None, Y: sp.spmatrix) -> None:
    """Write features ``X`` (n x d, or ``None`` for none) and labels ``Y`` (n x L) in XC sparse format.

    Label ids are the column indices of ``Y``'s non-zero entries; values are
    written with 9 significant digits (exact for float32). A document without
    labels gets the conventional leading space. The file appears atomically.
    """
    Y = sp.csr_matrix(Y)
    n = Y.shape[0]
    if X is None:
        X = sp.csr_matrix((n, 0), dtype=np.float32)
    X = sp.csr_matrix(X)
    if X.shape[0] != n:
        raise ValueError(f"X has {X.shape[0]} rows, Y has {n}")
    X.sort_indices()
    Y = Y.copy()
    Y.eliminate_zeros()
    Y.sort_indices()
    with atomic_file(path) as fh:
        fh.write(f"{n} {X.shape[1]} {Y.shape[1]}\n")
        x_ptr, x_idx, x_val = X.indptr, X.indices.tolist(), X.data.tolist()
        y_ptr, y_idx = Y.indptr, Y.indices.tolist()
        for i in range(n):
            head = ",".join(map(str, y_idx[y_ptr[i]:y_ptr[i + 1]]))
            a, b = x_ptr[i], x_ptr[i + 1]
            feats = " ".join(f"{j}:{v:.9g}" for j, v in zip(x_idx[a:b], x_val[a:b]))
            fh.write(f"{head} {feats}".rstrip() + "\n" if head else f" {feats}\n")


# ----------------------------------------------------------------------------
# AttentionXML layout, label names and texts, taxonomies
# ----------------------------------------------------------------------------


def read_attentionxml(
    texts_path: PathLike, labels_path: PathLike, *, labels: LabelVocabulary | None = None
) -> XMCDataset:
    """Read the AttentionXML layout: ``*_texts.txt`` beside ``*_labels.txt``.

    Line ``i`` of ``texts_path`` is document ``i``; line ``i`` of ``labels_path``
    holds its space-separated label names (a blank line means no label). Ids are
    ``"0" .. "n-1"``; the vocabulary follows the module's rules.

    Raises:
        DataFormatError: an empty texts file, invalid UTF-8, or a different
            number of lines in the two files (reported on the labels file).
    """
    texts = _read_lines(texts_path)
    if not texts:
        raise DataFormatError(texts_path, 1, "empty file")
    label_lines = _read_lines(labels_path)
    if len(label_lines) != len(texts):
        raise DataFormatError(
            labels_path, min(len(texts), len(label_lines)) + 1,
            f"{len(label_lines)} label lines for {len(texts)} text lines in {os.fspath(texts_path)}",
        )
    names: list[str] = [] if labels is None else list(labels.names)
    index: dict[str, int] = {} if labels is None else dict(labels.index)
    label_ids = []
    for line in label_lines:
        row = []
        for name in line.split():
            j = index.get(name)
            if j is None:
                j = index[name] = len(names)
                names.append(name)
            row.append(j)
        label_ids.append(row)
    vocab, unseen = _finish_vocabulary(labels_path, labels, names)
    return XMCDataset(
        ids=[str(i) for i in range(len(texts))],
        texts=texts,
        Y=labels_to_csr(label_ids, len(vocab)),
        labels=vocab,
        unseen_labels=unseen,
        source=os.fspath(texts_path),
    )


def read_label_names(path: PathLike) -> list[str]:
    """Label names, one a line (line ``i`` names label ``i``); only line terminators are stripped.

    Raises:
        DataFormatError: empty file or invalid UTF-8.
    """
    names = _read_lines(path)
    if not names:
        raise DataFormatError(path, 1, "empty file: expected one label name a line")
    return names


def read_label_texts(path: PathLike, vocabulary: LabelVocabulary) -> list[str]:
    """Texts of the labels of ``vocabulary``, in vocabulary order.

    Three layouts are accepted: a JSON object ``{label_name: text}`` (a file whose
    first non-blank character is ``{``), a JSON array whose item ``i`` is the text
    of the label named ``str(i)`` (first character ``[``, or a ``.json`` name), or
    a text file whose line ``i`` is the text of the label named ``str(i)`` (e.g.
    EURLEX57K's ``labels.txt``). A file that gives no label of ``vocabulary`` a
    text is an error. A label
    without a text gets its name as text; their number is logged as a warning.

    Raises:
        DataFormatError: invalid JSON, a non-string text, invalid UTF-8, or an empty file.
    """
    text = _read_all_text(path)
    if not text.strip():
        raise DataFormatError(path, 1, "empty file")
    if text.lstrip().startswith("{"):
        mapping = _load_json_document(path, text)
        if not isinstance(mapping, dict):  # e.g. '{' followed by garbage is caught above; keep types honest
            raise DataFormatError(path, 1, f"expected a JSON object, got {_json_type(mapping)}")
        for name, value in mapping.items():
            if type(value) is not str:
                raise DataFormatError(
                    path, _json_key_line(path, name), f"text of label {name!r} must be a string, got {_json_type(value)}"
                )
    elif text.lstrip().startswith("[") or os.fspath(path).lower().removesuffix(".gz").endswith(".json"):
        array = _load_json_document(path, text)  # a JSON array: item i is the text of label str(i)
        if not isinstance(array, list):
            raise DataFormatError(path, 1, f"expected a JSON object {{label: text}} or an array of texts, "
                                           f"got {_json_type(array)}")
        for i, value in enumerate(array):
            if type(value) is not str:
                raise DataFormatError(path, None, f"item {i} of the array must be a string, got {_json_type(value)}")
        mapping = {str(i): value for i, value in enumerate(array)}
    else:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        mapping = {str(i): line.removesuffix("\r") for i, line in enumerate(lines)}
    texts = []
    missing = 0
    for name in vocabulary.names:
        value = mapping.get(name)
        if value is None:
            missing += 1
            value = name
        texts.append(value)
    if missing and missing == len(vocabulary):  # e.g. a line-per-label file for labels that are not 0..L-1
        raise DataFormatError(path, None, f"none of the {len(vocabulary)} labels has a text here (labels are "
                                          f"named like {vocabulary.names[0]!r}; this file gives texts for "
                                          f"{_describe_keys(mapping)})")
    if not any(value.strip() for name, value in mapping.items() if name in vocabulary.index):
        # a label text guide over empty strings learns nothing, and the run would not say so
        raise DataFormatError(path, None, f"every text it gives the {len(vocabulary)} labels is empty")
    if missing:
        logger.warning("%s: no text for %d of %d labels; using their names", os.fspath(path), missing, len(vocabulary))
    return texts


def _describe_keys(mapping: dict[str, str]) -> str:
    keys = list(mapping)
    return "no label" if not keys else f"{len(keys)} label(s) named like {keys[0]!r}"


def read_taxonomy(path: PathLike, vocabulary: LabelVocabulary | None = None) -> dict[str, list[str]]:
    """A taxonomy: JSON object mapping each category to the label names relevant to it.

    With ``vocabulary``, names not in it are dropped from the lists (they cannot
    be predicted, and masks are built from vocabulary ids) and their number is
    logged as a warning.

    Raises:
        DataFormatError: invalid JSON, not an object, or a category whose value
            is not a list of strings (the message names the category).
    """
    data = _load_json_document(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, 1, f"expected a JSON object mapping category -> list of labels, got {_json_type(data)}")
    taxonomy: dict[str, list[str]] = {}
    dropped = 0
    for category, names in data.items():
        if not isinstance(names, list) or not all(type(x) is str for x in names):
            what = _json_type(names) if not isinstance(names, list) else "a list with non-string items"
            raise DataFormatError(
                path, _json_key_line(path, category),
                f"category {category!r}: expected a list of label names (strings), got {what}",
            )
        if vocabulary is not None:
            kept = [x for x in names if x in vocabulary]
            dropped += len(names) - len(kept)
            names = kept
        taxonomy[category] = list(names)
    if dropped:
        logger.warning("%s: dropped %d taxonomy entries whose label is not in the vocabulary", os.fspath(path), dropped)
    return taxonomy


# ----------------------------------------------------------------------------
# Format dispatch
# ----------------------------------------------------------------------------


def _first_line_is_xc_header(path: PathLike) -> bool:
    with _open_binary(path) as fh:
        parts = fh.readline(4096).split()
    return len(parts) == 3 and all(p.isdigit() for p in parts)


def read_dataset(
    path: PathLike, *, format: str = "auto", labels: LabelVocabulary | Sequence[str] | None = None, **jsonl_fields
) -> XMCDataset:
    """Read a dataset file in ``format`` ``"jsonl"``, ``"xc"`` or ``"auto"``.

    ``auto``: ``.jsonl``, ``.json`` (optionally ``.gz``) are JSONL; ``.txt`` or
    ``.svm`` (optionally ``.gz``) whose first line is three integers are XC sparse.
    ``labels``: a fixed vocabulary (or its label names, in id order).
    ``jsonl_fields`` are passed to :func:`read_jsonl` (field names, ``max_docs``: a whole number
    >= 1, ``label_texts``).
    """
    if labels is not None and not isinstance(labels, LabelVocabulary):
        if isinstance(labels, str):
            raise TypeError("labels must be a LabelVocabulary or a list of label names, not a string")
        labels = LabelVocabulary(labels)
    max_docs = jsonl_fields.get("max_docs")
    if max_docs is not None and (type(max_docs) is not int or max_docs < 1):  # 2.5 read 3, True read 1
        raise ValueError(f"max_docs must be a whole number >= 1, got {max_docs!r}")
    fmt = format
    if os.path.isdir(path):
        raise DataFormatError(path, None, "is a directory, not a data file")
    if fmt == "auto":
        name = os.fspath(path).lower().removesuffix(".gz")
        if name.endswith((".jsonl", ".json")):
            fmt = "jsonl"
        elif name.endswith((".txt", ".svm")) and _first_line_is_xc_header(path):
            fmt = "xc"
        else:
            raise DataFormatError(
                path, None, "cannot infer the format (expected .jsonl/.json, or .txt/.svm starting with "
                "'n_points n_features n_labels'); pass --format jsonl or --format xc (format= in Python)",
            )
    if fmt == "jsonl":
        return read_jsonl(path, labels=labels, **jsonl_fields)
    if fmt == "xc":
        jsonl_fields.pop("require_text", None)  # XC files carry features, never text, and always labels
        jsonl_fields.pop("require_labels", None)
        if jsonl_fields:
            raise TypeError(f"options {sorted(jsonl_fields)} only apply to JSONL files")
        return read_xc_sparse(path, labels=labels)
    raise ValueError(f"unknown format {format!r}; expected 'auto', 'jsonl' or 'xc'")


# ----------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------


def write_predictions(
    path: PathLike,
    ids: Sequence[str],
    label_names: Sequence[str] | LabelVocabulary,
    indices_topk: np.ndarray | Sequence[Sequence[int]],
    scores_topk: np.ndarray | Sequence[Sequence[float]],
) -> None:
    """Write top-k predictions as JSONL ``{"id", "labels": [names, best first], "scores": [...]}``.

    Args:
        ids: document ids, length n.
        label_names: column names (a vocabulary or list); ``indices_topk`` index it.
        indices_topk: label ids per document, (n, k) array or ragged lists;
            negative ids are padding and skipped.
        scores_topk: matching scores. Each document's labels are written by
            descending score (stable, so ties keep the given order).

    The file appears atomically.
    """
    names = label_names.names if isinstance(label_names, LabelVocabulary) else list(label_names)
    n = len(ids)
    if len(indices_topk) != n or len(scores_topk) != n:
        raise ValueError(f"{len(indices_topk)} index rows and {len(scores_topk)} score rows for {n} ids")
    if isinstance(indices_topk, np.ndarray) and indices_topk.ndim == 2:
        scores = np.asarray(scores_topk, dtype=np.float64)
        if scores.shape != indices_topk.shape:
            raise ValueError(f"scores shape {scores.shape} != indices shape {indices_topk.shape}")
        order = np.argsort(-scores, axis=1, kind="stable")
        index_rows = np.take_along_axis(indices_topk, order, axis=1).tolist()
        score_rows = np.take_along_axis(scores, order, axis=1).tolist()
    else:
        index_rows, score_rows = [], []
        for i, (idx, sc) in enumerate(zip(indices_topk, scores_topk)):
            idx, sc = list(idx), [float(s) for s in sc]
            if len(idx) != len(sc):
                raise ValueError(f"row {i}: {len(idx)} label ids and {len(sc)} scores")
            order = sorted(range(len(sc)), key=lambda t: -sc[t])
            index_rows.append([int(idx[t]) for t in order])
            score_rows.append([sc[t] for t in order])
    with atomic_file(path) as fh:
        for doc_id, idx, sc in zip(ids, index_rows, score_rows):
            keep = [t for t, j in enumerate(idx) if j >= 0]
            record = {"id": str(doc_id), "labels": [names[idx[t]] for t in keep], "scores": [sc[t] for t in keep]}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_predictions(path: PathLike, vocabulary: LabelVocabulary) -> tuple[list[str], sp.csr_matrix, list[str]]:
    """Read a prediction file written by :func:`write_predictions`.

    Returns:
        ``(ids, scores, unknown)``: document ids; a CSR float32 matrix
        ``(n, len(vocabulary))`` holding each predicted label's score (labels
        not predicted are absent, not zero); and the names of predicted labels
        that are not in ``vocabulary``, in order of first appearance — these are
        ignored (left out of the matrix), with a logged warning.

    A missing ``id`` defaults to the 0-based line index. An empty file gives zero rows. Label names
    are read as :func:`read_jsonl` reads the truth's: an integer ``1`` is the label ``"1"``.

    Raises:
        DataFormatError: invalid JSON or UTF-8, a non-object line, a missing or
            non-list ``labels``/``scores``, lists of different lengths, a label
            that is neither a string nor an integer, a non-numeric or non-finite
            score, a label listed twice for one document, or a document id listed twice.
    """
    ids: list[str] = []
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    unknown: dict[str, None] = {}
    line_of_id: dict[str, int] = {}
    index = vocabulary.index
    with _open_binary(path) as fh:
        for line_no, raw in enumerate(_lines_with_progress(fh, path), 1):
            if raw.isspace():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, line_no, f"invalid UTF-8 ({exc.reason})") from None
            except JSON_ERRORS as exc:
                raise DataFormatError(path, line_no, json_problem(exc)) from None
            if type(obj) is not dict:
                raise DataFormatError(path, line_no, f"expected a JSON object, got {_json_type(obj)}")
            names, scores = obj.get("labels"), obj.get("scores")
            if type(names) is not list or type(scores) is not list:
                raise DataFormatError(path, line_no, "fields 'labels' and 'scores' must both be lists")
            if len(names) != len(scores):
                raise DataFormatError(path, line_no, f"{len(names)} labels but {len(scores)} scores")
            seen: set[int] = set()
            for value, score in zip(names, scores):
                name = _label_name(value)  # as the truth's reader names it, so that 1 matches "1"
                if name is None:
                    raise DataFormatError(path, line_no, f"label {value!r} is not a string")
                if type(score) not in (int, float):
                    raise DataFormatError(path, line_no, f"score {score!r} of label {name!r} is not a number")
                if type(score) is int and not -1e308 < score < 1e308:  # beyond a float: math.isfinite overflows
                    raise DataFormatError(path, line_no, f"score of label {name!r} is too large for a number")
                if not math.isfinite(score):  # a NaN would be ranked anywhere
                    raise DataFormatError(path, line_no, f"score {score!r} of label {name!r} is not finite")
                j = index.get(name)
                if j is None:
                    unknown[name] = None
                    continue
                if j in seen:
                    raise DataFormatError(path, line_no, f"label {name!r} listed twice")
                seen.add(j)
                indices.append(j)
                data.append(score)
            indptr.append(len(indices))
            doc_id = _document_id(obj.get("id"), line_no, path)
            if doc_id in line_of_id:  # a second prediction for a document: which one counts is anyone's guess
                raise DataFormatError(path, line_no, f"id {doc_id!r} was already predicted on line {line_of_id[doc_id]}")
            line_of_id[doc_id] = line_no
            ids.append(doc_id)
    if unknown:
        logger.warning("%s: ignored %d predicted label name(s) not in the vocabulary", os.fspath(path), len(unknown))
    matrix = sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(ids), len(vocabulary)),
    )
    matrix.sort_indices()
    return ids, matrix, list(unknown)


__all__ = [
    "duplicate_ids",
    "read_jsonl",
    "read_xc_sparse",
    "write_xc_sparse",
    "read_attentionxml",
    "read_label_names",
    "read_label_texts",
    "read_taxonomy",
    "read_dataset",
    "write_predictions",
    "read_predictions",
]
