"""Repairs for Torch-Pruning 1.6.1 defects, one small subclass or function per defect.

Each class names the defect it repairs; docs/torch-pruning-defects.md explains them and
tests/prune/test_tp_fixes.py shows every defect on the upstream class next to the repair.
Build pruners through `yolocompress.prune.methods.build_pruner`, which uses only these classes.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterable, Mapping

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import _helpers, ops
from torch_pruning.dependency import index_mapping
from torch_pruning.pruner import function

log = logging.getLogger(__name__)

DEFAULT_ROOT_MODULE_TYPES = (ops.TORCH_CONV, ops.TORCH_LINEAR, ops.TORCH_LSTM)
# bound methods: compare with == (`in`), never `is`
_OUT_CHANNEL_FNS = (function.prune_conv_out_channels, function.prune_linear_out_channels)
_IN_CHANNEL_FNS = (function.prune_conv_in_channels, function.prune_linear_in_channels)
_SHARED_DICT_ARGS = ("in_channel_groups", "out_channel_groups", "num_heads", "channel_groups")


def prepare_model_for_pruning(model: nn.Module) -> int:
    """Set requires_grad=True on every parameter and return how many were frozen.

    Defect f: Torch-Pruning traces the dependency graph through autograd (`grad_fn`); when the
    parameters are frozen (stripped official checkpoints) the trace finds no layers and `step()`
    silently prunes nothing.
    """
    params = list(model.parameters())
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    if frozen:
        log.info("prepare_model_for_pruning: set requires_grad=True on %d of %d parameter tensors "
                 "(Torch-Pruning traces layers through autograd)", len(frozen), len(params))
    return len(frozen)


def as_unwrapped_pairs(unwrapped: Mapping[nn.Parameter, int] | Iterable | None) -> list | None:
    """A fresh list of (parameter, pruning_dim) pairs from a dict or a list of pairs.

    Upstream documents `unwrapped_parameters` as a dict but iterates it as pairs and appends the
    parameters it detects itself to the caller's list (defect e).
    """
    if unwrapped is None:
        return None
    items = unwrapped.items() if isinstance(unwrapped, Mapping) else unwrapped
    return [(p, int(dim)) for p, dim in items]


@contextlib.contextmanager
def fixed_graph_class():
    """While a pruner is built, `BasePruner` constructs `FixedDependencyGraph` (defect i) instead of upstream's
    graph: `BasePruner.__init__` names `torch_pruning.dependency.DependencyGraph` and takes no graph class."""
    saved = tp.dependency.DependencyGraph
    tp.dependency.DependencyGraph = FixedDependencyGraph
    try:
        yield
    finally:
        tp.dependency.DependencyGraph = saved


class _FreshContainers:
    """Defect e: mutable default arguments are shared between pruner instances.

    `in_channel_groups`, `out_channel_groups`, `num_heads` and `channel_groups` default to one
    `dict()` created at import time, and `root_module_types` to one list; BasePruner writes the
    grouped convolutions it detects into the channel-group dicts, so a later pruner (on any model)
    starts with the entries of an earlier one. The caller's `unwrapped_parameters` list is also
    appended to. We give every pruner its own copies of all container arguments.
    """

    def __init__(self, model, example_inputs, importance, **kwargs: Any):
        for name in _SHARED_DICT_ARGS:
            kwargs[name] = dict(kwargs.get(name) or {})
        kwargs["root_module_types"] = list(kwargs.get("root_module_types") or DEFAULT_ROOT_MODULE_TYPES)
        for name in ("pruning_ratio_dict", "head_pruning_ratio_dict", "customized_pruners"):
            if kwargs.get(name) is not None:
                kwargs[name] = dict(kwargs[name])
        kwargs["unwrapped_parameters"] = as_unwrapped_pairs(kwargs.get("unwrapped_parameters"))
        if kwargs.get("ignored_layers") is not None:
            kwargs["ignored_layers"] = list(kwargs["ignored_layers"])
        with fixed_graph_class():
            super().__init__(model, example_inputs, importance, **kwargs)


class _RegularizerFollowsStep:
    """Regularising pruners keep a list of groups built for the unpruned model; after `step()` those
    groups index channels that no longer exist. We refresh them after every automatic step
    (interactive pruning must call `update_regularizer()` itself)."""

    def step(self, interactive: bool = False):
        result = super().step(interactive=interactive)
        if not interactive:
            self.update_regularizer()
        return result


ROUND_AUTO = "auto"
# `--round-to auto`: (narrowest original width, the multiple kept), widest first; narrower layers are not rounded
AUTO_UNITS = ((32, 16), (16, 8))


def rounding_unit(round_to: int | str | None, channels: int) -> int | None:
    """The multiple kept under `--round-to` by a layer of `channels` output channels (its original width): the
    number given, or under "auto" 16 for layers of 32 channels or more and 8 for 16-31; narrower layers are not
    rounded (16 ran fastest per GFLOP on CPU, docs/benchmarks.md; 8 still lets a 16-channel layer be halved)."""
    if round_to == ROUND_AUTO:
        return next((unit for least, unit in AUTO_UNITS if channels >= least), None)
    return round_to or None


def layer_floor(initial: int, max_ratio: float, round_to: int | str | None = None) -> int:
    """The fewest output channels a layer of `initial` channels may keep: at most `max_ratio` of them go, at
    least one stays, and with `round_to` the floor is a multiple of the layer's unit (a layer narrower than one
    multiple is never pruned)."""
    floor = max(1, int(initial * (1.0 - max_ratio) + 1e-9))  # what per-layer ranking keeps at max_ratio
    unit = rounding_unit(round_to, initial)
    if unit:
        floor = max(unit, math.ceil(floor / unit) * unit)
    return floor


@contextlib.contextmanager
def _index_mapping_once_per_shape(graph):
    """Speed, not a defect: `get_pruning_group` rebuilds the index mapping of every concat/reshape/slice of the
    graph on each call, once per group of every step (two thirds of a step's time on YOLO models). The mapping
    depends only on the channel counts, so while no parameter changed shape it is rebuilt only once."""
    upstream = index_mapping.update_index_mapping
    seen = {}
    modules = list(graph.model.modules())  # pruning replaces parameters, never modules

    def update(g):
        key = g is graph and tuple(p.shape for m in modules for p in m._parameters.values() if p is not None)
        if g is not graph or seen.get("key") != key:
            upstream(g)
            if g is graph:
                seen["key"] = key
    index_mapping.update_index_mapping = update
    try:
        yield
    finally:
        index_mapping.update_index_mapping = upstream


class _WidthRules:
    """Defect k and our rounding rule, for every pruner.

    k: `max_pruning_ratio` is only checked before a step (`_check_pruning_ratio`); with global ranking one step
       removes every channel under the global threshold, so a layer can pass its limit in that step, down to one
       channel. Each group is capped here at `layer_floor` of its root layer, keeping its least important
       channels for removal.
    Rounding: upstream `_round_to` rounds the kept channels *down* to a multiple, so the first step halves
    every 16-channel layer at `round_to=8` (overshooting a target) and never prunes a layer narrower than
    `2 * round_to`. We round to the *nearest* multiple (at least one), so widths follow the ratio. Under
    `round_to="auto"` the multiple follows each layer's original width (`rounding_unit`), which upstream's
    `_round_to` does not know: `_sized` rounds those groups instead.
    """

    def _round_to(self, n_pruned, current_channels, round_to):
        if round_to == ROUND_AUTO:  # per layer, in _sized
            return n_pruned
        keep = current_channels - n_pruned
        keep = max(round_to, int(math.floor(keep / round_to + 0.5)) * round_to)
        return max(current_channels - keep, 0)

    def _prune(self):
        with _index_mapping_once_per_shape(self.DG):
            for group in super()._prune():
                group = self._sized(group)
                if group is not None:
                    yield group

    def _sized(self, group):
        """The group with as many channels as the rules allow: rounded under `auto` (by the layer's original
        width), then capped at the layer's floor; the channels taken are the layer's least important."""
        dep, idxs = group[0].dep, list(group[0].idxs)
        if not idxs:  # rounding kept the layer as it is
            return None
        module, fn = dep.target.module, dep.handler
        if not self.DG.is_out_channel_pruning_fn(fn) or module not in self.layer_init_out_ch:
            return group
        current, initial = self.DG.get_out_channels(module), self.layer_init_out_ch[module]
        if current is None or initial is None:
            return group
        n = len(idxs)
        unit = rounding_unit(self.round_to, initial) if self.round_to == ROUND_AUTO else None
        if unit:
            n = current - max(unit, int(math.floor((current - n) / unit + 0.5)) * unit)
        n = min(n, current - layer_floor(initial, self.max_pruning_ratio, self.round_to))
        if n == len(idxs):
            return group
        if n <= 0:
            return None
        imp = self.estimate_importance(self.DG.get_pruning_group(module, fn, list(range(current))))
        if imp is None:
            return group if n > len(idxs) else self.DG.get_pruning_group(module, fn, sorted(idxs)[:n])
        imp = imp.view(-1).cpu()
        if n < len(idxs):  # the least important of those the step chose
            chosen = torch.as_tensor([int(i) for i in idxs])
            chosen = chosen[torch.argsort(imp[chosen], stable=True)][:n]
        else:  # rounded up: the layer's least important channels, which include the step's own
            chosen = torch.argsort(imp, stable=True)[:n]
        return self.DG.get_pruning_group(module, fn, sorted(int(i) for i in chosen))


class FixedBasePruner(_FreshContainers, _WidthRules, tp.pruner.BasePruner):
    """BasePruner without shared default containers (defect e), with the width rules (defect k, rounding)."""


class FixedBNScalePruner(_FreshContainers, _RegularizerFollowsStep, _WidthRules, tp.pruner.BNScalePruner):
    """BNScalePruner without shared default containers (defect e); groups refreshed after step."""


class FixedGroupNormPruner(_FreshContainers, _RegularizerFollowsStep, _WidthRules, tp.pruner.GroupNormPruner):
    """Defect c: GroupNormPruner stores `alpha` but `regularize()` uses its own default `alpha=2**4`.

    Here `regularize()` uses the constructor's `alpha` unless one is passed, and accepts a `reg`
    that overrides the constructor's coefficient for this call (upstream reads `self.reg` only).
    """

    def regularize(self, model, alpha=None, bias=False, reg=None):
        saved = self.reg
        self.reg = saved if reg is None else reg
        try:
            super().regularize(model, alpha=self.alpha if alpha is None else alpha, bias=bias)
        finally:
            self.reg = saved


class FixedGrowingRegPruner(_FreshContainers, _RegularizerFollowsStep, _WidthRules, tp.pruner.GrowingRegPruner):
    """Defects b and d of GrowingRegPruner.

    b: `regularize()` adds the BN penalty with `grad.data[idxs].add_(...)`; indexing with a list
       makes a copy, so BN scales are never regularised. We add in place with `index_add_`.
    d: `update_regularizer()` rebuilds `group_reg` at the base value, wiping the growth
       accumulated by `update_reg()`. We carry each surviving channel's coefficient over, using the
       dependency graph's pruning history to know which channels were removed.
    `regularize()` also takes `reg`: the coefficients are scaled by `reg / base_reg` for this call
    (no scaling when base_reg is 0, where only the growth is applied).
    """

    def __init__(self, model, example_inputs, importance, **kwargs: Any):
        super().__init__(model, example_inputs, importance, **kwargs)
        self._history_seen = len(self.DG.pruning_history())

    def update_regularizer(self):
        old = {self.DG._module2name[g[0].dep.target.module]: r for g, r in self.group_reg.items()}
        kept = {name: list(range(len(r))) for name, r in old.items()}
        history = self.DG.pruning_history()
        for name, is_out, idxs in history[self._history_seen:]:
            if is_out and name in kept:
                removed = set(int(i) for i in idxs)
                kept[name] = [k for j, k in enumerate(kept[name]) if j not in removed]
        self._history_seen = len(history)
        super().update_regularizer()
        for group in self._groups:
            name = self.DG._module2name[group[0].dep.target.module]
            if name in old and len(kept[name]) == len(group[0].idxs):
                self.group_reg[group] = old[name][kept[name]].clone()

    @torch.no_grad()
    def regularize(self, model, reg=None, bias=False):
        scale = 1.0 if reg is None or self.base_reg == 0 else reg / self.base_reg
        for group in self._groups:
            imp = self.estimate_importance(group)
            if imp is None or torch.isnan(imp).any():
                continue
            for k, (dep, idxs) in enumerate(group):
                layer, fn = dep.layer, dep.pruning_fn
                if layer in self.ignored_layers and fn not in _IN_CHANNEL_FNS:
                    continue  # as upstream: an ignored layer keeps only its input-channel penalty
                gamma = self.group_reg[group][group[k].root_idxs] * scale
                _add_scaled(layer, fn, idxs, gamma, bias)


def _add_scaled(layer: nn.Module, fn, idxs, gamma: torch.Tensor, bias: bool) -> None:
    """grad[idxs] += gamma * weight[idxs] along the dimension that `fn` prunes, in place."""
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        if not layer.affine:
            return
        dim, params = 0, [layer.weight] + ([layer.bias] if bias else [])
    elif isinstance(layer, (nn.modules.conv._ConvNd, nn.Linear)):
        if fn in _OUT_CHANNEL_FNS:
            dim, params = 0, [layer.weight] + ([layer.bias] if bias and layer.bias is not None else [])
        elif fn in _IN_CHANNEL_FNS:
            dim, params = 1, [layer.weight]
        else:
            return
    else:
        return
    for p in params:
        if p.grad is None:
            continue
        index = torch.as_tensor(idxs, dtype=torch.long, device=p.device)
        shape = [1] * p.dim()
        shape[dim] = -1
        g = gamma.to(p.device, p.dtype).view(shape)
        p.grad.index_add_(dim, index, p.data.index_select(dim, index) * g)


class FixedGroupHessianImportance(tp.importance.GroupHessianImportance):
    """Defect a: `accumulate_grad` tests `name not in self._accu_grad` but stores by parameter, so
    the test is always true and each call overwrites the sum (and the count stays 1): only the last
    sample's squared gradient survives. Here grad**2 is summed over calls and counted per parameter.
    """

    def accumulate_grad(self, model):
        for param in model.parameters():
            if param.grad is None:
                continue
            sq = param.grad.detach().pow(2)
            if param in self._accu_grad:
                self._accu_grad[param] += sq
                self._counter[param] += 1
            else:
                self._accu_grad[param] = sq.clone()
                self._counter[param] = 1


# ---- defect i: split / chunk outputs ---------------------------------------------------------------------
def _chunk_sizes(grad_fn) -> list[int] | None:
    """The sizes of the pieces a split/chunk cut along dim 1, read from its autograd node."""
    sizes = getattr(grad_fn, "_saved_split_sizes", None)
    if sizes is not None:
        return [int(s) for s in sizes]
    size, shape = getattr(grad_fn, "_saved_split_size", None), getattr(grad_fn, "_saved_self_sym_sizes", None)
    if size is None or shape is None:
        return None
    total, size = int(shape[1]), int(size)
    return [min(size, total - k) for k in range(0, total, size)]


def _pieces_used(split_node, out_node) -> list[int]:
    """Which pieces of the split `out_node` reads, in the order Torch-Pruning lists it (one per use)."""
    gf = out_node.grad_fn
    nexts = getattr(gf, "next_functions", ()) or ()
    return [int(k) for f, k in nexts if f is split_node.grad_fn]


class FixedSplitPruner(ops.SplitPruner):
    """Defect i (second half): upstream `SplitPruner` writes the new offsets to itself (`self.offsets`), never
    to the split it pruned, so `index_mapping` keeps the offsets of the unpruned model after the first step
    (VainF/Torch-Pruning PR #352, not merged). Here the piece sizes are updated per piece, the index
    mappings of the split's edges are moved in place, and a declared module attribute that holds the split
    sizes (`register_module(split_sizes=...)`) is rewritten so the module's own `split` call still fits."""

    def prune_out_channels(self, layer, idxs):
        pieces = getattr(layer, "piece_sizes", None)
        if pieces is None:
            return super().prune_out_channels(layer, idxs)
        starts = [sum(pieces[:k]) for k in range(len(pieces))]
        for idx in idxs:
            k = max(j for j, s in enumerate(starts) if s <= idx)
            pieces[k] -= 1
        for owner, attrs in getattr(layer, "size_attributes", ()):
            _write_sizes(owner, attrs, pieces)

    prune_in_channels = prune_out_channels


class _EveryPieceMapping:
    """Into a split of equal pieces: channel j of any piece is channel j of every piece."""

    def __init__(self, op):
        self.op = op

    def __call__(self, idxs):
        size, n = self.op.piece_sizes[0], len(self.op.piece_sizes)
        local = {}
        for i in idxs:
            local.setdefault(i.idx % size, i.root_idx)
        return [_helpers._HybridIndex(idx=j + k * size, root_idx=r) for k in range(n) for j, r in local.items()]


class _PiecewiseSplitOp(ops._SplitOp):
    """A traced split whose per-output `split_sizes` and `offsets` (read by Torch-Pruning's shape inference by
    output position) always follow its `piece_sizes`; upstream's writes to them are ignored."""

    @property
    def split_sizes(self):
        return [self.piece_sizes[k] for k in self.output_pieces]

    @split_sizes.setter
    def split_sizes(self, value):
        pass

    @property
    def offsets(self):
        return [sum(self.piece_sizes[:k]) for k in range(len(self.piece_sizes) + 1)]

    @offsets.setter
    def offsets(self, value):
        pass


class _PieceMapping:
    """Index mapping of one edge of a split: to the piece it reads (forward) or back from it (reverse).

    Reads the split's current piece sizes, so it stays right after every step. For `chunk` (equal pieces)
    a channel removed from one piece is removed at the same place in every piece: otherwise the pieces
    differ in size and `chunk` cuts the pruned tensor elsewhere."""

    def __init__(self, op, piece: int, reverse: bool):
        self.op, self.piece, self.reverse = op, piece, reverse

    def __call__(self, idxs):
        pieces = self.op.piece_sizes
        starts = [sum(pieces[:k]) for k in range(len(pieces) + 1)]
        s, e = starts[self.piece], starts[self.piece + 1]
        if self.reverse:
            shifts = starts[:-1] if self.op.equal_pieces else [s]
            return [_helpers._HybridIndex(idx=i.idx + t, root_idx=i.root_idx) for t in shifts for i in idxs]
        return [_helpers._HybridIndex(idx=i.idx - s, root_idx=i.root_idx) for i in idxs if s <= i.idx < e]


def _write_sizes(owner: nn.Module, attrs, pieces: list[int]) -> None:
    """Store the new split sizes where the module reads them: one attribute per piece, or one attribute for
    all pieces (an int when they are equal, else a tuple)."""
    if isinstance(attrs, str):
        old = getattr(owner, attrs)
        value = pieces[0] if isinstance(old, int) and len(set(pieces)) == 1 else \
            type(old)(pieces) if isinstance(old, (list, tuple)) else None
        if value is None:
            raise ValueError(f"{type(owner).__name__}.{attrs} = {old!r} cannot hold the split sizes {pieces}")
        setattr(owner, attrs, value)
    else:
        for name, size in zip(attrs, pieces):
            setattr(owner, name, size)


class FixedDependencyGraph(tp.DependencyGraph):
    """Defect i: the split/chunk index mapping.

    First half: Torch-Pruning 1.6.1 gives a split one offset range per *consumer* (its i-th output node gets
    `offsets[i:i+2]`), but a piece may have several consumers (C2f's last chunk feeds the bottleneck, its
    residual add and the concat), and it ignores which piece each consumer reads (`output_nr`). The ranges are
    then shifted, or past the end of the split (an IndexError when tracing `split((c, c), 1)` with more than
    two consumers). Here each edge of a split gets the range of the piece it reads, taken from autograd.
    Second half: see `FixedSplitPruner`.
    """

    def __init__(self):
        super().__init__()
        self.REGISTERED_PRUNERS[ops.OPTYPE.SPLIT] = FixedSplitPruner()
        pruners = [p for p in list(self.REGISTERED_PRUNERS.values()) + list(self.CUSTOMIZED_PRUNERS.values()) if p]
        self._in_channel_pruning_fn = {p.prune_in_channels for p in pruners}
        self._out_channel_pruning_fn = {p.prune_out_channels for p in pruners}

    def _build_dependency(self, module2node):
        recorder = getattr(self, "_recorder", None)
        if recorder is not None:
            cut_channel_free_edges(module2node, recorder.shapes, self._batch)
            self._size_concats(module2node.values())
        super()._build_dependency(module2node)
        for node in module2node.values():
            if node.type == ops.OPTYPE.SPLIT:
                self._map_pieces(node)

    def build_dependency(self, model, example_inputs, forward_fn=None, *args, **kwargs):
        from ..models.registry import split_size_owners
        from .declared import TraceRecorder
        recorder = TraceRecorder(split_size_owners(model))
        self._split_owners, self._recorder = recorder.found, recorder
        first = example_inputs[0] if isinstance(example_inputs, (list, tuple)) else example_inputs
        self._batch = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else None
        run = forward_fn or (lambda m, x: m(*x) if isinstance(x, (list, tuple)) else m(x))

        def traced(m, x):
            with recorder:
                return run(m, x)
        super().build_dependency(model, example_inputs, traced, *args, **kwargs)
        self._size_concats(self.module2node.values())  # upstream cached sizes from the wrong split sizes
        index_mapping.update_index_mapping(self)
        return self

    def _size_concats(self, nodes) -> None:
        """Concat input sizes as seen while tracing. Upstream infers them through the graph, which fails on a
        cut edge (`sum([.., None])`: its TypeError) and reads the split sizes by output position."""
        seen_sizes = self._recorder.cat_sizes
        for node in nodes:
            if node.type == ops.OPTYPE.CONCAT:
                seen = seen_sizes.get(node.grad_fn)
                node.module.concat_sizes = list(seen) if seen and len(seen) == len(node.inputs) else None

    def _map_pieces(self, node) -> None:
        shape = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
        dim = getattr(node.grad_fn, "_saved_dim", 1)
        if shape is None or len(shape) < 2 or dim not in (1, 1 - len(shape)):
            return  # not a split along the channels: Torch-Pruning's own handling
        pieces = _chunk_sizes(node.grad_fn)
        if pieces is None:
            return
        seen: dict = {}
        output_pieces = []
        for out in node.outputs:
            used = _pieces_used(node, out)
            j = seen.get(out, 0)
            seen[out] = j + 1
            output_pieces.append(used[j] if j < len(used) else 0)
        op = node.module
        op.piece_sizes, op.output_pieces = pieces, output_pieces
        op.equal_pieces = hasattr(node.grad_fn, "_saved_split_size") and len(set(pieces)) == 1
        declared = getattr(self, "_split_owners", {}).get(node.grad_fn)
        op.size_attributes = [declared] if declared else []
        if declared and isinstance(declared[1], str) and isinstance(getattr(declared[0], declared[1]), int):
            op.equal_pieces = True  # one int for every piece: they must stay equal
        forward = [d for d in node.dependencies if d.target in node.outputs]
        for dep, k in zip(forward, output_pieces):
            dep.index_mapping[0] = _PieceMapping(op, k, reverse=False)
        back_seen: dict = {}
        for out in node.outputs:
            if out in back_seen:
                continue
            back_seen[out] = True
            ks = [k for o, k in zip(node.outputs, output_pieces) if o is out]
            back = [d for d in out.dependencies if d.target is node]
            for dep, k in zip(back, ks):
                dep.index_mapping[0] = _PieceMapping(op, k, reverse=True)
        if op.equal_pieces:  # channels entering the split go from every piece at once
            for src in node.inputs:
                for dep in src.dependencies:
                    if dep.target is node:
                        dep.index_mapping[0] = _EveryPieceMapping(op)
        node.enable_index_mapping = False  # Torch-Pruning would overwrite our ranges by output position
        op.__class__ = _PiecewiseSplitOp


# ---- defect j: edges that carry no channel identity -------------------------------------------------------
def _channels(shape) -> int | None:
    return int(shape[1]) if shape is not None and len(shape) >= 2 else None


def _shape_of(node, shapes):
    if isinstance(node.module, nn.Parameter):
        return tuple(node.module.shape)
    return shapes.get(node.grad_fn)


def cut_channel_free_edges(module2node, shapes, batch: int | None = None) -> int:
    """Defect j: Torch-Pruning treats every operator it does not know as element-wise and couples the channels
    of all its inputs and its output by index. That is wrong where one side has no channels to share: a
    scalar or 1-D weight (BiFPN's per-input weights), a 1-channel map broadcast over C channels (CBAM's
    spatial attention, `x * att`), or a reduction of C channels to 1 (a channel mean or max, ECA's transpose
    of the pooled channels into a sequence). Those edges are cut, so the tiny convolutions on such maps do
    not tie the feature channels. Only batch-first tensors (dim 0 = `batch`) are read as channel-first, so a
    sequence laid out (positions, batch, channels) for attention keeps its edges. Returns how many were cut."""
    cut = 0
    for node in list(module2node.values()):
        if node.type == ops.OPTYPE.CUSTOMIZED and hasattr(node.module, "in_channels") and len(node.inputs) > 1:
            cut += _keep_feature_input(node, shapes)
        if node.type != ops.OPTYPE.ELEMENTWISE:
            continue
        out_shape = shapes.get(node.grad_fn)
        c_out = _channels(out_shape)
        for src in list(node.inputs):
            in_shape = _shape_of(src, shapes)
            c_in = _channels(in_shape)
            if c_out is None or in_shape is None:
                continue  # shapes unknown: leave Torch-Pruning's edge
            if c_in is not None and batch is not None and (in_shape[0] != batch or out_shape[0] != batch):
                continue  # not batch-first: dim 1 is not the channels
            if c_in is None or (c_in == 1) != (c_out == 1):
                node.inputs = [n for n in node.inputs if n is not src]
                src.outputs = [n for n in src.outputs if n is not node]
                cut += 1
    return cut


def _keep_feature_input(node, shapes) -> int:
    """A layer with extra tensor inputs (DeformConv2d's offsets and mask): only its first input with
    `in_channels` channels carries the features; the others are cut and remembered as `node.fixed_inputs`."""
    n_in = node.module.in_channels
    feature = next((src for src in node.inputs if _channels(_shape_of(src, shapes)) == n_in), None)
    if feature is None:
        return 0
    others = [src for src in node.inputs if src is not feature]
    node.fixed_inputs = others
    for src in others:
        src.outputs = [n for n in src.outputs if n is not node]
    node.inputs = [feature]
    return len(others)
