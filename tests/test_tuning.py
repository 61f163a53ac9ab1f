"""xmc.tuning and `xmc tune`: grids, folds, the shared-feature shortcut against plain training, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmc.cli.main import main
from xmc.data.split import train_valid_rows
from xmc.datasets.synthetic import make_corpus
from xmc.errors import ConfigError
from xmc.metrics import ranking_report, train_propensities
from xmc.models.xr_linear import XRLinear, XRLinearConfig
from xmc.tuning import candidate_configs, fold_rows, metric_key, parse_grid, tune

from test_cli import assert_error_line, run_cli, write_jsonl

BASE = {"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]}


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_train=240, n_test=10, n_labels=30, seed=3).train


@pytest.fixture(scope="module")
def base_config():
    return XRLinearConfig.from_dict(BASE)


def test_parse_grid_reads_values_as_json():
    assert parse_grid(["train.C=0.5,1,2", "features.fields=title"]) == {
        "train.C": [0.5, 1, 2], "features.fields": ["title"]}


@pytest.mark.parametrize("spec", ["train.C", "=1", "train.C="])
def test_parse_grid_refuses_a_malformed_spec(spec):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_grid([spec])


def test_parse_grid_refuses_a_key_given_twice():
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["train.C=1", "train.C=2"])


def test_candidates_are_every_combination_in_grid_order(base_config):
    cands = candidate_configs(base_config, {"train.C": [0.5, 2.0], "indexers.seed": [0, 7]})
    assert [o for o, _ in cands] == [{"train.C": 0.5, "indexers.seed": 0}, {"train.C": 0.5, "indexers.seed": 7},
                                     {"train.C": 2.0, "indexers.seed": 0}, {"train.C": 2.0, "indexers.seed": 7}]
    assert [(c.train.C, c.indexers[0].seed) for _, c in cands] == [(0.5, 0), (0.5, 7), (2.0, 0), (2.0, 7)]
    # the base's other settings are kept
    assert all(c.indexers[0].branching == 2 and c.features.min_df == 1 for _, c in cands)


def test_a_grid_key_through_indexers_sets_every_tree():
    base = XRLinearConfig.from_dict({"indexers": [{"seed": 0}, {"seed": 1}]})
    [(_, config)] = candidate_configs(base, {"indexers.max_leaf_size": [7]})
    assert [ix.max_leaf_size for ix in config.indexers] == [7, 7]


def test_candidates_refuse_unknown_keys_and_bad_values(base_config):
    with pytest.raises(ConfigError, match="no config field 'Cx'"):
        candidate_configs(base_config, {"train.Cx": [1]})
    with pytest.raises(ConfigError, match=r"train\.C=-1.*must be positive"):
        candidate_configs(base_config, {"train.C": [-1]})


def test_one_split_is_the_library_split_and_folds_partition_the_rows():
    [(train, valid)] = fold_rows(50, 1, 0.2, seed=4)
    expected = train_valid_rows(50, 0.2, 4)
    assert np.array_equal(train, expected[0]) and np.array_equal(valid, expected[1])
    folds = fold_rows(50, 5, seed=4)
    assert len(folds) == 5
    held_out = np.concatenate([valid for _, valid in folds])
    assert np.array_equal(np.sort(held_out), np.arange(50))  # every row held out exactly once
    assert all(not set(train) & set(valid) and len(train) + len(valid) == 50 for train, valid in folds)


def test_metric_names_match_case_insensitively():
    assert metric_key("ndcg@5") == "nDCG@5" and metric_key("psp@3") == "PSP@3"
    with pytest.raises(ConfigError, match="not one of"):
        metric_key("F1@5")


@pytest.mark.parametrize("key, values", [("train.C", [0.5, 2.0]),  # features shared by the candidates
                                         ("features.min_df", [1, 3])])  # features computed per candidate
def test_a_candidate_scores_what_training_it_alone_scores(corpus, base_config, key, values):
    """Each candidate's validation metrics are those of a plain fit of its config on the fold."""
    result = tune(corpus, {key: values}, config=base_config, folds=1, valid_fraction=0.25, seed=1, progress=False)
    train_rows, valid_rows = train_valid_rows(len(corpus), 0.25, 1)
    train, valid = corpus.subset(train_rows), corpus.subset(valid_rows)
    propensities = train_propensities(train.label_counts(), len(train), corpus.Y.shape[1])
    assert result.candidates[0].scores != result.candidates[1].scores  # the grid changed the model
    for candidate, (_, config) in zip(result.candidates, candidate_configs(base_config, {key: values})):
        model = XRLinear(config).fit(train, progress=False)
        expected = ranking_report(valid.Y, model.predict(valid, topk=5), propensities=propensities)
        for key, value in expected.items():
            assert candidate.scores[key] == pytest.approx(value, abs=1e-12), key


def test_a_given_validation_set_scores_like_the_same_split(corpus, base_config):
    train_rows, valid_rows = train_valid_rows(len(corpus), 0.25, 2)
    grid = {"train.C": [0.5, 2.0]}
    split = tune(corpus, grid, config=base_config, folds=1, valid_fraction=0.25, seed=2, progress=False)
    given = tune(corpus.subset(train_rows), grid, config=base_config, valid=corpus.subset(valid_rows), progress=False)
    assert [c.scores for c in given.candidates] == [c.scores for c in split.candidates]
    with pytest.raises(ConfigError, match="not both"):
        tune(corpus, grid, valid=corpus, folds=2, progress=False)


def test_the_best_is_the_highest_metric_and_a_tie_goes_to_the_first(corpus, base_config):
    # C 1e-4 leaves every classifier close to zero: far worse than C 1 on a learnable corpus.
    result = tune(corpus, {"train.C": [1e-4, 1.0, 1.0]}, config=base_config, metric="P@1", folds=3,
                  progress=False)
    p1 = [c.scores["P@1"] for c in result.candidates]
    assert p1[1] > p1[0] + 0.1
    # Its weights are all under the threshold: a model `xmc train` refuses, scored 0, not a crash.
    assert set(result.candidates[0].scores.values()) == {0.0}
    assert p1[1] == p1[2] and result.best == 1  # identical candidates: the first wins
    assert result.config.train.C == 1.0 and result.folds == 3 and not result.tied
    lines = result.table().splitlines()
    assert lines[0].split()[:2] == ["candidate", "P@1"] and len(lines) == 4
    assert lines[2].startswith("* train.C=1.0") and not lines[3].startswith("*")
    assert len({len(line) for line in lines}) == 1  # aligned columns
    for line, c in zip(lines[1:], result.candidates):
        assert line.split()[-6] == f"{100 * c.scores['P@1']:.2f}"


# ---- the CLI ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("tune")
    write_jsonl(root / "train.jsonl", corpus)
    (root / "base.json").write_text(json.dumps(BASE))
    return root


def test_cli_tune_writes_the_best_config_for_train(corpus_files, capsys, tmp_path):
    out = tmp_path / "tuned.json"
    rc, stdout, _ = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--config",
                            corpus_files / "base.json", "--grid", "train.C=0.0001,1", "--folds", "2",
                            "--metric", "p@1", "--out", out, "-q")
    assert rc == 0
    assert "2 candidate(s) x 2 folds of 240 documents = 4 fits; best by validation P@1" in stdout
    assert "* train.C=1" in stdout
    tuned = XRLinearConfig.from_json(out)
    assert tuned.train.C == 1 and tuned.indexers[0].branching == 2  # the base config, changed by the grid
    # the written config trains
    rc, _, _ = run_cli(capsys, "train", "--model", "xr-linear", "--train", corpus_files / "train.jsonl",
                       "--config", out, "--out", tmp_path / "model", "-q")
    assert rc == 0
    # its own earlier output is replaced only with --overwrite
    assert_error_line(capsys, ["tune", "--train", corpus_files / "train.jsonl", "--out", out, "--folds", "2"],
                      "--overwrite")


def test_cli_tune_never_replaces_a_file_it_did_not_write(corpus_files, capsys, tmp_path):
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert_error_line(capsys, ["tune", "--train", corpus_files / "train.jsonl", "--out", notes, "--overwrite"],
                      "not an xmc xr-linear config file")
    assert notes.read_text() == '{"mine": 1}'
    assert_error_line(capsys, ["tune", "--train", corpus_files / "train.jsonl", "--out",
                               corpus_files / "train.jsonl", "--overwrite"], "input --train")


def test_cli_tune_on_a_given_validation_file(corpus_files, capsys, tmp_path, corpus):
    write_jsonl(tmp_path / "valid.jsonl", corpus.subset(np.arange(40)))
    rc, stdout, _ = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--config",
                            corpus_files / "base.json", "--grid", "train.C=1", "--valid", tmp_path / "valid.jsonl",
                            "--out", tmp_path / "t.json", "-q")
    assert rc == 0 and "1 candidate(s) x 240 documents, scored on the 40 of" in stdout and "= 1 fits" in stdout
    assert "note:" not in stdout  # one candidate has nothing to be told apart from
    assert_error_line(capsys, ["tune", "--train", corpus_files / "train.jsonl", "--valid", tmp_path / "valid.jsonl",
                               "--folds", "3", "--out", tmp_path / "u.json"], "--valid and --folds")


@pytest.mark.parametrize("extra, fragment", [(["--metric", "F1"], "metric 'F1'"),
                                             (["--grid", "train.nope=1"], "no config field 'nope'"),
                                             (["--grid", "train.C"], "KEY=VALUE"),
                                             (["--folds", "1", "--valid-fraction", "1.5"], "--valid-fraction"),
                                             (["--folds", "1000"], "folds must be")])
def test_cli_tune_refuses_a_bad_grid_or_metric_in_one_line(corpus_files, capsys, tmp_path, extra, fragment):
    assert_error_line(capsys, ["tune", "--train", corpus_files / "train.jsonl", "--out", tmp_path / "t.json", *extra],
                      fragment)
    assert not (tmp_path / "t.json").exists()


def test_cli_tune_refuses_too_many_folds_before_it_states_a_plan(corpus_files, capsys, tmp_path):
    rc, stdout, err = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--folds", "241",
                              "--out", tmp_path / "t.json")
    assert rc == 2 and stdout == "" and "between 2 and the number of documents (240), got 241" in err
    rc, stdout, err = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--folds", "1",
                              "--valid-fraction", "0.001", "--out", tmp_path / "t.json")
    assert rc == 2 and stdout == "" and "leaves the validation side empty" in err


def test_cli_tune_says_when_validation_cannot_separate_the_candidates(corpus_files, capsys, tmp_path):
    # two identical candidates always tie: the choice is the grid's order, and the user is told so
    rc, stdout, _ = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--config",
                            corpus_files / "base.json", "--grid", "train.C=1,1", "--folds", "2",
                            "--out", tmp_path / "t.json", "-q")
    assert rc == 0 and "note: every candidate scored" in stdout and "first in grid order is kept" in stdout
    rc, stdout, _ = run_cli(capsys, "tune", "--train", corpus_files / "train.jsonl", "--config",
                            corpus_files / "base.json", "--grid", "train.C=0.0001,1", "--folds", "2",
                            "--out", tmp_path / "u.json", "-q")
    assert rc == 0 and "note:" not in stdout
