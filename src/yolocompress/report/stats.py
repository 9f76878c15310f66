"""Report rows: the core counters and timer (core/stats.py) plus what needs a checkpoint or a validator."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch.nn as nn

from ..core.stats import count_gflops, count_params, file_size_mb, latency_key, measure_latency


def checkpoint_size_mb(model: nn.Module) -> float:
    """Size of `model` saved in our format (FP32 weights, no optimizer): comparable whatever file it came from
    (official checkpoints hold FP16 weights, training checkpoints an optimizer)."""
    from ..models.checkpoint import save_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        return file_size_mb(save_checkpoint(Path(tmp) / "model.pt", model))


def measure_row(model: nn.Module, label: str, *, validator, imgsz: int, batch: int, device,
                half: bool = False, time_it: bool = True) -> dict:
    """One report row (prune, compress and bench reports): parameters, GFLOPs, checkpoint size, mAP and
    inference time, each measured by the one function for it (`time_it=False`: the caller times the models
    together with `interleaved_latency` and adds the column)."""
    metrics = validator.run(model)
    row = {"Model": label, "Parameters": count_params(model), "GFLOPs": count_gflops(model, imgsz),
           "Model Size": checkpoint_size_mb(model), "mAP50": float(metrics["mAP50"]),
           "mAP50-95": float(metrics["mAP50-95"])}
    if time_it:
        row[latency_key(batch)] = measure_latency(model, imgsz, batch, device, half=half)
    return row
