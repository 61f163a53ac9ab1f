"""``xmc stage export|run|import``: the staged X-Transformer equals the in-process one; bad bundles and
over-size transfers are refused in one line."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_cli import assert_error_line, read_jsonl_rows, run_quiet, write_jsonl  # noqa: E402

from xmc.datasets.synthetic import make_corpus  # noqa: E402
from xmc.errors import ConfigError  # noqa: E402
from xmc.neural import bundle as B  # noqa: E402


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_bert_dir):
    """A corpus, a two-member config (one tree indexed on the CPU, one on the 'GPU' side), and a float32
    export -> run (cpu, results in 64 KiB shards) -> import next to an in-process ``xmc train``."""
    root = tmp_path_factory.mktemp("stage")
    corpus = make_corpus(n_train=120, n_test=30, n_labels=24, noise_words=80, doc_length=20, seed=5)
    write_jsonl(root / "train.jsonl", corpus.train)
    write_jsonl(root / "test.jsonl", corpus.test)
    words = sorted({w for t in corpus.train.texts + corpus.train.titles for w in t.lower().split()})
    bert = tiny_bert_dir("stage-bert", words, hidden_size=16, intermediate_size=32)
    config = {"encoder": {"model_path": bert, "max_length": 24, "batch_size": 32},
              "members": [{"label_repr": "pifa-tfidf", "branching": 4, "max_leaf_size": 4},
                          {"label_repr": "pifa-neural", "branching": 2, "max_leaf_size": 8}],
              "matcher": {"kind": "transformer", "epochs": 1, "batch_size": 16, "learning_rate": 1e-3,
                          "head_learning_rate": 1e-2, "device": "cpu", "top_b": 3, "amp": False},
              "features": {"min_df": 1}, "n_threads": 1}
    (root / "cfg.json").write_text(json.dumps(config))
    common = ["--train", root / "train.jsonl", "--config", root / "cfg.json"]
    run_quiet("train", "--model", "xtransformer", *common, "--out", root / "inprocess", "-q")
    out = run_quiet("stage", "export", "--model", "xtransformer", *common, "--precision", "float32",
                    "--embeddings", "float32", "--out", root / "bundle32", "-q")
    assert "wrote bundle" in out
    small = B.Limits(file_bytes=16 * 1024, back_files=None)  # many shards: arrays split across files
    from xmc.models.xtransformer import stage

    orig = stage.StageOptions.transfer_limits
    stage.StageOptions.transfer_limits = lambda self: small
    try:
        run_quiet("stage", "run", root / "bundle32", "--out", root / "result32", "--device", "cpu", "-q")
    finally:
        stage.StageOptions.transfer_limits = orig
    run_quiet("stage", "import", root / "bundle32", root / "result32", "--train", root / "train.jsonl",
              "--out", root / "staged", "-q")
    for name in ("inprocess", "staged"):
        run_quiet("predict", "--model", root / name, "--input", root / "test.jsonl", "--out", root / f"{name}.jsonl",
                  "-q")
    return root


def test_staged_model_predicts_like_in_process_training(staged):
    shards = [f for f in os.listdir(staged / "result32") if f.endswith(".safetensors")]
    assert len(shards) > 3  # the 16 KiB limit split the encoder and embeddings across files
    assert all(os.path.getsize(staged / "result32" / f) <= 16 * 1024 for f in shards)
    a, b = read_jsonl_rows(staged / "inprocess.jsonl"), read_jsonl_rows(staged / "staged.jsonl")
    assert [r["labels"] for r in a] == [r["labels"] for r in b]
    np.testing.assert_allclose([s for r in a for s in r["scores"]], [s for r in b for s in r["scores"]], atol=1e-6)
    manifest = json.loads((staged / "staged" / "xmc_model.json").read_text())
    assert manifest["model"] == "xtransformer" and manifest["n_members"] == 2


def test_float16_bundle_halves_the_weights_and_still_trains(staged, tmp_path):
    from safetensors import safe_open

    run_quiet("stage", "export", "--model", "xtransformer", "--train", staged / "train.jsonl", "--config",
              staged / "cfg.json", "--out", tmp_path / "b16", "--encode", staged / "test.jsonl", "-q")
    with safe_open(str(tmp_path / "b16" / "encoder" / "model.safetensors"), "np") as fh:
        assert {fh.get_tensor(k).dtype.name for k in fh.keys()} == {"float16"}
    assert (os.path.getsize(tmp_path / "b16" / "encoder" / "model.safetensors")
            < 0.6 * os.path.getsize(staged / "bundle32" / "encoder" / "model.safetensors"))
    run_quiet("stage", "run", tmp_path / "b16", "--out", tmp_path / "r16", "--device", "cpu", "-q")
    from xmc.data import read_dataset
    from xmc.models.xtransformer.stage import import_result

    train = read_dataset(staged / "train.jsonl")
    model = import_result(tmp_path / "b16", tmp_path / "r16", train, progress=False)
    test = read_dataset(staged / "test.jsonl", labels=train.labels)
    # The --encode documents' fp16 embeddings score them as the encoder itself does, to fp16 rounding.
    from_text = model.predict(test, topk=5)
    X = model.featurizer_.transform(test.input_texts(model.featurizer_.config.fields))
    from_bundle = model.predict_embedded(X, model.extra_embeddings_, topk=5)
    np.testing.assert_allclose(from_bundle.toarray(), from_text.toarray(), atol=2e-2)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_bundles_are_refused_in_one_line(staged, tmp_path, capsys):
    good = staged / "bundle32"
    run = ["stage", "run"]
    # wrong version
    b = _copy(good, tmp_path / "v")
    m = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**m, "version": 99}))
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o1"], "version 99")
    # not JSON
    b = _copy(good, tmp_path / "j")
    (b / "manifest.json").write_text("{not json")
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o2"], "not valid JSON")
    # no array index; a config edited to a matcher that has no GPU stage; a device torch does not know
    b = _copy(good, tmp_path / "i")
    m = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({k: v for k, v in m.items() if k != "index"}))
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o1"], "missing 'index'")
    b = _copy(good, tmp_path / "f")
    m["config"]["matcher"]["kind"] = "frozen"
    (b / "manifest.json").write_text(json.dumps(m))
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o1"], "matcher.kind 'frozen'")
    assert_error_line(capsys, run + [good, "--out", tmp_path / "o1", "--device", "tpu"], "device 'tpu': expected")
    # a shape that does not match its shard
    b = _copy(good, tmp_path / "s")
    m = json.loads((b / "manifest.json").read_text())
    m["index"]["arrays"]["fit_rows"]["shape"] = [7]
    (b / "manifest.json").write_text(json.dumps(m))
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o3"], "fit_rows")
    # a truncated shard
    b = _copy(good, tmp_path / "t")
    shard = b / "part-000.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o4"], "part-000.safetensors")
    # pickled weights beside the encoder
    b = _copy(good, tmp_path / "p")
    (b / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    assert_error_line(capsys, run + [b, "--out", tmp_path / "o5"], "pickled")
    # a model directory is no bundle; an existing output is not replaced
    assert_error_line(capsys, run + [staged / "staged", "--out", tmp_path / "o6"], "not an xmc stage bundle")
    assert_error_line(capsys, run + [good, "--out", staged / "result32"], "--overwrite")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 7))
    # a result whose GPU run diverged: NaN in a weight (its model predicted NaN scores, and serve gave 500s)
    r = _copy(staged / "result32", tmp_path / "nan")
    m = json.loads((r / "manifest.json").read_text())
    name = next(n for n, e in m["index"]["arrays"].items() if e["dtype"] == "float32" and len(e["shape"]) == 2)
    fname, key, _, _ = m["index"]["arrays"][name]["parts"][0]
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(r / fname))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = np.nan
    save_file(arrays, str(r / fname))
    assert_error_line(capsys, ["stage", "import", good, r, "--train", staged / "train.jsonl", "--out", tmp_path / "m"],
                      f"array {name!r} has values that are not finite")
    # import with label texts the export did not have
    texts = tmp_path / "label_texts.json"
    names = {name for row in read_jsonl_rows(staged / "train.jsonl") for name in row["labels"]}
    texts.write_text(json.dumps({name: f"the label {name}" for name in names}))
    assert_error_line(capsys, ["stage", "import", good, staged / "result32", "--train", staged / "train.jsonl",
                               "--label-text", texts, "--out", tmp_path / "m"], "label texts (--label-text)")
    # import: another training file than the one exported
    other = tmp_path / "other.jsonl"
    rows = read_jsonl_rows(staged / "train.jsonl")[:-1]
    other.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_error_line(capsys, ["stage", "import", good, staged / "result32", "--train", other,
                               "--out", tmp_path / "m"], "not the training")
    assert_error_line(capsys, ["stage", "export", "--model", "xr-linear", "--train", other, "--out",
                               tmp_path / "x"], "only xtransformer")
    # a result of another bundle; a bundle exported without encoders cannot make a model that reads text
    run_quiet("stage", "export", "--model", "xtransformer", "--train", staged / "train.jsonl", "--config",
              staged / "cfg.json", "--no-encoders", "--out", tmp_path / "noenc", "-q")
    assert_error_line(capsys, ["stage", "import", tmp_path / "noenc", staged / "result32", "--train",
                               staged / "train.jsonl", "--out", tmp_path / "m"], "--no-encoders")
    m = json.loads((tmp_path / "noenc" / "manifest.json").read_text())
    (tmp_path / "noenc" / "manifest.json").write_text(json.dumps({**m, "options": {**m["options"],
                                                                                 "return_encoders": True}}))
    assert_error_line(capsys, ["stage", "import", tmp_path / "noenc", staged / "result32", "--train",
                               staged / "train.jsonl", "--out", tmp_path / "m"], "another bundle")


def test_shard_plan_and_transfer_limits_by_hand():
    # rows of 4 float32 (16 B); a shard keeps 1024 B + 192 B a piece for its header: 1024 + 192 + 160 B of
    # room holds 10 rows, and the 5 rows left (80 B) + 192 B leave 160 - 80 - 192 < 0 for b: a new shard
    plan = B.plan_shards([("a", (25, 4), "float32"), ("b", (3,), "int64")], 1024 + 192 + 160)
    assert plan == [[("a", 0, 10)], [("a", 10, 20)], [("a", 20, 25)], [("b", 0, 3)]]
    assert B.plan_shards([("a", (25, 4), "float32")], None) == [[("a", 0, 25)]]
    limits = B.Limits()
    B.check_transfer("x", 64 * B.MIB, 8, limits, "back")  # exactly at the limits: fits
    with pytest.raises(ConfigError, match=r"9 files > 8"):
        B.check_transfer("the result", 10, 9, limits, "back")
    with pytest.raises(ConfigError, match=r"65.0 MiB > 64.0 MiB sent"):
        B.check_transfer("the bundle", 65 * B.MIB, 1, limits, "send")
    q = B.quantize(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], dtype=np.float32), "int8")
    np.testing.assert_array_equal(q["q"], [[64, -127, 32], [0, 0, 0]])  # 0.5 / (1/127) = 63.5 -> 64
    np.testing.assert_allclose(B.dequantize(q["q"], q["scale"])[0], [64 / 127, -1.0, 32 / 127])


def test_export_refuses_a_result_over_the_limits(staged, tmp_path, capsys, monkeypatch):
    from xmc.models.xtransformer import stage

    monkeypatch.setattr(stage.StageOptions, "transfer_limits",
                        lambda self: B.Limits(back_bytes=50 * 1024, file_bytes=8 * 1024, back_files=8))
    line = assert_error_line(capsys, ["stage", "export", "--model", "xtransformer", "--train",
                                      staged / "train.jsonl", "--config", staged / "cfg.json", "--out",
                                      tmp_path / "big", "-q"], "would not fit", "files > 8", "KiB > 50 KiB")
    assert "2 member(s)" in line
    assert not (tmp_path / "big").exists()


def test_pretokenize_of_long_texts_equals_whole_text_tokenization(tiny_bert_dir):
    """Long texts are tokenised from a prefix cut at whitespace; the ids are those of the whole text."""
    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder

    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    enc = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert_dir("tok-bert", words), max_length=24))
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words + ["unknownword", "x,y"], size=int(n))) for n in rng.integers(1, 400, 30)]
    texts += ["alpha" * 200 + " beta", "a" * 1000, "beta  " * 300, "", "gamma"]  # long unknown words, spaces
    whole = enc.tokenizer(texts, truncation=True, max_length=24, return_attention_mask=False,
                          return_token_type_ids=False)["input_ids"]
    assert enc.pretokenize(texts) == whole
