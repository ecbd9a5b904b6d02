"""Processes and devices: torchrun data parallelism (gloo on CPU, nccl on CUDA), seeding, reductions."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn as nn

from reference.train.errors import TrainError


# ----------------------------------------------------------------------------- processes and devices
@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Init the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return Dist(), resolve_device(device_name)
    d = Dist(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
             local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if d.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return d, device


def barrier(d: Dist) -> None:
    if d.enabled:
        torch_dist.barrier()


def all_sum(values: Sequence[float], d: Dist, device: torch.device) -> list[float]:
    """Sum numbers over all processes (identity without torchrun)."""
    if not d.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return t.tolist()


def sync_buffers(model: nn.Module, d: Dist) -> None:
    """Make every process's buffers equal after an epoch (before evaluating and saving).

    DDP broadcasts rank 0's buffers at the start of each forward, so after the last
    step each process holds running statistics (stage 1's BatchNorm) updated by its
    own batch only. Float buffers are averaged over the processes (timm's
    distribute_bn), the others (counters, flags) copied from rank 0.
    """
    if not d.enabled:
        return
    for buf in unwrap(model).buffers():
        if buf.is_floating_point():
            torch_dist.all_reduce(buf)
            buf.div_(d.world_size)
        else:
            torch_dist.broadcast(buf, 0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
