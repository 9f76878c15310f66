"""Repairs for Torch-Pruning 1.6.1 defects, one small subclass or function per defect.

Each class names the defect it repairs; docs/torch-pruning-defects.md explains them and
tests/prune/test_tp_fixes.py shows every defect on the upstream class next to the repair.
Build pruners through `yolocompress.prune.methods.build_pruner`, which uses only these classes.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops
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


class FixedBasePruner(_FreshContainers, tp.pruner.BasePruner):
    """BasePruner without shared default containers (defect e)."""


class FixedBNScalePruner(_FreshContainers, _RegularizerFollowsStep, tp.pruner.BNScalePruner):
    """BNScalePruner without shared default containers (defect e); groups refreshed after step."""


class FixedGroupNormPruner(_FreshContainers, _RegularizerFollowsStep, tp.pruner.GroupNormPruner):
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


class FixedGrowingRegPruner(_FreshContainers, _RegularizerFollowsStep, tp.pruner.GrowingRegPruner):
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
