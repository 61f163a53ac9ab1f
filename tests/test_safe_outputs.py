"""What ``--out`` and ``--overwrite`` guarantee, including runs killed with SIGKILL in the middle of a write."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xmc.cli.main import main
from xmc.datasets.synthetic import make_corpus
from xmc.errors import OutputError
from xmc.io import Marker, atomic_directory, check_replaceable, clean_leftovers
from xmc.models.registry import load_model

CONFIG = {"features": {"min_df": 1}, "indexers": [{"branching": 2, "max_leaf_size": 10}]}


def _run(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safe_outputs")
    data = make_corpus(n_train=200, n_test=40, n_labels=20, seed=5)
    for name, ds in (("train", data.train), ("test", data.test)):
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(len(ds)):
                fh.write(json.dumps({"id": ds.ids[i], "text": ds.texts[i], "labels": ds.label_names_of(i)}) + "\n")
    (root / "cfg.json").write_text(json.dumps(CONFIG))
    return root


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_overwrite_replaces_a_model_and_a_prediction_file(corpus, tmp_path):
    model, pred = tmp_path / "model", tmp_path / "pred.jsonl"
    train = ["train", "--model", "xr-linear", "--train", corpus / "train.jsonl", "--config", corpus / "cfg.json",
             "--out", model]
    assert _run(*train)[0] == 0
    first = _tree(model)
    assert _run(*train)[0] == 2 and _tree(model) == first  # refused without --overwrite, untouched
    assert _run(*train, "--overwrite")[0] == 0
    assert set(_tree(model)) == set(first)
    predict = ["predict", "--model", model, "--input", corpus / "test.jsonl", "--out", pred]
    assert _run(*predict)[0] == 0
    assert _run(*predict)[0] == 2
    assert _run(*predict, "--overwrite")[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["model", "pred.jsonl"]  # no temporary sibling left behind


def test_replacing_a_directory_never_leaves_the_path_missing(tmp_path):
    target, marker = tmp_path / "model", Marker("MARK", kind="test")
    with atomic_directory(target, marker=marker) as tmp:
        Path(tmp, "MARK").write_text('{"kind": "test", "n": 1}')
    seen_missing = []
    with atomic_directory(target, overwrite=True, marker=marker) as tmp:
        Path(tmp, "MARK").write_text('{"kind": "test", "n": 2}')
        seen_missing.append(not target.exists())
    assert seen_missing == [False] and json.loads((target / "MARK").read_text())["n"] == 2
    assert os.listdir(tmp_path) == ["model"]


def test_leftovers_of_a_dead_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".model.tmp-{pid}-abc"
    stale.mkdir()
    (stale / "half.npz").write_bytes(b"x")
    alive = tmp_path / f".model.tmp-{os.getppid()}-def"  # a live process's write in progress: kept
    alive.mkdir()
    assert clean_leftovers(tmp_path / "model") == [str(stale)]
    assert not stale.exists() and alive.exists()


# A child process that runs the CLI but stops forever half-way through writing its output, after
# telling the parent (by a file) that it got there; the parent then kills it with SIGKILL.
_CHILD = textwrap.dedent("""
    import sys, time, pathlib
    import xmc.data.readers as readers
    from xmc.ranker import hierarchy
    from xmc.cli.main import main

    ready = pathlib.Path(sys.argv[1])
    original_save = hierarchy.HierarchicalLinear.save

    def save_then_hang(self, directory):
        original_save(self, directory)
        ready.write_text("saving")
        time.sleep(600)

    original_atomic_file = readers.atomic_file

    class HangingWriter:
        def __init__(self, fh):
            self.fh, self.lines = fh, 0
        def write(self, text):
            self.fh.write(text)
            self.lines += 1
            if self.lines == 5:
                self.fh.flush()
                ready.write_text("writing")
                time.sleep(600)

    import contextlib

    @contextlib.contextmanager
    def hanging_atomic_file(path, *args, **kwargs):
        with original_atomic_file(path, *args, **kwargs) as fh:
            yield HangingWriter(fh)

    hierarchy.HierarchicalLinear.save = save_then_hang
    readers.atomic_file = hanging_atomic_file
    sys.exit(main(sys.argv[2:]))
""")


def _kill_mid_write(tmp_path: Path, argv: list) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(ready), *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ready.exists():
        assert proc.poll() is None, "the child ended before it reached the write"
        assert time.time() < deadline, "the child never reached the write"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ready.unlink()


def test_train_killed_mid_write_keeps_the_old_model_and_the_next_run_cleans_up(corpus, tmp_path, caplog):
    out = tmp_path / "models" / "m"
    train = ["train", "--model", "xr-linear", "--train", corpus / "train.jsonl", "--config", corpus / "cfg.json",
             "--out", out]
    assert _run(*train)[0] == 0
    before = _tree(out)
    _kill_mid_write(tmp_path, train + ["--overwrite"])
    assert _tree(out) == before  # the complete old model, untouched
    leftovers = [n for n in os.listdir(out.parent) if n != "m"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".m.tmp-")  # the dead run's partial write, beside it
    rc, _ = _run(*train, "--overwrite")
    assert rc == 0 and "removed 1 leftover(s) of an interrupted write" in caplog.text
    assert os.listdir(out.parent) == ["m"]
    assert load_model(out).labels_.names


def test_train_killed_mid_write_of_a_new_model_leaves_no_model(corpus, tmp_path):
    out = tmp_path / "models" / "new"
    _kill_mid_write(tmp_path, ["train", "--model", "xr-linear", "--train", corpus / "train.jsonl",
                               "--config", corpus / "cfg.json", "--out", out])
    assert not out.exists()  # nothing at the final path: a half-written model never appears there


def test_predict_killed_mid_write_keeps_the_old_predictions(corpus, tmp_path):
    model, pred = tmp_path / "model", tmp_path / "out" / "pred.jsonl"
    assert _run("train", "--model", "xr-linear", "--train", corpus / "train.jsonl", "--config", corpus / "cfg.json",
                "--out", model)[0] == 0
    predict = ["predict", "--model", model, "--input", corpus / "test.jsonl", "--out", pred]
    assert _run(*predict)[0] == 0
    before = pred.read_bytes()
    _kill_mid_write(tmp_path, predict + ["--overwrite"])
    assert pred.read_bytes() == before
    assert len(os.listdir(pred.parent)) == 2  # the old file and the dead run's temporary file
    assert _run(*predict, "--overwrite")[0] == 0
    assert os.listdir(pred.parent) == ["pred.jsonl"] and pred.read_bytes() == before


def test_evaluate_needs_only_ids_and_labels_and_says_where_propensities_come_from(corpus, tmp_path):
    model, pred = tmp_path / "model", tmp_path / "pred.jsonl"
    _run("train", "--model", "xr-linear", "--train", corpus / "train.jsonl", "--config", corpus / "cfg.json",
         "--out", model)
    _run("predict", "--model", model, "--input", corpus / "test.jsonl", "--out", pred)
    truth = tmp_path / "truth.jsonl"
    rows = [json.loads(line) for line in (corpus / "test.jsonl").read_text().splitlines()]
    truth.write_text("".join(json.dumps({"id": r["id"], "labels": r["labels"]}) + "\n" for r in rows))
    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    with contextlib.redirect_stdout(io.StringIO()) as full, contextlib.redirect_stderr(io.StringIO()):
        main(["evaluate", "--truth", str(corpus / "test.jsonl"), "--pred", str(pred), "--json"])
    assert json.loads(out.getvalue()) == json.loads(full.getvalue())  # the texts never mattered
    assert "propensities and frequency groups use the label counts of" in err.getvalue()


def test_repeated_training_ids_are_warned_about(corpus, tmp_path, caplog):
    rows = (corpus / "train.jsonl").read_text().splitlines()
    data = tmp_path / "dup.jsonl"
    data.write_text("\n".join(rows + rows[:1]) + "\n")
    rc, _ = _run("train", "--model", "xr-linear", "--train", data, "--config", corpus / "cfg.json",
                   "--out", tmp_path / "m")
    assert rc == 0 and "1 document id(s) occur more than once" in caplog.text


def test_a_memory_mapped_model_keeps_predicting_after_its_directory_is_replaced(tmp_path):
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    data = make_corpus(n_train=150, n_test=20, n_labels=15, seed=6)
    config = XRLinearConfig.from_dict(CONFIG)
    XRLinear(config).fit(data.train, progress=False).save(tmp_path / "m")
    served = XRLinear.load(tmp_path / "m", mmap=True)
    before = served.predict(data.test, topk=3)
    retrained = XRLinear(config.replace(train=config.train.replace(C=0.5))).fit(data.train, progress=False)
    retrained.save(tmp_path / "m", overwrite=True)  # swapped in; the old files are unlinked, still mapped
    assert (served.predict(data.test, topk=3) != before).nnz == 0
    assert (XRLinear.load(tmp_path / "m").predict(data.test, topk=3) != retrained.predict(data.test, topk=3)).nnz == 0


def test_demo_never_writes_into_a_folder_it_did_not_create(tmp_path):
    mine = tmp_path / "d"
    mine.mkdir()
    (mine / "metrics.json").write_text("mine")
    (mine / "predictions.jsonl").write_text("mine")
    for extra in ([], ["--overwrite"]):
        rc, err = _run("demo", "--out", mine, *extra)
        assert rc == 2 and f"{mine}: a directory that is not an xmc demo output directory" in err
        assert _tree(mine) == {"metrics.json": b"mine", "predictions.jsonl": b"mine"}
    assert os.listdir(tmp_path) == ["d"]  # refused before any work: no temporary sibling either


def test_demo_replaces_its_own_output_only_with_overwrite(tmp_path):
    out = tmp_path / "demo"
    assert _run("demo", "--out", out)[0] == 0
    assert {"xmc_demo.json", "metrics.json", "predictions.jsonl", "model/xmc_model.json"} <= set(_tree(out))
    (out / "metrics.json").write_text("edited")
    rc, err = _run("demo", "--out", out)
    assert rc == 2 and "pass --overwrite" in err and (out / "metrics.json").read_text() == "edited"
    assert _run("demo", "--out", out, "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["P@1"] > 0
    assert os.listdir(tmp_path) == ["demo"]


@pytest.fixture
def no_work(monkeypatch):
    """Make reading data, loading a model or building a corpus fail the test: an output check came too late."""
    import xmc.cli.commands as commands
    import xmc.cli.demo as demo
    import xmc.datasets.sparse as sparse

    def started(*args, **kwargs):
        pytest.fail("the command started its work before refusing --out")

    for module, name in ((commands, "_read"), (commands, "load_model"), (demo, "make_corpus"),
                         (sparse, "make_sparse_problem")):
        monkeypatch.setattr(module, name, started)


def _commands_writing(corpus: Path, out: Path, model: Path) -> dict[str, list]:
    train, test = corpus / "train.jsonl", corpus / "test.jsonl"
    return {
        "train": ["train", "--model", "xr-linear", "--train", train, "--out", out],
        "tune": ["tune", "--train", train, "--out", out],
        "prune": ["prune", "--model", model, "--weight-threshold", "0.1", "--out", out],
        "predict": ["predict", "--model", model, "--input", test, "--out", out],
        "augment": ["augment", "--train", train, "--out", out],
        "data generate": ["data", "generate", "--labels", "20", "--out", out],
        "report": ["report", "--truth", test, "--pred", test, "--out", out],
        "demo": ["demo", "--out", out],
    }


@pytest.mark.parametrize("command", ["train", "tune", "prune", "predict", "augment", "data generate", "report", "demo"])
def test_an_out_under_a_file_is_refused_before_any_work(corpus, tmp_path, no_work, command):
    (tmp_path / "f.txt").write_text("mine")
    out = tmp_path / "f.txt" / "sub" / "out"
    rc, err = _run(*_commands_writing(corpus, out, tmp_path / "model")[command])
    assert rc == 2 and f"{out}: cannot be written: {tmp_path / 'f.txt'} is a file, not a directory" in err
    assert os.listdir(tmp_path) == ["f.txt"] and (tmp_path / "f.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
@pytest.mark.parametrize("command", ["train", "tune", "data generate", "demo"])
def test_an_out_in_a_read_only_folder_is_refused_before_any_work(corpus, tmp_path, no_work, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err = _run(*_commands_writing(corpus, ro / "out", tmp_path / "model")[command])
        assert rc == 2 and f"{ro / 'out'}: cannot be written: the directory {ro} is not writable" in err
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def _special_files(tmp_path: Path) -> dict[str, Path]:
    """A named pipe, a socket, a character device (where this process may make one), an empty file, a link."""
    import socket
    import stat

    made = {"fifo": tmp_path / "fifo", "socket": tmp_path / "sock", "empty": tmp_path / "empty.jsonl",
            "link": tmp_path / "link.jsonl"}
    os.mkfifo(made["fifo"])
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(made["socket"]))
    made["empty"].write_text("")
    made["link"].symlink_to(made["empty"])
    with contextlib.suppress(PermissionError):  # needs CAP_MKNOD; the /dev/null numbers, never /dev/null itself
        os.mknod(tmp_path / "device", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made["device"] = tmp_path / "device"
    return made


@pytest.mark.parametrize("command", ["predict", "tune", "augment", "report"])
def test_only_a_regular_xmc_output_is_replaced_and_a_fifo_is_never_opened(corpus, tmp_path, no_work, command):
    made = _special_files(tmp_path)
    kinds = {p: os.lstat(p).st_mode for p in made.values()}
    # Opening a named pipe blocks until a writer comes: fail the test instead of hanging it (pytest.fail
    # raises past the CLI's `except OSError` / `except Exception`).
    def hung(*_):
        pytest.fail("xmc blocked on a path given as --out")
    previous = signal.signal(signal.SIGALRM, hung)
    try:
        for name, path in made.items():
            signal.alarm(30)
            rc, err = _run(*_commands_writing(corpus, path, tmp_path / "model")[command], "--overwrite")
            signal.alarm(0)
            assert rc == 2 and f"{path}: " in err and "refusing to replace it" in err, (name, err)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert {p: os.lstat(p).st_mode for p in made.values()} == kinds  # each still what it was (no regular file)
    assert made["empty"].read_text() == "" and sorted(os.listdir(tmp_path)) == sorted(p.name for p in made.values())


def test_a_marker_is_told_by_its_content_not_its_name(tmp_path):
    """--overwrite replaced any folder with a manifest.json (a web app's) or a generator.json."""
    marker = Marker("manifest.json", format="xmc-stage-bundle")
    cases = {"web app": '{"name": "my app"}', "not json": "{", "a list": "[]", "a stage result": '{"format": "xmc-stage-result"}'}
    for name, content in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        (folder / "manifest.json").write_text(content)
        (folder / "index.html").write_text("precious")
        assert not marker.found_in(str(folder)), name
        with pytest.raises(OutputError, match="not an xmc stage bundle"):
            check_replaceable(folder, overwrite=True, marker=marker, what="stage bundle")
        assert (folder / "index.html").read_text() == "precious"
    ours = tmp_path / "bundle"
    ours.mkdir()
    (ours / "manifest.json").write_text('{"format": "xmc-stage-bundle", "version": 1}')
    assert marker.found_in(str(ours)) and check_replaceable(ours, overwrite=True, marker=marker) is True
    (tmp_path / "link").symlink_to(ours)  # a link to our folder is still not ours to replace
    assert not marker.found_in(str(tmp_path / "link"))


def test_cli_overwrite_spares_folders_that_only_share_a_marker_name(tmp_path):
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "my app"}')
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "generator.json").write_text("{}")
    (proj / "thesis.tex").write_text("thesis")
    rc, err = _run("data", "generate", "--out", proj, "--labels", "5", "--overwrite")
    assert rc == 2 and "not an xmc generated problem directory" in err and (proj / "thesis.tex").exists()
    rc, err = _run("stage", "run", tmp_path / "no-bundle", "--out", webapp, "--overwrite")
    assert rc == 2 and "not an xmc stage result" in err and (webapp / "manifest.json").read_text() == '{"name": "my app"}'
    assert _run("data", "generate", "--out", tmp_path / "gen", "--labels", "5")[0] == 0
    assert _run("data", "generate", "--out", tmp_path / "gen", "--labels", "6", "--overwrite")[0] == 0


def test_outputs_with_names_near_the_limit_are_written_and_too_long_ones_refused(tmp_path):
    """A legal 251-byte name failed (exit 1) because its temporary sibling's name passed 255 bytes."""
    from xmc.io import atomic_file

    long_name = "z" * 245 + ".jsonl"
    with atomic_file(tmp_path / long_name) as fh:
        fh.write("x")
    with atomic_directory(tmp_path / ("d" * 250)) as tmp:
        Path(tmp, "f").write_text("y")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long_name, "d" * 250])
    # a killed writer's leftover of such a name is still recognised and removed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from xmc.io import _temp_prefix

    leftover = Path(_temp_prefix(str(tmp_path / long_name), "tmp").replace(".tmp-" + str(os.getpid()),
                                                                         ".tmp-" + dead.stdout.strip()) + "abc")
    (tmp_path / leftover.name).write_text("half")
    assert clean_leftovers(tmp_path / long_name) == [str(tmp_path / leftover.name)]
    with pytest.raises(OutputError, match="longer than the 255 bytes"):
        check_replaceable(tmp_path / ("é" * 128), overwrite=False)
