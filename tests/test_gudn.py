"""GUDN and its LightXML baseline: loss terms by hand, shared encoder, text-only prediction, save/load."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xmc.data.label_sources import eurovoc_label_texts  # noqa: E402
from xmc.datasets.synthetic import make_corpus  # noqa: E402
from xmc.errors import ConfigError  # noqa: E402
from xmc.models.gudn import GUDN, GUDNConfig, LightXML, LightXMLConfig, joined_label_texts  # noqa: E402
from xmc.models.masked_bert import MaskedTrainConfig  # noqa: E402
from xmc.models.registry import load_model, model_class  # noqa: E402
from xmc.neural.configs import EncoderConfig  # noqa: E402
from xmc.neural.encoder import TextEncoder  # noqa: E402
from xmc.neural.guide import (GuideNetwork, candidate_bce, candidate_labels, feature_guide_loss,  # noqa: E402
                              link_guide_loss, meta_loss)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_train=160, n_test=30, n_labels=30, noise_words=150, doc_length=24, seed=5)


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir, corpus):
    """A random 2-layer BERT with a WordPiece vocabulary of the corpus' (and label texts') words."""
    words = sorted({w for t in corpus.train.texts + list(corpus.train.label_texts) for w in t.lower().split()})
    return tiny_bert_dir("tiny-bert", words, extra_tokens=(",",))


def tiny_config(tiny_bert, cls=GUDNConfig, **overrides):
    base = dict(
        encoder=EncoderConfig(model_path=tiny_bert, pooling="cls-concat", last_layers=2, max_length=32, batch_size=32),
        label_max_length=32, hidden_dim=8, max_leaf_size=4, n_candidate_clusters=2, dropout=0.1,
        train=MaskedTrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, head_learning_rate=1e-2, swa=False,
                                select_metric="p@1", device="cpu", amp=False, valid_fraction=0.2),
    )
    base.update(overrides)
    return cls(**base)


# ---- loss terms by hand ---------------------------------------------------------------------------


def _bce(z, y):
    return -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))


def test_feature_guide_is_mse_by_hand():
    e_t = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    e_l = torch.tensor([[0.0, 2.0], [2.0, 1.0]])
    # squared differences 1, 0, 4, 4 -> mean 9 / 4
    assert feature_guide_loss(e_t, e_l).item() == pytest.approx(2.25)


def test_candidate_and_link_bce_by_hand():
    logits = torch.tensor([[2.0, -1.0, 5.0], [0.5, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, True, False]])  # padding ignored
    expected = (_bce(2.0, 1) + _bce(-1.0, 0) + _bce(0.5, 0) + _bce(0.0, 1)) / 4
    assert candidate_bce(logits, targets, valid).item() == pytest.approx(expected, rel=1e-6)
    assert link_guide_loss(logits, targets, valid).item() == pytest.approx(expected, rel=1e-6)


def test_meta_loss_by_hand():
    logits = torch.tensor([[1.0, -2.0]])
    targets = torch.tensor([[0.0, 0.0]])
    assert meta_loss(logits, targets).item() == pytest.approx((_bce(1.0, 0) + _bce(-2.0, 0)) / 2, rel=1e-6)


def test_candidates_are_the_labels_of_chosen_and_forced_clusters():
    # 5 labels in 3 clusters: {0, 1}, {2}, {3, 4}
    leaves = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=np.float32))
    forced = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0]], dtype=np.float32))
    index, valid = candidate_labels(np.array([[1], [0]]), sp.csr_matrix(leaves.T), forced)
    assert [sorted(index[0][valid[0]]), sorted(index[1][valid[1]])] == [[2, 3, 4], [0, 1]]


def test_joined_label_texts():
    Y = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    assert joined_label_texts(Y, ["wine", "milk", "tax"], ", ") == ["wine, tax", "milk"]


def test_eurovoc_label_texts(tmp_path):
    import gzip
    import json

    from xmc.data.dataset import LabelVocabulary

    with gzip.open(tmp_path / "d.json.gz", "wt", encoding="utf-8") as fh:
        json.dump({"3": {"concept_id": "3", "label": "adhesive", "alt_labels": ["glue"], "parents": []},
                   "9": {"concept_id": "9", "label": "wine", "alt_labels": [], "parents": []}}, fh)
    (tmp_path / "ids.txt").write_text("9\n3\n", encoding="utf-8")
    vocab = LabelVocabulary(["1", "0", "7"])
    texts = eurovoc_label_texts(tmp_path / "d.json.gz", vocab, label_ids=tmp_path / "ids.txt")
    assert texts == ["adhesive; glue", "wine", "7"]


# ---- the network --------------------------------------------------------------------------------


def test_text_and_label_paths_share_the_encoder(tiny_bert):
    torch.manual_seed(0)
    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, pooling="cls-concat", last_layers=2))
    net = GuideNetwork(encoder, n_labels=6, n_clusters=2, hidden_dim=4, dropout=0.0, label_path=True, label_layers=3)
    batch = encoder.collate(encoder.pretokenize(["alpha beta", "gamma"]))
    e_t = net.text_features(**batch)
    e_l = net.label_features(**encoder.collate(encoder.pretokenize(["label one", "label two"])))
    assert e_t.shape == e_l.shape == (2, encoder.dim)  # 3 * 16 projected to 2 * 16
    # The label path's encoder is the text path's module: one parameter set.
    backbone_params = {id(p) for p in net.encoder.backbone.parameters()}
    assert all(id(p) in backbone_params for n, p in net.named_parameters() if n.startswith("encoder."))
    layer = net.encoder.backbone.encoder.layer[0].attention.self.query.weight
    feature_guide_loss(e_t.detach(), e_l).backward()  # label path only
    grad_from_labels = layer.grad.clone()
    assert grad_from_labels.abs().sum() > 0
    layer.grad = None
    index = torch.tensor([[0, 1], [2, 3]])
    candidate_bce(net.candidate_logits(net.text_features(**batch), index), torch.ones(2, 2),
                  torch.ones(2, 2, dtype=torch.bool)).backward()  # text path only
    assert layer.grad.abs().sum() > 0


def test_onehot_label_input(tiny_bert):
    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, pooling="cls", last_layers=1))
    net = GuideNetwork(encoder, n_labels=6, n_clusters=2, hidden_dim=4, dropout=0.0, label_path=True,
                       label_input="onehot", label_layers=2)
    e_l = net.label_features(label_index=torch.tensor([[1, 4], [2, 0]]),
                             label_valid=torch.tensor([[True, True], [True, False]]))
    assert e_l.shape == (2, encoder.dim)
    e_l.sum().backward()
    assert net.label_tokens.weight.grad[[1, 2, 4]].abs().sum() > 0
    assert net.label_tokens.weight.grad[[0, 3, 5]].abs().sum() == 0  # padding contributes nothing


# ---- the model --------------------------------------------------------------------------------------


def test_unknown_config_key_is_rejected():
    with pytest.raises(ConfigError, match="feature_guid"):
        GUDNConfig.from_dict({"feature_guid": True})
    with pytest.raises(ConfigError, match="label_input"):
        GUDNConfig.from_dict({"label_input": "names"})
    with pytest.raises(ConfigError, match="no guides"):
        LightXMLConfig.from_dict({"link_guide": True})
    # a partial train object overlays GUDN's own train defaults (not MaskedTrainConfig's)
    partial = GUDNConfig.from_dict({"train": {"freeze_encoder": True}}).train
    assert partial.freeze_encoder is True and partial.select_metric == "p@1" and partial.epochs == "auto"
    with pytest.raises(ConfigError, match="cache_dir"):
        LightXMLConfig.from_dict({"train": {"freeze_encoder": True, "cache_dir": "/tmp/x"}})
    assert LightXMLConfig.from_dict({"train": {"freeze_encoder": True}}).train.freeze_encoder
    assert model_class("lightxml") is LightXML and model_class("gudn") is GUDN


def test_gudn_needs_label_texts(tiny_bert, corpus):
    data = corpus.train.subset(np.arange(len(corpus.train)))
    data.label_texts = None
    with pytest.raises(ConfigError, match="label texts"):
        GUDN(tiny_config(tiny_bert)).fit(data, progress=False)


@pytest.mark.parametrize("cls,overrides", [(GUDN, {}), (GUDN, {"label_input": "onehot", "link_guide": False}),
                                           (LightXML, {})])
def test_end_to_end_save_load_identical(tiny_bert, corpus, tmp_path, cls, overrides):
    model = cls(tiny_config(tiny_bert, cls.config_class, **overrides)).fit(corpus.train, progress=False)
    history = model.history_
    assert history["steps"] >= 1 and history["evaluations"]
    expected_terms = {"meta", "rank"} | ({"feature"} if model.config.feature_guide else set()) | (
        {"link"} if model.config.link_guide else set())
    assert set(history["loss_terms"]) == expected_terms
    # Prediction reads text only: raw strings, no labels, no label texts.
    texts = corpus.test.input_texts(["title", "text"])
    scores = model.predict(texts, topk=5)
    assert scores.shape == (len(texts), len(model.labels_))
    assert (np.diff(scores.indptr) <= 5).all() and scores.nnz > 0
    assert (scores.data > 0).all() and (scores.data <= 1).all()
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is cls
    np.testing.assert_allclose(loaded.predict(texts, topk=5).toarray(), scores.toarray(), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(corpus.test, topk=5).toarray(), scores.toarray(), atol=1e-6)


def test_lightxml_frozen_encoder_trains_heads_only(tiny_bert, corpus, tmp_path):
    config = tiny_config(tiny_bert, LightXMLConfig)
    config.train.freeze_encoder, config.train.epochs, config.train.patience = True, 3, 100
    model = LightXML(config).fit(corpus.train, progress=False)
    pretrained = TextEncoder.from_pretrained(config.encoder).backbone.state_dict()
    for name, value in model.network_.encoder.backbone.state_dict().items():
        assert torch.equal(value, pretrained[name]), name
    untrained = LightXML(config)
    untrained.labels_, untrained.chain_, untrained.label_layers_ = model.labels_, model.chain_, model.label_layers_
    torch.manual_seed(config.train.seed)
    untrained.network_ = untrained._build_network(TextEncoder.from_pretrained(config.encoder))
    heads = [name for name, _ in model.network_.named_parameters() if not name.startswith("encoder.")]
    trained_state, initial_state = model.network_.state_dict(), untrained.network_.state_dict()
    assert heads and all(not torch.equal(trained_state[h], initial_state[h]) for h in heads)
    assert model.history_["steps"] == 3 * math.ceil(math.ceil(0.8 * len(corpus.train)) / 16)
    model.save(tmp_path / "m")
    texts = corpus.test.input_texts(["title", "text"])
    np.testing.assert_allclose(load_model(tmp_path / "m").predict(texts, topk=5).toarray(),
                               model.predict(texts, topk=5).toarray(), atol=1e-6)


def test_gudn_frozen_encoder_guides_train_the_label_projection_over_cached_states(tiny_bert, corpus, monkeypatch):
    # A frozen encoder (the CPU budget): the guides still train E_l's projection and the shared
    # classifiers; the label-side encoder runs once per training document, not once per step.
    from xmc.neural.guide import GuideNetwork as Network

    config = tiny_config(tiny_bert, GUDNConfig)
    config.train.freeze_encoder, config.train.epochs, config.train.patience = True, 3, 100
    label_rows = []
    states = Network.label_states
    monkeypatch.setattr(Network, "label_states",
                        lambda self, **batch: label_rows.append(len(batch["input_ids"])) or states(self, **batch))
    torch.manual_seed(config.train.seed)
    model = GUDN(config).fit(corpus.train, progress=False)
    assert sum(label_rows) == math.ceil(0.8 * len(corpus.train))
    pretrained = TextEncoder.from_pretrained(config.encoder).backbone.state_dict()
    for name, value in model.network_.encoder.backbone.state_dict().items():
        assert torch.equal(value, pretrained[name]), name
    assert set(model.history_["loss_terms"]) == {"meta", "rank", "feature", "link"}
    assert model.predict(corpus.test, topk=3).nnz == 3 * len(corpus.test)


def test_predict_through_a_feature_cache_equals_predict_and_encodes_once(tiny_bert, corpus):
    from xmc.neural.cache import EmbeddingCache

    model = LightXML(tiny_config(tiny_bert, LightXMLConfig)).fit(corpus.train, progress=False)
    texts = corpus.test.input_texts(["title", "text"])
    expected = model.predict(texts, topk=5)
    cache = EmbeddingCache()
    calls = []
    forward = model.network_.text_features
    model.network_.text_features = lambda **batch: calls.append(1) or forward(**batch)
    first = model.predict(texts, topk=5, cache=cache)
    n_calls = len(calls)
    second = model.predict(corpus.test, topk=5, cache=cache)  # same texts from the dataset: a hit
    assert n_calls >= 1 and len(calls) == n_calls and (cache.misses, cache.hits) == (1, 1)
    for got in (first, second):
        np.testing.assert_allclose(got.toarray(), expected.toarray(), atol=1e-6)
    np.testing.assert_allclose(model.encode(texts, cache=cache), model.encode(texts), atol=1e-6)
    assert model.encode([]).shape == (0, model.network_.encoder.dim)


def test_frozen_training_encodes_training_and_validation_texts_once(tiny_bert, corpus, monkeypatch):
    # Frozen-encoder training validates every epoch; the validation features must be encoded once too.
    from xmc.neural.guide import GuideNetwork as Network

    config = tiny_config(tiny_bert, LightXMLConfig)
    config.train.freeze_encoder, config.train.epochs, config.train.patience = True, 3, 100
    encoded = []
    forward = Network.text_features
    monkeypatch.setattr(Network, "text_features",
                        lambda self, **batch: encoded.append(len(batch["input_ids"])) or forward(self, **batch))
    model = LightXML(config).fit(corpus.train, progress=False)
    assert len(model.history_["evaluations"]) == 3
    assert sum(encoded) == len(corpus.train)  # 80% training + 20% validation rows, each once


def test_cli_train_predict_with_label_text(tiny_bert, corpus, tmp_path):
    import contextlib
    import io
    import json

    from xmc.cli.main import main

    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(corpus.train)):
            fh.write(json.dumps({"id": corpus.train.ids[i], "title": corpus.train.titles[i],
                                 "text": corpus.train.texts[i], "labels": corpus.train.label_names_of(i)}) + "\n")
    (tmp_path / "labels.json").write_text(json.dumps(dict(zip(corpus.train.labels.names, corpus.train.label_texts))))
    for name in ("gudn", "lightxml"):
        extra = ["--label-text", tmp_path / "labels.json"] if name == "gudn" else []
        cfg = tiny_config(tiny_bert, LightXMLConfig if name == "lightxml" else GUDNConfig)
        (tmp_path / f"{name}.json").write_text(cfg.to_json())
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            rc = main([str(a) for a in ["train", "--model", name, "--train", tmp_path / "train.jsonl", *extra,
                                        "--config", tmp_path / f"{name}.json", "--out", tmp_path / name]])
            assert rc == 0
            rc = main([str(a) for a in ["predict", "--model", tmp_path / name, "--input", tmp_path / "train.jsonl",
                                        "--out", tmp_path / f"{name}.pred", "--topk", "3"]])
        assert rc == 0
        assert type(load_model(tmp_path / name)).name == name
        assert len((tmp_path / f"{name}.pred").read_text().splitlines()) == len(corpus.train)
        # --threshold and --beam-size reach the model (a TypeError traceback before): every kept score >= 0.3
        with contextlib.redirect_stdout(io.StringIO()):
            rc = main([str(a) for a in ["predict", "--model", tmp_path / name, "--input", tmp_path / "train.jsonl",
                                        "--out", tmp_path / f"{name}-t.pred", "--topk", "5", "--threshold", "0.3",
                                        "--beam-size", "2"]])
        assert rc == 0
        rows = [json.loads(line) for line in (tmp_path / f"{name}-t.pred").read_text().splitlines()]
        assert len(rows) == len(corpus.train) and all(s >= 0.3 for r in rows for s in r["scores"])
        assert any(len(r["labels"]) < 5 for r in rows)
