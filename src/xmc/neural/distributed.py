"""Multi-process (DDP) support: the same code runs alone or under ``torchrun`` / ``accelerate launch``.

Under a launcher (``WORLD_SIZE`` > 1 in the environment) the process group is started on first
use, each process takes the GPU of its ``LOCAL_RANK``, matcher training splits every global batch
across processes and averages gradients (DistributedDataParallel), and only rank 0 writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True inside a multi-process launch (torchrun, accelerate, ...)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> None:
    """Start the process group a launcher described in the environment (no-op otherwise)."""
    if launched() and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def world() -> tuple[int, int]:
    """(world size, rank); (1, 0) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def is_main() -> bool:
    return world()[1] == 0


def barrier() -> None:
    if world()[0] > 1:
        dist.barrier()
