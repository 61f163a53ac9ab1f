"""The model contract: every registered model declares capabilities that match what its
``fit`` / ``predict`` accept, and the CLI refuses an option a model lacks in one line naming it."""

from __future__ import annotations

import inspect

import pytest

from xmc.models.base import XMCModel
from xmc.models.registry import MODELS, model_class

# Keyword arguments a model's fit / predict take beyond the contract's (model-specific extras).
FIT_EXTRAS = {"xr-linear": {"label_features"}, "xtransformer": {"tfidf"}}
PREDICT_EXTRAS = {"xr-linear": {"post_processor"}, "xtransformer": {"post_processor"},
                  "masked-bert": {"categories"}, "gudn": {"cache"}, "lightxml": {"cache"}}


def _keywords(method) -> set[str]:
    params = inspect.signature(method).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_declared_capabilities_match_fit_and_predict(name):
    cls = model_class(name)
    assert issubclass(cls, XMCModel) and cls.name == name
    caps = cls.capabilities
    assert _keywords(cls.fit) == caps.fit_kwargs() | FIT_EXTRAS.get(name, set())
    assert _keywords(cls.predict) == caps.predict_kwargs() | PREDICT_EXTRAS.get(name, set())
    assert ("mmap" in inspect.signature(cls.load).parameters) == caps.loads_mmap


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_defaults_come_from_the_config(name):
    cls = model_class(name)
    model = cls(cls.config_class())
    p = model.config.predict
    given = model.resolve_predict(topk=3, beam_size=2, threshold=0.25)
    assert (given.topk, given.beam_size, given.threshold) == (3, 2, 0.25)
    default = model.resolve_predict()
    assert default.topk == p.topk and default.beam_size == getattr(p, "beam_size", None)
    with pytest.raises(RuntimeError, match=f"not fitted; call fit\\(\\) or {cls.__name__}.load"):
        model.predict(["a text"])
    with pytest.raises(RuntimeError, match="not fitted"):
        model.save("never-written")


@pytest.mark.parametrize("model, argv_tail, option", [
    ("masked-bert", ["--label-text", "LABELS"], "--label-text"),
    ("lightxml", ["--label-text", "LABELS"], "--label-text"),
    ("xtransformer", ["--taxonomy", "LABELS"], "--taxonomy"),
    ("xtransformer", ["--augmented", "LABELS"], "--augmented"),
])
def test_cli_train_refuses_an_option_the_model_lacks(tmp_path, capsys, model, argv_tail, option):
    from xmc.cli.main import main as cli_main

    train = tmp_path / "train.jsonl"
    train.write_text('{"id": "a", "text": "x", "labels": ["l"]}\n', encoding="utf-8")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"label": "l", "text": "ell"}\n', encoding="utf-8")
    argv = ["train", "--model", model, "--train", str(train), "--out", str(tmp_path / "m")]
    argv += [str(labels) if a == "LABELS" else a for a in argv_tail]
    assert cli_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"xmc: error: {option}: the {model} model "), lines
    assert not (tmp_path / "m").exists()
