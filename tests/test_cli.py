"""The ``xmc`` command line, run in-process through ``xmc.cli.main.main`` and as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.cli.main import main
from xmc.data import read_dataset, write_xc_sparse
from xmc.datasets.synthetic import make_corpus
from xmc.metrics import top_k
from xmc.models.registry import load_model
from xmc.models.xr_linear import XRLinear, XRLinearConfig
from xmc.ranker.hierarchy import LabelSpace

CONFIG = {"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]}


# ---- helpers -----------------------------------------------------------------------
def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_quiet(*argv) -> str:
    """Run the CLI where capsys is not available (module fixtures); return stdout, fail on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()
    return out.getvalue()


def assert_error_line(capsys, argv, *fragments) -> str:
    """The command fails with exactly one ``xmc: error:`` line on stderr, no traceback, naming ``fragments``."""
    rc, out, err = run_cli(capsys, *argv)
    assert rc != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xmc: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_jsonl(path: Path, ds) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(len(ds)):
            fh.write(json.dumps({"id": ds.ids[i], "title": ds.titles[i], "text": ds.texts[i],
                                 "labels": ds.label_names_of(i), "category": ds.categories[i]}) + "\n")


def read_jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_corpus")
    corpus = make_corpus(n_train=300, n_test=80, n_labels=40, seed=1)
    write_jsonl(root / "train.jsonl", corpus.train)
    write_jsonl(root / "test.jsonl", corpus.test)
    (root / "cfg.json").write_text(json.dumps(CONFIG))
    return root


@pytest.fixture(scope="module")
def trained(corpus_dir):
    """Train with the CLI and predict the test file with --topk 5."""
    out = run_quiet("train", "--model", "xr-linear", "--train", corpus_dir / "train.jsonl",
                    "--out", corpus_dir / "model", "--config", corpus_dir / "cfg.json")
    assert "saved xr-linear model" in out
    out = run_quiet("predict", "--model", corpus_dir / "model", "--input", corpus_dir / "test.jsonl",
                    "--out", corpus_dir / "pred.jsonl", "--topk", "5")
    assert "wrote predictions for 80 documents" in out
    return corpus_dir


@pytest.fixture(scope="module")
def xc_dir(tmp_path_factory):
    """An XC sparse train/test pair where each label owns 5 features (learnable), plus noise."""
    root = tmp_path_factory.mktemp("cli_xc")
    rng = np.random.default_rng(0)
    n_labels, d = 20, 200
    owner = np.zeros((n_labels, d), dtype=np.float32)
    for j in range(n_labels):
        owner[j, rng.choice(d, 5, replace=False)] = 1.0

    def make(n: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        Y = np.zeros((n, n_labels), dtype=np.float32)
        for i in range(n):
            Y[i, rng.choice(n_labels, size=rng.integers(1, 3), replace=False)] = 1.0
        X = Y @ owner + (rng.random((n, d)) < 0.03) * rng.random((n, d))
        X = X * (rng.random((n, d)) < 0.8)  # drop some owned features
        return sp.csr_matrix(X.astype(np.float32)), sp.csr_matrix(Y)

    write_xc_sparse(root / "train.txt", *make(400))
    write_xc_sparse(root / "test.txt", *make(100))
    (root / "cfg.json").write_text(json.dumps({"indexers": [{"branching": 2, "max_leaf_size": 5}]}))
    run_quiet("train", "--model", "xr-linear", "--train", root / "train.txt", "--out", root / "model",
              "--config", root / "cfg.json")
    return root


# ---- JSONL round trip --------------------------------------------------------------
def test_jsonl_round_trip_metrics(trained, capsys):
    rc, out, err = run_cli(capsys, "evaluate", "--truth", trained / "test.jsonl", "--pred", trained / "pred.jsonl",
                           "--train", trained / "train.jsonl", "--json")
    assert rc == 0
    report = json.loads(out)
    for key in ("P@1", "P@3", "P@5", "nDCG@3", "PSP@5", "micro_f1", "macro_f1"):
        assert key in report and 0.0 <= report[key] <= 1.0, key
    assert report["documents"] == 80
    assert report["unknown_predicted_labels"] == 0
    # Well above chance and above always predicting the most frequent training label.
    train = read_dataset(trained / "train.jsonl")
    test = read_dataset(trained / "test.jsonl", labels=train.labels)
    head = int(np.argmax(train.label_counts()))
    baseline = float((test.Y[:, head].toarray() > 0).mean())
    assert report["P@1"] > max(0.6, baseline + 0.2), (report["P@1"], baseline)
    assert report["P@1"] >= report["P@3"] >= report["P@5"]  # ~2.6 true labels per document


def test_prediction_file_rows_best_first(trained):
    rows = read_jsonl_rows(trained / "pred.jsonl")
    test_ids = [row["id"] for row in read_jsonl_rows(trained / "test.jsonl")]
    assert [row["id"] for row in rows] == test_ids
    vocabulary = set(read_dataset(trained / "train.jsonl").labels.names)
    for row in rows:
        assert 1 <= len(row["labels"]) <= 5
        assert len(row["labels"]) == len(row["scores"]) == len(set(row["labels"]))
        assert set(row["labels"]) <= vocabulary
        assert all(a >= b for a, b in zip(row["scores"], row["scores"][1:])), row


def test_python_api_gives_the_file_predictions(trained):
    model = XRLinear.load(trained / "model")
    test = read_dataset(trained / "test.jsonl")
    indices, values = top_k(model.predict(test, topk=5), 5)
    rows = read_jsonl_rows(trained / "pred.jsonl")
    for i, row in enumerate(rows):
        keep = indices[i] >= 0
        api = {model.labels_.names[j]: float(v) for j, v in zip(indices[i][keep], values[i][keep])}
        assert set(api) == set(row["labels"]), row["id"]
        assert row["scores"] == pytest.approx([api[name] for name in row["labels"]], rel=1e-6)


def test_predict_threshold_drops_low_scores(trained, capsys):
    out_path = trained / "pred_thr.jsonl"
    rc, _, _ = run_cli(capsys, "predict", "--model", trained / "model", "--input", trained / "test.jsonl",
                       "--out", out_path, "--topk", "5", "--threshold", "0.3")
    assert rc == 0
    rows = read_jsonl_rows(out_path)
    assert len(rows) == 80
    assert all(s >= 0.3 for row in rows for s in row["scores"])
    full = {row["id"]: row for row in read_jsonl_rows(trained / "pred.jsonl")}
    assert sum(len(r["labels"]) for r in rows) < sum(len(r["labels"]) for r in full.values())
    for row in rows:  # the kept labels are the head of the unthresholded list
        assert row["labels"] == full[row["id"]]["labels"][: len(row["labels"])]


def test_evaluate_report_prints_group_table(trained, capsys):
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", trained / "test.jsonl", "--pred", trained / "pred.jsonl",
                         "--train", trained / "train.jsonl", "--report")
    assert rc == 0
    assert "label-frequency groups (train count):" in out
    table = out.split("label-frequency groups (train count):")[1]
    assert "micro F1" in table and "macro F1" in table
    rows = {line.split()[0]: line.split()[1:] for line in table.strip().splitlines()[1:]}
    # 300 training documents: every label has 1..99 training documents.
    assert rows["[1,100)"][0] == "40"
    assert rows["[100,1000)"][0] == "0" and "unseen" not in rows
    # Counts are printed as counts, not as percentages.
    assert any(line.split()[-1] == "80" for line in out.splitlines() if line.startswith("documents"))


def test_evaluate_k_changes_the_keys(trained, capsys):
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", trained / "test.jsonl", "--pred", trained / "pred.jsonl",
                         "--k", "1,2", "--json")
    assert rc == 0
    report = json.loads(out)
    assert {"P@1", "P@2", "nDCG@2", "PSP@2"} <= set(report)
    assert not any(key.endswith(("@3", "@5")) for key in report)
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", trained / "test.jsonl", "--pred", trained / "pred.jsonl",
                         "--k", "1,2")
    assert rc == 0 and "@2" in out and "@3" not in out


@pytest.mark.parametrize("ks", ["0", "a,b", ","])
def test_evaluate_bad_k(trained, capsys, ks):
    assert_error_line(capsys, ["evaluate", "--truth", trained / "test.jsonl", "--pred", trained / "pred.jsonl",
                               "--k", ks], "--k")


def test_evaluate_counts_unknown_predicted_labels_as_wrong(tmp_path, capsys):
    truth, pred = tmp_path / "truth.jsonl", tmp_path / "pred.jsonl"
    truth.write_text('{"id": "d1", "text": "x", "labels": ["a"]}\n{"id": "d2", "text": "y", "labels": ["b"]}\n')
    # d1's best label "z" is in no truth: it is a wrong top-1 prediction, not one to skip.
    pred.write_text('{"id": "d2", "labels": ["b"], "scores": [0.9]}\n'
                    '{"id": "d1", "labels": ["z", "a"], "scores": [0.9, 0.5]}\n')
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", truth, "--pred", pred, "--k", "1,2", "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["P@1"] == pytest.approx(0.5)
    assert report["P@2"] == pytest.approx(0.5)
    assert report["R@2"] == pytest.approx(1.0)
    assert report["micro_p"] == pytest.approx(2 / 3)
    assert report["unknown_predicted_labels"] == 1
    # A threshold above every score: nothing is predicted positive.
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", truth, "--pred", pred, "--json", "--threshold", "0.95")
    assert rc == 0 and json.loads(out)["micro_r"] == 0.0


# ---- XC sparse round trip ----------------------------------------------------------
def test_xc_round_trip(xc_dir, capsys):
    rc, out, _ = run_cli(capsys, "predict", "--model", xc_dir / "model", "--input", xc_dir / "test.txt",
                         "--out", xc_dir / "pred.jsonl", "--topk", "5")
    assert rc == 0 and "wrote predictions for 100 documents" in out
    rows = read_jsonl_rows(xc_dir / "pred.jsonl")
    assert [row["id"] for row in rows] == [str(i) for i in range(100)]  # XC ids are line numbers
    assert all(0 <= int(name) < 20 for row in rows for name in row["labels"])
    rc, out, _ = run_cli(capsys, "evaluate", "--truth", xc_dir / "test.txt", "--pred", xc_dir / "pred.jsonl",
                         "--train", xc_dir / "train.txt", "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["documents"] == 100
    assert report["P@1"] > 0.8
    assert report["R@5"] > 0.8


def test_xc_model_rejects_text_input(xc_dir, trained, capsys):
    assert_error_line(capsys, ["predict", "--model", xc_dir / "model", "--input", trained / "test.jsonl",
                               "--out", xc_dir / "never.jsonl"], "test.jsonl", "precomputed features")
    assert not (xc_dir / "never.jsonl").exists()


def test_text_model_rejects_feature_only_input(xc_dir, trained, capsys):
    assert_error_line(capsys, ["predict", "--model", trained / "model", "--input", xc_dir / "test.txt",
                               "--out", trained / "never.jsonl"], "test.txt", "precomputed features")


def test_xc_model_rejects_wrong_feature_count(xc_dir, tmp_path, capsys):
    small = tmp_path / "small.txt"
    write_xc_sparse(small, sp.random(5, 150, density=0.1, format="csr", random_state=0),
                    sp.csr_matrix(np.eye(5, 20, dtype=np.float32)))
    assert_error_line(capsys, ["predict", "--model", xc_dir / "model", "--input", small, "--out", tmp_path / "p.jsonl"],
                      "small.txt", "150", "200")


# ---- data stats --------------------------------------------------------------------
def test_data_stats_table_and_json(corpus_dir, capsys):
    rc, out, _ = run_cli(capsys, "data", "stats", corpus_dir / "train.jsonl")
    assert rc == 0
    values = {line.rsplit(None, 1)[0]: line.split()[-1] for line in out.splitlines() if not line.startswith(" ")}
    assert values["documents"] == "300" and values["labels"] == "40" and values["labels with docs"] == "40"
    assert "labels by document count" in out
    rc, out, _ = run_cli(capsys, "data", "stats", corpus_dir / "train.jsonl", "--json")
    assert rc == 0
    stats = json.loads(out)
    train = read_dataset(corpus_dir / "train.jsonl")
    assert stats["documents"] == 300 and stats["labels"] == 40
    assert stats["labels_per_doc_mean"] == pytest.approx(train.Y.nnz / 300)
    assert sum(stats["label_count_histogram"].values()) == 40
    assert "features" not in stats


def test_data_stats_xc_and_custom_fields(xc_dir, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "data", "stats", xc_dir / "train.txt", "--json")
    assert rc == 0
    stats = json.loads(out)
    assert stats["documents"] == 400 and stats["labels"] == 20 and stats["features"] == 200
    # JSONL options are refused for an XC file with one clear line.
    assert_error_line(capsys, ["data", "stats", xc_dir / "train.txt", "--text-field", "body"], "JSONL")
    custom = tmp_path / "custom.jsonl"
    custom.write_text('{"body": "a b", "tags": ["x", "y"]}\n{"body": "c", "tags": ["x"]}\n')
    rc, out, _ = run_cli(capsys, "data", "stats", custom, "--json", "--text-field", "body", "--labels-field", "tags")
    assert rc == 0
    stats = json.loads(out)
    assert stats["documents"] == 2 and stats["labels"] == 2 and stats["labels_per_doc_max"] == 2


# ---- config ------------------------------------------------------------------------
def test_config_prints_full_default_that_round_trips(capsys):
    rc, out, err = run_cli(capsys, "config", "xr-linear")
    assert rc == 0
    data = json.loads(out)
    assert set(data) == {"features", "normalize_data_features", "indexers", "trees_per_indexer", "train", "predict",
                         "n_threads"}
    assert data["trees_per_indexer"] == "auto" and data["train"]["weight_threshold"] == "auto"
    assert data["indexers"][0]["pifa_normalize_labels"] == "auto"
    assert "0.05 below 8,192 labels" in err and "2 from 50,000 to under 500,000 labels" in err  # what "auto" stands for
    assert "pifa_normalize_labels: false at every size" in err
    assert XRLinearConfig.from_dict(data) == XRLinearConfig()
    assert data == XRLinearConfig().to_dict()


def test_config_list(capsys):
    for argv in (["config", "--list"], ["config"]):
        rc, out, _ = run_cli(capsys, *argv)
        assert rc == 0 and "xr-linear" in out.split()


def test_printed_config_is_accepted_by_train(corpus_dir, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "config", "xr-linear")
    full = json.loads(out)
    full["features"]["min_df"] = 1
    full["indexers"] = [{**full["indexers"][0], "branching": 4, "max_leaf_size": 10}]
    (tmp_path / "full.json").write_text(json.dumps(full))
    rc, out, _ = run_cli(capsys, "train", "--model", "xr-linear", "--train", corpus_dir / "train.jsonl",
                         "--out", tmp_path / "m", "--config", tmp_path / "full.json")
    assert rc == 0
    model = XRLinear.load(tmp_path / "m")
    # The model saves the config it trained with: the printed one with its "auto" values resolved.
    assert model.config == XRLinearConfig.from_dict(full).resolved(LabelSpace(40, 15))[0]
    assert model.config.train.weight_threshold == 0.05 and model.config.trees_per_indexer == 1
    assert model.config.train.C == 1.0  # the median label has 15 training documents
    # Before training, train states what the training labels made "auto" choose.
    assert ("40 labels, median 15 training documents per label: train.weight_threshold=0.05 (auto), "
            "train.C=1.0 (auto), "
            "indexers.pifa_normalize_labels=false "
            "(auto), trees_per_indexer=1 (auto)") in out


# ---- errors ------------------------------------------------------------------------
def test_error_missing_train_file(tmp_path, capsys):
    assert_error_line(capsys, ["train", "--model", "xr-linear", "--train", tmp_path / "nope.jsonl",
                               "--out", tmp_path / "m"], "nope.jsonl", "No such file")
    assert not (tmp_path / "m").exists()


def test_error_malformed_jsonl_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x y", "labels": ["a"]}\n{"id": "b", "text": "z", "labels": ["b"]}\n'
                   '{"id": "c", "text": oops}\n')
    assert_error_line(capsys, ["train", "--model", "xr-linear", "--train", bad, "--out", tmp_path / "m"],
                      "bad.jsonl, line 3", "invalid JSON")


def test_error_unknown_model(corpus_dir, tmp_path, capsys):
    assert_error_line(capsys, ["train", "--model", "xr-nonlinear", "--train", corpus_dir / "train.jsonl",
                               "--out", tmp_path / "m"], "unknown model 'xr-nonlinear'", "xr-linear")
    assert_error_line(capsys, ["config", "xr-nonlinear"], "unknown model 'xr-nonlinear'")


def test_error_config_unknown_key(corpus_dir, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"features": {"min_df": 1, "min_dff": 2}}))
    line = assert_error_line(capsys, ["train", "--model", "xr-linear", "--train", corpus_dir / "train.jsonl",
                                      "--out", tmp_path / "m", "--config", cfg], "'min_dff'", "valid keys")
    assert "cfg.json: features: unknown key" in line


def test_error_config_bad_value_and_bad_json(corpus_dir, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"indexers": [{"branching": 3}]}))
    argv = ["train", "--model", "xr-linear", "--train", corpus_dir / "train.jsonl", "--out", tmp_path / "m",
            "--config", cfg]
    assert_error_line(capsys, argv, "branching", "power of two")
    cfg.write_text('{"n_threads": "4"}')
    assert_error_line(capsys, argv, "n_threads", "expected an integer")
    cfg.write_text('{\n"features": \n')
    assert_error_line(capsys, argv, "cfg.json, line 3", "invalid JSON")


def test_error_unknown_flag_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "xr-linear", "--train", "t.jsonl", "--out", "m", "--frobnicate"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xmc: error: unrecognized arguments: --frobnicate")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "xr-linear"])
    assert info.value.code == 2
    assert "required: --train, --out" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--topk", "0"), ("--topk", "-3"), ("--beam-size", "0"),
                                         ("--beam-size", "x")])
def test_error_predict_needs_positive_ints(trained, capsys, flag, value):
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", str(trained / "model"), "--input", str(trained / "test.jsonl"),
              "--out", str(trained / "never.jsonl"), flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "positive integer" in err
    assert not (trained / "never.jsonl").exists()


def test_error_predict_not_a_model(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_error_line(capsys, ["predict", "--model", tmp_path / "empty", "--input", trained / "test.jsonl",
                               "--out", tmp_path / "p.jsonl"], "empty", "not an xmc model directory")
    assert_error_line(capsys, ["predict", "--model", tmp_path / "absent", "--input", trained / "test.jsonl",
                               "--out", tmp_path / "p.jsonl"], "absent", "not a model directory")
    assert not (tmp_path / "p.jsonl").exists()


def test_error_evaluate_missing_document(trained, tmp_path, capsys):
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(line + "\n" for line in (trained / "pred.jsonl").read_text().splitlines()[:70]))
    assert_error_line(capsys, ["evaluate", "--truth", trained / "test.jsonl", "--pred", partial],
                      "partial.jsonl", "no prediction for 10 document(s)", "doc370")


def test_error_evaluate_missing_prediction_file(trained, tmp_path, capsys):
    assert_error_line(capsys, ["evaluate", "--truth", trained / "test.jsonl", "--pred", tmp_path / "none.jsonl"],
                      "none.jsonl", "No such file")


# ---- atomic model directory --------------------------------------------------------
def test_failed_training_leaves_no_directory(corpus_dir, tmp_path, capsys):
    cfg = tmp_path / "given.json"
    cfg.write_text(json.dumps({"features": {"min_df": 1}, "indexers": [{"label_repr": "given"}]}))
    out_parent = tmp_path / "models"
    out_parent.mkdir()
    assert_error_line(capsys, ["train", "--model", "xr-linear", "--train", corpus_dir / "train.jsonl",
                               "--out", out_parent / "model", "--config", cfg], "label_repr 'given'")
    assert os.listdir(out_parent) == []


def test_failure_while_saving_keeps_the_old_model(trained, tmp_path, monkeypatch):
    from xmc.ranker import hierarchy

    target = tmp_path / "model"
    shutil.copytree(trained / "model", target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def broken_save(self, directory):
        os.makedirs(directory, exist_ok=True)
        Path(directory, "partial.npz").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hierarchy.HierarchicalLinear, "save", broken_save)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        rc = main(["train", "--model", "xr-linear", "--train", str(trained / "train.jsonl"), "--out", str(target),
                   "--config", str(trained / "cfg.json"), "--overwrite"])
    assert rc == 1 and stderr.getvalue().splitlines()[-1] == "xmc: error: No space left on device"
    assert os.listdir(tmp_path) == ["model"]  # no temporary sibling left behind
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before


# ---- demo --------------------------------------------------------------------------
def test_demo_writes_model_predictions_and_metrics(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    rc, out, _ = run_cli(capsys, "demo", "--out", out_dir)
    assert rc == 0
    assert "synthetic corpus: 2000 train / 500 test documents" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["P@1"] > 0.6 and "PSP@5" in metrics and "micro_f1" in metrics
    rows = read_jsonl_rows(out_dir / "predictions.jsonl")
    assert len(rows) == 500
    assert all(1 <= len(row["labels"]) <= 10 for row in rows)
    model = load_model(out_dir / "model")
    assert isinstance(model, XRLinear) and len(model.labels_.names) == 200 and len(model.trees_) == 3


# ---- real subprocesses -------------------------------------------------------------
def _xmc_command() -> list[str]:
    script = Path(sys.executable).with_name("xmc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "xmc.cli.main"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def test_subprocess_help_and_bad_arguments():
    done = subprocess.run([*_xmc_command(), "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: xmc")
    for command in ("train", "predict", "evaluate", "demo"):
        assert command in done.stdout

    done = subprocess.run([*_xmc_command(), "predict", "--bogus-flag"], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmc: error: ") and "Traceback" not in done.stderr


def test_subprocess_data_error_exit_code(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "labels": "not-a-list", "text": "x"}\n')
    done = subprocess.run([*_xmc_command(), "data", "stats", str(bad)], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(f"xmc: error: {bad}, line 1") and "Traceback" not in done.stderr


def test_subprocess_closed_stdout_gives_no_traceback():
    """``xmc config xr-linear | head -0``: a reader that goes away early is no error worth a traceback."""
    proc = subprocess.Popen([*_xmc_command(), "config", "xr-linear"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # before the child writes anything (it is still importing)
    _, err = proc.communicate(timeout=120)
    assert err.decode() == ""  # no traceback, and no error line either: like other Unix tools
    assert proc.returncode == 141


def test_prune_writes_a_smaller_model_equal_to_training_at_that_threshold(trained, capsys):
    """A float32 model pruned to a threshold and rounded to int8 is the default (int8) model trained
    at that threshold."""
    root = trained
    for name, train in (("model32", {"weight_dtype": "float32"}), ("model03", {"weight_threshold": 0.3})):
        (root / f"cfg-{name}.json").write_text(json.dumps(dict(CONFIG, train=train)))
        run_quiet("train", "--model", "xr-linear", "--train", root / "train.jsonl", "--out", root / name,
                  "--config", root / f"cfg-{name}.json")
    rc, out, _ = run_cli(capsys, "prune", "--model", root / "model32", "--weight-threshold", "0.3",
                         "--weight-dtype", "int8", "--out", root / "pruned")
    assert rc == 0 and "weights kept (|w| > 0.3), stored as int8" in out
    pruned, direct = load_model(root / "pruned"), load_model(root / "model03")
    assert pruned.config == direct.config
    texts = read_dataset(root / "test.jsonl")
    assert (pruned.predict(texts) != direct.predict(texts)).nnz == 0
    assert sum(W.nnz for W in pruned.trees_[0].weights) < sum(W.nnz for W in load_model(root / "model").trees_[0].weights)
    # Below the trained threshold, to wider weights, with nothing to do, onto an existing model: one line each.
    assert_error_line(capsys, ["prune", "--model", root / "pruned", "--weight-threshold", "0.05", "--out",
                               root / "p2"], "below the 0.3")
    assert_error_line(capsys, ["prune", "--model", root / "pruned", "--weight-dtype", "float32", "--out",
                               root / "p2"], "wider than the model's int8")
    assert_error_line(capsys, ["prune", "--model", root / "pruned", "--out", root / "p2"], "--weight-dtype")
    assert_error_line(capsys, ["prune", "--model", root / "model", "--weight-threshold", "0.3", "--out",
                               root / "pruned"], "pruned")
    assert not (root / "p2").exists()
