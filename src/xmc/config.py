"""Typed, validated configuration objects.

Every model and training stage in xmc is configured by a dataclass that
inherits :class:`Config`. Configs round-trip through JSON, reject unknown
keys (naming them), check value types, and may validate their values in
``validate``. This gives one way to pass each parameter: build the config
in Python, or write it as a JSON file for the CLI (``xmc config NAME``
prints the full default).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass
class Config:
    """Base class of typed configs; subclasses are ``@dataclass`` classes."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # NaN passes every range check (NaN < 0 is false)
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{field.name} must be a finite number, got {value}")
        self.validate()

    def validate(self) -> None:
        """Check value ranges; subclasses override and raise :class:`ConfigError`."""

    # ---- conversion -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any] | None, *, where: str = "") -> C:
        """Build from a (possibly partial) dict; missing keys take their defaults.

        ``where`` locates ``data`` in error messages: ``"FILE:"`` (a file's top level),
        ``"FILE:KEY.PATH"`` or ``"KEY.PATH"``; errors then read ``xr.json: train.C must be positive``.
        """
        data = {} if data is None else data
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        if not isinstance(data, dict):
            raise _located(_at(where, f"expected a JSON object, got {type(data).__name__}", cls=cls))
        if data.get("format") == "xmc-model" and "model" in data:  # a model's manifest passed as a config file
            raise _located(_at(where, f"this is the manifest of a saved {data['model']!r} model, not a "
                                         f"{cls.__name__}; pass a config file (xmc config NAME prints one)", cls=cls))
        hints = get_type_hints(cls)
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise _located(_at(where, f"unknown key(s) {', '.join(map(repr, unknown))}; "
                                         f"valid keys are {', '.join(sorted(fields))}", cls=cls))
        kwargs = {}
        for name, value in data.items():
            path = _join(where, name)
            default = fields[name].default_factory
            if isinstance(value, dict) and default is not dataclasses.MISSING:
                base = default()
                if isinstance(base, Config):  # a partial nested object overlays this field's own default
                    kwargs[name] = _overlay(base, value, path)
                    continue
            kwargs[name] = _coerce(value, hints[name], path)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            if getattr(exc, "located", False):
                raise
            raise _located(_at(where, str(exc), fields=fields, cls=cls)) from None
        except (TypeError, ValueError) as exc:
            raise _located(_at(where, str(exc), fields=fields, cls=cls)) from exc

    @classmethod
    def from_json(cls: type[C], path: str | os.PathLike) -> C:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{os.fspath(path)}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{os.fspath(path)}: is a directory, not a JSON config file") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{os.fspath(path)}: not a UTF-8 text file ({exc.reason})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{os.fspath(path)}, line {exc.lineno}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise ConfigError(f"{os.fspath(path)}: invalid JSON (nested too deeply)") from None
        except ValueError:  # an integer of more digits than Python converts
            raise ConfigError(f"{os.fspath(path)}: invalid JSON (a number with too many digits)") from None
        return cls.from_dict(data, where=f"{os.fspath(path)}:")

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated like ``from_dict``)."""
        merged = self.to_dict()
        merged.update({k: _to_plain(v) for k, v in changes.items()})
        return type(self).from_dict(merged)


def _join(where: str, name: str) -> str:
    return f"{where}{name}" if not where or where.endswith(":") else f"{where}.{name}"


_FIELD_WORD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\b")


def _at(where: str, message: str, *, fields: dict | None = None, cls: type | None = None) -> str:
    """``message`` located at ``where`` (see :meth:`Config.from_dict`): ``FILE: key.path.message``."""
    file, colon, keys = where.rpartition(":") if ":" in where else ("", "", where)
    prefix = f"{file}: " if colon else ""
    if not keys:
        return f"{prefix}{message}" if prefix else f"{cls.__name__}: {message}" if cls else message
    word = _FIELD_WORD.match(message)
    if fields is not None and word and word.group(1) in fields:  # "C must be positive" -> "train.C must be ..."
        return f"{prefix}{keys}.{message}"
    return f"{prefix}{keys}: {message}"


def _located(message: str) -> ConfigError:
    error = ConfigError(message)
    error.located = True  # an enclosing config must not prefix it again
    return error


def _overlay(base: "Config", value: dict[str, Any], where: str) -> "Config":
    """``base`` with the keys of ``value`` replaced, nested objects overlaid in turn.

    A model's default may differ from its config class' defaults (GUDN's ``train`` sets its own
    learning rates; ``"auto"`` budgets); a file giving one key of ``train`` must keep the rest.
    """
    names = {f.name for f in dataclasses.fields(base) if f.init}
    merged = {}
    for key, item in value.items():
        current = getattr(base, key, None) if key in names else None
        merged[key] = _overlay(current, item, _join(where, key)) if isinstance(current, Config) and \
            isinstance(item, dict) else item
    full = {name: getattr(base, name) for name in names}
    full.update(merged)
    unknown = sorted(set(value) - names)
    if unknown:  # the same message as from_dict's
        return type(base).from_dict(value, where=where)
    return type(base).from_dict(full, where=where)


def _to_plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " / ".join(map(repr, get_args(tp)))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``, converting JSON shapes (list -> tuple, dict -> Config)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:  # Optional[X]: X's own message (e.g. the unknown key of a nested config)
            raise _located(errors[0])
        raise _located(_at(path, f"{value!r} matches none of {', '.join(_type_name(o) for o in options)}"))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise _located(_at(path, f"{value!r} is not one of {', '.join(map(repr, allowed))}"))
        return value
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise _located(_at(path, f"expected a list, got {type(value).__name__}"))
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _located(_at(path, f"expected an object, got {type(value).__name__}"))
        _, val_tp = get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, val_tp, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if value is None:  # from_dict(None) would be the class's defaults, not this field's own
            raise _located(_at(path, "expected an object, got null (leave the key out for the defaults)"))
        return tp.from_dict(value, where=path)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _located(_at(path, f"expected a number, got {value!r}"))
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _located(_at(path, f"expected an integer, got {value!r}"))
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _located(_at(path, f"expected true or false, got {value!r}"))
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _located(_at(path, f"expected a string, got {value!r}"))
        return value
    return value


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device(device: str, key: str = "device") -> None:
    """ConfigError unless ``device`` names a device xmc runs on: ``auto`` (CUDA when present), ``cpu``,
    ``cuda`` or ``cuda:N``, ``mps``; torch's own error for another came as an internal error mid-run."""
    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"{key} {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
