"""Device-dependent "auto" defaults: the paper's settings with CUDA, a frozen encoder on a CPU."""

import json
import os

import pytest

from xmc.cli.main import main as cli_main
from xmc.config import Config
from xmc.models.gudn import GUDNConfig, LightXMLConfig
from xmc.models.masked_bert import MaskedBertConfig
from xmc.models.xr_linear import XRLinearConfig
from xmc.models.xtransformer import XTransformerConfig
from xmc.neural import budget


@pytest.fixture
def cuda(monkeypatch):
    monkeypatch.setattr(budget, "device_kind", lambda device: "cpu" if device == "cpu" else "cuda")


def test_cpu_resolves_to_a_frozen_encoder():
    resolved, chosen = budget.resolve(MaskedBertConfig(), device="cpu")
    assert resolved.train.freeze_encoder is True and resolved.encoder.max_length == 128
    assert resolved.train.epochs == 30.0 and resolved.train.head_learning_rate == 3e-3
    assert set(chosen) == set(budget.RULES["MaskedBertConfig"])
    assert not budget.auto_fields(resolved)
    assert budget.resolve(XTransformerConfig(), device="cpu")[0].matcher.kind == "frozen"


def test_cuda_resolves_to_the_papers_settings(cuda):
    resolved, _ = budget.resolve(GUDNConfig())
    assert resolved.train.freeze_encoder is False and resolved.encoder.max_length == 512
    assert resolved.train.epochs == 3.0 and resolved.train.head_learning_rate == 1e-3 and resolved.train.patience == 2
    assert budget.resolve(XTransformerConfig())[0].matcher.kind == "transformer"
    # an explicit device="cpu" in the config wins over the GPU
    cpu = LightXMLConfig.from_dict({"train": {"device": "cpu"}})
    assert budget.resolve(cpu)[0].train.freeze_encoder is True


def test_values_set_in_a_config_are_kept(cuda):
    config = MaskedBertConfig.from_dict({"train": {"epochs": 2, "freeze_encoder": True}, "encoder": {"max_length": 64}})
    resolved, chosen = budget.resolve(config)
    assert (resolved.train.epochs, resolved.train.freeze_encoder, resolved.encoder.max_length) == (2.0, True, 64)
    assert chosen == {"train.head_learning_rate": None}
    assert budget.resolve(resolved)[0] is resolved  # nothing left to resolve


def test_non_neural_configs_have_no_budget():
    assert budget.summary(XRLinearConfig(), 100) is None and budget.describe_auto(XRLinearConfig()) is None


def test_summary_names_the_device_values_and_an_estimate():
    line = budget.summary(LightXMLConfig.from_dict({"train": {"device": "cpu"}}), 800)
    assert line.startswith("budget for cpu:") and "train.freeze_encoder=true (auto)" in line and "estimated" in line
    frozen = budget.estimate_seconds(budget.resolve(MaskedBertConfig(), "cpu")[0], 1000, "cpu")
    tuned = budget.estimate_seconds(budget.resolve(MaskedBertConfig.from_dict({"train": {"freeze_encoder": False}}),
                                                   "cpu")[0], 1000, "cpu")
    assert 0 < frozen < tuned


@pytest.mark.parametrize("name", ["masked-bert", "gudn", "lightxml", "xtransformer"])
def test_cli_config_prints_auto_json_and_what_it_resolves_to(name, capsys):
    assert cli_main(["config", name]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # stdout stays plain JSON that train accepts
    assert "auto" in out and '"auto" resolves on this machine' in err
    from xmc.models.registry import model_class

    config = model_class(name).config_class.from_dict(data)
    assert isinstance(config, Config) and budget.auto_fields(config)


def test_augment_auto_budget_by_device(cuda):
    from xmc.augment import AugmentConfig, GeneratorConfig

    gpu = budget.resolve(AugmentConfig())[0].generator
    assert (gpu.prompt, gpu.max_words, gpu.n_aug) == (True, 200, 4)
    cpu = budget.resolve(AugmentConfig.from_dict({"generator": {"device": "cpu", "n_aug": 3}}))[0].generator
    assert (cpu.prompt, cpu.max_words, cpu.n_aug) == (False, 40, 3)
    assert budget.resolve(AugmentConfig(), device="cpu")[0].generator.n_aug == 1
    assert budget.resolve(GeneratorConfig(prompt="auto"), device="cpu")[0].prompt is False
    line = budget.summary(AugmentConfig.from_dict({"generator": {"device": "cpu"}}), 300)
    assert line.startswith("budget for cpu: generator.prompt=false (auto)")


def test_partial_nested_objects_keep_the_models_own_defaults_and_reject_unknown_keys():
    from xmc.errors import ConfigError

    train = GUDNConfig.from_dict({"train": {"batch_size": 16}}).train
    assert train.batch_size == 16 and train.epochs == "auto" and train.select_metric == "p@1"
    with pytest.raises(ConfigError, match=r"^train: unknown key\(s\) 'nope'"):
        GUDNConfig.from_dict({"train": {"nope": 1}})
    with pytest.raises(ConfigError, match="encoder.max_length"):
        GUDNConfig.from_dict({"encoder": {"max_length": "x"}})


def test_gudn_cpu_budget_and_its_estimate_count_the_head_epochs():
    gudn, _ = budget.resolve(GUDNConfig(), device="cpu")
    lightxml, _ = budget.resolve(LightXMLConfig(), device="cpu")
    assert (gudn.train.epochs, gudn.train.patience) == (60.0, 10)
    assert (lightxml.train.epochs, lightxml.train.patience) == (30.0, 5)
    # over cached features an epoch of gudn's heads costs n / 230 s on the 2-core CPU (measured)
    shorter = GUDNConfig.from_dict({**gudn.to_dict(), "train": {**gudn.to_dict()["train"], "epochs": 30.0}})
    extra = budget.estimate_seconds(gudn, 800, "cpu", 300) - budget.estimate_seconds(shorter, 800, "cpu", 300)
    scale = budget._CPU_CORES_MEASURED / max(1, min(os.cpu_count() or 1, budget._threads()))
    assert extra == pytest.approx(30 * 800 / 230.0 * scale)
