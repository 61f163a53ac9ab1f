"""The one inference loop: length-sorted dynamic padding equals the unsorted, fully padded loop."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xmc.neural.configs import EncoderConfig  # noqa: E402
from xmc.neural.encoder import TextEncoder  # noqa: E402
from xmc.neural.inference import sorted_batches  # noqa: E402

WORDS = ["red", "green", "blue", "shoe", "shirt", "hat", "big", "small", "cotton", "wool"]


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir):
    return tiny_bert_dir("tiny-bert-inference", WORDS, layers=1)


def test_sorted_batches_cover_every_row_once_longest_first_per_group():
    lengths = np.array([3, 9, 1, 9, 5, 2, 7])
    groups = np.array([1, 0, 1, 0, 0, 1, 1])
    batches = sorted_batches(lengths, 2, groups)
    assert [(g, rows.tolist()) for g, rows in batches] == [(0, [1, 3]), (0, [4]), (1, [6, 0]), (1, [5, 2])]
    assert sorted_batches(np.zeros(0), 4) == []


@pytest.mark.parametrize("pooling", ["mean", "cls", "cls-concat"])
def test_length_sorted_dynamic_padding_equals_the_unsorted_padded_loop(tiny_bert, pooling):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(23)]
    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert, max_length=24, pooling=pooling,
                                                        last_layers=2))
    encoder.train()
    got = encoder.encode(texts, batch_size=4, progress=False)
    assert encoder.training  # the mode is restored
    encoder.eval()
    expected = []
    padded = encoder.tokenize(texts)  # every text padded to the longest of all, in input order
    with torch.no_grad():
        for s in range(0, len(texts), 4):
            expected.append(encoder(**{k: v[s:s + 4] for k, v in padded.items()}).numpy())
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-5, rtol=1e-5)
    assert encoder.encode([], progress=False).shape == (0, encoder.dim)


def test_an_encoder_refuses_more_concatenated_layers_than_it_has(tiny_bert_dir):
    """lightxml / gudn failed mid-training with a shape mismatch (an internal error)."""
    from xmc.errors import ConfigError
    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder

    path = tiny_bert_dir("layers-bert", ["wine", "fish"])
    layers = TextEncoder.from_pretrained(EncoderConfig(model_path=path)).backbone.config.num_hidden_layers
    ok = TextEncoder.from_pretrained(EncoderConfig(model_path=path, pooling="cls-concat", last_layers=layers + 1))
    assert ok.dim == ok.backbone.config.hidden_size * (layers + 1)
    with pytest.raises(ConfigError, match=f"last_layers={layers + 2} but the encoder has only {layers} layers"):
        TextEncoder.from_pretrained(EncoderConfig(model_path=path, pooling="cls-concat", last_layers=layers + 2))


def test_quiet_silences_transformers_bars_when_saving_an_encoder(tiny_bert_dir, tmp_path, capfd):
    """-q left transformers' "Writing model shards" bar on stderr."""
    from xmc.neural.configs import EncoderConfig
    from xmc.neural.encoder import TextEncoder
    from xmc.progress import quiet

    encoder = TextEncoder.from_pretrained(EncoderConfig(model_path=tiny_bert_dir("quiet-bert", ["wine"])))
    capfd.readouterr()
    with quiet():
        encoder.save(str(tmp_path / "enc"))
        TextEncoder.from_pretrained(EncoderConfig(model_path=str(tmp_path / "enc")))
    assert capfd.readouterr().err == ""
