"""Dependency-graph helpers shared by the guard, sparse training and PAGCP: one copy of each.

Implicit parameters and layer indices of our models; a group's filter-L1 order, its sub-groups, the module
that owns a dependency's tensors, and a reversible in-place pruned view (PAGCP's trials).
"""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn as nn
from torch_pruning import ops

from ..models.heads import ImplicitA, ImplicitM


def implicit_parameters(model: nn.Module) -> dict:
    """IDetect's implicit knowledge `[1, C, 1, 1]`, pruned along the channel dim (1)."""
    return {m.implicit: 1 for m in model.modules() if isinstance(m, (ImplicitA, ImplicitM))}


def layer_index(name: str, default: int | None = None) -> int | None:
    """Top-level layer of a module path `model.<i>....`, or `default` for another path."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "model" and parts[1].isdigit() else default


# ---- groups, filter L1 and reversible pruning ---------------------------------------------------------
def out_fn(dg, module):
    return dg.get_pruner_of_module(module).prune_out_channels


def full_group(dg, root):
    return dg.get_pruning_group(root, out_fn(dg, root), list(range(dg.get_out_channels(root))))


def l1_order(dg, group, heads: int = 1) -> list[int]:
    """Root channels by the L1 norm of their filters (summed over the group's coupled layers), lowest first.

    With `heads` > 1 (the group holds attention heads of equal width) the order goes by head dimension: the
    same position of every head together, scored by their sum, so any prefix of `heads` x k channels takes
    k dimensions out of every head and the width stays a multiple of the head count. A group without a filter
    (its root is a module with its own handler, `register_module(pruner=...)`) is scored by the input columns
    of the layers it feeds."""
    score = _l1_scores(dg, group, outputs=True)
    if not score.any():  # no filter in the group: a module with its own handler is the root
        score = _l1_scores(dg, group, outputs=False)
    n = len(score)
    if heads > 1 and n % heads == 0:
        width = n // heads
        positions = torch.argsort(score.view(heads, width).sum(0), stable=True).tolist()
        return [p + k * width for p in positions for k in range(heads)]
    return torch.argsort(score, stable=True).tolist()


def _l1_scores(dg, group, outputs: bool) -> torch.Tensor:
    """Per root channel, the L1 norm of the group's filters (`outputs`) or of the input columns that read it."""
    score = torch.zeros(len(group[0].idxs), dtype=torch.float64)
    for item in group:
        layer = item.dep.target.module
        w = getattr(layer, "weight", None)
        if not (isinstance(w, torch.Tensor) and w.dim() >= 2):
            continue
        if dg.is_out_channel_pruning_fn(item.dep.handler) != outputs:
            continue
        if not outputs and getattr(layer, "groups", 1) != 1:  # a grouped layer's columns are not per channel
            continue
        w = w.detach().transpose(0, 1) if getattr(layer, "transposed", False) else w.detach()
        w = w[item.idxs] if outputs else w[:, item.idxs].transpose(0, 1)  # (channels, ...)
        score.index_add_(0, torch.as_tensor(item.root_idxs, dtype=torch.long), w.abs().flatten(1).sum(1).double().cpu())
    return score


def group_heads(group, heads: dict) -> int:
    """The head count a group's channels are split into (1 if it holds no attention layer of `heads`)."""
    return max((heads.get(item.dep.target.module, 1) for item in group), default=1)


def subset(group, roots) -> list:
    """(dependency, indices) of the group restricted to some root channels."""
    keep = set(roots)
    out = []
    for item in group:
        idxs = [i for i, r in zip(item.idxs, item.root_idxs) if r in keep]
        if idxs:
            out.append((item.dep, idxs))
    return out


def owner(dg, target) -> tuple[str, nn.Module] | None:
    """(name, module) whose tensors the dependency target changes; None for tensor-free ops (cat, add...)."""
    if target.type == ops.OPTYPE.PARAMETER:
        name = dg._param_to_name[target.module]
        parent = name.rpartition(".")[0]
        return parent, dg.model.get_submodule(parent)
    mod = target.module
    if isinstance(mod, nn.Module) and (any(True for _ in mod.parameters(recurse=False))
                                       or any(True for _ in mod.buffers(recurse=False))):
        return dg._module2name.get(mod, ""), mod
    return None


@contextlib.contextmanager
def pruned_view(dg, items):
    """Prune the modules of `items` in place and put every tensor back on exit.

    Only modules with tensors are touched (concat/add bookkeeping of the graph stays as it is), so the
    graph remains valid for the unpruned model once the view is closed.
    """
    saved = {}
    try:
        with torch.no_grad():
            for dep, idxs in items:
                found = owner(dg, dep.target)
                if found is None:
                    continue
                mod = found[1]
                for sub in mod.modules():  # and its children: MultiheadAttention prunes its out_proj
                    if id(sub) not in saved:
                        saved[id(sub)] = (sub, {**sub.__dict__, "_parameters": copy.copy(sub._parameters),
                                                "_buffers": copy.copy(sub._buffers)})
                if dep.target.type == ops.OPTYPE.PARAMETER:
                    leaf = dg._param_to_name[dep.target.module].rpartition(".")[2]
                    setattr(mod, leaf, dep(idxs))
                else:
                    dep(idxs)
        yield
    finally:
        for mod, state in saved.values():
            mod.__dict__.clear()
            mod.__dict__.update(state)


def first_layer(dg, items) -> int:
    """The first top-level layer the items touch (a forward pass may resume there); 0 when unknown."""
    owners = [owner(dg, dep.target) for dep, _ in items]
    return min((layer_index(o[0], 0) for o in owners if o is not None), default=0)
