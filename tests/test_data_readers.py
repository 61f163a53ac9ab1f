"""Tests of xmc.data readers/writers, splits and statistics (small files in tmp_path, plus real data if present)."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.data import (
    LabelVocabulary,
    dataset_stats,
    format_stats,
    read_attentionxml,
    read_dataset,
    read_jsonl,
    read_label_names,
    read_label_texts,
    read_predictions,
    read_taxonomy,
    read_xc_sparse,
    train_valid_split,
    write_predictions,
    write_xc_sparse,
)
from xmc.errors import DataFormatError

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str | bytes, compress: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def assert_error(exc_info: pytest.ExceptionInfo, path: Path, line: int | None, *fragments: str) -> None:
    err = exc_info.value
    assert isinstance(err, DataFormatError)
    assert err.path == str(path)
    assert err.line == line
    message = str(err)
    assert path.name in message
    if line is not None:
        assert f"line {line}:" in message
    for fragment in fragments:
        assert fragment in message, message


# ---------------------------------------------------------------------------
# JSONL
# ---------------------------------------------------------------------------

DOCS = (
    {"id": "a", "title": "T1", "text": "first", "labels": ["x", "y"]},
    {"id": "b", "title": "T2", "text": "second", "labels": ["z"]},
    {"id": "c", "title": "T3", "text": "third", "labels": []},
    {"id": "d", "title": "T4", "text": "fourth", "labels": ["y", "y"]},
)


def test_read_jsonl_basic_vocabulary_in_first_appearance_order(tmp_path):
    ds = read_jsonl(write(tmp_path / "d.jsonl", jsonl(*DOCS)))
    assert ds.ids == ["a", "b", "c", "d"]
    assert ds.texts == ["first", "second", "third", "fourth"]
    assert ds.titles == ["T1", "T2", "T3", "T4"]
    assert ds.descriptions is None and ds.categories is None and ds.label_texts is None
    assert ds.labels.names == ["x", "y", "z"]
    assert ds.Y.dtype == np.float32 and ds.Y.shape == (4, 3)
    assert ds.Y.toarray().tolist() == [[1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]]  # duplicate "y" counted once
    assert ds.unseen_labels == [] and ds.source == str(tmp_path / "d.jsonl")


def test_read_jsonl_gzip_by_suffix_and_by_magic(tmp_path):
    plain = read_jsonl(write(tmp_path / "d.jsonl", jsonl(*DOCS)))
    by_suffix = read_jsonl(write(tmp_path / "d.jsonl.gz", jsonl(*DOCS), compress=True))
    by_magic = read_jsonl(write(tmp_path / "d.data", jsonl(*DOCS), compress=True))
    for ds in (by_suffix, by_magic):
        assert ds.ids == plain.ids and ds.texts == plain.texts and ds.labels == plain.labels
        assert (ds.Y != plain.Y).nnz == 0


def test_read_jsonl_gz_suffix_without_gzip_content(tmp_path):
    path = write(tmp_path / "d.jsonl.gz", jsonl(*DOCS))
    with pytest.raises(DataFormatError) as exc:
        read_jsonl(path)
    assert_error(exc, path, None, "not gzip")


def test_read_jsonl_optional_fields_defaults_and_custom_names(tmp_path):
    path = write(tmp_path / "d.jsonl", "\n" + jsonl(
        {"body": "one", "tags": ["a", 7], "cat": "A > B", "description": "desc"},
        {"body": "two", "tags": []},
    ) + "   \n")
    ds = read_jsonl(path, text_field="body", labels_field="tags", category_field="cat")
    assert ds.ids == ["1", "2"]  # 0-based line index (line 0 is blank)
    assert ds.texts == ["one", "two"]
    assert ds.titles is None
    assert ds.categories == ["A > B", ""]
    assert ds.descriptions == ["desc", ""]
    assert ds.labels.names == ["a", "7"]  # ints converted with str()
    assert ds.Y.nnz == 2 and ds.Y[1].nnz == 0


def test_read_jsonl_title_only_document(tmp_path):
    ds = read_jsonl(write(tmp_path / "d.jsonl", jsonl({"title": "only title", "labels": ["a"]})))
    assert ds.texts == [""] and ds.titles == ["only title"]
    assert ds.input_texts() == ["only title"]


def test_read_jsonl_max_docs(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl(*DOCS) + "{broken\n")
    ds = read_jsonl(path, max_docs=2)
    assert ds.ids == ["a", "b"] and ds.labels.names == ["x", "y", "z"]
    assert len(read_jsonl(path, max_docs=0)) == 0


def test_read_jsonl_unseen_labels_appended_and_reported(tmp_path, caplog):
    vocab = LabelVocabulary(["z", "y", "unused"])
    with caplog.at_level(logging.WARNING, logger="xmc.data.readers"):
        ds = read_jsonl(write(tmp_path / "t.jsonl", jsonl(*DOCS)), labels=vocab, label_texts=["Z", "Y", "U"])
    assert ds.labels.names == ["z", "y", "unused", "x"]
    assert ds.unseen_labels == ["x"] and ds.n_known_labels == 3
    assert ds.label_texts == ["Z", "Y", "U", "x"]
    assert sorted(ds.label_names_of(0)) == ["x", "y"]
    assert ds.Y[:, 3].toarray().ravel().tolist() == [1, 0, 0, 0]
    assert "1 label(s) not in the given vocabulary" in caplog.text
    # the given vocabulary is reused unchanged when nothing is unseen
    ds2 = read_jsonl(write(tmp_path / "u.jsonl", jsonl(DOCS[1])), labels=vocab)
    assert ds2.labels is vocab and ds2.unseen_labels == []


def test_read_jsonl_label_texts_length_checked(tmp_path):
    with pytest.raises(ValueError, match="2 label texts"):
        read_jsonl(write(tmp_path / "d.jsonl", jsonl(*DOCS)), label_texts=["a", "b"])


@pytest.mark.parametrize(
    "content, line, fragments",
    [
        (jsonl(DOCS[0]) + '{"text": "x", "labels": [}\n', 2, ("invalid JSON",)),
        (jsonl(DOCS[0]) + "\n" + '["not", "an", "object"]\n', 3, ("expected a JSON object", "array")),
        (jsonl(DOCS[0], {"text": "no labels"}), 2, ("missing field 'labels'",)),
        (jsonl({"labels": ["a"]}), 1, ("missing field 'text'",)),
        (jsonl(DOCS[0], {"text": "x", "labels": "a"}), 2, ("field 'labels' must be a list",)),
        (jsonl({"text": "x", "labels": [1.5]}), 1, ("label 1.5", "not a string")),
        (jsonl({"text": 3, "labels": []}), 1, ("field 'text' must be a string",)),
        ("", 1, ("no documents",)),
        ("\n  \n", 1, ("no documents",)),
    ],
)
def test_read_jsonl_errors(tmp_path, content, line, fragments):
    path = write(tmp_path / "bad.jsonl", content)
    with pytest.raises(DataFormatError) as exc:
        read_jsonl(path)
    assert_error(exc, path, line, *fragments)


def test_read_jsonl_invalid_utf8(tmp_path):
    path = write(tmp_path / "bad.jsonl", jsonl(DOCS[0]).encode() + b'{"text": "caf\xe9", "labels": []}\n')
    with pytest.raises(DataFormatError) as exc:
        read_jsonl(path)
    assert_error(exc, path, 2, "invalid UTF-8")


def test_read_jsonl_error_line_numbers_in_gzip(tmp_path):
    path = write(tmp_path / "bad.jsonl.gz", jsonl(*DOCS) + "oops\n", compress=True)
    with pytest.raises(DataFormatError) as exc:
        read_jsonl(path)
    assert_error(exc, path, 5, "invalid JSON")


# ---------------------------------------------------------------------------
# XC sparse
# ---------------------------------------------------------------------------

XC = "3 5 4\n0,2 0:1 3:0.5\n 1:2.25 4:-1\n3 2:1e-3 0:.5\n"


def test_read_xc_sparse(tmp_path):
    ds = read_xc_sparse(write(tmp_path / "train.txt", XC))
    assert ds.X.shape == (3, 5) and ds.X.dtype == np.float32
    expected = np.array([[1, 0, 0, 0.5, 0], [0, 2.25, 0, 0, -1], [0.5, 0, 0.001, 0, 0]], dtype=np.float32)
    assert np.array_equal(ds.X.toarray(), expected)
    assert ds.X.has_sorted_indices
    assert ds.Y.toarray().tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    assert ds.labels.names == ["0", "1", "2", "3"]
    assert ds.ids == ["0", "1", "2"] and ds.texts == ["", "", ""]


def test_read_xc_sparse_variants(tmp_path):
    # no leading space before features, label-only line, blank document, CRLF, trailing blank lines, gzip
    text = "4 3 2\r\n0:1 2:2\r\n1\r\n \r\n0,1 1:3\r\n\r\n\r\n"
    ds = read_xc_sparse(write(tmp_path / "v.txt.gz", text, compress=True))
    assert ds.X.toarray().tolist() == [[1, 0, 2], [0, 0, 0], [0, 0, 0], [0, 3, 0]]
    assert ds.Y.toarray().tolist() == [[0, 0], [0, 1], [0, 0], [1, 1]]


def test_read_xc_sparse_long_mantissas_use_generic_parser(tmp_path):
    ds = read_xc_sparse(write(tmp_path / "v.txt", "1 2 1\n0 0:0.12345678901234567890 1:+3E2\n"))
    assert ds.X.toarray().tolist() == [[np.float32(0.12345678901234567890), 300.0]]


def test_read_xc_sparse_with_vocabulary(tmp_path, caplog):
    vocab = LabelVocabulary(["3", "0"])
    with caplog.at_level(logging.WARNING):
        ds = read_xc_sparse(write(tmp_path / "test.txt", XC), labels=vocab)
    assert ds.labels.names == ["3", "0", "2"] and ds.unseen_labels == ["2"]
    assert ds.Y.toarray().tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]
    assert "not in the given vocabulary" in caplog.text


@pytest.mark.parametrize(
    "content, line, fragments",
    [
        ("", 1, ("empty file",)),
        ("3 5\n", 1, ("malformed header",)),
        ("3 five 4\n", 1, ("malformed header",)),
        ("2 5 4\n0 1:1\n1 a:b\n", 3, ("malformed feature 'a:b'",)),
        ("2 5 4\n0 1:1\n1 3\n", 3, ("malformed feature '3'", "expected index:value")),
        ("2 5 4\n0 1:1\n1 2:x\n", 3, ("value 'x' is not a number",)),
        ("2 5 4\n0 1:1\n1 -2:1\n", 3, ("negative feature index",)),
        ("2 5 4\n0 1:1\n1 2:1:3\n", 3, ("malformed feature '2:1:3'",)),
        ("2 5 4\n0 1:1\n1 5:1\n", 3, ("feature index 5 out of range", "n_features = 5")),
        ("3 5 4\n0 1:1\n1 2:1\n4 1:1\n", 4, ("label id 4 out of range", "n_labels = 4")),
        ("2 5 4\n0 1:1\n-1 1:1\n", 3, ("negative label id -1",)),
        ("2 5 4\n0 1:1\n1.5 1:1\n", 3, ("label id '1.5' is not an integer",)),
        ("2 5 4\n0 1:1\n1,,2 1:1\n", 3, ("empty label id",)),
        ("3 5 4\n0 1:1\n1 2:1\n", 1, ("header declares 3 data points", "2 data lines")),
        ("1 5 4\n0 1:1\n1 2:1\n", 3, ("more data lines than the 1 declared",)),
    ],
)
def test_read_xc_sparse_errors(tmp_path, content, line, fragments):
    path = write(tmp_path / "bad_xc.txt", content)
    with pytest.raises(DataFormatError) as exc:
        read_xc_sparse(path)
    assert_error(exc, path, line, *fragments)


def test_read_xc_sparse_error_line_beyond_first_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr("xmc.data.readers._XC_CHUNK_BYTES", 16)  # many small chunks
    lines = [f"{i % 3} {i % 7}:1 {(i % 7) + 1}:0.5" for i in range(50)]  # same features on other lines: fine
    data = read_xc_sparse(write(tmp_path / "ok.txt", "50 9 3\n" + "\n".join(lines) + "\n"))
    assert data.X.nnz == 100 and data.X[0, 1] == pytest.approx(0.5)
    for row, bad, problem in ((37, "1 3:oops", "'oops' is not a number"), (37, "1 9:1", "feature index 9 out of range"),
                              (41, "2 6:1 2:1 6:0.25", "feature 6 is given more than once")):
        path = write(tmp_path / "big.txt", "50 9 3\n" + "\n".join(lines[:row] + [bad] + lines[row + 1:]) + "\n")
        with pytest.raises(DataFormatError) as exc:
            read_xc_sparse(path)
        assert_error(exc, path, row + 2, problem)


def test_xc_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    dense_x = np.where(rng.random((40, 30)) < 0.2, rng.standard_normal((40, 30)) * 10, 0).astype(np.float32)
    dense_y = (rng.random((40, 12)) < 0.15).astype(np.float32)
    dense_y[5] = 0  # a document without labels
    dense_x[7] = 0  # and one without features
    X, Y = sp.csr_matrix(dense_x), sp.csr_matrix(dense_y)
    path = tmp_path / "out" / "rt.txt"
    write_xc_sparse(path, X, Y)
    assert not [p for p in path.parent.iterdir() if p.name != "rt.txt"]  # no temp files left
    ds = read_xc_sparse(path)
    assert ds.X.shape == X.shape and ds.Y.shape == Y.shape
    assert np.array_equal(ds.X.toarray(), X.toarray())  # exact for float32
    assert np.array_equal(ds.Y.toarray(), Y.toarray())
    assert read_dataset(path).X.shape == X.shape  # auto-detected as XC


def test_xc_write_features_none(tmp_path):
    path = tmp_path / "labels_only.txt"
    write_xc_sparse(path, None, sp.csr_matrix(np.array([[1, 0], [0, 0]], dtype=np.float32)))
    assert path.read_text() == "2 0 2\n0\n \n"
    assert read_xc_sparse(path).Y.toarray().tolist() == [[1, 0], [0, 0]]


# ---------------------------------------------------------------------------
# AttentionXML, label names / texts, taxonomy
# ---------------------------------------------------------------------------


def test_read_attentionxml(tmp_path):
    texts = write(tmp_path / "train_texts.txt", "doc one\ndoc two has\u2028a line separator\nthird\n")
    labels = write(tmp_path / "train_labels.txt", "a b\n\nb c\n")
    ds = read_attentionxml(texts, labels)
    assert ds.texts == ["doc one", "doc two has\u2028a line separator", "third"]
    assert ds.labels.names == ["a", "b", "c"]
    assert ds.Y.toarray().tolist() == [[1, 1, 0], [0, 0, 0], [0, 1, 1]]
    test = read_attentionxml(texts, labels, labels=LabelVocabulary(["b"]))
    assert test.labels.names == ["b", "a", "c"] and test.unseen_labels == ["a", "c"]


def test_read_attentionxml_line_count_mismatch(tmp_path):
    texts = write(tmp_path / "t_texts.txt", "one\ntwo\nthree\n")
    labels = write(tmp_path / "t_labels.txt", "a\nb\n")
    with pytest.raises(DataFormatError) as exc:
        read_attentionxml(texts, labels)
    assert_error(exc, labels, 3, "2 label lines for 3 text lines")


def test_read_label_names(tmp_path):
    path = write(tmp_path / "labels.txt.gz", "alpha\r\n beta \ngamma", compress=True)
    assert read_label_names(path) == ["alpha", " beta ", "gamma"]
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(DataFormatError) as exc:
        read_label_names(empty)
    assert_error(exc, empty, 1, "empty file")
    bad = write(tmp_path / "bad.txt", b"ok\nstill ok\nbad \xff\n")
    with pytest.raises(DataFormatError) as exc:
        read_label_names(bad)
    assert_error(exc, bad, 3, "invalid UTF-8")


def test_read_label_texts_lines_and_json(tmp_path, caplog):
    vocab = LabelVocabulary(["2", "0", "9"])
    lines = write(tmp_path / "labels.txt", "zero\none\ntwo\n")
    with caplog.at_level(logging.WARNING):
        assert read_label_texts(lines, vocab) == ["two", "zero", "9"]
    assert "no text for 1 of 3 labels" in caplog.text
    as_json = write(tmp_path / "texts.json", json.dumps({"0": "Zero", "2": "Two", "9": "Nine"}))
    assert read_label_texts(as_json, vocab) == ["Two", "Zero", "Nine"]
    bad = write(tmp_path / "bad.json", '{\n "0": "ok",\n "2": 5\n}\n')
    with pytest.raises(DataFormatError) as exc:
        read_label_texts(bad, vocab)
    assert_error(exc, bad, 3, "text of label '2' must be a string")


def test_read_taxonomy(tmp_path, caplog):
    path = write(tmp_path / "taxonomy.json", json.dumps({"A": ["x", "y"], "B": []}, indent=1))
    assert read_taxonomy(path) == {"A": ["x", "y"], "B": []}
    with caplog.at_level(logging.WARNING):
        assert read_taxonomy(path, LabelVocabulary(["y"])) == {"A": ["y"], "B": []}
    assert "dropped 1 taxonomy entries" in caplog.text


@pytest.mark.parametrize(
    "content, line, fragments",
    [
        ('["A", "B"]', 1, ("expected a JSON object", "array")),
        ('{\n "A": ["x"],\n "B": "y"\n}', 3, ("category 'B'", "list of label names", "string")),
        ('{\n "A": ["x", 3]\n}', 2, ("category 'A'", "non-string")),
        ('{\n "A": ["x"],\n}', 3, ("invalid JSON",)),
        ("", 1, ("empty file",)),
    ],
)
def test_read_taxonomy_errors(tmp_path, content, line, fragments):
    path = write(tmp_path / "taxonomy.json", content)
    with pytest.raises(DataFormatError) as exc:
        read_taxonomy(path)
    assert_error(exc, path, line, *fragments)


# ---------------------------------------------------------------------------
# read_dataset dispatch
# ---------------------------------------------------------------------------


def test_read_dataset_dispatch(tmp_path):
    assert read_dataset(write(tmp_path / "d.jsonl.gz", jsonl(*DOCS), compress=True)).ids == ["a", "b", "c", "d"]
    assert read_dataset(write(tmp_path / "d.json", jsonl(*DOCS)), max_docs=1).ids == ["a"]
    assert read_dataset(write(tmp_path / "d.svm", XC)).X.shape == (3, 5)
    assert read_dataset(write(tmp_path / "any.dat", XC), format="xc").X.shape == (3, 5)
    notes = write(tmp_path / "notes.txt", "hello world\n")
    with pytest.raises(DataFormatError, match="cannot infer the format"):
        read_dataset(notes)
    with pytest.raises(ValueError, match="unknown format"):
        read_dataset(notes, format="csv")
    with pytest.raises(TypeError):
        read_dataset(tmp_path / "d.svm", max_docs=3)


# ---------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------


def test_predictions_round_trip(tmp_path, caplog):
    vocab = LabelVocabulary(["a", "b", "c", "d"])
    indices = np.array([[2, 0, 1], [3, -1, -1]])
    scores = np.array([[0.5, 0.9, 0.1], [0.7, 0.0, 0.0]], dtype=np.float32)
    path = tmp_path / "pred.jsonl"
    write_predictions(path, ["d1", "d2"], vocab, indices, scores)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[0]["labels"] == ["a", "c", "b"]  # best first
    assert records[1] == {"id": "d2", "labels": ["d"], "scores": [pytest.approx(0.7)]}  # padding skipped
    ids, matrix, unknown = read_predictions(path, vocab)
    assert ids == ["d1", "d2"] and unknown == []
    assert matrix.shape == (2, 4) and matrix.dtype == np.float32
    assert matrix.toarray() == pytest.approx(np.array([[0.9, 0.1, 0.5, 0], [0, 0, 0, 0.7]]))
    # ragged lists, and reading with a smaller vocabulary reports the unknown names
    write_predictions(path, ["x"], ["a", "b", "c", "d"], [[1, 3]], [[0.2, 0.8]])
    with caplog.at_level(logging.WARNING):
        ids, matrix, unknown = read_predictions(path, LabelVocabulary(["b"]))
    assert ids == ["x"] and unknown == ["d"] and matrix.toarray().tolist() == [[pytest.approx(0.2)]]
    assert "ignored 1 predicted label" in caplog.text


@pytest.mark.parametrize(
    "content, line, fragments",
    [
        ('{"id": "1", "labels": ["a"], "scores": [1]}\n{"id": "2", "labels": ["a", "b"], "scores": [1]}\n',
         2, ("2 labels but 1 scores",)),
        ('{"id": "1", "labels": ["a"]}\n', 1, ("'labels' and 'scores' must both be lists",)),
        ('{"id": "1", "labels": ["a"], "scores": ["high"]}\n', 1, ("not a number",)),
        ('{"id": "1", "labels": ["a", "a"], "scores": [1, 2]}\n', 1, ("listed twice",)),
        ('\n{"id": 1,\n', 2, ("invalid JSON",)),
    ],
)
def test_read_predictions_errors(tmp_path, content, line, fragments):
    path = write(tmp_path / "pred.jsonl", content)
    with pytest.raises(DataFormatError) as exc:
        read_predictions(path, LabelVocabulary(["a", "b"]))
    assert_error(exc, path, line, *fragments)


# ---------------------------------------------------------------------------
# Split and statistics
# ---------------------------------------------------------------------------


def make_dataset(tmp_path: Path, n: int = 50):
    records = [{"id": f"doc{i}", "text": f"text {i}", "labels": [f"l{i % 7}", f"l{i % 3}"]} for i in range(n)]
    return read_jsonl(write(tmp_path / "many.jsonl", jsonl(*records)))


def test_train_valid_split_deterministic_and_disjoint(tmp_path):
    ds = make_dataset(tmp_path)
    train, valid = train_valid_split(ds, valid_fraction=0.2, seed=3)
    again_train, again_valid = train_valid_split(ds, valid_fraction=0.2, seed=3)
    assert train.ids == again_train.ids and valid.ids == again_valid.ids
    assert len(valid) == 10 and len(train) == 40
    assert not set(train.ids) & set(valid.ids)
    assert sorted(train.ids + valid.ids) == sorted(ds.ids)
    assert train.labels == ds.labels and train.Y.shape == (40, len(ds.labels))
    assert train.ids == [i for i in ds.ids if i in set(train.ids)]  # original order kept
    other_train, _ = train_valid_split(ds, valid_fraction=0.2, seed=4)
    assert other_train.ids != train.ids
    for row, doc_id in enumerate(valid.ids):
        assert valid.label_names_of(row) == ds.label_names_of(ds.ids.index(doc_id))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.001, 0.999])
def test_train_valid_split_rejects_bad_fractions(tmp_path, fraction):
    with pytest.raises(ValueError):
        train_valid_split(make_dataset(tmp_path), valid_fraction=fraction)


def test_dataset_stats(tmp_path):
    vocab = LabelVocabulary(["x", "y", "z", "never"])
    ds = read_jsonl(write(tmp_path / "d.jsonl", jsonl(*DOCS, {"text": "e", "labels": ["new"]})), labels=vocab)
    stats = dataset_stats(ds)
    assert stats["documents"] == 5 and stats["labels"] == 5
    assert stats["labels_with_docs"] == 4 and stats["unseen_labels"] == 1
    assert stats["docs_without_labels"] == 1
    assert stats["labels_per_doc_mean"] == pytest.approx(5 / 5) and stats["labels_per_doc_max"] == 2
    assert stats["labels_per_doc_median"] == 1.0
    assert stats["docs_per_label_mean"] == pytest.approx(1.0)
    assert stats["docs_per_label_mean_nonzero"] == pytest.approx(5 / 4)
    assert stats["label_count_histogram"] == {"0": 1, "1": 3, "2-4": 1, "5-9": 0, "10-99": 0, "100-999": 0, "1000+": 0}
    json.dumps(stats)  # serialisable
    table = format_stats(stats)
    assert "documents" in table and "2-4" in table and "labels with docs" in table


# ---------------------------------------------------------------------------
# Real data (skipped when ../shared/data is absent)
# ---------------------------------------------------------------------------

needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"{DATA_DIR} not present")


@needs_data
def test_real_bibtex_train():
    ds = read_xc_sparse(DATA_DIR / "bibtex" / "train_xc.txt")
    assert ds.X.shape == (4880, 1836) and ds.Y.shape == (4880, 159)
    assert ds.Y.nnz / len(ds) == pytest.approx(2.3803, abs=1e-4)  # bibtex/stats.json
    names = read_label_names(DATA_DIR / "bibtex" / "labels.txt")
    assert len(names) == 159


@needs_data
def test_real_eurlex_dev_first_docs():
    ds = read_jsonl(DATA_DIR / "eurlex57k" / "dev.jsonl.gz", max_docs=200)
    assert len(ds) == 200 and ds.titles is not None and all(ds.texts)
    assert all(name.isdigit() for name in ds.labels.names)
    texts = read_label_texts(DATA_DIR / "eurlex57k" / "labels.txt", ds.labels)
    assert len(texts) == len(ds.labels) and not any(t.isdigit() for t in texts)


def test_truncated_gzip_is_a_data_format_error(tmp_path):
    data = gzip.compress(jsonl(*DOCS * 50).encode())
    path = write(tmp_path / "cut.jsonl.gz", data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cannot decompress"):
        read_jsonl(path)


def test_a_directory_or_an_unknown_extension_says_what_to_pass(tmp_path):
    from xmc.data import read_dataset
    from xmc.errors import DataFormatError

    with pytest.raises(DataFormatError, match="is a directory, not a data file"):
        read_dataset(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="pass --format jsonl or --format xc"):
        read_dataset(tmp_path / "data.csv")


# ---------------------------------------------------------------------------
# Inputs that once gave a wrong answer without a word
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, problem_line",
    [
        ("0 3:1 3:2", 3),           # adjacent: was read as feature 3 = 3.0
        ("0 3:1 5:1 3:2", 3),       # apart on the line
        ("0 3:1e0 3:2.5E-1", 3),    # exponents: the line-by-line parser, same check
        ("3:1 4:1 4:1", 3),         # no labels, no leading space
    ],
)
def test_xc_feature_given_twice_on_a_line_is_refused(tmp_path, line, problem_line):
    path = write(tmp_path / "twice.txt", f"3 10 2\n1 4:1\n{line}\n0 4:1\n")
    with pytest.raises(DataFormatError) as exc:
        read_xc_sparse(path)
    assert_error(exc, path, problem_line, "feature", "given more than once")


def test_xc_header_of_zero_documents_is_refused(tmp_path):
    path = write(tmp_path / "none.txt", "0 1836 159\n")
    with pytest.raises(DataFormatError) as exc:
        read_dataset(path)
    assert_error(exc, path, 1, "declares 0 data points")


def test_integer_labels_are_the_same_names_in_truth_and_predictions(tmp_path):
    truth = read_jsonl(write(tmp_path / "truth.jsonl", '{"id": "a", "text": "x", "labels": [1, "2"]}\n'
                                                       '{"id": "b", "text": "y", "labels": ["1"]}\n'))
    assert truth.labels.names == ["1", "2"]
    ids, scores, unknown = read_predictions(
        write(tmp_path / "pred.jsonl", '{"id": "a", "labels": ["1", 2], "scores": [0.9, 0.5]}\n'
                                       '{"id": "b", "labels": [1], "scores": [0.7]}\n'), truth.labels)
    assert ids == ["a", "b"] and unknown == []
    # Every truth label was predicted, in its own column: integers matched the truth's names.
    assert (scores.toarray() > 0).tolist() == (truth.Y.toarray() > 0).tolist()


@pytest.mark.parametrize("label", ["1.0", "true", "null", "[1]"])
def test_labels_neither_string_nor_integer_are_refused_by_both_readers(tmp_path, label):
    truth = write(tmp_path / "truth.jsonl", f'{{"id": "a", "text": "x", "labels": ["1"]}}\n'
                                            f'{{"id": "b", "text": "y", "labels": [{label}]}}\n')
    with pytest.raises(DataFormatError) as exc:
        read_jsonl(truth)
    assert_error(exc, truth, 2, "is not a string")
    pred = write(tmp_path / "pred.jsonl", f'{{"id": "a", "labels": ["1"], "scores": [1]}}\n'
                                          f'{{"id": "b", "labels": [{label}], "scores": [1]}}\n')
    with pytest.raises(DataFormatError) as exc:
        read_predictions(pred, LabelVocabulary(["1"]))
    assert_error(exc, pred, 2, "is not a string")


def test_training_data_without_any_label_is_refused_naming_its_file(tmp_path):
    path = write(tmp_path / "unlabelled.jsonl", '{"text": "council regulation", "labels": []}\n' * 3)
    data = read_jsonl(path)
    with pytest.raises(DataFormatError, match=r"unlabelled\.jsonl: none of its 3 documents has a label"):
        data.check_trainable()
    with pytest.raises(DataFormatError, match=r"unlabelled\.jsonl: no documents"):
        data.subset([]).check_trainable()
    xc = read_xc_sparse(write(tmp_path / "unlabelled.txt", "2 5 3\n 1:1\n 2:1\n"))
    with pytest.raises(DataFormatError, match=r"unlabelled\.txt: none of its 2 documents"):
        xc.check_trainable()
    labelled = read_jsonl(write(tmp_path / "one.jsonl",
                                '{"text": "a", "labels": []}\n{"text": "b", "labels": ["x"]}\n'))
    assert labelled.check_trainable() is labelled


def test_read_dataset_checks_its_options(tmp_path):
    """labels=["a"] was an AttributeError, max_docs=2.5 read 3 documents and True read 1."""
    from xmc.data import read_dataset

    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "labels": ["a"]}) + "\n" for i in range(4)))
    assert read_dataset(path, labels=["a", "b"]).labels.names == ["a", "b"]
    for bad in (2.5, True, 0, -1):
        with pytest.raises(ValueError, match="max_docs must be a whole number"):
            read_dataset(path, max_docs=bad)
    assert len(read_dataset(path, max_docs=2)) == 2
    with pytest.raises(TypeError, match="not a string"):
        read_dataset(path, labels="a")
