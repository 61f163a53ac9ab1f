"""Taxonomy label masking (Chen et al.): taxonomy masks, masked loss, tiny-BERT training, save/load, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xmc.cli.main import main as cli_main  # noqa: E402
from xmc.data import read_jsonl  # noqa: E402
from xmc.data.dataset import LabelVocabulary, XMCDataset, labels_to_csr  # noqa: E402
from xmc.errors import ConfigError, DataFormatError  # noqa: E402
from xmc.models.masked_bert import (  # noqa: E402
    MaskedBert,
    MaskedBertConfig,
    MaskedTrainConfig,
    StepAverages,
    build_network,
    group_batches,
    network_logits,
    normalize_text,
    pooled_features,
    predict_probabilities,
    product_pairs,
    tokenize_pairs,
)
from xmc.models.masked_bert import model as masked_bert_module  # noqa: E402
from xmc.models.registry import load_model  # noqa: E402
from xmc.neural.cache import EmbeddingCache  # noqa: E402
from xmc.neural.configs import EncoderConfig  # noqa: E402
from xmc.neural.encoder import TextEncoder  # noqa: E402
from xmc.neural.masked_loss import (  # noqa: E402
    dense_rows,
    gathered_bce_with_logits,
    gathered_logits,
    gathered_targets,
    masked_bce_with_logits,
    padded_indices,
)
from xmc.neural.taxonomy import Taxonomy, category_path  # noqa: E402

# category -> (title words, label of that word); every category also has colours.
CATALOGUE = {
    "Clothing > Dresses": [("vneck", "Neckline=V-Neck"), ("crew", "Neckline=Crew"), ("midi", "Length=Midi")],
    "Clothing > Shirts": [("longsleeve", "Sleeve=Long"), ("shortsleeve", "Sleeve=Short")],
    "Shoes > Boots": [("stiletto", "Heel=High"), ("flat", "Heel=Flat")],
}
COLOURS = [("red", "Color=Red"), ("blue", "Color=Blue")]
FILLER = ["cotton", "summer", "women", "men", "classic", "new", "style"]


def make_products(n: int, seed: int, labels: LabelVocabulary | None = None) -> XMCDataset:
    rng = np.random.default_rng(seed)
    names = [] if labels is None else list(labels.names)
    index = {name: i for i, name in enumerate(names)}
    ids, titles, descriptions, categories, rows = [], [], [], [], []
    cats = sorted(CATALOGUE)
    for i in range(n):
        cat = cats[i % len(cats)]
        word, label = CATALOGUE[cat][rng.integers(len(CATALOGUE[cat]))]
        colour, clabel = COLOURS[rng.integers(len(COLOURS))]
        words = [word, colour] + list(rng.choice(FILLER, 3))
        rng.shuffle(words)
        row = []
        for name in (label, clabel):
            if name not in index:
                index[name] = len(names)
                names.append(name)
            row.append(index[name])
        ids.append(f"p{i}")
        titles.append(" ".join(words))
        descriptions.append(" ".join(rng.choice(FILLER, 4)))
        categories.append(cat)
        rows.append(row)
    vocab = LabelVocabulary(names)
    return XMCDataset(ids=ids, texts=[""] * n, Y=labels_to_csr(rows, len(vocab)), labels=vocab, titles=titles,
                      descriptions=descriptions, categories=categories)


def taxonomy_dict() -> dict[str, list[str]]:
    return {cat: [label for _, label in pairs] + [label for _, label in COLOURS] for cat, pairs in CATALOGUE.items()}


@pytest.fixture(scope="module")
def products():
    train = make_products(96, seed=0)
    test = make_products(24, seed=1, labels=train.labels)
    return train, test


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    """A random 2-layer BERT with a WordPiece vocabulary of the catalogue's words, saved like a hub model."""
    words = sorted({w for pairs in CATALOGUE.values() for w, _ in pairs} | {w for w, _ in COLOURS} | set(FILLER))
    return tiny_bert_dir("tiny-bert", words, hidden_size=32, intermediate_size=64)


def tiny_config(tiny_bert, **overrides) -> MaskedBertConfig:
    train = dict(epochs=3, batch_size=16, learning_rate=3e-3, device="cpu", amp=False, swa_start=0.5)
    train.update(overrides.pop("train", {}))
    base = dict(encoder=EncoderConfig(model_path=tiny_bert, pooling="cls-concat", last_layers=2, max_length=32,
                                      batch_size=32),
                train=MaskedTrainConfig(**train))
    base.update(overrides)
    return MaskedBertConfig(**base)


# ---- masked loss -----------------------------------------------------------------------------


def _bce(s: float, y: float) -> float:
    p = 1.0 / (1.0 + math.exp(-s))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_masked_loss_equals_hand_sum_over_relevant_labels():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [0.1, 0.2, -2.0, 1.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    row0 = _bce(2.0, 1) + _bce(-1.0, 0)
    row1 = _bce(0.2, 1) + _bce(-2.0, 0) + _bce(1.5, 0)
    assert masked_bce_with_logits(logits, targets, mask).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    everything = sum(_bce(s, y) for s, y in zip(logits.flatten().tolist(), targets.flatten().tolist())) / 2
    assert masked_bce_with_logits(logits, targets, None).item() == pytest.approx(everything, rel=1e-6)


def test_gathered_loss_equals_dense_loss():
    rng = np.random.default_rng(0)
    n, L, d = 5, 9, 4
    M = sp.csr_matrix((rng.random((n, L)) < 0.4).astype(np.float32))
    M = sp.vstack([M, sp.csr_matrix((1, L), dtype=np.float32)]).tocsr()  # a product with no relevant label
    n += 1
    Y = sp.csr_matrix(((rng.random((n, L)) < 0.3).astype(np.float32)))
    hidden = torch.randn(n, d)
    weight, bias = torch.randn(L, d), torch.randn(L)
    rows = np.arange(n)
    dense = masked_bce_with_logits(hidden @ weight.T + bias, dense_rows(Y, rows), dense_rows(M, rows))
    index, valid = padded_indices(M, rows)
    logits = gathered_logits(hidden, weight, bias, torch.from_numpy(index))
    targets = torch.from_numpy(gathered_targets(Y, rows, index))
    gathered = gathered_bce_with_logits(logits, targets, torch.from_numpy(valid))
    assert gathered.item() == pytest.approx(dense.item(), rel=1e-5)


def test_irrelevant_labels_get_zero_gradient(tiny_bert):
    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, pooling="cls-concat", last_layers=2,
                                                        max_length=32))
    net = build_network(encoder, n_labels=6, n_heads=1, dropout=0.1)
    tokens = tokenize_pairs(encoder.tokenizer, ["red vneck", "blue flat summer"], ["cotton", ""], 32)
    batch = encoder.tokenizer.pad(tokens, padding=True, return_tensors="pt")
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    masked_bce_with_logits(network_logits(net, dict(batch)), targets, mask).backward()
    head = net.heads[0]
    irrelevant = [2, 4]  # relevant to neither product
    assert torch.all(head.weight.grad[irrelevant] == 0) and torch.all(head.bias.grad[irrelevant] == 0)
    assert torch.all(head.weight.grad[[0, 1, 3, 5]].abs().sum(dim=1) > 0)
    assert encoder.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


# ---- taxonomy --------------------------------------------------------------------------------


def test_category_paths_and_parent_fallback():
    assert category_path(" A >B>  C ") == ("A", "B", "C")
    vocab = LabelVocabulary(["a1", "b1", "c1", "x1", "orphan"])
    tax = Taxonomy({"A > B > C": ["c1"], "A > B": ["b1"], "A > D": ["a1"], "X": ["x1", "not-in-vocab"]}, vocab)
    assert tax.unknown_labels == ["not-in-vocab"]
    assert tax.uncovered_labels == ["orphan"]
    categories = ["A > B > C", "A > B > Z", "A > Q", "A", "Nope > B", None, "X > Y"]
    M, stats = tax.mask(categories)
    rows = [sorted(vocab.names[j] for j in M[i].indices) for i in range(len(categories))]
    assert rows[0] == ["c1"]                       # exact leaf
    assert rows[1] == ["b1"]                       # unknown leaf -> listed parent
    assert rows[2] == ["a1", "b1", "c1"]           # A is not listed: the union of its descendants
    assert rows[3] == ["a1", "b1", "c1"]           # exact (an implied ancestor)
    assert rows[4] == sorted(vocab.names)          # no known ancestor -> all labels
    assert rows[5] == sorted(vocab.names)          # no category -> all labels
    assert rows[6] == ["x1"]
    assert (stats.exact, stats.parent_fallback, stats.all_labels) == (2, 3, 2)
    assert stats.unknown_categories == ["", "A > B > Z", "A > Q", "Nope > B", "X > Y"]
    Y = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]] + [[0] * 5] * 5, dtype=np.float32))
    _, stats = tax.mask(categories, Y=Y)
    assert stats.positives_outside == 1  # a1 is not relevant to A > B > Z


def test_taxonomy_from_data_and_roundtrip(tmp_path, products):
    train, _ = products
    tax = Taxonomy.from_data(train)
    assert set(tax.to_dict()) == set(CATALOGUE)
    for cat, names in tax.to_dict().items():
        assert set(names) <= set(taxonomy_dict()[cat])
    tax.save(tmp_path / "t.json")
    again = Taxonomy.from_file(tmp_path / "t.json", train.labels)
    assert again.to_dict() == tax.to_dict()


@pytest.mark.parametrize("content, problem", [
    ("{\"A\": [\"x\",}", "invalid JSON"),
    ("[\"A\", \"B\"]", "expected a JSON object"),
    ("{\n \"A\": [\"x\"],\n \"B\": \"x\"\n}", "category 'B'"),
    ("{\"A\": [\"x\", 3]}", "non-string"),
    ("{\" > \": [\"x\"]}", "empty category"),
    ("", "empty file"),
])
def test_taxonomy_file_errors_name_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "taxonomy.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        Taxonomy.from_file(path, LabelVocabulary(["x"]))
    assert "taxonomy.json" in str(info.value) and problem in str(info.value)


def test_taxonomy_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="taxonomy file not found"):
        Taxonomy.from_file(tmp_path / "nope.json", LabelVocabulary(["x"]))
    with pytest.raises(DataFormatError, match="is a directory"):
        Taxonomy.from_file(tmp_path, LabelVocabulary(["x"]))


# ---- inputs, configs ---------------------------------------------------------------------


def test_nfkc_and_text_pairs(tiny_bert):
    assert normalize_text("ＲＥＤ\u3000ｖneck  ﬁ") == "RED vneck fi"
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    [enc] = tokenize_pairs(tok, ["red vneck"], ["cotton summer"], 32)
    assert enc["input_ids"][0] == tok.cls_token_id and enc["input_ids"].count(tok.sep_token_id) == 2
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_config_errors(tiny_bert, products):
    train, _ = products
    with pytest.raises(ConfigError, match="filter_predictions"):
        MaskedBertConfig(masking=True, filter_predictions=False)
    with pytest.raises(ConfigError, match="unknown key"):
        MaskedBertConfig.from_dict({"masking": True, "mask": 1})
    with pytest.raises(ConfigError, match="needs an attribute taxonomy"):
        MaskedBert(tiny_config(tiny_bert)).fit(train, progress=False)
    bad = tiny_config(tiny_bert, encoder=EncoderConfig(model_path=tiny_bert, pooling="cls-concat", last_layers=5))
    with pytest.raises(ConfigError, match="last_layers=5"):
        MaskedBert(bad).fit(train, taxonomy=taxonomy_dict(), progress=False)


def test_group_batches_hold_one_group():
    groups = np.array([0, 1, 1, 2, 0, 1, 2, 2, 2, 0])
    batches = group_batches(groups, 2, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert all(len(set(groups[b])) == 1 and len(b) <= 2 for b in batches)


def test_step_averages_average_each_head_over_the_steps_that_changed_it():
    torch = pytest.importorskip("torch")

    class Encoder(torch.nn.Module):
        dim = 2

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))

    for frozen in (False, True):
        network = build_network(Encoder(), n_labels=1, n_heads=3, dropout=0.0)
        averages = StepAverages(network, frozen=frozen)
        for step, (head, value) in enumerate([(0, 1.0), (0, 3.0), (1, 5.0)], start=1):
            with torch.no_grad():
                network.encoder.w.fill_(step)
                network.heads[head].weight.fill_(value)
            averages.update(network, [head])
        with torch.no_grad():
            network.heads[2].weight.fill_(7.0)  # never averaged: keeps its weights
        averages.load_into(network)
        assert averages.n_averaged == 3
        assert network.encoder.w.tolist() == ([3.0, 3.0] if frozen else [2.0, 2.0])  # frozen: not averaged
        assert [h.weight.tolist() for h in network.heads] == [[[2.0, 2.0]], [[5.0, 5.0]], [[7.0, 7.0]]]

    network.zero_grad(set_to_none=True)
    network.heads[1].weight.grad = torch.ones_like(network.heads[1].weight)
    assert StepAverages.changed_heads(network) == [1]


# ---- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_model(tiny_bert, products):
    train, _ = products
    return MaskedBert(tiny_config(tiny_bert)).fit(train, taxonomy=taxonomy_dict(), progress=False)


def test_predictions_stay_within_the_category(masked_model, products):
    _, test = products
    tax = masked_model.taxonomy_
    proba = masked_model.predict_proba(test)
    for scores in (proba, masked_model.predict(test, topk=10, threshold=0.0)):
        for i, cat in enumerate(test.categories):
            assert set(scores[i].indices) <= set(tax.relevant_ids(cat).tolist())
    # P@k lists every relevant label, whatever its probability
    assert np.array_equal(np.diff(proba.indptr), [len(tax.relevant_ids(c)) for c in test.categories])
    hist = masked_model.history_
    assert hist["steps"] == hist["total_steps"] and hist["evaluations"] and "swa" in hist
    per_label = np.full(len(masked_model.labels_), 2.0)
    assert masked_model.predict(test, threshold=per_label).nnz == 0
    assert masked_model.predict(test, threshold=0.0, topk=1).nnz == len(test)


def test_save_load_identical_predictions(masked_model, products, tmp_path):
    _, test = products
    masked_model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, MaskedBert) and loaded.labels_ == masked_model.labels_
    a, b = masked_model.predict_proba(test), loaded.predict_proba(test)
    assert (a != b).nnz == 0
    # the threshold tuned on the model's validation split travels with it and is the default
    tuned = masked_model.history_["thresholds"]
    assert masked_model.config.predict.threshold == "tuned" and 0.0 < tuned["global"] <= 1.0
    np.testing.assert_array_equal(loaded.thresholds_, np.full(len(loaded.labels_), np.float32(tuned["global"])))
    d = loaded.predict(test)
    assert (d != masked_model.predict(test, threshold=np.float32(tuned["global"]))).nnz == 0
    # without its thresholds.npy the directory is refused (the fixed threshold took over in silence)
    import shutil

    from xmc.errors import ModelFormatError

    shutil.copytree(tmp_path / "model", tmp_path / "no-thresholds")
    (tmp_path / "no-thresholds" / "thresholds.npy").unlink()
    with pytest.raises(ModelFormatError, match="thresholds.npy is missing"):
        load_model(tmp_path / "no-thresholds")
    assert np.diff(d.indptr).min() >= 0 and d.nnz > 0 and d.data.min() >= np.float32(tuned["global"])
    c = loaded.predict(test.titles, categories=test.categories)  # raw titles lack descriptions: still masked
    for i, cat in enumerate(test.categories):
        assert set(c[i].indices) <= set(loaded.taxonomy_.relevant_ids(cat).tolist())


@pytest.mark.parametrize("heads", ["leaf", "top"])
def test_multi_head_baselines(tiny_bert, products, heads):
    train, test = products
    config = tiny_config(tiny_bert, heads=heads, masking=False, train={"epochs": 1, "swa": False})
    model = MaskedBert(config).fit(train, taxonomy=taxonomy_dict(), progress=False)
    expected = sorted(CATALOGUE) if heads == "leaf" else ["Clothing", "Shoes"]
    assert model.groups_ == expected and len(model.network_.heads) == len(expected)
    assert model._group_ids(["Clothing > Skirts", "Shoes > Boots", None], 3).tolist()[1] == expected.index(
        "Shoes > Boots" if heads == "leaf" else "Shoes")
    proba = model.predict_proba(test)
    for i, cat in enumerate(test.categories):  # unmasked training, filtered predictions
        assert set(proba[i].indices) <= set(model.taxonomy_.relevant_ids(cat).tolist())


def test_unfiltered_bert_needs_no_taxonomy(tiny_bert, products):
    train, test = products
    config = tiny_config(tiny_bert, masking=False, filter_predictions=False, heads="top",
                         train={"epochs": 1, "swa": False, "head_learning_rate": 1e-2})
    model = MaskedBert(config).fit(train, progress=False)  # heads group by category; no taxonomy needed
    assert model.taxonomy_ is None and model.groups_ == ["Clothing", "Shoes"]
    assert model.predict_proba(test).nnz == len(test) * len(train.labels)


def test_cli_train_predict_evaluate(tiny_bert, products, tmp_path, capsys):
    train, test = products

    def write(path, data):
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(len(data)):
                fh.write(json.dumps({"id": data.ids[i], "title": data.titles[i], "description": data.descriptions[i],
                                     "category": data.categories[i], "labels": data.label_names_of(i)}) + "\n")

    write(tmp_path / "train.jsonl", train)
    write(tmp_path / "test.jsonl", test)
    (tmp_path / "taxonomy.json").write_text(json.dumps(taxonomy_dict()), encoding="utf-8")
    tiny_config(tiny_bert, train={"epochs": 1}).to_json(tmp_path / "config.json")
    args = ["train", "--model", "masked-bert", "--train", str(tmp_path / "train.jsonl"), "--config",
            str(tmp_path / "config.json"), "--taxonomy", str(tmp_path / "taxonomy.json"), "--out", str(tmp_path / "m")]
    assert cli_main(args) == 0
    assert cli_main(["predict", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "test.jsonl"),
                     "--out", str(tmp_path / "pred.jsonl"), "--threshold", "0.0", "--topk", "3"]) == 0
    lines = [json.loads(x) for x in open(tmp_path / "pred.jsonl", encoding="utf-8")]
    allowed = taxonomy_dict()
    assert len(lines) == len(test) and all(len(r["labels"]) == 3 for r in lines)
    for record, cat in zip(lines, test.categories):
        assert set(record["labels"]) <= set(allowed[cat])
    assert cli_main(["evaluate", "--truth", str(tmp_path / "test.jsonl"), "--pred", str(tmp_path / "pred.jsonl"),
                     "--train", str(tmp_path / "train.jsonl"), "--report"]) == 0
    assert "micro" in capsys.readouterr().out
    # --beam-size names the option, not the input file (it was reported as a problem with test.jsonl)
    assert cli_main(["predict", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "test.jsonl"),
                     "--out", str(tmp_path / "pred2.jsonl"), "--beam-size", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' loading bars
    assert err.startswith("xmc: error: --beam-size") and "test.jsonl" not in err
    # a bad taxonomy file: one clear line, exit code 2
    (tmp_path / "bad.json").write_text("[1, 2]", encoding="utf-8")
    assert cli_main(args[:-4] + ["--taxonomy", str(tmp_path / "bad.json"), "--out", str(tmp_path / "m2")]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert read_jsonl(tmp_path / "test.jsonl").categories == test.categories


# ---- frozen encoder (linear probing) ---------------------------------------------------------


def frozen_config(tiny_bert, cache_dir=None, **overrides) -> MaskedBertConfig:
    train = dict(freeze_encoder=True, epochs=12, head_learning_rate=3e-2, cache_dir=cache_dir, patience=100)
    train.update(overrides.pop("train", {}))
    return tiny_config(tiny_bert, train=train, **overrides)


def fit_recording_init(config, train, taxonomy) -> tuple[MaskedBert, dict]:
    """Fit, and return the model with a copy of its network's state just after initialisation."""
    initial = {}

    def build(*args, **kwargs):
        network = build_network(*args, **kwargs)
        initial.update({k: v.detach().clone() for k, v in network.state_dict().items()})
        return network

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(masked_bert_module, "build_network", build)
        model = MaskedBert(config).fit(train, taxonomy=taxonomy, progress=False)
    return model, initial


@pytest.fixture(scope="module")
def frozen_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="module")
def frozen_model(tiny_bert, products, frozen_cache):
    train, _ = products
    return fit_recording_init(frozen_config(tiny_bert, frozen_cache), train, taxonomy_dict())


@pytest.mark.parametrize("heads", ["single", "leaf"])
def test_frozen_fit_trains_only_the_output_layers(tiny_bert, products, frozen_model, heads):
    train, _ = products
    if heads == "single":
        model, initial = frozen_model
    else:  # per-category heads over the same cached features (grouped mini-batches)
        model, initial = fit_recording_init(frozen_config(tiny_bert, heads="leaf", masking=False), train,
                                            taxonomy_dict())
        assert model.groups_ == sorted(CATALOGUE) and len(model.network_.heads) == len(CATALOGUE)
    pretrained = TextEncoder.from_pretrained(model.config.encoder).backbone.state_dict()
    state = model.network_.state_dict()
    encoder_keys = [k for k in state if k.startswith("encoder.")]
    head_keys = [k for k in state if k.startswith("heads.")]
    assert encoder_keys and len(head_keys) == 2 * len(model.groups_)
    for k in encoder_keys:
        assert torch.equal(state[k], initial[k]), k
        assert torch.equal(state[k], pretrained[k.removeprefix("encoder.backbone.")]), k
    for k in head_keys:
        assert not torch.equal(state[k], initial[k]), k
    hist = model.history_
    assert hist["frozen_encoder"] and hist["steps"] == hist["total_steps"] > 12 and "encode" in model.timings_


def test_frozen_save_load_and_cached_features_predict_alike(tiny_bert, products, frozen_model, tmp_path):
    _, test = products
    model, _ = frozen_model
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, MaskedBert) and loaded.config.train.freeze_encoder
    a, b = model.predict_proba(test), loaded.predict_proba(test)
    assert a.nnz and (a != b).nnz == 0
    # The same network through pooled features (other batches, so other padding) and through tokens.
    cache = EmbeddingCache()
    c = model.predict_proba(test, cache=cache)
    assert np.array_equal(c.indptr, a.indptr) and np.array_equal(c.indices, a.indices)
    np.testing.assert_allclose(c.data, a.data, rtol=1e-5, atol=1e-6)
    assert (model.predict_proba(test, cache=cache) != c).nnz == 0 and (cache.misses, cache.hits) == (1, 1)
    tokens = tokenize_pairs(model.network_.encoder.tokenizer, *product_pairs(test), model.config.encoder.max_length)
    features = pooled_features(model.network_, tokens, batch_size=5, amp=False)
    mask, _ = model.taxonomy_.mask(test.categories)
    d = predict_probabilities(model.network_, features, model._group_ids(test.categories, len(test)), mask,
                              batch_size=7, amp=False)
    np.testing.assert_allclose(d.toarray(), a.toarray(), rtol=1e-5, atol=1e-6)


def test_frozen_rows_share_cached_features(tiny_bert, products, frozen_model, frozen_cache, monkeypatch):
    train, _ = products
    files = sorted(f for f in os.listdir(frozen_cache))
    assert len(files) == 2 and all(f.endswith(".npy") for f in files)  # training and validation products

    def never(*args, **kwargs):
        raise AssertionError("products were encoded again")

    monkeypatch.setattr(masked_bert_module, "pooled_features", never)
    other = MaskedBert(frozen_config(tiny_bert, frozen_cache, masking=False, train={"epochs": 1}))
    other.fit(train, taxonomy=taxonomy_dict(), progress=False)
    assert sorted(os.listdir(frozen_cache)) == files
    with pytest.raises(ConfigError, match="freeze_encoder"):
        MaskedTrainConfig(cache_dir=frozen_cache)


def test_frozen_masked_loss_never_trains_irrelevant_outputs(tiny_bert, products):
    train, test = products
    taxonomy = taxonomy_dict()
    taxonomy["Shoes > Boots"].remove("Heel=Flat")  # a label relevant to no category
    flat = train.labels.names.index("Heel=Flat")
    assert train.Y[:, flat].nnz  # ... though some training products carry it
    config = frozen_config(tiny_bert, train={"weight_decay": 0.0, "epochs": 4})
    model, initial = fit_recording_init(config, train, taxonomy)
    head = model.network_.heads[0]
    assert torch.equal(head.weight[flat], initial["heads.0.weight"][flat])  # zero gradient at every step
    assert head.bias[flat] == initial["heads.0.bias"][flat]
    others = [j for j in range(len(train.labels)) if j != flat]
    assert not torch.equal(head.weight[others], initial["heads.0.weight"][others])
    for scores in (model.predict_proba(test), model.predict(test, topk=10, threshold=0.0)):
        for i, cat in enumerate(test.categories):
            assert set(scores[i].indices) <= {train.labels.names.index(x) for x in taxonomy[cat]}
    # Control: the unmasked loss does train that label's outputs.
    plain, initial = fit_recording_init(dataclasses.replace(config, masking=False), train, taxonomy)
    assert not torch.equal(plain.network_.heads[0].weight[flat], initial["heads.0.weight"][flat])


def test_shipped_masked_bert_configs_load():
    """Every configs/masked-bert*.json is a valid config (a renamed key would fail here, not in a run)."""
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parents[1] / "configs").glob("masked-bert*.json"))
    assert paths
    for path in paths:
        config = MaskedBertConfig.from_json(path)
        assert config.masking, path


def test_cli_auto_budget_is_printed_and_saved_resolved(tiny_bert, products, tmp_path, capsys):
    train, _ = products
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(train)):
            fh.write(json.dumps({"id": train.ids[i], "title": train.titles[i], "category": train.categories[i],
                                 "labels": train.label_names_of(i)}) + "\n")
    (tmp_path / "taxonomy.json").write_text(json.dumps(taxonomy_dict()), encoding="utf-8")
    config = tiny_config(tiny_bert).to_dict()
    config["train"].update(epochs="auto", freeze_encoder="auto", head_learning_rate="auto")
    config["encoder"]["max_length"] = "auto"
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert cli_main(["train", "--model", "masked-bert", "--train", str(tmp_path / "train.jsonl"), "--config",
                     str(tmp_path / "config.json"), "--taxonomy", str(tmp_path / "taxonomy.json"),
                     "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("budget for cpu: encoder.max_length=128 (auto)") and "estimated time" in out
    saved = json.loads((tmp_path / "m" / "xmc_model.json").read_text())["config"]
    assert saved["train"]["freeze_encoder"] is True and saved["train"]["epochs"] == 30.0
    assert saved["encoder"]["max_length"] == 128 and saved["predict"]["threshold"] == "tuned"
    # the tuned threshold makes `xmc predict` with no options list labels (0 pairs with a fixed 0.5 before)
    assert cli_main(["predict", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "train.jsonl"),
                     "--out", str(tmp_path / "pred.jsonl")]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "pred.jsonl", encoding="utf-8")]
    assert sum(bool(r["labels"]) for r in rows) >= 0.8 * len(rows)
    allowed = taxonomy_dict()
    assert all(set(r["labels"]) <= set(allowed[cat]) for r, cat in zip(rows, train.categories))
