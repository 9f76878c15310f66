"""Prune step by step until the model is `speedup` times cheaper (GFLOPs, or measured latency).

The pruner is built once with `iterative_steps=max_steps` and `pruning_ratio=max_ratio`. Each
`step()` then removes about `max_ratio / max_steps` of each layer's channels (of the ranking scope
with `global_pruning`). After each step we count GFLOPs with `core.stats.count_gflops`. We stop
at the first step whose ratio GFLOPs(before) / GFLOPs(after) reaches the target. The steps are
small (0.45 % of the channels with the defaults), so the loop stops just past the target and does
not overshoot it much.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from ..core.errors import ConfigError, PruningError
from ..core.runlog import detail_logger
from ..engine.options import model_stride
from ..core.stats import count_gflops, count_params, measure_latency
from .guard import Unprunable, find_unprunable
from .methods import build_pruner, get_method
from .options import require_speedup
from .runcheck import check_runs

LOGGER = logging.getLogger("yolocompress")
STEPS = detail_logger()  # one line per step: the run's log file; the console shows a progress bar
METRICS = ("gflops", "latency")


@dataclass
class PruneOutcome:
    """What `prune_to_target` did. `per_layer` rows are `{name, before, after}` (output channels per conv)."""
    model: nn.Module
    steps: int | None  # None: a strategy without steps (PAGCP's rounds)
    reached: bool
    gflops_before: float
    gflops_after: float
    speedup_gflops: float
    latency_before: float | None
    latency_after: float | None
    speedup_latency: float | None
    skipped: list = field(default_factory=list)
    per_layer: list = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    stop_reason: str = ""
    extra: dict = field(default_factory=dict)  # a strategy's own report (e.g. {"pagcp": rounds and layers})
    conv_layers_pruned: int = 0
    conv_layers: int = 0  # 0: not measured (a strategy that does not report coverage)
    prunable_gflops_share: float = 0.0

    def summary(self) -> dict:
        """Plain numbers for reports and checkpoint metadata (no model)."""
        keys = ("steps", "reached", "stop_reason", "gflops_before", "gflops_after", "speedup_gflops",
                "latency_before", "latency_after", "speedup_latency", "params_before", "params_after")
        coverage = ({"conv_layers_pruned": self.conv_layers_pruned, "conv_layers": self.conv_layers,
                     "prunable_gflops_share": self.prunable_gflops_share, "coverage": self.coverage_line()}
                    if self.conv_layers else {})
        return {**{k: getattr(self, k) for k in keys}, **coverage, **self.extra}

    def coverage_line(self) -> str:
        """The one line a report gives on how much of the model pruning could reach."""
        return (f"pruned {self.conv_layers_pruned} of {self.conv_layers} conv layers; "
                f"{100 * self.prunable_gflops_share:.1f}% of the model's GFLOPs was prunable")


def conv_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(in, out) channels of every convolution, by module path."""
    return {n: (m.in_channels, m.out_channels) for n, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd)}


def prunable_gflops_share(model: nn.Module, prunable: set) -> float:
    """The share of the convolutions' multiply-adds done by convolutions a prunable group reaches."""
    macs, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            def hook(mod, args, out, name=name):
                macs[name] = macs.get(name, 0) + out.numel() * mod.weight[0].numel()
            handles.append(m.register_forward_hook(hook))
    stride = model_stride(model)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, stride, stride, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    total = sum(macs.values())
    return sum(v for n, v in macs.items() if n in prunable) / total if total else 0.0


def conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d, by module path."""
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def per_layer_table(before: dict[str, int], after: dict[str, int]) -> list[dict]:
    return [{"name": n, "before": c, "after": after.get(n, c)} for n, c in before.items()]


def _check_options(method, speedup, metric, max_steps, max_ratio, round_to, grad_fn):
    require_speedup(speedup)
    if metric not in METRICS:
        raise ConfigError(f"--speedup-metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if max_steps < 1:
        raise ConfigError(f"--max-steps must be at least 1, got {max_steps}")
    if not 0.0 < max_ratio < 1.0:
        raise ConfigError(f"--max-ratio must be between 0 and 1, got {max_ratio}")
    if round_to is not None and round_to < 1:
        raise ConfigError(f"--round-to must be a positive channel count (e.g. 8), got {round_to}")
    if method.needs_grad and grad_fn is None:
        raise ConfigError(f"method {method.name} scores channels with gradients: it needs training batches "
                          "(prune_command gives them; in code pass grad_fn)")


def prune_to_target(model: nn.Module, example_inputs, method: str, speedup: float, *, metric: str = "gflops",
                    imgsz: int = 640, max_steps: int = 200, global_pruning: bool = False, max_ratio: float = 0.9,
                    round_to: int | None = None, grad_fn: Callable | None = None, latency_device="cpu",
                    latency_batch: int = 1, progress: Callable | None = None, guard: Unprunable | None = None,
                    measure: bool = True, patience: int = 20) -> PruneOutcome:
    """Prune `model` in place until it is `speedup` times cheaper, or until `max_steps` steps are done.

    example_inputs: a small batch for tracing (e.g. 1x3x64x64; ratios do not depend on its size).
    imgsz: the image size at which GFLOPs (and latency) are measured.
    grad_fn(model, pruner): called before every step for gradient-based methods (fills the gradients).
    progress(step, gflops_ratio, latency_ratio): called after every step.
    guard: the result of `find_unprunable` (computed here when None).
    measure: also time the model before and after (the `latency` metric always does).
    patience: stop early when this many steps in a row remove nothing (every layer at max_ratio).
    """
    m = get_method(method)
    _check_options(m, speedup, metric, max_steps, max_ratio, round_to, grad_fn)
    if m.needs_sparse:
        LOGGER.info(f"prune: {m.name} ranks channels by the sparsity that sparse training ({m.sparse_kind}) "
                    "creates; without it the ranking is weak")
    if m.name == "lamp" and not global_pruning:
        LOGGER.info("prune: LAMP's score keeps the magnitude order within a layer, so without --global it removes "
                    "the same channels as group_norm; --global lets it choose how much each layer loses")
    guard = guard or find_unprunable(model, example_inputs, m.name, round_to=round_to)
    channels_before = conv_channels(model)
    shapes_before = conv_shapes(model)
    share = prunable_gflops_share(model, guard.prunable)
    params_before = count_params(model)
    g0 = count_gflops(model, imgsz)
    timed = measure or metric == "latency"

    def latency():
        return measure_latency(model, imgsz, latency_batch, latency_device) if timed else None

    lat0 = latency()
    pruner = build_pruner(m.name, model, example_inputs, ignored_layers=guard.ignored_layers,
                          pruning_ratio=max_ratio, max_pruning_ratio=max_ratio, iterative_steps=max_steps,
                          global_pruning=global_pruning, round_to=round_to, **guard.pruner_options(model))
    g, lat, step, reached, still = g0, lat0, 0, False, 0
    reason = "step limit reached"
    bar = tqdm(total=max_steps, desc=f"prune {m.name} to {speedup}x", bar_format="{l_bar}{bar:10}{r_bar}",
               disable=os.environ.get("YOLOCOMPRESS_NO_BAR") == "1")
    for step in range(1, max_steps + 1):
        if m.needs_grad:
            grad_fn(model, pruner)
        pruner.step()
        g_new = count_gflops(model, imgsz)
        still = still + 1 if math.isclose(g_new, g) else 0
        g = g_new
        if metric == "latency":
            lat = latency()
        ratio = g0 / g
        lat_ratio = lat0 / lat if metric == "latency" else None
        STEPS.info(f"prune step {step}/{max_steps}: GFLOPs {g:.3f} ({ratio:.3f}x)"
                   + (f", latency {lat:.2f} ms ({lat_ratio:.3f}x)" if lat_ratio else ""))
        bar.update(1)
        bar.set_postfix({"GFLOPs": f"{ratio:.3f}x", **({"latency": f"{lat_ratio:.3f}x"} if lat_ratio else {})},
                        refresh=False)
        if progress is not None:
            progress(step, ratio, lat_ratio)
        if (lat_ratio if metric == "latency" else ratio) >= speedup:
            reached, reason = True, "target reached"
            break
        if still >= patience:
            reason = (f"no channel removed for {patience} steps (every layer at --max-ratio {max_ratio}, or tied "
                      "scores, e.g. untrained BatchNorm scales with --global)")
            break
    bar.close()
    if step == 0:
        raise PruningError("prune: no step was run; use --max-steps >= 1")
    model.zero_grad(set_to_none=True)
    check_runs(model, example_inputs, "after pruning")
    model.eval()
    if metric != "latency":
        lat = latency()
    outcome = PruneOutcome(
        model=model, steps=step, reached=reached, gflops_before=g0, gflops_after=g, speedup_gflops=g0 / g,
        latency_before=lat0, latency_after=lat, speedup_latency=(lat0 / lat) if timed else None,
        skipped=list(guard.skipped), per_layer=per_layer_table(channels_before, conv_channels(model)),
        params_before=params_before, params_after=count_params(model), stop_reason=reason,
        conv_layers_pruned=sum(conv_shapes(model).get(n) != v for n, v in shapes_before.items()),
        conv_layers=len(shapes_before), prunable_gflops_share=share)
    LOGGER.info(f"prune: {outcome.coverage_line()}")
    log = LOGGER.info if reached else LOGGER.warning
    log(f"prune: {reason} after {step} of at most {max_steps} steps; "
        f"GFLOPs {g0:.3f} -> {g:.3f} ({outcome.speedup_gflops:.3f}x)"
        + (f", latency {lat0:.2f} -> {lat:.2f} ms ({outcome.speedup_latency:.3f}x)" if timed else ""))
    if not reached:
        LOGGER.warning(f"prune: the target {speedup}x was not reached; raise --max-steps or --max-ratio, "
                       "or skip fewer layers (see the skipped list)")
    return outcome
