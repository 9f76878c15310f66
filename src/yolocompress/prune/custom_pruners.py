"""Torch-Pruning handlers for layers it has none for: torchvision's DeformConv2d (DCNv2).

A deformable conv's input and output channels prune like a conv's. Its two other inputs, the offsets
(2 x offset_groups x k x k channels) and the modulation mask (offset_groups x k x k), are fixed by the kernel
size: the graph does not couple them to the features (`tp_fixes.FixedDependencyGraph`), and the conv that
predicts them keeps its outputs whole (the guard lists it with that reason).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_pruning.pruner.function import BasePruningFunc

try:
    from torchvision.ops import DeformConv2d
except ImportError:  # torchvision is optional for pruning
    DeformConv2d = None


def _keep(n: int, idxs) -> torch.Tensor:
    removed = set(int(i) for i in idxs)
    return torch.tensor([i for i in range(n) if i not in removed], dtype=torch.long)


class DeformConvPruner(BasePruningFunc):
    """Prune a DeformConv2d's output channels (weight rows, bias) or input channels (weight columns)."""
    TARGET_MODULES = (DeformConv2d,) if DeformConv2d is not None else ()

    def prune_out_channels(self, layer, idxs):
        keep = _keep(layer.out_channels, idxs)
        layer.out_channels = len(keep)
        layer.weight = nn.Parameter(layer.weight.data[keep].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.data[keep].clone())
        return layer

    def prune_in_channels(self, layer, idxs):
        if layer.groups != 1:
            raise ValueError("a grouped DeformConv2d keeps its input channels")
        keep = _keep(layer.in_channels, idxs)
        layer.in_channels = len(keep)
        layer.weight = nn.Parameter(layer.weight.data[:, keep].clone())
        return layer

    def get_out_channels(self, layer):
        return layer.out_channels

    def get_in_channels(self, layer):
        return layer.in_channels


def customized_pruners() -> dict:
    """The handlers to pass to every pruner and graph (`customized_pruners=`)."""
    return {DeformConv2d: DeformConvPruner()} if DeformConv2d is not None else {}
