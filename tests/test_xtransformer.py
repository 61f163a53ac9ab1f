"""X-Transformer: matcher loss, embedding cache, combiners, ensembles, save/load with a tiny random BERT."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xmc.datasets.synthetic import make_corpus  # noqa: E402
from xmc.ensemble import average_scores  # noqa: E402
from xmc.errors import ConfigError  # noqa: E402
from xmc.models.registry import load_model  # noqa: E402
from xmc.models.xtransformer import MemberConfig, XTransformer, XTransformerConfig  # noqa: E402
from xmc.neural.cache import EmbeddingCache  # noqa: E402
from xmc.neural.configs import EncoderConfig, MatcherConfig  # noqa: E402
from xmc.neural.device import select_device  # noqa: E402
from xmc.neural.encoder import TextEncoder  # noqa: E402
from xmc.neural.matcher import cluster_recall, squared_hinge_loss, top_clusters  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_train=240, n_test=40, n_labels=40, noise_words=200, doc_length=30, seed=3)


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir, corpus):
    """A random 2-layer BERT with a WordPiece vocabulary of the corpus' words, saved like a hub model."""
    words = sorted({w for t in corpus.train.texts for w in t.lower().split()})
    return tiny_bert_dir("tiny-bert", words, hidden_size=32, intermediate_size=64)


def tiny_config(tiny_bert, **overrides) -> XTransformerConfig:
    base = dict(
        encoder=EncoderConfig(model_path=tiny_bert, max_length=32, batch_size=32),
        members=[MemberConfig(branching=4, max_leaf_size=5)],
        matcher=MatcherConfig(epochs=1, batch_size=16, learning_rate=1e-3, head_learning_rate=1e-2, device="cpu",
                              top_b=4, amp=False),
        n_threads=1,
    )
    base.update(overrides)
    return XTransformerConfig(**base)


def test_squared_hinge_loss_by_hand():
    logits = torch.tensor([[2.0, -0.5], [0.3, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # row 0: max(0, 1-2)^2 + max(0, 1-0.5)^2 = 0.25; row 1: max(0, 1+0.3)^2 + 0 = 1.69; mean = 0.97
    assert squared_hinge_loss(logits, targets).item() == pytest.approx(0.97)


def test_top_clusters_and_recall_by_hand():
    scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.2, 0.3]], dtype=np.float32)
    ids, vals = top_clusters(scores, 2)
    np.testing.assert_array_equal(ids, [[1, 2], [0, 2]])
    np.testing.assert_allclose(vals, [[0.9, 0.5], [0.8, 0.3]])
    M = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32))
    assert cluster_recall(scores, M, 2) == pytest.approx(1 / 3)  # found only cluster 1 of row 0


def test_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"
    assert select_device("cuda").type == "cpu"
    assert select_device("cpu").type == "cpu"


def test_pooling_modes_and_cache(tiny_bert):
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    for pooling, layers, dim in (("cls", 1, 32), ("mean", 1, 32), ("cls-concat", 2, 64)):
        enc = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, pooling=pooling, last_layers=layers))
        out = enc.encode(texts, progress=False)
        assert out.shape == (3, dim)
        # Batching and length-sorting must not change a text's vector.
        single = np.vstack([enc.encode([t], progress=False) for t in texts])
        np.testing.assert_allclose(out, single, atol=1e-5)
    cache = EmbeddingCache()
    a = cache.encode(enc, texts, progress=False)
    b = cache.encode(enc, texts, progress=False)
    assert (cache.hits, cache.misses) == (1, 1) and a is b
    with torch.no_grad():  # a training step changes the weights: the cache must not serve old vectors
        next(enc.backbone.parameters()).add_(0.1)
    cache.encode(enc, texts, progress=False)
    assert cache.misses == 2


def test_unknown_config_key_is_rejected():
    with pytest.raises(ConfigError, match="learning_rat"):
        XTransformerConfig.from_dict({"matcher": {"learning_rat": 1e-4}})


def test_end_to_end_save_load_identical(tiny_bert, corpus, tmp_path):
    model = XTransformer(tiny_config(tiny_bert)).fit(corpus.train, progress=False)
    assert set(model.timings_) >= {"tfidf", "encode_pretrained", "index", "finetune", "ranker"}
    assert model.histories_[0]["best_recall"] >= 0
    scores = model.predict(corpus.test)
    assert scores.shape == (len(corpus.test), len(model.labels_))
    assert (np.diff(scores.indptr) <= 10).all() and scores.nnz > 0
    model.save(tmp_path / "xt")
    loaded = load_model(tmp_path / "xt")
    assert isinstance(loaded, XTransformer)
    np.testing.assert_allclose(loaded.predict(corpus.test).toarray(), scores.toarray(), atol=1e-5)
    # Raw text in, the same answer as through the dataset's fields.
    texts = corpus.test.input_texts(["title", "text"])
    np.testing.assert_allclose(loaded.predict(texts).toarray(), scores.toarray(), atol=1e-5)
    # A directory that lost a part its manifest lists is refused (it loaded and predicted other scores).
    import json
    import shutil

    from xmc.errors import ModelFormatError

    parts = json.loads((tmp_path / "xt" / "xmc_model.json").read_text())["parts"]
    assert parts and all((tmp_path / "xt" / p).exists() for p in parts)
    for part in parts:
        broken = tmp_path / f"broken-{part.replace('/', '-')}"
        shutil.copytree(tmp_path / "xt", broken)
        target = broken / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        with pytest.raises(ModelFormatError, match=f"{part} is missing"):
            load_model(broken)


def test_product_combiner_is_matcher_times_ranker(tiny_bert, corpus):
    cfg = tiny_config(tiny_bert, matcher=MatcherConfig(kind="frozen", epochs=0.2, device="cpu", top_b=3))
    model = XTransformer(cfg).fit(corpus.train, progress=False)
    member = model.members_[0]
    docs = corpus.test.subset(np.arange(5))
    texts = docs.input_texts(["title", "text"])
    product = model.predict(docs, topk=1000, beam_size=3).toarray()
    ranker_only = XTransformer(XTransformerConfig.from_dict({**cfg.to_dict(), "combiner": "ranker"}))
    ranker_only.__dict__.update({k: v for k, v in model.__dict__.items() if k != "config"})
    h = ranker_only.predict(docs, topk=1000, beam_size=3).toarray()
    E = model.encoder_.encode(texts, progress=False)
    ids, g = top_clusters(member.head.scores(E), 3)
    leaf_of = member.ranker.chain[len(member.ranker.chain) - 1].tocsr().indices
    assert (product > 0).sum() >= 5 and (h > 0).sum() >= 5
    for row in range(5):
        for label in np.flatnonzero(product[row]):
            c = leaf_of[label]
            assert c in ids[row]  # only labels of the matcher's top-b clusters are scored
            gc = g[row][list(ids[row]).index(c)]
            expected = np.exp(-max(0.0, 1.0 - gc) ** 3) * h[row, label]
            assert product[row, label] == pytest.approx(expected, rel=1e-4)


def test_ensemble_averages_members(tiny_bert, corpus):
    members = [MemberConfig(branching=4, max_leaf_size=5, seed=0),
               MemberConfig(label_repr="pifa-neural", branching=4, max_leaf_size=5, seed=1)]
    cfg = tiny_config(tiny_bert, members=members, matcher=MatcherConfig(kind="frozen", epochs=0.2, device="cpu"))
    model = XTransformer(cfg).fit(corpus.train, progress=False)
    both = model.predict(corpus.test, topk=5)
    singles = []
    for member in model.members_:
        one = XTransformer(cfg)
        one.__dict__.update({k: v for k, v in model.__dict__.items() if k != "config"})
        one.members_ = [member]
        singles.append(one.predict(corpus.test, topk=5))
    np.testing.assert_allclose(both.toarray(), average_scores(singles, 5).toarray(), atol=1e-6)


def test_linear_matcher_tfidf_only_needs_no_encoder(corpus, tmp_path):
    cfg = XTransformerConfig(matcher=MatcherConfig(kind="linear"), ranker_input="tfidf",
                             members=[MemberConfig(branching=4, max_leaf_size=5)], n_threads=1)
    model = XTransformer(cfg).fit(corpus.train, progress=False)
    assert model.encoder_ is None and "encode_pretrained" not in model.timings_
    model.save(tmp_path / "lin")
    assert not (tmp_path / "lin" / "encoder").exists()
    np.testing.assert_allclose(load_model(tmp_path / "lin").predict(corpus.test).toarray(),
                               model.predict(corpus.test).toarray())


def test_matcher_checkpoint_resumes_finished_run(tiny_bert, corpus, tmp_path):
    from xmc.neural.matcher import train_matcher

    texts = corpus.train.input_texts(["title", "text"])[:64]
    M = sp.csr_matrix((np.arange(64)[:, None] % 3 == np.arange(3)).astype(np.float32))
    cfg = MatcherConfig(epochs=1, batch_size=16, device="cpu", amp=False, top_b=1)
    enc = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, max_length=16))
    enc, head, hist = train_matcher(enc, texts, M, cfg, valid_texts=texts[:16], valid_M=M[:16],
                                    checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    assert hist.steps == 4 and (tmp_path / "ckpt" / "head.safetensors").exists()
    fresh = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, max_length=16))
    fresh, head2, hist2 = train_matcher(fresh, texts, M, cfg, valid_texts=texts[:16], valid_M=M[:16],
                                        checkpoint_dir=str(tmp_path / "ckpt"), progress=False)
    assert hist2.steps == 4  # nothing retrained
    np.testing.assert_allclose(fresh.encode(texts, progress=False), enc.encode(texts, progress=False), atol=1e-6)
    torch.testing.assert_close(head2.linear.weight, head.linear.weight)


@pytest.mark.parametrize("name", ["pifa-tfidf", "pifa-neural", "text-emb", "ensemble", "frozen", "cpu-budget"])
def test_shipped_configs_parse(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / f"xtransformer-{name}.json"
    cfg = XTransformerConfig.from_json(str(path))
    assert cfg.ranker.negatives == "tfn+man" and cfg.ranker_input == "tfidf+neural"
    assert len(cfg.members) == (3 if name == "ensemble" else 1)


def test_cli_train_predict_round_trip(tiny_bert, corpus, tmp_path, capsys):
    import json

    from xmc.cli.main import main

    def write(path, ds):
        with open(path, "w", encoding="utf-8") as fh:
            for i in range(len(ds)):
                fh.write(json.dumps({"id": ds.ids[i], "title": ds.titles[i], "text": ds.texts[i],
                                     "labels": ds.label_names_of(i)}) + "\n")

    write(tmp_path / "train.jsonl", corpus.train)
    write(tmp_path / "test.jsonl", corpus.test)
    (tmp_path / "cfg.json").write_text(json.dumps(tiny_config(tiny_bert).to_dict()), encoding="utf-8")
    assert main(["train", "--model", "xtransformer", "--config", str(tmp_path / "cfg.json"),
                 "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "model")]) == 0
    assert main(["predict", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "test.jsonl"),
                 "--out", str(tmp_path / "pred.jsonl"), "--topk", "3"]) == 0
    rows = [json.loads(line) for line in open(tmp_path / "pred.jsonl", encoding="utf-8")]
    assert len(rows) == len(corpus.test) and all(len(r["labels"]) <= 3 for r in rows)
    model = load_model(tmp_path / "model")
    scores = model.predict(corpus.test, topk=3)
    names = model.labels_.names
    first = [names[j] for j in np.argsort(-scores[0].toarray().ravel(), kind="stable")[: len(rows[0]["labels"])]]
    assert rows[0]["labels"] == first
    capsys.readouterr()


def _ddp_worker(rank, world_size, port, bert_dir, out_dir):
    import os

    import torch.distributed as dist
    from safetensors.torch import save_file

    from xmc.datasets.synthetic import make_corpus
    from xmc.neural.matcher import train_matcher

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    corpus = make_corpus(n_train=240, n_test=40, n_labels=40, noise_words=200, doc_length=30, seed=3)
    texts = corpus.train.input_texts(["title", "text"])[:64]
    M = sp.csr_matrix((np.arange(64)[:, None] % 3 == np.arange(3)).astype(np.float32))
    enc = TextEncoder.from_pretrained(EncoderConfig(model_path=bert_dir, max_length=16))
    cfg = MatcherConfig(epochs=1, batch_size=16, device="cpu", amp=False, top_b=1)
    enc, head, hist = train_matcher(enc, texts, M, cfg, valid_texts=texts[:16], valid_M=M[:16], progress=False)
    save_file({"w": head.linear.weight.detach().contiguous(), "steps": torch.tensor([hist.steps])},
              os.path.join(out_dir, f"rank{rank}.safetensors"))
    dist.destroy_process_group()


def test_ddp_matcher_training_keeps_processes_in_step(tiny_bert, tmp_path):
    """Two gloo processes (what torchrun starts): same step count and identical weights on every rank."""
    import socket

    from safetensors.torch import load_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, tiny_bert, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert int(r0["steps"]) == int(r1["steps"]) == 4
    torch.testing.assert_close(r0["w"], r1["w"])
