"""PAGCP: performance-aware global channel pruning (Ye et al., TPAMI 2023) for YOLOv5 and YOLOv7.

One round: the prunable groups of the dependency graph are visited one by one (largest FLOPs
contribution first); each is pruned, lowest filter L1 first, in steps of 5% of its channels for as long
as every detection loss component (box, obj, cls) on a fixed calibration set stays within a tolerance of
the state accepted before it. The layers with the smallest loss increase per FLOP removed are then
applied to a fresh copy. Rounds repeat until the GFLOPs target is met.

What makes it practical (the published code runs the whole validation set groups x 19 times): the
calibration batches stay on the device; every trial ratio is a reversible structural view of the working
model (no copy, no graph rebuild); the forward pass restarts at the first layer the group touches, from
features cached once per group; a trial stops as soon as a partial loss sum breaks its bound; accepted
pruning is structural, so later trials run on a smaller model. docs/pagcp.md gives the details.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops

from ..core.errors import ConfigError, DataError, PruningError
from ..core.stats import count_gflops, count_params, measure_latency
from ..engine.losses import build_loss
from ..engine.options import TrainOptions, model_stride
from .graph import first_layer, full_group, group_heads, l1_order, out_fn, owner, pruned_view, subset
from .guard import build_graph, channel_groups, extra_root_types, find_unprunable
from .options import PagcpOptions, PruneOptions
from .speedup import PruneOutcome, conv_channels, per_layer_table
from .tp_fixes import prepare_model_for_pruning, rounding_unit

LOGGER = logging.getLogger("yolocompress")

COMPONENTS = ("box", "obj", "cls")
GRID_STEPS = 20  # trial ratios k/20: 0.05, 0.10, ... 0.95
PROBE_RATIO = 0.3  # share of a group pruned to measure its FLOPs contribution (visit order)
ROOT_TYPES = (ops.TORCH_CONV, ops.TORCH_LINEAR)  # and guard.extra_root_types of the model


# ---- options and results ----------------------------------------------------------------------------------
@dataclass
class LayerRecord:
    """One visited group: what was tried, what was accepted and why it stopped.

    stop: the loss component that broke the bound at the first rejected ratio ('none': no ratio broke
    it, 'skipped': the group could not be tried). bound: which bound broke ('layer' = 1 + d against the
    previous accepted state, 'global' = D against the round's baseline). idxs: removed channels of the root.
    """
    round: int
    position: int
    name: str
    channels: int
    probe_gflops: float = 0.0
    tolerance: float = 0.0
    pruned: int = 0
    stop: str = "none"
    bound: str = ""
    trials: int = 0
    losses_before: list = field(default_factory=list)
    losses_after: list = field(default_factory=list)
    loss_increase: float = 0.0
    gflops_removed: float = 0.0
    score: float = math.inf
    kept: bool = False
    applied: bool = False
    reason: str = ""
    idxs: list = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.pruned / self.channels if self.channels else 0.0

    def row(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "idxs"}
        d["ratio"] = round(self.ratio, 4)
        d["score"] = self.score if math.isfinite(self.score) else None  # JSON has no infinity
        return d


@dataclass
class RoundRecord:
    index: int
    initial_rate: float
    initial_thres: float
    lam: float
    baseline: list
    final_losses: list
    gflops_before: float
    gflops_after: float
    speedup: float  # GFLOPs of the original model / after this round
    wall_s: float
    layers: list

    def row(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layers"}
        visited = [r for r in self.layers if r.stop != "skipped"]
        d.update(candidates=len(visited), accepted=sum(r.pruned > 0 for r in visited),
                 kept=sum(r.kept for r in visited), applied=sum(r.applied for r in visited))
        return d


@dataclass
class PagcpResult:
    model: nn.Module
    rounds: list
    reached: bool
    gflops_before: float
    gflops_after: float
    target: float
    wall_s: float

    @property
    def gflops_ratio(self) -> float:
        return self.gflops_before / self.gflops_after

    @property
    def layers(self) -> list:
        return [r for rnd in self.rounds for r in rnd.layers]

    def summary(self) -> dict:
        """Plain values for report.json: per round and per layer (accepted ratio, stopping component)."""
        ratio = self.gflops_ratio
        return {"method": "pagcp", "target": self.target, "reached": self.reached, "rounds": len(self.rounds),
                "gflops_before": self.gflops_before, "gflops_after": self.gflops_after,
                "gflops_ratio": ratio, "overshoot": ratio / self.target, "wall_s": self.wall_s,
                "round_summaries": [r.row() for r in self.rounds], "layers": [r.row() for r in self.layers]}


# ---- thresholds and the top-k filter ----------------------------------------------------------------------
def solve_lambda(d0: float, big_d: float, n_layers: int, iters: int = 200) -> float:
    """lambda > 0 with prod_{i < n_layers} (1 + d0 * lambda**i) = big_d (bisection; 1.0 for one layer)."""
    if n_layers <= 1:
        return 1.0
    if big_d <= 1 + d0:
        raise ConfigError(f"pagcp: no lambda > 0 makes the tolerances of {n_layers} layers multiply to "
                          f"{big_d} when the first is {d0}: raise --initial-thres above {1 + d0:g}")
    target = math.log(big_d)
    log_d0 = math.log(d0)

    def excess(lam: float) -> float:
        log_lam = math.log(lam)
        return sum(math.log1p(math.exp(min(log_d0 + i * log_lam, 700.0))) for i in range(n_layers)) - target

    lo, hi = 0.0, 1.0
    while excess(hi) < 0:
        lo, hi = hi, hi * 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        if mid <= 0 or excess(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def select_topk(records: Sequence[LayerRecord], topk: float) -> list[LayerRecord]:
    """The `topk` share of the accepted records with the lowest scores (at least one), best first."""
    accepted = sorted((r for r in records if r.pruned > 0), key=lambda r: (r.score, r.position))
    n = len(accepted) and max(1, int(topk * len(accepted) + 0.5))
    return accepted[:n]


def _build_graph(model: nn.Module, x, opaque=()) -> tp.DependencyGraph:
    """The dependency graph, built as the guard builds it (implicit parameters, black-box layers)."""
    prepare_model_for_pruning(model)
    model.eval()
    return build_graph(model, x, opaque)


# ---- the calibration set: three loss components, resumable forward pass ----------------------------------
class Calibration:
    """Box, obj and cls losses summed over fixed batches (model in eval mode: BN uses running stats).

    For a `Model` the forward pass can start at layer `start` from `prefix()` (`Model.run_layers`).
    """

    def __init__(self, batches, loss_fn):
        if not batches:
            raise DataError("pagcp: no calibration batches; check --calib-batches and the training set")
        self.batches = [(imgs.float() / 255 if imgs.dtype == torch.uint8 else imgs, t) for imgs, t in batches]
        self.loss_fn = loss_fn

    def example(self):
        return self.batches[0][0][:1]

    @staticmethod
    def resumable(model) -> bool:
        return hasattr(model, "run_layers") and isinstance(getattr(model, "model", None), nn.Sequential)

    @torch.no_grad()
    def prefix(self, model, start: int) -> list:
        """Per batch, (output of layer start-1, {j: output of layer j < start read at or after start})."""
        if start <= 0 or not self.resumable(model):
            return [None] * len(self.batches)
        need = {j for m in model.model[start:] for j in model.sources(m) if 0 <= j < start}
        states = []
        for imgs, _ in self.batches:
            saved = {}
            x = model.run_layers(imgs, saved, stop=start)
            states.append((x, {j: saved[j] for j in need}))
        return states

    @staticmethod
    def _forward(model, imgs, state, start):
        out = model(imgs) if state is None else model.run_layers(state[0], dict(state[1]), start=start)
        return out[1] if isinstance(out, tuple) else out

    @torch.no_grad()
    def losses(self, model, states=None, start: int = 0, limits=None) -> tuple[list[float], int | None]:
        """Summed (box, obj, cls); with `limits`, stops at the first batch where a partial sum exceeds its
        limit (the sums only grow) and returns the index of that component, else None."""
        states = states or [None] * len(self.batches)
        total = [0.0, 0.0, 0.0]
        for (imgs, targets), state in zip(self.batches, states):
            _, items = self.loss_fn(self._forward(model, imgs, state, start), targets)
            total = [a + b for a, b in zip(total, items.double().tolist())]
            if limits is not None:
                broken = [k for k in range(3) if not total[k] <= limits[k]]  # NaN breaks too
                if broken:
                    return total, max(broken, key=lambda k: _excess(total[k], limits[k]))
        return total, None


def _excess(value: float, limit: float) -> float:
    return value / limit if limit > 0 and not math.isnan(value) else math.inf


def pruned_counts(channels: int, round_to: int | str | None = None, unit: int = 1) -> list[int]:
    """The channel counts a layer's scan tries to remove: 5 %, 10 %, ... of `channels` (never all); with
    `round_to`, those that leave a multiple of the layer's rounding unit (every multiple below `channels`).
    `unit`: counts are multiples of it (an attention group loses whole head dimensions: one channel of each of
    `unit` heads)."""
    round_to = rounding_unit(round_to, channels)
    if not round_to:
        grid = {min(channels - 1, channels * k // GRID_STEPS) for k in range(1, GRID_STEPS)}
        counts = sorted({c - c % unit for c in grid} - {0})
        return counts or ([unit] if channels > unit else [])
    step = math.lcm(round_to, unit)
    return sorted(channels - kept for kept in range(step, channels, step))


# ---- one round --------------------------------------------------------------------------------------------
def _apply(dg, name: str, idxs) -> None:
    root = dg.model.get_submodule(name)
    dg.get_pruning_group(root, out_fn(dg, root), idxs).prune()


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:160]}"


class _Round:
    """Probe, order and visit the groups of the round's start model (never modified), then build its result.

    `work`/`dg` is the working copy carrying the pruning accepted so far; groups are looked up by name.
    """

    def __init__(self, model, calib: Calibration, opts: PagcpOptions, index: int, d0: float, big_d: float,
                 base_gflops: float, ignored_names: Sequence[str], opaque: Sequence[str], progress,
                 round_to: int | str | None = None):
        self.start_model, self.calib, self.opts, self.index = model, calib, opts, index
        self.round_to = round_to
        self.d0, self.big_d, self.base_gflops = d0, big_d, base_gflops
        self.ignored_names, self.opaque, self.progress = list(ignored_names), list(opaque), progress
        self.records: list[LayerRecord] = []
        self.accepted: list[LayerRecord] = []

    def _copy(self, records=()):
        """A fresh copy of the start model and its graph, with `records` applied."""
        model = copy.deepcopy(self.start_model).eval()
        dg = _build_graph(model, self.calib.example(), self.opaque)
        self.heads = channel_groups(model, self.opaque)
        for rec in records:
            _apply(dg, rec.name, rec.idxs)
        return model, dg

    def _candidates(self) -> list[str]:
        modules = dict(self.work.named_modules())
        ignored = [modules[n] for n in self.ignored_names if n in modules] + list(self.work.head.m)
        excluded = [m for layer in ignored for m in layer.modules()]
        groups = self.dg.get_all_groups(ignored_layers=excluded,
                                        root_module_types=ROOT_TYPES + extra_root_types(self.work, self.opaque))
        roots = [g[0].dep.target.module for g in groups]
        return [self.dg._module2name[r] for r in roots if (self.dg.get_out_channels(r) or 0) > 1]

    def _group(self, name):
        group = full_group(self.dg, self.work.get_submodule(name))
        return group, l1_order(self.dg, group, group_heads(group, self.heads))

    def _probe(self, names) -> list[tuple[str, float]]:
        """GFLOPs removed by pruning PROBE_RATIO of each group alone (dependants included)."""
        g0 = count_gflops(self.work, self.opts.imgsz)
        out = []
        for name in names:
            try:
                group, order = self._group(name)
                unit = group_heads(group, self.heads)
                n = max(unit, int(PROBE_RATIO * len(order)) // unit * unit)
                with pruned_view(self.dg, subset(group, order[:n])):
                    out.append((name, g0 - count_gflops(self.work, self.opts.imgsz)))
            except Exception as e:  # a group Torch-Pruning cannot cut cleanly (user modules): leave it whole
                channels = self.dg.get_out_channels(self.work.get_submodule(name))
                self.records.append(LayerRecord(self.index, -1, name, channels, stop="skipped", reason=_why(e)))
                self.progress(f"pagcp: skipping {name}: {_why(e)}")
        return out

    def run(self) -> tuple[nn.Module, RoundRecord]:
        t0 = time.time()
        self.work, self.dg = self._copy()
        gflops_start = self.gflops_now = count_gflops(self.work, self.opts.imgsz)
        visits = self._probe(self._candidates())
        lam = solve_lambda(self.d0, self.big_d, len(visits)) if self.opts.exp else 1.0
        visits.sort(key=lambda v: v[1], reverse=lam <= 1)
        baseline = self.calib.losses(self.work)[0]
        self.progress(f"pagcp round {self.index + 1}: {len(visits)} groups, d0 {self.d0:.4g}, D {self.big_d:.4g}, "
                      f"lambda {lam:.4g}, baseline {_fmt(baseline)}")
        prev = baseline
        for pos, (name, probe) in enumerate(visits):
            t_layer = time.time()
            rec = LayerRecord(self.index, pos, name, 0, probe_gflops=probe, tolerance=self.d0 * lam ** pos,
                              losses_before=list(prev), losses_after=list(prev))
            self.records.append(rec)
            self._visit(rec, prev, baseline)
            prev = rec.losses_after
            self.progress(f"pagcp round {self.index + 1} layer {pos + 1}/{len(visits)} {name}: "
                          f"{rec.pruned}/{rec.channels} channels ({rec.ratio:.2f}), stop {rec.stop}"
                          f"{' (' + rec.bound + ')' if rec.bound else ''}, {_fmt(rec.losses_after)}, "
                          f"{rec.trials} trials, {time.time() - t_layer:.1f}s")
        model = self._finish()
        g_after = count_gflops(model, self.opts.imgsz)
        rnd = RoundRecord(self.index, self.d0, self.big_d, lam, baseline, self.calib.losses(model)[0],
                          gflops_start, g_after, self.base_gflops / g_after, time.time() - t0, self.records)
        return model, rnd

    def _visit(self, rec: LayerRecord, prev, baseline) -> None:
        """Scan, then prune the accepted channels for good; a group that fails is left whole."""
        try:
            self._scan(rec, prev, baseline)
        except Exception as e:  # views are restored on the way out: the working model is intact
            rec.stop, rec.reason, rec.pruned, rec.idxs, rec.losses_after = "skipped", _why(e), 0, [], list(prev)
        if not rec.pruned:
            return
        try:
            _apply(self.dg, rec.name, rec.idxs)
        except Exception as e:  # the working model may be half cut: rebuild it from what was accepted
            rec.stop, rec.reason, rec.pruned, rec.idxs, rec.losses_after = "skipped", _why(e), 0, [], list(prev)
            self.work, self.dg = self._copy(self.accepted)
            return
        g = count_gflops(self.work, self.opts.imgsz)
        rec.gflops_removed, self.gflops_now = self.gflops_now - g, g
        rec.score = rec.loss_increase / rec.gflops_removed if rec.gflops_removed > 0 else math.inf
        self.accepted.append(rec)

    def _scan(self, rec: LayerRecord, prev, baseline) -> None:
        """Try 5%, 10%, ... of the group's channels; keep the last count within both bounds."""
        group, order = self._group(rec.name)
        rec.channels = len(order)
        counts = pruned_counts(len(order), self.round_to, group_heads(group, self.heads))
        limits = [min((1 + rec.tolerance) * p, self.big_d * b) for p, b in zip(prev, baseline)]
        start = first_layer(self.dg, group) if self.calib.resumable(self.work) else 0
        states = self.calib.prefix(self.work, start)
        for n in counts:
            rec.trials += 1
            with pruned_view(self.dg, subset(group, order[:n])):
                losses, broken = self.calib.losses(self.work, states, start, limits)
            if broken is not None:
                rec.stop = COMPONENTS[broken]
                rec.bound = "global" if losses[broken] <= (1 + rec.tolerance) * prev[broken] else "layer"
                return
            rec.pruned, rec.idxs, rec.losses_after = n, sorted(order[:n]), losses
            rec.loss_increase = max((a / b if b > 0 else 1.0) for a, b in zip(losses, prev)) - 1

    def _finish(self) -> nn.Module:
        """The start model with the top-k accepted layers, best score first (until the target, if asked)."""
        kept = select_topk(self.accepted, self.opts.topk)
        model, dg = self._copy()
        for rec in kept:
            rec.kept = True
        for rec in kept:
            _apply(dg, rec.name, rec.idxs)
            rec.applied = True
            if self.opts.stop_at_target and \
                    self.base_gflops / count_gflops(model, self.opts.imgsz) >= self.opts.speedup:
                break
        try:
            with torch.no_grad():
                model.eval()(self.calib.example())
        except Exception as e:
            raise PruningError(f"pagcp: the model pruned in round {self.index + 1} no longer runs "
                               f"({_why(e)}); report the model yaml") from e
        return model


def _fmt(losses) -> str:
    return " ".join(f"{c} {v:.4g}" for c, v in zip(COMPONENTS, losses))


# ---- the algorithm ----------------------------------------------------------------------------------------
def pagcp_prune(model: nn.Module, calib_batches: list, loss_fn: Callable, *, speedup: float, imgsz: int,
                initial_rate: float = 0.05, initial_thres: float = 5.0, topk: float = 1.0, exp: bool = False,
                rate_slope: float = 0.0, thres_slope: float = 0.0, rounds: int = 3,
                finetune_fn: Callable | None = None, ignored_layers=(), opaque: Sequence[str] = (),
                stop_at_target: bool = True, progress: Callable[[str], None] = print,
                round_to: int | str | None = None) -> PagcpResult:
    """Prune `model` (left untouched; a pruned copy is returned) with PAGCP until the GFLOPs ratio reaches
    `speedup` or `rounds` rounds are done.

    calib_batches: [(images float [B,3,H,W] in [0, 1] on the model's device, targets [N,6]), ...].
    loss_fn: `loss_fn(raw, targets) -> (loss, items[box, obj, cls])` (engine.losses.build_loss).
    finetune_fn(model, round) -> model or None: trains between rounds (not after the last).
    ignored_layers: modules (or their names) never pruned, e.g. the guard's; the head's output convs
    always are. opaque: names of layers the guard traces as black boxes. round_to: pruned layers keep a multiple
    of this many channels (`--round-to`, as the other methods).
    A round that accepts nothing doubles the tolerances of the following rounds (d0 and D - 1).
    """
    opts = PagcpOptions(speedup=speedup, imgsz=imgsz, initial_rate=initial_rate, initial_thres=initial_thres,
                        topk=topk, exp=exp, rate_slope=rate_slope, thres_slope=thres_slope, rounds=rounds,
                        stop_at_target=stop_at_target).check()
    t0 = time.time()
    calib = Calibration(calib_batches, loss_fn)
    names = {m: n for n, m in model.named_modules()}
    ignored_names = [layer if isinstance(layer, str) else names[layer] for layer in ignored_layers
                     if isinstance(layer, str) or layer in names]
    base_gflops = count_gflops(model, imgsz)
    current, records, reached, boost = model, [], False, 1.0
    for r in range(opts.rounds):
        d0, big_d = opts.for_round(r, boost)
        current, rnd = _Round(current, calib, opts, r, d0, big_d, base_gflops, ignored_names, opaque,
                              progress, round_to).run()
        records.append(rnd)
        row = rnd.row()
        progress(f"pagcp round {r + 1}/{opts.rounds}: accepted {row['accepted']} of {row['candidates']} groups, "
                 f"applied {row['applied']}, GFLOPs {rnd.gflops_before:.4g} -> {rnd.gflops_after:.4g} "
                 f"({rnd.speedup:.3f}x of {speedup}x), {rnd.wall_s:.0f}s")
        if rnd.speedup >= speedup:
            reached = True
            break
        if row["accepted"] == 0:
            boost *= 2
            progress(f"pagcp: round {r + 1} accepted nothing; the next round doubles the tolerances")
        if finetune_fn is not None and r + 1 < opts.rounds:
            current = finetune_fn(current, r) or current
    result = PagcpResult(current.eval(), records, reached, base_gflops, count_gflops(current, imgsz), speedup,
                         time.time() - t0)
    ratio = result.gflops_ratio
    if reached:
        progress(f"pagcp: target {speedup}x reached in {len(records)} round(s): {ratio:.3f}x"
                 + (f" (overshoot {ratio / speedup:.2f})" if ratio > 1.1 * speedup else ""))
    else:
        progress(f"pagcp: round limit {opts.rounds} reached at {ratio:.3f}x of the {speedup}x target; raise "
                 "--rounds, --initial-rate or --initial-thres to prune further")
    return result


# ---- the `prune --method pagcp` entry point ---------------------------------------------------------------
def calibration_batches(data, imgsz: int, batch_size: int, stride: int, hyp, n_batches: int, workers: int,
                        device) -> list:
    """The first `n_batches` training batches, letterboxed without augmentation, in file order, on `device`."""
    from ..data.dataset import create_dataloader
    if n_batches < 1:
        raise ConfigError(f"--calib-batches must be >= 1, got {n_batches}")
    loader, _ = create_dataloader(data.train, imgsz, batch_size, stride, hyp, augment=False, rect=False,
                                  shuffle=False, workers=workers, nc=data.nc, prefix="pagcp calibration")
    out = []
    for imgs, targets, _, _ in loader:
        out.append((imgs.to(device).float() / 255, targets.to(device)))
        if len(out) == n_batches:
            break
    return out


def _guard(model, x) -> tuple[list, list, list]:
    """(ignored layers, skipped, black-box layer names) from the guard."""
    found = find_unprunable(model, x, None)
    ignored, skipped = found
    return list(ignored), list(skipped), list(getattr(found, "opaque", []))


def _round_finetuner(train_opts: TrainOptions, epochs: int, hyp, save_dir: Path, device):
    """finetune_fn training `epochs` between rounds into save_dir/pagcp_rounds/roundN."""
    from ..engine.api import train
    from ..models.checkpoint import load_model

    def finetune(model, r):
        opts = dataclasses.replace(train_opts, epochs=epochs, project=str(save_dir / "pagcp_rounds"),
                                   name=f"round{r + 1}", exist_ok=True, noautoanchor=True)
        res = train(opts, model=model, hyp=hyp)
        weights = res.best if Path(res.best).is_file() else res.last
        return load_model(weights, device)[0].eval()
    return finetune


def pagcp_strategy(model: nn.Module, prune: PruneOptions, train: TrainOptions, data, hyp, device, imgsz: int,
                   save_dir: Path) -> PruneOutcome:
    """The PAGCP row of the method table: calibration batches from the training set, the detection loss, the
    guard's skips and optional finetuning between rounds; the same outcome as Torch-Pruning's loop."""
    t0 = time.time()
    model = model.to(device).eval()
    stride = model_stride(model)
    knobs = prune.pagcp
    batches = calibration_batches(data, imgsz, train.batch_size, stride, hyp, knobs.calib_batches, train.workers,
                                  device)
    if not batches:
        raise DataError(f"pagcp: the training set of {data.yaml_path or 'the data'} gave no calibration batch")
    before, p0 = conv_channels(model), count_params(model)
    lat0 = measure_latency(model, imgsz, prune.latency_batch, prune.latency_device)
    ignored, skipped, opaque = _guard(model, batches[0][0][:1])
    finetune_fn = (_round_finetuner(train, knobs.round_finetune_epochs, hyp, save_dir, device)
                   if knobs.round_finetune_epochs > 0 else None)
    result = pagcp_prune(model, batches, build_loss(model, hyp, imgsz), speedup=prune.speedup, imgsz=imgsz,
                         initial_rate=knobs.initial_rate, initial_thres=knobs.initial_thres, topk=knobs.topk,
                         exp=knobs.exp, rate_slope=knobs.rate_slope, thres_slope=knobs.thres_slope,
                         rounds=knobs.rounds, finetune_fn=finetune_fn, ignored_layers=ignored, opaque=opaque,
                         progress=LOGGER.info, round_to=prune.round_to)
    pruned = result.model
    lat = measure_latency(pruned, imgsz, prune.latency_batch, prune.latency_device)
    report = {**result.summary(), "wall_s": time.time() - t0, "calib_batches": len(batches),
              "calib_images": sum(int(b[0].shape[0]) for b in batches)}
    return PruneOutcome(
        model=pruned, steps=None, reached=result.reached, gflops_before=result.gflops_before,
        gflops_after=result.gflops_after, speedup_gflops=result.gflops_ratio, latency_before=lat0,
        latency_after=lat, speedup_latency=lat0 / lat, skipped=skipped,
        per_layer=per_layer_table(before, conv_channels(pruned)), params_before=p0, params_after=count_params(pruned),
        stop_reason="pagcp rounds done", extra={"pagcp": report})
