"""xmc.progress: plain lines off a terminal, silence under quiet() / --quiet / XMC_QUIET, nothing for short stages."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from xmc.cli import commands
from xmc.cli.main import main
from xmc.progress import is_quiet, progress_bar, quiet


def _run(stream, **kwargs) -> list[str]:
    for _ in progress_bar(range(5), desc="stage", file=stream, delay=0, interval=0, **kwargs):
        pass
    return stream.getvalue().splitlines()


def test_plain_lines_without_carriage_returns_when_not_a_terminal():
    stream = io.StringIO()  # isatty() is False
    lines = _run(stream)
    assert lines and "\r" not in stream.getvalue()
    assert lines[-1].startswith("stage: 5/5 (100%) [")
    assert len(lines) == len(set(lines))  # close() does not repeat the last line


def test_quiet_context_env_and_disable_silence_the_bars(monkeypatch):
    with quiet():
        assert is_quiet()
        assert _run(io.StringIO()) == []
        with quiet(False):  # an inner block can turn them back on
            assert _run(io.StringIO())
    assert not is_quiet()
    assert _run(io.StringIO(), disable=True) == []
    monkeypatch.setenv("XMC_QUIET", "1")
    assert is_quiet() and _run(io.StringIO()) == []


def test_a_stage_shorter_than_the_delay_prints_nothing_and_a_longer_one_its_last_line():
    stream = io.StringIO()
    for _ in progress_bar(range(3), desc="fast", file=stream, delay=10):
        pass
    assert stream.getvalue() == ""
    stream = io.StringIO()
    for _ in progress_bar(range(3), desc="slow", file=stream, delay=0.01, interval=60):
        time.sleep(0.01)
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[-1]]
    assert stream.getvalue().startswith("slow: 3/3 (100%)")


def test_cli_quiet_flag_before_or_after_the_command(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(commands, "print_config", lambda args: seen.append(is_quiet()) or 0)
    assert main(["--quiet", "config", "--list"]) == 0
    assert main(["config", "--list", "-q"]) == 0
    assert main(["config", "--list"]) == 0
    assert seen == [True, True, False]
    assert not is_quiet()  # the switch ended with the command


def test_tfidf_progress_wrapper_still_rejects_a_single_string():
    from xmc.features.tfidf import TfidfFeaturizer

    featurizer = TfidfFeaturizer()
    featurizer.fit_transform(["red apple", "green apple", "red pear"] * 2)
    with pytest.raises(ValueError, match="string object received"):
        featurizer.transform("red apple")
    assert featurizer.transform(["red apple"]).shape == (1, featurizer.n_features)


def test_reading_a_file_with_progress_gives_the_same_dataset(tmp_path):
    import gzip
    import json

    from xmc.data import read_jsonl

    rows = [{"id": str(i), "text": f"doc {i}", "labels": [f"l{i % 7}"]} for i in range(10_000)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "a.jsonl").write_text(text)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write(text)
    plain, packed = read_jsonl(tmp_path / "a.jsonl"), read_jsonl(tmp_path / "a.jsonl.gz")
    assert len(plain) == len(packed) == 10_000 and plain.ids == packed.ids
    assert (plain.Y != packed.Y).nnz == 0
    assert len(read_jsonl(tmp_path / "a.jsonl.gz", max_docs=5000)) == 5000
    np.testing.assert_array_equal(plain.label_counts(), packed.label_counts())


def test_reading_an_xc_file_with_progress(tmp_path):
    import scipy.sparse as sp

    from xmc.data import read_xc_sparse, write_xc_sparse

    rng = np.random.default_rng(0)
    X = sp.random(9000, 30, density=0.1, format="csr", random_state=0, dtype=np.float32)
    Y = sp.csr_matrix((rng.random((9000, 8)) < 0.2).astype(np.float32))
    write_xc_sparse(tmp_path / "a.txt", X, Y)
    ds = read_xc_sparse(tmp_path / "a.txt")
    assert ds.X.shape == (9000, 30) and ds.Y.shape[0] == 9000 and ds.Y.nnz == Y.nnz
