"""Device selection: CPU by default, CUDA when present, never required."""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)


def select_device(name: str = "auto") -> torch.device:
    """The torch device for ``name``.

    ``auto`` picks CUDA when available, else CPU. An explicit ``cuda`` (or ``cuda:N``) on a
    machine without CUDA falls back to CPU with a warning instead of failing, so one config
    runs everywhere.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # Under torchrun / accelerate each process drives the GPU of its local rank.
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("device %r requested but CUDA is not available; using CPU", name)
        return torch.device("cpu")
    return device


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision (bf16) on CUDA when enabled; a no-op context on CPU."""
    use = enabled and device.type == "cuda"
    dtype = torch.bfloat16 if use and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=use)
