"""Bad, mistaken and hostile inputs through the CLI: one table, one clear line each, nothing changed on disk.

Every case builds its input under its own folder, runs ``xmc`` in-process and checks: the exit code,
exactly one ``xmc: error:`` line on stderr naming the expected fragments (file, key path, problem),
no traceback, and that no file under the test's root changed, appeared or vanished.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.cli.main import main
from xmc.data import write_xc_sparse
from xmc.datasets.synthetic import make_corpus

CONFIG = {"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A corpus, its config, a trained XR-Linear model on text, one on XC features, and predictions."""
    root = tmp_path_factory.mktemp("bad_inputs")
    corpus = make_corpus(n_train=150, n_test=30, n_labels=20, seed=3)
    for name, ds in (("train", corpus.train), ("test", corpus.test)):
        _jsonl(root / f"{name}.jsonl", [{"id": ds.ids[i], "title": ds.titles[i], "text": ds.texts[i],
                                         "labels": ds.label_names_of(i)} for i in range(len(ds))])
    (root / "cfg.json").write_text(json.dumps(CONFIG))
    rng = np.random.default_rng(0)
    X = sp.random(60, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    Y = sp.csr_matrix((rng.random((60, 5)) < 0.4).astype(np.float32))
    write_xc_sparse(root / "xc.txt", X, Y)
    for argv in (["train", "--model", "xr-linear", "--train", root / "train.jsonl", "--config", root / "cfg.json",
                  "--out", root / "model"],
                 ["train", "--model", "xr-linear", "--train", root / "xc.txt", "--config", root / "cfg.json",
                  "--out", root / "xc-model"],
                 ["predict", "--model", root / "model", "--input", root / "test.jsonl", "--out", root / "pred.jsonl"]):
        rc, _, err = _run(argv)
        assert rc == 0, err
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() or p.is_dir()}


# ---- helpers that build one bad input in the case's folder -------------------------------------
def copy_model(w: Path, d: Path, name: str = "model") -> Path:
    shutil.copytree(w / name, d / name)
    return d / name


def edit_manifest(model: Path, change: Callable[[dict], None]) -> Path:
    path = model / "xmc_model.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return model


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def layers_json(model: Path, change: Callable[[dict], None] | bytes) -> Path:
    """The model with its first tree's layers.json changed in place by ``change``, or replaced by it (bytes)."""
    path = model / "tree-0" / "layers.json"
    if isinstance(change, bytes):
        path.write_bytes(change)
    else:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return model


def predict_args(w: Path, model: Path, d: Path) -> list:
    return ["predict", "--model", model, "--input", w / "test.jsonl", "--out", d / "p.jsonl"]


def train_args(w: Path, d: Path, *extra) -> list:
    return ["train", "--model", "xr-linear", "--train", w / "train.jsonl", "--out", d / "m", *extra]


def pred_rows(w: Path) -> list[dict]:
    return [json.loads(line) for line in (w / "pred.jsonl").read_text().splitlines()]


def evaluate_with_preds(w: Path, d: Path, rows: list[dict], *extra) -> list:
    return ["evaluate", "--truth", w / "test.jsonl", "--pred", _jsonl(d / "bad-pred.jsonl", rows), *extra]


def evaluate_with_truth(w: Path, d: Path, rows: list[dict]) -> list:
    return ["evaluate", "--truth", _jsonl(d / "truth.jsonl", rows), "--pred", w / "pred.jsonl"]


def config_file(d: Path, content) -> Path:
    path = d / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def data_file(d: Path, name: str, content: str | bytes) -> Path:
    path = d / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def tiny_gpt2_with_pickled_weights(d: Path) -> Path:
    folder = d / "gen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_head": 1, "n_embd": 8,
                                                    "vocab_size": 50, "n_positions": 16}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return folder


def layer_array(model: Path, name: str, change: Callable[[np.ndarray], np.ndarray], layer: int = 1) -> Path:
    """Replace one array of a saved layer (the beam kernel's layout: one .npy per array)."""
    path = model / "tree-0" / f"layer-{layer}" / f"{name}.npy"
    np.save(path, change(np.load(path)))
    return model


def bump(index: int, by: int):
    def change(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a.reshape(-1)[index] += by
        return a
    return change


def chain_with_index_out_of_range(model: Path) -> Path:
    path = model / "tree-0" / "tree" / "chain-1.npz"
    with np.load(path) as arrays:
        fields = dict(arrays)
    fields["indices"] = fields["indices"].copy()
    fields["indices"][0] = 10_000
    np.savez(path, **fields)
    return model


def featurizer_config(model: Path, **change) -> Path:
    path = model / "featurizer" / "config.json"
    config = json.loads(path.read_text())
    config.update(change)
    path.write_text(json.dumps(config))
    return model


def labels_json(model: Path, names: list) -> Path:
    (model / "labels.json").write_text(json.dumps(names))
    return model


def model_labels(w: Path) -> list[str]:
    return json.loads((w / "model" / "labels.json").read_text())


# (case id, builder(world, case_dir) -> argv, expected exit code, fragments of the one error line)
CASES: list[tuple[str, Callable[[Path, Path], list], int, tuple[str, ...]]] = [
    # -- outputs that would destroy data --------------------------------------------------------
    ("train-out-user-folder", lambda w, d: (data_file(d, "notes.txt", "mine"),
                                            train_args(w, d)[:-1] + [d])[1], 2,
     ("not an xmc model directory", "refusing")),
    ("train-out-contains-train", lambda w, d: ["train", "--model", "xr-linear", "--train", w / "train.jsonl",
                                               "--out", w], 2, ("contains the input --train",)),
    ("train-out-regular-file", lambda w, d: train_args(w, d)[:-1] + [data_file(d, "file.bin", b"x")], 2,
     ("a file that is not an xmc model directory",)),
    ("train-out-is-train", lambda w, d: ["train", "--model", "xr-linear", "--train", w / "train.jsonl",
                                         "--out", w / "train.jsonl"], 2, ("is the input --train",)),
    ("train-out-model-no-overwrite", lambda w, d: train_args(w, d)[:-1] + [w / "model"], 2,
     ("pass --overwrite",)),
    ("train-out-user-folder-overwrite", lambda w, d: (data_file(d, "notes.txt", "mine"),
                                                      train_args(w, d, "--overwrite")[:-2] + [d, "--overwrite"])[1],
     2, ("not an xmc model directory",)),
    ("train-out-is-config", lambda w, d: train_args(w, d)[:-1] + [w / "cfg.json", "--config", w / "cfg.json"], 2,
     ("is the input --config",)),
    ("train-out-is-label-text", lambda w, d: train_args(w, d)[:-1] + [
        data_file(d, "labels.txt", "a\n"), "--label-text", d / "labels.txt"], 2, ("is the input --label-text",)),
    ("train-out-contains-valid", lambda w, d: train_args(w, d)[:-1] + [
        d, "--valid", data_file(d, "valid.jsonl", '{"text": "a", "labels": []}\n')], 2,
     ("contains the input --valid",)),
    ("predict-out-is-input", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                           "--out", w / "test.jsonl", "--overwrite"], 2, ("is the input --input",)),
    ("predict-out-exists", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                         "--out", w / "pred.jsonl"], 2, ("pred.jsonl", "pass --overwrite")),
    ("predict-out-not-predictions", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                                  "--out", shutil.copy(w / "train.jsonl", d / "other.jsonl"),
                                                  "--overwrite"], 2, ("not an xmc prediction file",)),
    ("predict-out-directory", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                            "--out", d], 2, ("is a directory",)),
    ("predict-out-is-model", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                           "--out", w / "model" / "labels.json"], 2,
     ("lies inside the input --model",)),
    ("predict-out-binary-file", lambda w, d: ["predict", "--model", w / "model", "--input", w / "test.jsonl",
                                              "--out", data_file(d, "x.jsonl", b"\xff\x00"), "--overwrite"], 2,
     ("not an xmc prediction file",)),
    ("augment-out-is-train", lambda w, d: ["augment", "--train", w / "train.jsonl", "--out", w / "train.jsonl"], 2,
     ("is the input --train",)),
    ("augment-out-not-augmented", lambda w, d: ["augment", "--train", w / "train.jsonl", "--out",
                                                w / "pred.jsonl", "--overwrite"], 2, ("not an xmc augmented file",)),
    ("report-out-is-truth", lambda w, d: ["report", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                          "--out", w / "test.jsonl", "--overwrite"], 2, ("is the input --truth",)),
    ("report-out-user-file", lambda w, d: ["report", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                           "--out", data_file(d, "mine.html", "<html>mine</html>"), "--overwrite"], 2,
     ("not an xmc report",)),
    ("stats-plot-user-file", lambda w, d: ["data", "stats", w / "train.jsonl", "--plot",
                                           data_file(d, "photo.png", b"\x89PNG mine"), "--overwrite"], 2,
     ("not an xmc report or figure",)),
    # -- evaluate: wrong numbers -------------------------------------------------------------------
    ("evaluate-duplicate-prediction-id", lambda w, d: evaluate_with_preds(w, d, pred_rows(w) + pred_rows(w)[:1]), 2,
     ("bad-pred.jsonl, line 31", "already predicted on line 1")),
    ("evaluate-duplicate-truth-id", lambda w, d: evaluate_with_truth(
        w, d, [{"id": "doc0", "labels": []}, {"id": "doc0", "labels": []}]), 2, ("truth.jsonl", "more than once")),
    ("evaluate-nan-score", lambda w, d: evaluate_with_preds(
        w, d, [{**r, "scores": [float("nan")] * len(r["scores"])} for r in pred_rows(w)]), 2,
     ("line 1", "nan", "not finite")),
    ("evaluate-infinite-score", lambda w, d: evaluate_with_preds(
        w, d, [{**r, "scores": [float("inf")] * len(r["scores"])} for r in pred_rows(w)]), 2, ("not finite",)),
    ("evaluate-unknown-prediction-id", lambda w, d: evaluate_with_preds(
        w, d, pred_rows(w) + [{"id": "ghost", "labels": [], "scores": []}]), 2, ("'ghost'", "not in")),
    ("evaluate-missing-prediction", lambda w, d: evaluate_with_preds(w, d, pred_rows(w)[1:]), 2,
     ("no prediction for 1 document",)),
    ("evaluate-threshold-nan", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                             "--threshold", "nan"], 2, ("--threshold", "finite number")),
    ("evaluate-threshold-inf", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                             "--threshold", "inf"], 2, ("finite number",)),
    ("evaluate-k-zero", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                      "--k", "0"], 2, ("--k",)),
    ("evaluate-k-words", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                       "--k", "one"], 2, ("--k", "'one'")),
    ("evaluate-string-score", lambda w, d: evaluate_with_preds(
        w, d, [{"id": "doc0", "labels": ["x"], "scores": ["high"]}]), 2, ("line 1", "not a number")),
    ("evaluate-length-mismatch", lambda w, d: evaluate_with_preds(
        w, d, [{"id": "doc0", "labels": ["x", "y"], "scores": [1.0]}]), 2, ("2 labels but 1 scores",)),
    ("evaluate-pred-not-object", lambda w, d: evaluate_with_preds(w, d, [[1, 2]]), 2, ("expected a JSON object",)),
    ("evaluate-pred-invalid-json", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred",
                                                 data_file(d, "p.jsonl", '{"id": \n')], 2, ("invalid JSON",)),
    ("evaluate-label-twice", lambda w, d: evaluate_with_preds(
        w, d, [{"id": "doc0", "labels": ["x", "x"], "scores": [1.0, 0.5]}]), 2, ("listed twice",)),
    ("threshold-nan-predict", lambda w, d: predict_args(w, w / "model", d) + ["--threshold", "nan"], 2,
     ("finite number",)),
    # -- data files --------------------------------------------------------------------------------
    ("xc-value-overflow", lambda w, d: ["data", "stats", data_file(d, "a.txt", "1 3 2\n0 1:1e999\n")], 2,
     ("a.txt, line 2", "not a finite")),
    ("xc-value-beyond-float32", lambda w, d: ["data", "stats", data_file(d, "a.txt", "1 3 2\n0 1:1e39\n")], 2,
     ("line 2", "not a finite float32")),
    ("xc-header-huge-features", lambda w, d: ["data", "stats", data_file(d, "a.txt", "1 999999999999 2\n0 1:1\n")],
     2, ("a.txt, line 1", "n_features")),
    ("xc-header-huge-points", lambda w, d: ["data", "stats", data_file(d, "a.txt", "99999999999999 3 2\n0 1:1\n")],
     2, ("header declares 99999999999999 data points",)),
    ("xc-malformed-feature", lambda w, d: ["data", "stats", data_file(d, "a.txt", "1 3 2\n0 1-1\n")], 2,
     ("line 2", "malformed feature")),
    ("xc-label-out-of-range", lambda w, d: ["data", "stats", data_file(d, "a.txt", "1 3 2\n7 1:1\n")], 2,
     ("line 2", "label id 7 out of range")),
    ("jsonl-invalid-json", lambda w, d: ["data", "stats", data_file(d, "a.jsonl", '{"text": "a"\n')], 2,
     ("a.jsonl, line 1", "invalid JSON")),
    ("jsonl-not-object", lambda w, d: ["data", "stats", data_file(d, "a.jsonl", '["text"]\n')], 2,
     ("expected a JSON object",)),
    ("jsonl-labels-not-list", lambda w, d: ["data", "stats", data_file(d, "a.jsonl", '{"text": "a", "labels": "x"}\n')],
     2, ("'labels' must be a list",)),
    ("jsonl-no-text", lambda w, d: ["train", "--model", "xr-linear", "--train",
                                    data_file(d, "a.jsonl", '{"labels": []}\n'), "--out", d / "m"], 2,
     ("a.jsonl, line 1", "missing field 'text'")),
    ("jsonl-empty", lambda w, d: ["data", "stats", data_file(d, "a.jsonl", "")], 2, ("empty",)),
    ("text-field-nowhere", lambda w, d: train_args(w, d, "--text-field", "body"), 2,
     ("train.jsonl", "no document has the text field 'body'")),
    ("gz-not-gzip", lambda w, d: ["data", "stats", data_file(d, "a.jsonl.gz", '{"text": "a", "labels": []}\n')], 2,
     ("not gzip",)),
    ("invalid-utf8", lambda w, d: ["data", "stats", data_file(d, "a.jsonl", b'{"text": "\xff", "labels": []}\n')], 2,
     ("line 1", "invalid UTF-8")),
    ("truncated-gzip", lambda w, d: ["data", "stats", data_file(
        d, "a.jsonl.gz", gzip.compress(b'{"text": "a", "labels": []}\n' * 200)[:60])], 2, ("cannot decompress",)),
    ("label-text-array-non-string", lambda w, d: train_args(w, d, "--label-text", data_file(d, "l.json", '["a", 3]')),
     2, ("l.json", "item 1")),
    ("label-text-object-non-string", lambda w, d: train_args(w, d, "--label-text", data_file(d, "l.json", '{"a": 3}')),
     2, ("text of label 'a' must be a string",)),
    ("label-text-names-no-label", lambda w, d: train_args(w, d, "--label-text", data_file(d, "l.txt", "x\ny\n")), 2,
     ("l.txt", "none of the 20 labels has a text")),
    ("label-text-all-blank", lambda w, d: train_args(w, d, "--label-text", data_file(
        d, "l.json", json.dumps({name: " " for row in _rows(w / "train.jsonl") for name in row["labels"]}))), 2,
     ("l.json", "every text it gives")),
    ("label-text-empty", lambda w, d: train_args(w, d, "--label-text", data_file(d, "l.txt", "")), 2,
     ("l.txt", "empty file")),
    ("taxonomy-for-xr-linear", lambda w, d: train_args(w, d, "--taxonomy", data_file(d, "t.json", "{}")), 2,
     ("--taxonomy: the xr-linear model uses no taxonomy",)),
    ("unknown-model", lambda w, d: ["train", "--model", "xr-lineaer", "--train", w / "train.jsonl", "--out", d / "m"],
     2, ("unknown model 'xr-lineaer'",)),
    ("predict-model-missing", lambda w, d: predict_args(w, d / "nope", d), 2, ("not a model directory",)),
    ("predict-input-missing", lambda w, d: ["predict", "--model", w / "model", "--input", d / "none.jsonl",
                                            "--out", d / "p.jsonl"], 2, ("none.jsonl", "No such file")),
    # JSON that Python's parser cannot take: nesting beyond its stack, integers beyond its digit limit
    ("jsonl-nested-too-deeply", lambda w, d: ["data", "stats", data_file(
        d, "deep.jsonl", '{"text": "a", "labels": [], "meta": ' + "[" * 100000 + "]" * 100000 + "}\n")], 2,
     ("deep.jsonl, line 1: invalid JSON: nested too deeply",)),
    ("jsonl-number-too-long", lambda w, d: ["data", "stats", data_file(
        d, "long.jsonl", '{"text": "a", "labels": [], "meta": 1' + "0" * 5000 + "}\n")], 2,
     ("long.jsonl, line 1: invalid JSON: a number of more than",)),
    ("config-nested-too-deeply", lambda w, d: train_args(w, d, "--config", config_file(
        d, '{"n_threads": ' + "[" * 100000 + "]" * 100000 + "}")), 2, ("bad.json: invalid JSON (nested too deeply)",)),
    ("label-text-nested-too-deeply", lambda w, d: train_args(w, d, "--label-text", data_file(
        d, "l.json", "[" * 100000 + "]" * 100000)), 2, ("l.json", "nested too deeply")),
    ("prediction-score-beyond-float", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", data_file(
        d, "p.jsonl", '{"id": "x", "labels": ["a"], "scores": [1' + "0" * 400 + "]}\n")], 2,
     ("p.jsonl, line 1: score of label 'a' is too large",)),
    ("prediction-id-float", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", data_file(
        d, "p.jsonl", '{"id": 0.0, "labels": ["a"], "scores": [1]}\n')], 2,
     ("p.jsonl, line 1: id must be a string or an integer, got number",)),
    ("document-id-list", lambda w, d: ["data", "stats", data_file(
        d, "a.jsonl", '{"id": ["x"], "text": "a", "labels": []}\n')], 2, ("a.jsonl, line 1: id must be a string",)),
    ("generate-test-docs-zero", lambda w, d: ["data", "generate", "--out", d / "g", "--labels", "5", "--test-docs", "0"],
     2, ("--test-docs 0 must be >= 1",)),
    ("generate-labels-negative", lambda w, d: ["data", "generate", "--out", d / "g", "--labels", "-5"], 2,
     ("--labels -5 must be in [1,",)),
    ("generate-seed-negative", lambda w, d: ["data", "generate", "--out", d / "g", "--seed", "-1"], 2,
     ("--seed -1 must be in [0, 4294967295]",)),
    ("evaluate-k-empty-item", lambda w, d: ["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                            "--k", "1,,3"], 2, ("--k must be comma-separated",)),
    *[(f"device-{device or 'empty'}", lambda w, d, device=device: [
        "train", "--model", "xtransformer", "--train", w / "train.jsonl", "--out", d / "m", "--config",
        config_file(d, {"matcher": {"device": device}})], 2, (f"bad.json: matcher.device {device!r}: expected auto, cpu",))
      for device in ("tpu", "cuda:abc", "CPU", "")],
    *[(f"report-{name}", lambda w, d, extra=extra: ["report", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl",
                                                   "--out", d / "r.html", *extra], 2, (fragment,))
      for name, extra, fragment in (("threshold-nan", ["--threshold", "nan"], "expected a finite number"),
                                    ("bounds-nan", ["--bounds", "nan"], "--bounds must be increasing positive"),
                                    ("bounds-inf", ["--bounds", "1,inf"], "--bounds must be increasing positive"))],
    ("config-negative-weight-decay", lambda w, d: ["train", "--model", "lightxml", "--train", w / "train.jsonl",
                                                   "--out", d / "m", "--config", config_file(
                                                       d, {"train": {"weight_decay": -1}})], 2,
     ("bad.json: train.weight_decay must be >= 0",)),
    ("config-matcher-negative-weight-decay", lambda w, d: [
        "train", "--model", "xtransformer", "--train", w / "train.jsonl", "--out", d / "m", "--config",
        config_file(d, {"matcher": {"weight_decay": -1}})], 2, ("weight_decay must be >= 0",)),
    ("config-no-text-fields", lambda w, d: train_args(w, d, "--config", config_file(d, {"features": {"fields": []}})),
     2, ("bad.json: features.fields must name at least one",)),
    ("config-no-neural-text-fields", lambda w, d: ["train", "--model", "lightxml", "--train", w / "train.jsonl",
                                                   "--out", d / "m", "--config", config_file(d, {"text_fields": []})],
     2, ("bad.json: text_fields must name at least one",)),
    ("taxonomy-without-categories", lambda w, d: ["train", "--model", "masked-bert", "--train", w / "train.jsonl",
                                                  "--taxonomy", data_file(d, "t.json", '{"cat": ["x"]}'),
                                                  "--out", d / "m"], 2,
     ("train.jsonl: a taxonomy is given, but no document has a category",)),
    ("tune-grid-tfidf-on-xc", lambda w, d: ["tune", "--train", w / "xc.txt", "--grid", "features.max_ngram=1,2",
                                            "--out", d / "t.json"], 2,
     ("--grid features.max_ngram", "carries its own features (XC sparse)")),
    ("tune-grid-topk", lambda w, d: ["tune", "--train", w / "train.jsonl", "--grid", "predict.topk=3,5",
                                     "--out", d / "t.json"], 2, ("--grid predict.topk", "changes nothing")),
    ("format-xc-on-jsonl", lambda w, d: ["data", "stats", w / "train.jsonl", "--format", "xc"], 2,
     ("line 1", "malformed header")),
    ("format-unknown", lambda w, d: ["data", "stats", w / "train.jsonl", "--format", "csv"], 2, ("invalid choice",)),
    ("unknown-extension", lambda w, d: ["data", "stats", data_file(d, "a.csv", "x")], 2, ("cannot infer the format",)),
    ("topk-zero", lambda w, d: predict_args(w, w / "model", d) + ["--topk", "0"], 2, ("positive integer",)),
    ("beam-size-words", lambda w, d: predict_args(w, w / "model", d) + ["--beam-size", "wide"], 2,
     ("positive integer",)),
    ("xc-input-to-text-model", lambda w, d: ["predict", "--model", w / "model", "--input", w / "xc.txt",
                                             "--out", d / "p.jsonl"], 2, ("xc.txt", "only precomputed features")),
    ("text-input-to-xc-model", lambda w, d: predict_args(w, w / "xc-model", d), 2,
     ("test.jsonl", "trained on precomputed features")),
    # A model that reads text, trained on a features-only file: it fine-tuned on empty texts (lightxml; the
    # others failed later on something else, or as an internal error).
    *[(f"xc-train-to-{model}", lambda w, d, model=model: ["train", "--model", model, "--train", w / "xc.txt",
                                                            "--out", d / "m"], 2,
       ("xc.txt: the data has only precomputed features (no text)", f"the {model} model reads text"))
      for model in ("lightxml", "gudn", "xtransformer", "masked-bert")],
    ("xc-valid-to-text-model", lambda w, d: ["train", "--model", "lightxml", "--train", w / "train.jsonl",
                                             "--valid", w / "xc.txt", "--out", d / "m"], 2,
     ("xc.txt: the data has only precomputed features",)),
    ("xc-train-to-augment", lambda w, d: ["augment", "--train", w / "xc.txt", "--out", d / "aug.jsonl"], 2,
     ("xc.txt: the data has only precomputed features", "the XDA generator reads text")),
    ("valid-fraction-leaves-nothing", lambda w, d: ["train", "--model", "lightxml", "--train", data_file(
        d, "four.jsonl", "".join(json.dumps({"text": f"wine market {i}", "labels": ["a"]}) + "\n" for i in range(4))),
        "--out", d / "m"], 2, ("valid_fraction=0.1 of 4 documents leaves the validation side empty", "--valid")),
    # -- configs -----------------------------------------------------------------------------------
    ("config-negative-C", lambda w, d: train_args(w, d, "--config", config_file(d, {"train": {"C": -1}})), 2,
     ("bad.json: train.C must be positive",)),
    ("config-unknown-nested-key", lambda w, d: train_args(w, d, "--config", config_file(d, {"train": {"CC": 1}})), 2,
     ("bad.json: train: unknown key(s) 'CC'",)),
    ("config-wrong-type", lambda w, d: train_args(w, d, "--config", config_file(d, {"train": {"eps": "big"}})), 2,
     ("bad.json: train.eps: expected a number",)),
    ("config-wrong-type-or-auto", lambda w, d: train_args(w, d, "--config", config_file(d, {"train": {"C": "big"}})),
     2, ("bad.json: train.C: 'big' matches none of float, 'auto'",)),
    ("config-invalid-token-pattern", lambda w, d: train_args(w, d, "--config", config_file(
        d, {"features": {"token_pattern": "["}})), 2, ("features.token_pattern", "invalid regular expression")),
    ("config-redos-token-pattern", lambda w, d: train_args(w, d, "--config", config_file(
        d, {"features": {"token_pattern": "(a|aa)+$"}})), 2, ("features.token_pattern", "exponentially")),
    ("config-min-df-too-large", lambda w, d: train_args(w, d, "--config", config_file(
        d, {"features": {"min_df": 100000}})), 2, ("TF-IDF cannot be fitted",)),
    ("config-is-directory", lambda w, d: (os.mkdir(d / "sub"), train_args(w, d, "--config", d / "sub"))[1], 2,
     ("sub: is a directory",)),
    ("config-invalid-json", lambda w, d: train_args(w, d, "--config", config_file(d, '{"train": ')), 2,
     ("bad.json, line 1", "invalid JSON")),
    ("config-is-manifest", lambda w, d: train_args(w, d, "--config", w / "model" / "xmc_model.json"), 2,
     ("manifest of a saved 'xr-linear' model",)),
    ("config-top-level-list", lambda w, d: train_args(w, d, "--config", config_file(d, [1])), 2,
     ("bad.json", "expected a JSON object")),
    ("config-branching", lambda w, d: train_args(w, d, "--config", config_file(
        d, {"indexers": [{"branching": 3}]})), 2, ("bad.json: indexers[0].branching must be 1 or a power of two",)),
    ("config-literal", lambda w, d: train_args(w, d, "--config", config_file(d, {"train": {"loss": "hinge"}})), 2,
     ("train.loss", "'hinge' is not one of")),
    ("config-missing-file", lambda w, d: train_args(w, d, "--config", d / "none.json"), 2,
     ("none.json: config file not found",)),
    ("xda-config-without-augmented", lambda w, d: train_args(w, d, "--xda-config", w / "cfg.json"), 2,
     ("--xda-config configures the --augmented",)),
    ("augmented-for-xr-linear", lambda w, d: train_args(w, d, "--augmented", w / "train.jsonl"), 2,
     ("--augmented: the xr-linear model cannot be fine-tuned",)),
    ("augment-generator-not-a-model", lambda w, d: ["augment", "--train", w / "train.jsonl", "--out", d / "a.jsonl",
                                                    "--config", config_file(d, {"generator": {"model_path": str(d)}})],
     2, ("not a Hugging Face model directory",)),
    ("augment-generator-pickle-weights", lambda w, d: [
        "augment", "--train", w / "train.jsonl", "--out", d / "a.jsonl", "--config",
        config_file(d, {"generator": {"model_path": str(tiny_gpt2_with_pickled_weights(d))}})], 2,
     ("cannot load a Hugging Face generator",)),
    # -- model directories -------------------------------------------------------------------------
    ("manifest-future-format", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(format_version=99)), d), 2, ("format version 99 is newer",)),
    ("manifest-future-xmc", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m["versions"].update(xmc="99.0")), d), 2, ("written by xmc 99.0",)),
    ("manifest-config-wrong-type", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(config=[1])), d), 2, ("'config' must be an object",)),
    ("manifest-model-wrong-type", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(model=7)), d), 2, ("'model' must be a string",)),
    ("manifest-unknown-kind", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(model="fancy")), d), 2, ("unknown model 'fancy'",)),
    ("manifest-invalid-json", lambda w, d: predict_args(w, (lambda m: (
        (m / "xmc_model.json").write_text("{"), m)[1])(copy_model(w, d)), d), 2, ("xmc_model.json", "invalid JSON")),
    ("manifest-missing", lambda w, d: predict_args(w, (lambda m: (
        (m / "xmc_model.json").unlink(), m)[1])(copy_model(w, d)), d), 2, ("no xmc_model.json",)),
    ("manifest-n-trees-wrong-type", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(n_trees="two")), d), 2, ('"n_trees" must be a whole number >= 1',)),
    ("manifest-n-trees-zero", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m.update(n_trees=0)), d), 2, ("xmc_model.json", '"n_trees"', "got 0")),
    ("manifest-config-bad-value", lambda w, d: predict_args(w, edit_manifest(
        copy_model(w, d), lambda m: m["config"]["train"].update(C=-2)), d), 2,
     ("xmc_model.json: config.train.C must be positive",)),
    ("labels-too-short", lambda w, d: predict_args(w, labels_json(copy_model(w, d), model_labels(w)[:-1]), d), 2,
     ("labels.json", "19 label names for a model with 20 outputs")),
    ("labels-duplicate", lambda w, d: predict_args(w, labels_json(
        copy_model(w, d), model_labels(w)[:-1] + model_labels(w)[:1]), d), 2, ("labels.json", "listed twice")),
    ("labels-not-strings", lambda w, d: predict_args(w, labels_json(copy_model(w, d), [1, 2]), d), 2,
     ("expected a list of label names",)),
    ("layer-truncated", lambda w, d: predict_args(w, (lambda m: (
        (m / "tree-0" / "layer-1" / "entry_value.npy").write_bytes(
            (m / "tree-0" / "layer-1" / "entry_value.npy").read_bytes()[:100]), m)[1])(copy_model(w, d)), d), 2,
     ("cannot read linear layers",)),
    ("layer-parent-id-out-of-range", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "group_parent", bump(0, 250)), d), 2, ("cannot read linear layers", "group_parent")),
    ("layer-parent-missing", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "group_parent", lambda a: a[:-1]), d), 2, ("cannot read linear layers",)),
    ("layer-group-pointer-out-of-range", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "feat_group_counts", bump(-1, 5)), d), 2, ("cannot read linear layers", "feat_groups")),
    ("layer-group-counts-signed", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "group_entry_counts", lambda a: a.astype(np.int16)), d), 2,
     ("cannot read linear layers", "group_entry_counts", "unsigned counts")),
    ("layer-child-position-out-of-range", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "entry_child", bump(0, 250)), d), 2, ("cannot read linear layers", "entry_child")),
    ("layer-scale-not-finite", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "child_scale", lambda a: np.full_like(a, np.nan)), d), 2,
     ("cannot read linear layers", "child_scale")),
    ("layer-wrong-dtype", lambda w, d: predict_args(w, layer_array(
        copy_model(w, d), "entry_value", lambda a: a.astype(np.float64)), d), 2,
     ("cannot read linear layers", "dtype float64")),
    ("layer-pickled-array", lambda w, d: predict_args(w, (lambda m: (
        np.save(m / "tree-0" / "layer-1" / "entry_value.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True),
        m)[1])(copy_model(w, d)), d), 2, ("cannot read linear layers",)),
    ("layer-wrong-shape", lambda w, d: predict_args(w, (lambda m: (
        (m / "tree-0" / "layers.json").write_text(json.dumps({**json.loads((m / "tree-0" / "layers.json").read_text()),
                                                             "shapes": [[3, 1], [3, 2]]})), m)[1])(
        copy_model(w, d)), d), 2, ("cannot read linear layers",)),
    *[(f"layers-json-{name}", lambda w, d, change=change: predict_args(w, layers_json(copy_model(w, d), change), d), 2,
       ("layers.json", *fragments)) for name, change, fragments in (
        ("no-shapes", lambda m: m.pop("shapes"), ('"shapes" must list 2 [rows, columns] pairs', "got None")),
        ("shape-of-strings", lambda m: m.update(shapes=[["3", "1"], [3, 2]]), ('"shapes" must list',)),
        ("layers-as-text", lambda m: m.update(layers="2"), ('"layers" must be a whole number >= 1', "got '2'")),
        ("bias-null", lambda m: m.update(bias=None), ('"bias" must be a finite number, got None',)),
        ("unknown-layout", lambda m: m.update(layout="rows"), ('"layout" must be "feature" or "kernel"',)),
        ("not-an-object", b"[]", ("expected a JSON object, got list",)),
        ("invalid-json", b"{", ("line 1: invalid JSON",)),
        ("not-utf8", b"\xff\xfe", ("not UTF-8 JSON",)),  # was an AttributeError in the error path
        ("number-too-long", b'{"layers": 1' + b"0" * 5000 + b"}", ("invalid JSON: a number of more than",)))],
    ("chain-index-out-of-range", lambda w, d: predict_args(w, chain_with_index_out_of_range(copy_model(w, d)), d), 2,
     ("cannot read",)),
    ("featurizer-missing", lambda w, d: predict_args(w, (lambda m: (
        shutil.rmtree(m / "featurizer"), m)[1])(copy_model(w, d)), d), 2, ("featurizer (featurizer/) is missing",)),
    ("featurizer-redos-pattern", lambda w, d: predict_args(w, featurizer_config(
        copy_model(w, d), token_pattern="(a|aa)+$"), d), 2, ("token_pattern", "exponentially")),
    ("featurizer-idf-length", lambda w, d: predict_args(w, (lambda m: (
        np.save(m / "featurizer" / "idf.npy", np.ones(3)), m)[1])(copy_model(w, d)), d), 2, ("IDF values",)),
    ("featurizer-idf-pickle", lambda w, d: predict_args(w, (lambda m: (
        np.save(m / "featurizer" / "idf.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), m)[1])(
        copy_model(w, d)), d), 2, ("cannot read TF-IDF featurizer",)),
    ("featurizer-vocabulary-not-list", lambda w, d: predict_args(w, (lambda m: (
        (m / "featurizer" / "vocabulary.json").write_text('{"a": 1}'), m)[1])(copy_model(w, d)), d), 2,
     ("vocabulary.json", "list of terms")),
    ("featurizer-vocabulary-repeats-a-term", lambda w, d: predict_args(w, (lambda m: (
        (m / "featurizer" / "vocabulary.json").write_text(json.dumps(
            (lambda v: [v[0]] + v[:-1])(json.loads((m / "featurizer" / "vocabulary.json").read_text())))), m)[1])(
        copy_model(w, d)), d), 2, ("vocabulary.json: a term is listed more than once",)),
    ("layer-scales-missing", lambda w, d: predict_args(w, (lambda m: (
        (m / "tree-0" / "layer-1" / "child_scale.npy").unlink(), m)[1])(copy_model(w, d)), d), 2,
     ("child_scale.npy is missing", "int8 weights")),
    ("tree-missing", lambda w, d: predict_args(w, (lambda m: (
        shutil.rmtree(m / "tree-0"), m)[1])(copy_model(w, d)), d), 2, ("tree-0/layers.json: is missing",)),
]


@pytest.mark.parametrize("case, build, code, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(world, tmp_path, case, build, code, fragments):
    case_dir = world / "cases" / case
    case_dir.mkdir(parents=True)
    argv = build(world, case_dir)
    before = _snapshot(world)
    start = time.perf_counter()
    rc, _, err = _run(argv)
    elapsed = time.perf_counter() - start
    lines = [line for line in err.splitlines() if line.startswith("xmc: ")]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("xmc: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert _snapshot(world) == before, "the failed command changed files on disk"
    assert elapsed < 30, f"took {elapsed:.1f} s"  # a hostile model directory cannot stall the tool


def test_the_table_covers_at_least_80_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 80


def test_inputs_that_trained_evaluated_or_scored_wrong_in_silence(world, tmp_path):
    """Each gave exit 0 with a useless or wrong result (or an internal error) before."""
    w, d = world, tmp_path
    unlabelled = _jsonl(d / "unlabelled.jsonl", [{"text": "a b", "labels": []}] * 3)
    for argv in (["train", "--model", "xr-linear", "--train", unlabelled, "--out", d / "m"],
                 ["tune", "--train", unlabelled, "--out", d / "t.json"]):
        rc, _, err = _run(argv)
        assert rc == 2 and "unlabelled.jsonl: none of its 3 documents has a label" in err
    assert not (d / "m").exists() and not (d / "t.json").exists()
    # XC sparse: no documents, or a feature given twice on a line (it was summed).
    (d / "none.txt").write_text("0 30 5\n")
    (d / "twice.txt").write_text("2 30 5\n0 1:0.5 3:1 3:2\n1 2:1\n")
    for name, message in (("none.txt", "none.txt, line 1: the header declares 0 data points"),
                          ("twice.txt", "twice.txt, line 2: feature 3 is given more than once")):
        rc, _, err = _run(["evaluate", "--truth", d / name, "--pred", w / "pred.jsonl"])
        assert rc == 2 and message in err
    # A text model scored a features-only file as empty text; a features model cannot read text.
    rc, _, err = _run(["tune", "--train", w / "train.jsonl", "--valid", w / "xc.txt", "--config", w / "cfg.json",
                       "--grid", "train.C=1,2", "--out", d / "t.json"])
    assert rc == 2 and "xc.txt: the data has only precomputed features (no text)" in err
    rc, _, err = _run(["tune", "--train", w / "xc.txt", "--valid", w / "test.jsonl", "--config", w / "cfg.json",
                       "--grid", "train.C=1,2", "--out", d / "t.json"])
    assert rc == 2 and "test.jsonl: this model was trained on precomputed features" in err
    # Integer label names in a prediction file match the truth's, as its reader reads them.
    truth = _jsonl(d / "truth.jsonl", [{"id": "a", "text": "x", "labels": [1]}, {"id": "b", "text": "y", "labels": ["2"]}])
    pred = _jsonl(d / "pred.jsonl", [{"id": "a", "labels": [1], "scores": [0.9]}, {"id": "b", "labels": [2], "scores": [0.8]}])
    rc, out, err = _run(["evaluate", "--truth", truth, "--pred", pred, "--json"])
    assert rc == 0, err
    assert json.loads(out)["P@1"] == 1.0 and json.loads(out)["PSP@1"] == 1.0  # two documents: propensities 1
    _jsonl(d / "pred.jsonl", [{"id": "a", "labels": [None], "scores": [0.9]}])
    rc, _, err = _run(["evaluate", "--truth", truth, "--pred", d / "pred.jsonl"])
    assert rc == 2 and "pred.jsonl, line 1: label None is not a string" in err


def test_no_labels_or_no_documents_are_refused_by_every_command(world, tmp_path):
    """augment wrote 0 documents, predict wrote 0 predictions, evaluate --train crashed (exit 1)."""
    w, d = world, tmp_path
    unlabelled = _jsonl(d / "unlabelled.jsonl", [{"text": "council regulation wine", "labels": []}] * 3)
    (d / "unlabelled.txt").write_text("2 30 5\n 1:1\n 2:0.5\n")  # XC documents without labels
    (d / "none.txt").write_text("0 30 5\n")
    before = _snapshot(d)
    cases = [(["augment", "--train", unlabelled, "--out", d / "aug.jsonl"], "unlabelled.jsonl: none of its 3"),
             (["train", "--model", "xr-linear", "--train", d / "unlabelled.txt", "--out", d / "m"],
              "unlabelled.txt: none of its 2 documents has a label"),
             (["predict", "--model", w / "xc-model", "--input", d / "none.txt", "--out", d / "p.jsonl"],
              "none.txt, line 1: the header declares 0 data points"),
             (["evaluate", "--truth", w / "test.jsonl", "--pred", w / "pred.jsonl", "--train", d / "none.txt"],
              "none.txt, line 1: the header declares 0 data points")]
    for argv, message in cases:
        rc, _, err = _run(argv)
        assert rc == 2 and message in err and err.count("\n") == 1, (argv[0], err)
        assert "internal error" not in err and "Traceback" not in err
    assert _snapshot(d) == before  # nothing written


def test_python_api_refuses_what_the_cli_refuses(world, tmp_path):
    """fit trained a 0-label model, tune raised IndexError, predict scored a features file as empty text."""
    from xmc.data import read_dataset
    from xmc.errors import DataFormatError
    from xmc.models.xr_linear import XRLinear, XRLinearConfig
    from xmc.tuning import tune

    unlabelled = read_dataset(_jsonl(tmp_path / "unlabelled.jsonl",
                                     [{"text": "council regulation wine market", "labels": []}] * 12))
    config = XRLinearConfig.from_dict(CONFIG)
    with pytest.raises(DataFormatError, match=r"unlabelled\.jsonl: none of its 12 documents has a label"):
        XRLinear(config).fit(unlabelled, progress=False)
    with pytest.raises(DataFormatError, match=r"unlabelled\.jsonl: none of its 12 documents has a label"):
        tune(unlabelled, {"train.C": [1, 2]}, config=config, progress=False)
    xc, text = read_dataset(world / "xc.txt"), read_dataset(world / "test.jsonl")
    with pytest.raises(DataFormatError, match=r"xc\.txt: the data has only precomputed features \(no text\)"):
        XRLinear.load(world / "model").predict(xc)
    with pytest.raises(DataFormatError, match=r"test\.jsonl: this model was trained on precomputed features"):
        XRLinear.load(world / "xc-model").predict(text)


def test_models_that_read_text_refuse_features_only_data_from_python(world):
    """Training or predicting on an XC file's empty texts gave a model of nothing, or scores of nothing."""
    from xmc.data import read_dataset
    from xmc.errors import DataFormatError
    from xmc.models.gudn.model import _texts
    from xmc.models.masked_bert.model import product_pairs
    from xmc.models.xtransformer import XTransformer, XTransformerConfig

    xc, text = read_dataset(world / "xc.txt"), read_dataset(world / "test.jsonl")
    assert xc.features_only and not text.features_only
    message = r"xc\.txt: the data has only precomputed features \(no text\)"
    with pytest.raises(DataFormatError, match=message):
        XTransformer(XTransformerConfig()).fit(xc, progress=False)
    with pytest.raises(DataFormatError, match=message):
        XTransformer(XTransformerConfig())._texts(xc)
    with pytest.raises(DataFormatError, match=message):
        _texts(xc, ("text",))
    with pytest.raises(DataFormatError, match=message):
        product_pairs(xc)
    assert _texts(text, ("text",)) == text.input_texts(("text",))


def test_tune_refuses_a_validation_file_of_the_other_kind_before_stating_a_plan(world, tmp_path):
    """A text model scored an XC file's documents as empty texts: refused before any fit or plan."""
    from xmc.data import read_dataset
    from xmc.errors import DataFormatError
    from xmc.tuning import tune

    w = world
    for train, valid, message in (("train.jsonl", "xc.txt", "xc.txt: the data has only precomputed features"),
                                  ("xc.txt", "test.jsonl", "test.jsonl: this model was trained on precomputed")):
        rc, out, err = _run(["tune", "--train", w / train, "--valid", w / valid, "--config", w / "cfg.json",
                             "--grid", "train.C=1,2", "--out", tmp_path / "t.json"])
        assert rc == 2 and message in err and out == "", (out, err)  # no "tuning xr-linear: ... fits" line
        data = read_dataset(w / train)
        with pytest.raises(DataFormatError, match=message):
            tune(data, {"train.C": [1]}, valid=read_dataset(w / valid, labels=data.labels), progress=False)
    assert not (tmp_path / "t.json").exists()


def test_json_reports_are_strict_json_with_null_for_empty_groups(world, tmp_path):
    """An empty frequency group's precision was printed as NaN, which JSON.parse and other strict parsers reject."""
    rc, _, err = _run(["predict", "--model", world / "xc-model", "--input", world / "xc.txt", "--out", tmp_path / "p.jsonl"])
    assert rc == 0, err
    rc, out, err = _run(["evaluate", "--truth", world / "xc.txt", "--pred", tmp_path / "p.jsonl", "--report", "--json"])
    assert rc == 0, err

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(out, parse_constant=refuse)
    assert "null" in out and report["groups"]


def test_predict_refuses_texts_without_an_order(world):
    """A dict predicted for its keys and a set in an order of its own, with exit 0 and no word."""
    from xmc.models.gudn.model import _texts
    from xmc.models.masked_bert.model import product_pairs
    from xmc.models.xr_linear import XRLinear
    from xmc.models.xtransformer import XTransformer, XTransformerConfig

    model = XRLinear.load(world / "model")
    for bad in ({"x": "wine"}, {"wine", "fish"}, frozenset({"wine"}), "wine", b"wine"):
        for call in (model.predict, XTransformer(XTransformerConfig())._texts, lambda t: _texts(t, ("text",)),
                     product_pairs):
            with pytest.raises(TypeError, match="not a"):
                call(bad)
    texts = ["council regulation wine", "fishing quotas"]
    assert (model.predict(texts) != model.predict(tuple(texts))).nnz == 0
    assert (model.predict(texts) != model.predict(iter(texts))).nnz == 0
