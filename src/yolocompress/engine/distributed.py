"""DistributedDataParallel plumbing for `torchrun --nproc_per_node N -m yolocompress train ...`."""
from __future__ import annotations

import os

import torch
import torch.distributed as td
import torch.nn as nn


def rank() -> int:
    """-1 outside torchrun, else this process's global rank."""
    return int(os.environ.get("RANK", -1)) if "LOCAL_RANK" in os.environ else -1


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1)) if "LOCAL_RANK" in os.environ else 1


def init_if_needed(device: torch.device) -> None:
    if world_size() > 1 and not td.is_initialized():
        td.init_process_group(backend="nccl" if device.type == "cuda" and td.is_nccl_available() else "gloo")


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun each process takes the CUDA device of its local rank."""
    if world_size() > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    init_if_needed(device)
    return device


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def barrier() -> None:
    if td.is_initialized():
        td.barrier()


def cleanup() -> None:
    if td.is_initialized():
        td.destroy_process_group()


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's value of `flag` on every rank (e.g. early stopping, decided where validation runs)."""
    t = torch.tensor([int(flag)], device=device)
    td.broadcast(t, 0)  # also the barrier that keeps the ranks in step
    return bool(t.item())
