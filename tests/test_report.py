"""``xmc report`` and ``xmc data stats --plot/--html``: the figures' data equal xmc.metrics, the page is
valid self-contained HTML with every image, identical inputs give identical bytes."""

from __future__ import annotations

import base64
import html.parser
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xmc.cli.main import main
from xmc.data import LabelVocabulary, read_dataset, write_predictions
from xmc.metrics import (
    evaluate,
    frequency_groups,
    group_report,
    jain_propensity,
    micro_prf,
    ndcg_at_k,
    precision_at_k,
    psprecision_at_k,
    recall_at_k,
    threshold_scores,
)
from xmc.models.persistence import write_labels, write_manifest
from xmc.report.data import Run, calibration, long_tail, ranking_curves, report_data, top_errors

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")


# ---- a small problem ------------------------------------------------------------------
def _problem(seed: int = 0, n: int = 40, L: int = 12):
    rng = np.random.default_rng(seed)
    Y = sp.csr_matrix((rng.random((n, L)) < 0.25).astype(np.float32))
    S = rng.random((n, L)).astype(np.float32) + 0.5 * Y.toarray()  # informative scores
    S /= S.max()
    keep = np.argsort(-S, axis=1)[:, :6]  # six labels listed per document
    mask = np.zeros_like(S, dtype=bool)
    np.put_along_axis(mask, keep, True, axis=1)
    scores = sp.csr_matrix(np.where(mask, S, 0.0).astype(np.float32))
    counts = np.array([300, 150, 90, 40, 20, 12, 8, 5, 3, 2, 1, 0])
    return Run(name="a", Y_true=Y, scores=scores, label_names=[f"l{j}" for j in range(L)],
               train_counts=counts, n_train_docs=400)


def test_curves_equal_xmc_metrics():
    run = _problem()
    curves = ranking_curves(run, ks=range(1, 21))
    prop = jain_propensity(run.train_counts, run.n_train_docs)
    ks = list(range(1, 21))  # beyond the six listed labels too
    expected = {"P": precision_at_k(run.Y_true, run.scores, ks), "R": recall_at_k(run.Y_true, run.scores, ks),
                "nDCG": ndcg_at_k(run.Y_true, run.scores, ks),
                "PSP": psprecision_at_k(run.Y_true, run.scores, ks, propensities=prop)}
    for key, values in expected.items():
        assert curves[key] == pytest.approx([values[k] for k in ks]), key
    assert curves["P"][0] > curves["P"][-1] > 0 and curves["R"][-1] > curves["R"][0]


@pytest.mark.parametrize("threshold", [None, 0.6])
def test_group_bars_and_calibration_equal_xmc_metrics(threshold):
    run = _problem()
    run.threshold = threshold
    bounds = (1, 10, 100)
    data = report_data([run], run.train_counts, bounds=bounds)["runs"][0]
    used = threshold if threshold is not None else float(run.scores.data.min())
    predicted = threshold_scores(run.scores, used)
    expected = group_report(run.Y_true, predicted, run.train_counts, bounds)
    assert [g["name"] for g in data["groups"]] == [g["name"] for g in expected]
    for got, want in zip(data["groups"], expected):
        for key in ("micro_f1", "macro_f1", "n_labels"):
            assert got[key] == pytest.approx(want[key], nan_ok=True)
    p, r, _ = micro_prf(run.Y_true, predicted)
    cal = data["calibration"]
    assert cal["threshold"] == used
    assert (cal["precision_at"], cal["recall_at"]) == (pytest.approx(p), pytest.approx(r))
    # Every point of the precision / recall curve is micro P / R at that threshold.
    for t, cp, cr in list(zip(cal["thresholds"], cal["precision"], cal["recall"]))[::17]:
        mp, mr, _ = micro_prf(run.Y_true, threshold_scores(run.scores, t))
        assert (cp, cr) == (pytest.approx(mp), pytest.approx(mr))
    summary = evaluate(run.Y_true, run.scores, ks=(1, 3, 5), propensities=run.propensities(), threshold=used)
    assert data["summary"] == pytest.approx(summary)


def test_reliability_bins_and_top_errors_by_hand():
    Y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    S = sp.csr_matrix(np.array([[0.95, 0.9, 0.15], [0.05, 0.5, 0.45]], dtype=np.float32))
    run = Run(name="x", Y_true=Y, scores=S, label_names=["a", "b", "c"], train_counts=np.array([5, 1, 0]),
              n_train_docs=10, threshold=0.4, label_texts=["alpha", "beta", "gamma"])
    cal = calibration(run, n_bins=2)
    # bin [0, 0.5): 0.15 (true), 0.05 (false), 0.45 (false); bin [0.5, 1]: 0.95 (true), 0.9 (false), 0.5 (true)
    np.testing.assert_array_equal(cal["bins"]["count"], [3, 3])
    np.testing.assert_allclose(cal["bins"]["precision"], [1 / 3, 2 / 3])
    np.testing.assert_allclose(cal["bins"]["mean_score"], [(0.15 + 0.05 + 0.45) / 3, (0.95 + 0.9 + 0.5) / 3])
    # at 0.4: predicted a, b (doc 0), b, c (doc 1): a and b right; c missed twice? no: c true in doc 0 only.
    errors = top_errors(run)
    assert errors["missed"] == [{"label": "c", "text": "gamma", "missed": 1, "test_count": 1, "train_count": 0}]
    assert errors["wrong"] == [{"label": "b", "text": "beta", "wrong": 1, "predicted": 2, "train_count": 1},
                               {"label": "c", "text": "gamma", "wrong": 1, "predicted": 1, "train_count": 0}]


def test_long_tail_groups():
    counts = np.array([0, 1, 1, 5, 99, 100, 2500, 0])
    tail = long_tail(counts, bounds=(1, 100, 1000))
    np.testing.assert_array_equal(tail["counts"], [2500, 100, 99, 5, 1, 1])
    assert tail["unseen"] == 2
    sizes = {name: len(idx) for name, idx in frequency_groups(counts, (1, 100, 1000)) if name != "unseen"}
    assert {g["name"]: g["n_labels"] for g in tail["groups"]} == sizes == {"[1,100)": 4, "[100,1000)": 1,
                                                                          "[1000,inf)": 1}


# ---- the command line -----------------------------------------------------------------
class _Checker(html.parser.HTMLParser):
    """Balanced tags, and every <img> collected."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors, self.tags = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def check_page(text: str, n_images: int) -> list[ET.Element]:
    """Valid, self-contained HTML: balanced tags, no script, no external resource, ``n_images`` SVG images."""
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert "script" not in checker.tags
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert len(checker.images) == n_images
    svgs = []
    for image in checker.images:
        assert image.get("alt")
        prefix = "data:image/svg+xml;base64,"
        assert image["src"].startswith(prefix)
        root = ET.fromstring(base64.b64decode(image["src"][len(prefix):]))
        assert root.tag.endswith("svg")
        svgs.append(root)
    return svgs


def _write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """train / test JSONL, two prediction files (one with a label unknown to the data) and a model dir."""
    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(1)
    names = [f"L{j}" for j in range(15)]
    weights = 1.0 / np.arange(1, 16)

    def docs(n, prefix):
        return [{"id": f"{prefix}{i}", "text": "some words",
                 "labels": sorted(set(rng.choice(names, size=rng.integers(1, 4), p=weights / weights.sum())))}
                for i in range(n)]

    _write_jsonl(d / "train.jsonl", docs(120, "tr"))
    test = docs(30, "te")
    _write_jsonl(d / "test.jsonl", test)
    ids = [doc["id"] for doc in test]
    vocab = names + ["NEVER-SEEN"]
    for name, noise in (("good", 0.3), ("poor", 1.5)):
        scores = rng.random((30, len(vocab))) * noise
        for i, doc in enumerate(test):
            scores[i, [vocab.index(label) for label in doc["labels"]]] += 1.0
        scores /= scores.max()
        top = np.argsort(-scores, axis=1)[:, :5]
        write_predictions(d / f"{name}.jsonl", ids, vocab, top, np.take_along_axis(scores, top, axis=1))
    os.makedirs(d / "model")
    write_manifest(str(d / "model"), "xr-linear", {"indexers": [{"branching": 2}]})
    write_labels(str(d / "model"), vocab)
    (d / "labels.json").write_text(json.dumps({"L0": "the most common label"}), encoding="utf-8")
    return d


def _report(capsys, files, out, *extra):
    rc = main(["report", "--truth", str(files / "test.jsonl"), "--train", str(files / "train.jsonl"),
               "--pred", str(files / "good.jsonl"), "--model", str(files / "model"), "--name", "Good <model>",
               "--pred", str(files / "poor.jsonl"), "--label-text", str(files / "labels.json"),
               "--out", str(out), *extra])
    return rc, *capsys.readouterr()


def test_report_holds_both_runs_and_is_deterministic(capsys, files, tmp_path):
    rc, out, err = _report(capsys, files, tmp_path / "r.html")
    assert rc == 0, err
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would, not 0600
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    svgs = check_page(text, n_images=4)
    assert "Good &lt;model&gt;" in text and "<model>" not in text  # names are escaped
    assert text.count("<th>Good &lt;model&gt;</th>") == 1 and text.count("<th>poor</th>") == 1
    legend_text = ["".join(svg.itertext()) for svg in svgs]
    assert all("Good <model>" in t and "poor" in t for t in legend_text[1:])  # curves, groups, calibration
    assert "xr-linear" in text and "the most common label" in text and "xmc report --truth" in text
    # P@1 of each file, as `xmc evaluate` computes it, is in the results table.
    for name in ("good", "poor"):
        rc = main(["evaluate", "--truth", str(files / "test.jsonl"), "--train", str(files / "train.jsonl"),
                   "--pred", str(files / f"{name}.jsonl"), "--json"])
        p1 = json.loads(capsys.readouterr()[0])["P@1"]
        assert f"<td>{100 * p1:.2f}</td>" in text or f'<td class="best">{100 * p1:.2f}</td>' in text
    # Same inputs (the same command), same bytes.
    (tmp_path / "r.html").rename(tmp_path / "first.html")
    rc, _, err = _report(capsys, files, tmp_path / "r.html")
    assert rc == 0, err
    assert (tmp_path / "r.html").read_bytes() == (tmp_path / "first.html").read_bytes()


def test_report_never_overwrites_without_the_flag(capsys, files, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("mine", encoding="utf-8")
    rc, _, err = _report(capsys, files, out)  # a user's file: refused, --overwrite or not
    assert rc == 2 and "not an xmc report or figure" in err and "Traceback" not in err
    assert out.read_text(encoding="utf-8") == "mine"
    out.unlink()
    assert _report(capsys, files, out)[0] == 0
    page = out.read_bytes()
    rc, _, err = _report(capsys, files, out)  # an xmc report: replaced only with --overwrite
    assert rc == 2 and "pass --overwrite" in err and out.read_bytes() == page


def test_report_argument_errors(capsys, files, tmp_path):
    with pytest.raises(SystemExit) as exit_info:  # argparse's error: one line, exit 2
        main(["report", "--truth", str(files / "test.jsonl"), "--model", str(files / "model"),
              "--pred", str(files / "good.jsonl"), "--out", str(tmp_path / "r.html")])
    assert exit_info.value.code == 2 and "after the --pred it belongs to" in capsys.readouterr()[1]
    rc = main(["report", "--truth", str(files / "test.jsonl"), "--pred", str(files / "good.jsonl"),
               "--bounds", "10,5", "--out", str(tmp_path / "r.html")])
    assert rc == 2 and "--bounds" in capsys.readouterr()[1]
    assert not (tmp_path / "r.html").exists()


def test_data_stats_plot_and_html(capsys, files, tmp_path):
    rc = main(["data", "stats", str(files / "train.jsonl"), "--json", "--plot", str(tmp_path / "s.png"),
               "--html", str(tmp_path / "s.html")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["documents"] == 120  # stdout stays JSON
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check_page((tmp_path / "s.html").read_text(encoding="utf-8"), n_images=2)
    png = (tmp_path / "s.png").read_bytes()
    rc = main(["data", "stats", str(files / "train.jsonl"), "--plot", str(tmp_path / "s.png")])
    assert rc == 2 and "--overwrite" in capsys.readouterr()[1]
    rc = main(["data", "stats", str(files / "train.jsonl"), "--plot", str(tmp_path / "s.png"), "--overwrite"])
    assert rc == 0 and (tmp_path / "s.png").read_bytes() == png
    rc = main(["data", "stats", str(files / "train.jsonl"), "--plot", str(tmp_path / "s.pdf")])
    assert rc == 2 and ".png or .svg" in capsys.readouterr()[1]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(capsys, files, tmp_path):
    """The page renders in a real browser with no console message; the screenshot is not blank."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    PIL = pytest.importorskip("PIL.Image")
    rc, _, err = _report(capsys, files, tmp_path / "r.html")
    assert rc == 0, err
    shot = tmp_path / "shot.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--screenshot={shot}", "--window-size=1200,3000",
                           (tmp_path / "r.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    image = np.asarray(PIL.open(shot).convert("L"))
    assert image.shape == (3000, 1200)
    # The figures are drawn: many rows of the page hold non-white pixels, in more than a few grey levels.
    assert (image < 200).any(axis=1).mean() > 0.3 and len(np.unique(image)) > 50


def test_runs_with_and_without_unseen_labels_get_the_same_groups():
    """group_report lists "unseen" only when non-empty: the runs' bars must still line up by group."""
    a = _problem()
    a.train_counts = a.train_counts + 1  # no label unseen in training
    b = _problem(seed=2)  # its last label has training count 0
    data = report_data([a, b], a.train_counts, bounds=(1, 10, 100))
    names = [[g["name"] for g in run["groups"]] for run in data["runs"]]
    assert names[0] == names[1] == ["unseen", "[1,10)", "[10,100)", "[100,inf)"]
    assert data["runs"][0]["groups"][0]["n_labels"] == 0 and np.isnan(data["runs"][0]["groups"][0]["micro_f1"])
    expected = group_report(b.Y_true, b.predicted(), b.train_counts, (1, 10, 100))
    assert [g["micro_f1"] for g in data["runs"][1]["groups"]] == pytest.approx([g["micro_f1"] for g in expected])


def test_report_refuses_a_model_that_did_not_make_the_predictions(capsys, files, tmp_path):
    other = tmp_path / "other-model"
    shutil.copytree(files / "model", other)
    write_labels(str(other), [f"L{j}" for j in range(15)])  # without NEVER-SEEN, which good.jsonl predicts
    out = tmp_path / "r.html"
    rc = main(["report", "--truth", str(files / "test.jsonl"), "--pred", str(files / "good.jsonl"),
               "--model", str(other), "--out", str(out)])
    err = capsys.readouterr()[1]
    assert rc == 2 and "label(s) this model does not have (e.g. 'NEVER-SEEN')" in err and not out.exists()
