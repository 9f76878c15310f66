"""Prune until the model is `speedup` times cheaper (GFLOPs, or measured latency), in few steps.

The pruner is built once with `iterative_steps=max_steps` and `pruning_ratio=max_ratio`: grid point `k` prunes each
layer (or the whole ranking scope, with global ranking) to `k / max_steps * max_ratio` of its channels. The loop
walks that grid with long strides far from the target and short ones near it (`plan_next`: the ratio reached so far
predicts the grid point of the target, and each stride covers part of the way), so a model reaches the target in
about ten steps instead of sixty or more. The step that can reach the target prunes group by group and stops at
the first group after which the GFLOPs ratio reaches it, so the result lands just past the target whatever the
width rounding. GFLOPs are counted in place (`core.stats.count_gflops`), without copying the model.
"""
from __future__ import annotations

import copy
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
from ..core.stats import Ratio, count_gflops, count_params, interleaved_timings, latency_ratio, measure_latency
from .guard import Unprunable, find_unprunable
from .methods import build_pruner, get_method, ranking_scope
from .options import require_speedup
from ..models.runcheck import check_runs
from .tp_fixes import ROUND_AUTO, layer_floor

LOGGER = logging.getLogger("yolocompress")
STEPS = detail_logger()  # one line per step: the run's log file; the console shows a progress bar
METRICS = ("gflops", "latency")
STRIDE_SHARE = 0.6  # share of the predicted distance to the target that one stride covers
NEAR_SHARE = 0.75  # past this share of the target (in log ratio), steps prune group by group, checking each
FINE_GAP = 2  # grid points: closer than this to the predicted target, walk point by point
LATENCY_ROUNDS = 5  # interleaved passes per latency measurement of the `latency` metric


@dataclass
class PruneOutcome:
    """What `prune_to_target` did. `per_layer` rows are `{name, before, after}` (output channels per conv);
    `at_max_ratio` names the convolutions that were cut down to their `--max-ratio` floor."""
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
    global_pruning: bool = False
    grid_step: int = 0
    at_max_ratio: list = field(default_factory=list)
    latency_ratio: Ratio | None = None
    extra: dict = field(default_factory=dict)  # a strategy's own report (e.g. {"pagcp": rounds and layers})
    conv_layers_pruned: int = 0
    conv_layers: int = 0  # 0: not measured (a strategy that does not report coverage)
    prunable_gflops_share: float = 0.0

    def summary(self) -> dict:
        """Plain numbers for reports and checkpoint metadata (no model)."""
        keys = ("steps", "grid_step", "reached", "stop_reason", "global_pruning", "gflops_before", "gflops_after",
                "speedup_gflops", "latency_before", "latency_after", "speedup_latency", "params_before",
                "params_after", "at_max_ratio")
        out = {k: getattr(self, k) for k in keys}
        if self.latency_ratio is not None:
            lo, hi = self.latency_ratio.spread
            out.update(speedup_latency_spread=[lo, hi], speedup_latency_significant=self.latency_ratio.significant,
                       speedup_latency_text=self.latency_ratio.text())
        coverage = ({"conv_layers_pruned": self.conv_layers_pruned, "conv_layers": self.conv_layers,
                     "prunable_gflops_share": self.prunable_gflops_share, "coverage": self.coverage_line()}
                    if self.conv_layers else {})
        return {**out, **coverage, **self.extra}

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


def layers_at_max_ratio(per_layer: list[dict], max_ratio: float, round_to: int | str | None = None) -> list[str]:
    """Convolutions pruned down to their floor (`tp_fixes.layer_floor`): the ranking wanted more of them."""
    return [r["name"] for r in per_layer
            if r["after"] < r["before"] and r["after"] <= layer_floor(r["before"], max_ratio, round_to)]


def plan_next(k: int, ratio: float, target: float, unit: float, max_steps: int, last_change: int) -> tuple[int, int]:
    """(the next grid point after `k`, the predicted grid point of the target), where the ratio reached is `ratio`
    (1.0 at k=0).

    The ratio is modelled as (1 - p) ** -a for the pruned share p = k * unit, a fitted on the point reached (2 before
    any step: conv cost scales with input times output channels). Layers that reach their floor make later points
    gain less than this predicts, so `STRIDE_SHARE` of the predicted distance stays on the near side of the target;
    the first stride goes half way. When the last steps removed nothing (`last_change` < k: rounding, or layers at
    their floor), the stride is at least the distance since the last change, so it doubles.
    """
    if k == 0 or ratio <= 1.0 + 1e-9:
        a = 2.0
    else:
        a = math.log(ratio) / -math.log(max(1e-9, 1.0 - k * unit))
    k_target = math.ceil((1.0 - target ** (-1.0 / a)) / unit)
    gap = k_target - k
    if k == 0:
        stride = max(1, int(0.5 * gap))
    else:
        stride = 1 if gap <= FINE_GAP else max(1, int(STRIDE_SHARE * gap))
    return min(max_steps, k + max(stride, k - last_change)), k_target


def _check_options(method, speedup, metric, max_steps, max_ratio, round_to, grad_fn):
    require_speedup(speedup)
    if metric not in METRICS:
        raise ConfigError(f"--speedup-metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if max_steps < 1:
        raise ConfigError(f"--max-steps must be at least 1, got {max_steps}")
    if not 0.0 < max_ratio < 1.0:
        raise ConfigError(f"--max-ratio must be between 0 and 1, got {max_ratio}")
    if round_to not in (None, ROUND_AUTO) and (not isinstance(round_to, int) or round_to < 1):
        raise ConfigError(f"--round-to must be a positive channel count (e.g. 8), 'auto' or 'none', got {round_to!r}")
    if method.needs_grad and grad_fn is None:
        raise ConfigError(f"method {method.name} scores channels with gradients: it needs training batches "
                          "(prune_command gives them; in code pass grad_fn)")


class _Latency:
    """The `latency` metric: the current model against an unpruned copy in interleaved passes (so the machine's
    drift moves both), a ratio confirmed by a second measurement before the loop stops on it."""

    def __init__(self, model, imgsz, batch, device, rounds):
        self.base = copy.deepcopy(model).eval()
        self.args = dict(imgsz=imgsz, batch_size=batch, device=device, rounds=rounds)

    def ratio(self, model) -> Ratio:
        base, cur = interleaved_timings([self.base, model], **self.args)
        return latency_ratio(base, cur)

    def confirm(self, model, first: Ratio, target: float) -> tuple[Ratio, bool]:
        """(`first` and a second measurement together, whether the second reaches `target` too): one lucky
        measurement does not stop the loop."""
        again = self.ratio(model)
        return Ratio(first.passes + again.passes), again.median >= target


def prune_to_target(model: nn.Module, example_inputs, method: str, speedup: float, *, metric: str = "gflops",
                    imgsz: int = 640, max_steps: int = 200, global_pruning: bool | None = None,
                    max_ratio: float = 0.9, round_to: int | str | None = None, grad_fn: Callable | None = None,
                    latency_device="cpu", latency_batch: int = 1, progress: Callable | None = None,
                    guard: Unprunable | None = None, measure: bool = True, patience: int = 8,
                    latency_rounds: int = LATENCY_ROUNDS) -> PruneOutcome:
    """Prune `model` in place until it is `speedup` times cheaper, or until the grid's last point is passed.

    example_inputs: a small batch for tracing (e.g. 1x3x64x64; ratios do not depend on its size).
    imgsz: the image size at which GFLOPs (and latency) are measured.
    global_pruning: None ranks in the method's designed scope (its `global_ranking`), True across layers,
        False per layer.
    max_steps: points of the pruning grid (its resolution), not the number of steps taken.
    round_to: kept channel counts are multiples of N, or under "auto" (the CLI's default, `PruneOptions`) of 16 or
        8 by each layer's width (`tp_fixes.rounding_unit`); None here: exact widths.
    grad_fn(model, pruner): called before every step for gradient-based methods (fills the gradients).
    progress(step, gflops_ratio, latency_ratio): called after every step.
    guard: the result of `find_unprunable` (computed here when None).
    measure: also time the model before and after (the `latency` metric always does).
    patience: stop when this many steps in a row removed nothing (every layer at max_ratio, or tied scores); the
        stride doubles after each such step, so the grid's end comes first unless patience is small.
    """
    m = get_method(method)
    _check_options(m, speedup, metric, max_steps, max_ratio, round_to, grad_fn)
    scope = ranking_scope(m, global_pruning)
    if m.needs_sparse:
        LOGGER.info(f"prune: {m.name} ranks channels by the sparsity that sparse training ({m.sparse_kind}) "
                    "creates; without it the ranking is weak")
    if m.name == "lamp" and not scope:
        LOGGER.info("prune: LAMP's score keeps the magnitude order within a layer, so with --local it removes "
                    "the same channels as a per-layer magnitude ranking; its design ranks across layers")
    LOGGER.info(f"prune: {m.name} ranks channels {'across layers' if scope else 'per layer'}"
                + (" (its design)" if global_pruning is None else (" (--global)" if scope else " (--local)")))
    guard = guard or find_unprunable(model, example_inputs, m.name, round_to=round_to)
    channels_before = conv_channels(model)
    shapes_before = conv_shapes(model)
    share = prunable_gflops_share(model, guard.prunable)
    params_before = count_params(model)
    g0 = count_gflops(model, imgsz)
    timed = measure or metric == "latency"
    lat0 = measure_latency(model, imgsz, latency_batch, latency_device) if timed else None
    lat_metric = _Latency(model, imgsz, latency_batch, latency_device, latency_rounds) if metric == "latency" else None
    pruner = build_pruner(m.name, model, example_inputs, ignored_layers=guard.ignored_layers,
                          pruning_ratio=max_ratio, max_pruning_ratio=max_ratio, iterative_steps=max_steps,
                          global_pruning=scope, round_to=round_to, **guard.pruner_options(model))
    unit = max_ratio / max_steps
    g, k, steps, last_change, idle, reached = g0, 0, 0, 0, 0, False
    lat_ratio: Ratio | None = None
    reason = "step limit reached (the last point of the pruning grid, --max-ratio of every layer's channels)"
    bar = tqdm(total=max_steps, desc=f"prune {m.name} to {speedup}x", bar_format="{l_bar}{bar:10}{r_bar}",
               disable=os.environ.get("YOLOCOMPRESS_NO_BAR") == "1")
    while k < max_steps:
        value = g0 / g if lat_ratio is None else lat_ratio.median
        k_next, k_target = plan_next(k, value, speedup, unit, max_steps, last_change)
        if m.needs_grad:
            grad_fn(model, pruner)
        # with rounding one grid point can move every layer of a width by a whole multiple at once (a 1.2x -> 2.4x
        # jump on small models), so then every step checks the target group by group
        near = metric == "gflops" and (k_next >= min(k_target, max_steps) or value >= speedup ** NEAR_SHARE
                                       or round_to is not None)
        pruner.current_step = k_next - 1  # step() advances to k_next
        if near:  # the step that can reach the target: group by group, stop at the first past it
            for group in pruner.step(interactive=True):
                group.prune()
                if g0 / count_gflops(model, imgsz) >= speedup:
                    break
        else:
            pruner.step()
        pruner.current_step = k_next
        k, steps = k_next, steps + 1
        g_new = count_gflops(model, imgsz)
        idle = idle + 1 if math.isclose(g_new, g) else 0
        last_change = last_change if idle else k
        g = g_new
        ratio = g0 / g
        confirmed = True
        if lat_metric is not None:
            lat_ratio = lat_metric.ratio(model)
            if lat_ratio.median >= speedup:
                lat_ratio, confirmed = lat_metric.confirm(model, lat_ratio, speedup)
        STEPS.info(f"prune step {steps} (grid {k}/{max_steps}): GFLOPs {g:.3f} ({ratio:.3f}x)"
                   + (f", latency ratio {lat_ratio.text()}" if lat_ratio is not None else ""))
        bar.n = k
        bar.set_postfix({"GFLOPs": f"{ratio:.3f}x", **({"latency": lat_ratio.text()} if lat_ratio else {})},
                        refresh=False)
        bar.refresh()
        if progress is not None:
            progress(steps, ratio, lat_ratio.median if lat_ratio is not None else None)
        if confirmed and (lat_ratio.median if lat_ratio is not None else ratio) >= speedup:
            reached, reason = True, "target reached"
            break
        if idle >= patience:
            reason = (f"no channel removed for {patience} steps in a row (every layer at --max-ratio {max_ratio}, or "
                      "tied scores, e.g. untrained BatchNorm scales with global ranking)")
            break
    bar.close()
    if steps == 0:
        raise PruningError("prune: no step was run; use --max-steps >= 1")
    model.zero_grad(set_to_none=True)
    check_runs(model, example_inputs, "after pruning")
    model.eval()
    lat = measure_latency(model, imgsz, latency_batch, latency_device) if timed else None
    per_layer = per_layer_table(channels_before, conv_channels(model))
    outcome = PruneOutcome(
        model=model, steps=steps, reached=reached, gflops_before=g0, gflops_after=g, speedup_gflops=g0 / g,
        latency_before=lat0, latency_after=lat,
        speedup_latency=lat_ratio.median if lat_ratio is not None else ((lat0 / lat) if timed else None),
        skipped=list(guard.skipped), per_layer=per_layer, params_before=params_before,
        params_after=count_params(model), stop_reason=reason, global_pruning=scope, grid_step=k,
        at_max_ratio=layers_at_max_ratio(per_layer, max_ratio, round_to), latency_ratio=lat_ratio,
        conv_layers_pruned=sum(conv_shapes(model).get(n) != v for n, v in shapes_before.items()),
        conv_layers=len(shapes_before), prunable_gflops_share=share)
    LOGGER.info(f"prune: {outcome.coverage_line()}")
    log = LOGGER.info if reached else LOGGER.warning
    log(f"prune: {reason} after {steps} steps (grid point {k} of {max_steps}); "
        f"GFLOPs {g0:.3f} -> {g:.3f} ({outcome.speedup_gflops:.3f}x)"
        + (f", latency {lat0:.2f} -> {lat:.2f} ms ({outcome.speedup_latency:.3f}x)" if timed else ""))
    if outcome.at_max_ratio:
        LOGGER.info(f"prune: {len(outcome.at_max_ratio)} layers were cut to their --max-ratio {max_ratio} floor "
                    f"(the ranking wanted more of them): {', '.join(outcome.at_max_ratio)}")
    if not reached:
        LOGGER.warning(f"prune: the target {speedup}x was not reached; raise --max-steps or --max-ratio, "
                       "or skip fewer layers (see the skipped list)")
    return outcome
