"""The one way numbers about a model are measured: parameters, GFLOPs, file size and latency.

GFLOPs follow the official model summaries (thop's rules at a stride-sized input, scaled to the image size):
2 x multiply-accumulates (MACs), where
- a convolution (Conv1d/2d/3d, and torchvision's DeformConv2d as the convolution it is; the conv that
  predicts its offsets and mask is an ordinary Conv2d and counts as one) costs output elements x
  (input channels / groups x kernel size); a transposed convolution input elements x (output channels /
  groups x kernel size);
- a norm layer (BatchNorm, GroupNorm, LayerNorm, InstanceNorm) 4 x its output elements when affine, else 2
  (thop counts an affine norm twice);
- a Linear output elements x input features;
- attention by one rule, whichever way it is written: `nn.MultiheadAttention` costs its q, k, v and output
  projections plus q.k (L x S x E) and attn.v (L x S x E) per batch; a matmul written out in `forward`
  (`torch.matmul`, `@`, `bmm`, `baddbmm`, `mm`, `addmm`, `einsum` without `...`,
  `scaled_dot_product_attention`) output elements x the contracted size;
- activations, pooling, upsampling, softmax, scaling and elementwise adds or products count nothing.
This reproduces the official summaries (yolov5n 4.6, yolov5s 16.6, yolov7-tiny 13.9 GFLOPs at 640).
A module that owns weights none of these rules reads is not silently zero: `uncounted_modules` names it
(`info` and the pruning report print it). Per-channel or scalar weights (one value per channel, e.g.
YOLOv7's implicit knowledge or BiFPN's fusion weights) are elementwise scales and shifts, zero by the rule.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .device import select_device

try:  # torchvision is a dependency of the project, but the counter works without it
    from torchvision.ops import DeformConv2d
except ImportError:  # pragma: no cover
    DeformConv2d = ()

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
_CONVS = (nn.modules.conv._ConvNd,) + ((DeformConv2d,) if DeformConv2d else ())
COUNTED_TYPES = _CONVS + _NORMS + (nn.Linear, nn.MultiheadAttention)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _module_macs(m: nn.Module, args: tuple, kwargs: dict, out) -> int:
    if isinstance(m, nn.MultiheadAttention):
        return _attention_macs(m, args, kwargs)
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        return args[0].numel() * math.prod(m.weight.shape[1:])
    if isinstance(m, _CONVS):
        return out.numel() * math.prod(m.weight.shape[1:])
    if isinstance(m, _NORMS):
        affine = getattr(m, "affine", getattr(m, "elementwise_affine", False))
        return (4 if affine else 2) * out.numel()
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    return 0


def _attention_macs(m: nn.MultiheadAttention, args: tuple, kwargs: dict) -> int:
    """q, k, v and output projections plus q.k and attn.v: N x (L E^2 + S kdim E + S vdim E + 2 L S E + L E^2)."""
    q, k = (args[i] if len(args) > i else kwargs[name] for i, name in enumerate(("query", "key")))
    if q.dim() == 2:  # unbatched [L, E]
        batch, L, S = 1, q.shape[0], k.shape[0]
    elif m.batch_first:
        batch, L, S = q.shape[0], q.shape[1], k.shape[1]
    else:
        batch, L, S = q.shape[1], q.shape[0], k.shape[0]
    E = m.embed_dim
    return batch * (L * E * E + S * m.kdim * E + S * m.vdim * E + 2 * L * S * E + L * E * E)


def _einsum_macs(args) -> int:
    equation, operands = args[0], args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if "." in equation or len(inputs) != len(operands):
        return 0
    sizes = {c: n for term, t in zip(inputs, operands) for c, n in zip(term, t.shape)}
    return math.prod(sizes.values())


class _MatmulCounter(TorchFunctionMode):
    """Counts the matrix products a module's `forward` writes out (attention as users write it)."""

    def __init__(self, counter: list):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("matmul", "__matmul__", "mm", "bmm"):
            self.counter[0] += out.numel() * args[0].shape[-1]
        elif name == "__rmatmul__":
            self.counter[0] += out.numel() * args[1].shape[-1]
        elif name in ("baddbmm", "addmm"):
            self.counter[0] += out.numel() * args[1].shape[-1]
        elif name == "einsum":
            self.counter[0] += _einsum_macs(args)
        elif name == "scaled_dot_product_attention":
            q, k, v = args[:3]
            self.counter[0] += q.numel() // q.shape[-1] * k.shape[-2] * (q.shape[-1] + v.shape[-1])
        return out


@torch.no_grad()
@torch.no_grad()
def count_gflops(model: nn.Module, imgsz: int | tuple = 640, ch: int = 3) -> float:
    """GFLOPs of one forward pass at `imgsz` (an int or (h, w)), counted at the largest stride and scaled.

    A float32 model on the CPU is counted in place (eval mode for the pass, every module's mode put back), which
    the pruning loop does after every step; any other is counted on a float32 CPU copy."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    stride = max(int(getattr(model, "stride", torch.tensor([32.0])).max()), 32)
    params = list(model.parameters())
    in_place = all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    m = model if in_place else copy.deepcopy(model).float().cpu()
    modes = [(mod, mod.training) for mod in m.modules()]
    m.eval()
    counter = [0]

    def hook(mod, args, kwargs, out):
        counter[0] += _module_macs(mod, args, kwargs, out)

    handles = [mod.register_forward_hook(hook, with_kwargs=True) for mod in m.modules()
               if isinstance(mod, COUNTED_TYPES)]
    try:
        with _MatmulCounter(counter):
            m(torch.zeros(1, ch, stride, stride))
    finally:
        for hd in handles:
            hd.remove()
        for mod, training in modes:
            mod.training = training
    return 2 * counter[0] / 1e9 * (h / stride) * (w / stride)


def _elementwise(p: torch.Tensor) -> bool:
    """A scalar, one value per input, or one per channel broadcast over the rest ([1, C, 1, 1])."""
    return sum(d > 1 for d in p.shape) <= 1


def uncounted_modules(model: nn.Module) -> list[str]:
    """'name (Type, N parameters)' of every module whose own weights no counting rule of `count_gflops` reads.

    Modules of a counted type are read; per-channel or scalar weights are elementwise (zero by the rule).
    Anything else (e.g. a raw `nn.Parameter` convolved with `F.conv2d`, or a type the counter has no rule
    for) would otherwise count as silently zero."""
    out = []
    for name, mod in model.named_modules():
        own = list(mod.parameters(recurse=False))
        if not own or isinstance(mod, COUNTED_TYPES) or all(_elementwise(p) for p in own):
            continue
        out.append(f"{name} ({type(mod).__name__}, {sum(p.numel() for p in own):,} parameters)")
    return out


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


@dataclass(frozen=True)
class _PerPass:
    """One value per interleaved pass, their median and their range (min-max)."""
    passes: tuple

    @property
    def median(self) -> float:
        return statistics.median(self.passes)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.passes), max(self.passes)


@dataclass(frozen=True)
class Timing(_PerPass):
    """Milliseconds per batch of one model over interleaved passes: each pass's median, and their median."""

    def text(self) -> str:
        lo, hi = self.spread
        return f"{self.median:.2f} ms ({lo:.2f}-{hi:.2f} over {len(self.passes)} passes)"


# A ratio whose per-pass range is wider than this share of its median cannot rank two models.
RATIO_SPREAD_LIMIT = 0.25


@dataclass(frozen=True)
class Ratio(_PerPass):
    """How many times faster `other` ran than `base`: one ratio per interleaved pass (both timed in it, so a
    machine that drifts between passes moves both), their median and range."""

    @property
    def significant(self) -> bool:
        """The range excludes 1.0 and is narrow enough (RATIO_SPREAD_LIMIT) to rank by: a single pass never is."""
        lo, hi = self.spread
        return len(self.passes) > 1 and (lo > 1.0 or hi < 1.0) and (hi - lo) <= RATIO_SPREAD_LIMIT * self.median

    def text(self) -> str:
        """`1.40x (1.35-1.46)`, or `1.4x (1.1-1.8, not significant)`: never more digits than the range supports."""
        lo, hi = self.spread
        if self.significant:
            return f"{self.median:.2f}x ({lo:.2f}-{hi:.2f})"
        return f"{self.median:.1f}x ({lo:.1f}-{hi:.1f}, not significant)"


def latency_ratio(base: Timing, other: Timing) -> Ratio:
    """base / other pass by pass (both from the same `interleaved_timings` call)."""
    return Ratio(tuple(b / o for b, o in zip(base.passes, other.passes)))


def interleaved_timings(models: list, imgsz: int, batch_size: int, device="cpu", half: bool = False,
                        rounds: int = DEFAULT_LATENCY_ROUNDS, warmup: int = 3, repeats: int = 10) -> list[Timing]:
    """Each model's `Timing` over `rounds` passes that time the models one after the other.

    On a shared or throttling machine, speed drifts over seconds; timing model A fully and then model B charges
    that drift to one of them. Interleaving spreads it over all models, so their ratios stay meaningful, and the
    per-pass spread says how far to trust them.
    """
    copies = [_timing_copy(m, imgsz, batch_size, device, half) for m in models]  # once, not once per pass
    times = [[] for _ in models]
    for _ in range(max(1, rounds)):
        for i, (m, x) in enumerate(copies):
            times[i].append(_time_runs(m, x, warmup, repeats))
    return [Timing(tuple(t)) for t in times]


def interleaved_latency(models: list, imgsz: int, batch_size: int, device="cpu", half: bool = False,
                        rounds: int = DEFAULT_LATENCY_ROUNDS) -> list[float]:
    """Median ms per batch of each model over `rounds` interleaved passes (`interleaved_timings`)."""
    return [t.median for t in interleaved_timings(models, imgsz, batch_size, device, half, rounds)]


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
