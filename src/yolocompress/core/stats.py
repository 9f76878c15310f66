"""The one way numbers about a model are measured: parameters, GFLOPs, file size and latency.

GFLOPs follow the official model summaries (thop's rules at a stride-sized input, scaled to the image size):
2 x (conv multiply-accumulates + 4 x BatchNorm output elements (thop counts an affine norm twice) +
linear MACs); activations, pooling and upsampling count nothing. This reproduces the official summaries
(yolov5n 4.6, yolov5s 16.6, yolov7-tiny 13.9 GFLOPs at 640).
"""
from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from .device import select_device


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _macs_hook(counter):
    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            k = m.weight.shape[2] * m.weight.shape[3] * m.in_channels // m.groups
            counter[0] += out.numel() * k
        elif isinstance(m, nn.BatchNorm2d):
            counter[0] += 4 * out.numel() if m.affine else 2 * out.numel()
        elif isinstance(m, nn.Linear):
            counter[0] += out.numel() * m.in_features
    return hook


@torch.no_grad()
def count_gflops(model: nn.Module, imgsz: int | tuple = 640, ch: int = 3) -> float:
    """GFLOPs of one forward pass at `imgsz` (an int or (h, w)), counted at the largest stride and scaled."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    stride = max(int(getattr(model, "stride", torch.tensor([32.0])).max()), 32)
    m = copy.deepcopy(model).float().cpu().eval()
    counter = [0]
    handles = [mod.register_forward_hook(_macs_hook(counter)) for mod in m.modules()
               if isinstance(mod, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    try:
        m(torch.zeros(1, ch, stride, stride))
    finally:
        for hd in handles:
            hd.remove()
    return 2 * counter[0] / 1e9 * (h / stride) * (w / stride)


def file_size_mb(path) -> float:
    return Path(path).stat().st_size / 1e6


DEFAULT_LATENCY_ROUNDS = 3  # interleaved passes of `bench` and of the pruning report


def _timing_copy(model: nn.Module, imgsz: int, batch_size: int, device, half: bool):
    """(eval copy of the model on the device, input batch): the caller's model is never moved or cast."""
    dev = select_device(device)
    m = copy.deepcopy(model).to(dev).eval()
    x = torch.rand(batch_size, 3, imgsz, imgsz, device=dev)
    if half and dev.type == "cuda":
        m, x = m.half(), x.half()
    return m, x


def measure_latency(model: nn.Module, imgsz: int = 640, batch_size: int = 1, device="cpu", half: bool = False,
                    warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds per batch: warm-up runs first, CUDA synchronised around each timed run."""
    return _time_runs(*_timing_copy(model, imgsz, batch_size, device, half), warmup, repeats)


@torch.no_grad()
def _time_runs(m: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10) -> float:
    dev = x.device
    for _ in range(warmup):
        m(x)
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        m(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def interleaved_latency(models: list, imgsz: int, batch_size: int, device="cpu", half: bool = False,
                        rounds: int = DEFAULT_LATENCY_ROUNDS) -> list[float]:
    """Median ms per batch of each model over `rounds` passes that time the models one after the other.

    On a shared or throttling machine, speed drifts over seconds; timing model A fully and then model B charges
    that drift to one of them. Interleaving spreads it over all models, so their ratios stay meaningful.
    """
    copies = [_timing_copy(m, imgsz, batch_size, device, half) for m in models]  # once, not once per pass
    times = [[] for _ in models]
    for _ in range(max(1, rounds)):
        for i, (m, x) in enumerate(copies):
            times[i].append(_time_runs(m, x))
    return [statistics.median(t) for t in times]


def model_summary(model: nn.Module, imgsz: int = 640) -> dict:
    """Params and GFLOPs of the model as it is and after fusing (on a copy)."""
    fused = copy.deepcopy(model).eval()
    if hasattr(fused, "fuse"):
        fused.fuse()
    return {"layers": len(getattr(model, "model", [])), "params": count_params(model),
            "gflops": count_gflops(model, imgsz), "params_fused": count_params(fused),
            "gflops_fused": count_gflops(fused, imgsz)}


def latency_key(batch: int) -> str:
    return f"Inference Time (bs {batch})"
