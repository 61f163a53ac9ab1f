"""A training state (optimizer, scheduler, scaler, RNG, best weights) on disk without pickle.

``torch.save`` writes a pickle, and even ``torch.load(weights_only=True)`` unpickles (with a
restricted unpickler) a file from a directory the user names. A state dict is nested dicts, lists
and tuples of tensors and plain numbers, so its tensors go to one safetensors file and its structure
to a JSON file beside it, each tensor there replaced by its key in the safetensors file. Written by
hand because neither library stores such a nesting: safetensors holds a flat name -> tensor map.
"""

from __future__ import annotations

import json
import os
from typing import Any

_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def save_state(state: dict, directory: str, name: str) -> None:
    """Write ``state`` as ``name.safetensors`` (its tensors, on the CPU) and ``name.json`` (the rest).

    Raises TypeError for a value that is neither a tensor, a container of them, nor a JSON scalar,
    so that no part of a state is dropped in silence.
    """
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}

    def encode(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = value.detach().cpu().contiguous()
            return {_TENSOR: key}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v) for v in value]}
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: encode(v) for k, v in value.items()}
            return {_ITEMS: [[k, encode(v)] for k, v in value.items()]}  # int keys (optimizer parameter ids)
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store a {type(value).__name__} in a training state")

    structure = encode(state)
    save_file(tensors, os.path.join(directory, f"{name}.safetensors"))
    with open(os.path.join(directory, f"{name}.json"), "w", encoding="utf-8") as fh:
        json.dump(structure, fh)


def load_state(directory: str, name: str) -> dict:
    """The state :func:`save_state` wrote, its tensors on the CPU; KeyError / ValueError / OSError when
    the two files do not belong together."""
    from safetensors.torch import load_file

    tensors = load_file(os.path.join(directory, f"{name}.safetensors"))
    with open(os.path.join(directory, f"{name}.json"), encoding="utf-8") as fh:
        structure = json.load(fh)

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, dict):
            if set(value) == {_TENSOR}:
                return tensors[value[_TENSOR]]
            if set(value) == {_TUPLE}:
                return tuple(decode(v) for v in value[_TUPLE])
            if set(value) == {_ITEMS}:
                return {k: decode(v) for k, v in value[_ITEMS]}
            return {k: decode(v) for k, v in value.items()}
        return value

    state = decode(structure)
    if not isinstance(state, dict):
        raise ValueError(f"{name}.json does not hold a state")
    return state
