"""xmc.config.Config: unknown keys, nested configs, type checks, JSON files, replace."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal, Optional

import pytest

from xmc.config import Config, check
from xmc.errors import ConfigError


@dataclasses.dataclass
class Inner(Config):
    size: int = 1
    rate: float = 0.5

    def validate(self) -> None:
        check(self.size >= 1, "size must be >= 1")


@dataclasses.dataclass
class Outer(Config):
    name: str = "x"
    mode: Literal["fast", "slow"] = "fast"
    limit: Optional[int] = None
    cap: int | None = 3
    flag: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)
    maybe_inner: Inner | None = None
    items: list[Inner] = dataclasses.field(default_factory=lambda: [Inner()])
    dims: tuple[int, ...] = (1, 2)
    weights: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Picky(Config):
    low: int = 0
    high: int = 1

    def validate(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high")  # a plain ValueError, not ConfigError


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# ---- keys ------------------------------------------------------------------------
def test_defaults_and_partial_dict():
    assert Outer.from_dict({}) == Outer()
    assert Outer.from_dict(None) == Outer()
    cfg = Outer.from_dict({"name": "y", "inner": {"size": 4}})
    assert cfg.name == "y" and cfg.inner == Inner(size=4, rate=0.5)  # missing nested keys keep defaults
    assert cfg.mode == "fast" and cfg.items == [Inner()]


def test_default_factories_are_not_shared():
    a, b = Outer(), Outer()
    a.items.append(Inner(size=9))
    a.weights["w"] = 1.0
    assert b.items == [Inner()] and b.weights == {}


def test_unknown_key_named_with_valid_keys():
    message = _error(Outer.from_dict, {"name": "y", "colour": "red"})
    assert "'colour'" in message
    assert "valid keys are" in message
    for key in ("cap", "dims", "flag", "inner", "items", "limit", "mode", "name", "weights"):
        assert key in message.split("valid keys are")[1]
    assert "'name'" not in message  # only the unknown key is quoted


def test_several_unknown_keys_all_named():
    message = _error(Inner.from_dict, {"zeta": 1, "alpha": 2, "size": 3})
    assert "'alpha'" in message and "'zeta'" in message
    assert message.startswith("Inner: ")


def test_unknown_key_in_nested_config_names_path():
    message = _error(Outer.from_dict, {"inner": {"sise": 3}})
    assert message.startswith("inner: ") and "'sise'" in message and "rate, size" in message


def test_unknown_key_in_list_item_names_index():
    message = _error(Outer.from_dict, {"items": [{"size": 2}, {"bogus": 1}]})
    assert message.startswith("items[1]: ") and "'bogus'" in message


def test_unknown_key_in_optional_nested_config_is_named():
    message = _error(Outer.from_dict, {"maybe_inner": {"bogus": 1}})
    assert message.startswith("maybe_inner: unknown key(s) 'bogus'; valid keys are rate, size")


def test_not_an_object():
    assert "expected a JSON object, got list" in _error(Outer.from_dict, [1, 2])
    assert _error(Outer.from_dict, {"inner": 5}) == "inner: expected a JSON object, got int"


# ---- types -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"inner": {"size": "3"}}, "inner.size: expected an integer, got '3'"),
        ({"inner": {"size": True}}, "inner.size: expected an integer, got True"),  # bool is not an int here
        ({"inner": {"size": 2.0}}, "inner.size: expected an integer, got 2.0"),  # no silent float -> int
        ({"inner": {"rate": "0.1"}}, "inner.rate: expected a number"),
        ({"inner": {"rate": False}}, "inner.rate: expected a number"),
        ({"flag": 1}, "flag: expected true or false, got 1"),
        ({"name": 3}, "name: expected a string, got 3"),
        ({"items": {"size": 1}}, "items: expected a list, got dict"),
        ({"items": [{"size": 1}, 7]}, "items[1]: expected a JSON object"),
        ({"dims": [1, "2"]}, "dims[1]: expected an integer"),
        ({"weights": {"a": "x"}}, "weights.a: expected a number, got 'x'"),
        ({"weights": [1.0]}, "weights: expected an object"),
    ],
)
def test_type_errors(data, fragment):
    assert fragment in _error(Outer.from_dict, data)


def test_int_accepted_for_float_and_converted():
    cfg = Outer.from_dict({"inner": {"rate": 1}, "weights": {"a": 2}})
    assert cfg.inner.rate == 1.0 and type(cfg.inner.rate) is float
    assert cfg.weights == {"a": 2.0} and type(cfg.weights["a"]) is float


def test_literal_values():
    assert Outer.from_dict({"mode": "slow"}).mode == "slow"
    message = _error(Outer.from_dict, {"mode": "medium"})
    assert message == "mode: 'medium' is not one of 'fast', 'slow'"


def test_optional_values():
    assert Outer.from_dict({"limit": None}).limit is None
    assert Outer.from_dict({"limit": 5}).limit == 5
    assert Outer.from_dict({"cap": None}).cap is None  # PEP 604 union
    assert "cap" in _error(Outer.from_dict, {"cap": 2.5})
    assert "limit" in _error(Outer.from_dict, {"limit": "x"})
    assert Outer.from_dict({"maybe_inner": {"size": 2}}).maybe_inner == Inner(size=2)
    assert Outer.from_dict({"maybe_inner": None}).maybe_inner is None


def test_list_of_nested_configs_and_tuple():
    cfg = Outer.from_dict({"items": [{"size": 2}, {"rate": 0.1}], "dims": [3, 4, 5]})
    assert cfg.items == [Inner(size=2), Inner(rate=0.1)]
    assert all(isinstance(item, Inner) for item in cfg.items)
    assert cfg.dims == (3, 4, 5) and isinstance(cfg.dims, tuple)
    assert Outer.from_dict({"items": []}).items == []


def test_config_instances_accepted_as_values():
    inner = Inner(size=6)
    assert Outer.from_dict({"inner": inner}).inner is inner


# ---- validation ------------------------------------------------------------------
def test_validate_runs_on_construction_and_from_dict():
    with pytest.raises(ConfigError, match="size must be >= 1"):
        Inner(size=0)
    assert "size must be >= 1" in _error(Outer.from_dict, {"items": [{"size": 0}]})


def test_plain_value_error_in_validate_becomes_config_error():
    message = _error(Picky.from_dict, {"low": 5, "high": 2})
    assert message == "Picky: low must not exceed high"
    assert Picky.from_dict({"low": 1, "high": 2}) == Picky(1, 2)


def test_replace_validates_and_copies():
    base = Outer.from_dict({"name": "base", "items": [{"size": 2}]})
    changed = base.replace(name="new", inner={"size": 3})
    assert changed.name == "new" and changed.inner == Inner(size=3)
    assert changed.items == [Inner(size=2)]  # unchanged fields kept
    assert base.name == "base" and base.inner == Inner()  # the original is untouched
    assert base.replace(inner=Inner(size=4)).inner == Inner(size=4)
    assert "size must be >= 1" in _error(base.replace, inner={"size": 0})
    assert "'nope'" in _error(base.replace, nope=1)
    assert "inner.size: expected an integer" in _error(base.replace, inner={"size": "2"})
    assert "mode" in _error(base.replace, mode="medium")


# ---- JSON ------------------------------------------------------------------------
def test_to_dict_is_plain_json():
    cfg = Outer.from_dict({"items": [{"size": 2}], "dims": [7], "maybe_inner": {"rate": 0.25}})
    plain = cfg.to_dict()
    assert plain["inner"] == {"size": 1, "rate": 0.5}
    assert plain["items"] == [{"size": 2, "rate": 0.5}]
    assert plain["dims"] == [7]
    assert plain["maybe_inner"] == {"size": 1, "rate": 0.25}
    assert json.loads(json.dumps(plain)) == plain
    assert Outer.from_dict(plain) == cfg


def test_json_file_round_trip(tmp_path):
    cfg = Outer.from_dict({"name": "n", "mode": "slow", "limit": 4, "flag": True, "items": [{"size": 3}, {}],
                           "dims": [9, 8], "weights": {"a": 0.5}, "maybe_inner": {"size": 2}})
    path = tmp_path / "cfg.json"
    text = cfg.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text) == cfg.to_dict()
    loaded = Outer.from_json(path)
    assert loaded == cfg
    assert isinstance(loaded.dims, tuple) and isinstance(loaded.items[0], Inner)


def test_from_json_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n  "mode": \n}\n')
    message = _error(Outer.from_json, bad)
    assert message.startswith(f"{bad}, line 4: invalid JSON")

    missing = tmp_path / "missing.json"
    assert _error(Outer.from_json, missing) == f"{missing}: config file not found"

    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"inner": {"speed": 1}}')
    message = _error(Outer.from_json, unknown)
    assert message.startswith(f"{unknown}: inner: unknown key(s) 'speed'")

    bad_value = tmp_path / "value.json"
    bad_value.write_text('{"inner": {"rate": "fast"}}')
    assert _error(Outer.from_json, bad_value) == f"{bad_value}: inner.rate: expected a number, got 'fast'"
    bad_range = tmp_path / "range.json"
    bad_range.write_text('{"inner": {"size": 0}}')  # a validate() message gets the key path of its config
    assert _error(Outer.from_json, bad_range) == f"{bad_range}: inner.size must be >= 1"

    not_object = tmp_path / "list.json"
    not_object.write_text("[1]")
    assert "list.json: expected a JSON object" in _error(Outer.from_json, not_object)


def test_non_finite_numbers_and_null_objects_are_refused_with_their_key():
    from xmc.models.xr_linear import XRLinearConfig
    from xmc.ranker.hierarchy import LinearTrainConfig

    # NaN passes every range check (NaN < 0 is false): refused by name, from JSON and from Python.
    for train, key in (({"bias": float("nan")}, "train.bias"), ({"C": float("inf")}, "train.C")):
        with pytest.raises(ConfigError, match=rf"{key} must be a finite number"):
            XRLinearConfig.from_dict({"train": train})
    with pytest.raises(ConfigError, match="bias must be a finite number"):
        LinearTrainConfig(bias=float("nan"))
    # "train": null would have been the class's defaults (weight threshold 0.1, float32), not the model's.
    with pytest.raises(ConfigError, match="train: expected an object, got null"):
        XRLinearConfig.from_dict({"train": None})
    assert XRLinearConfig.from_dict({}).train == XRLinearConfig().train
