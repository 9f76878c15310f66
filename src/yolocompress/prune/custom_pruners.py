"""Torch-Pruning handlers for layers it has none for: torchvision's DeformConv2d (DCNv2), and the two built-in
handlers a user module can declare instead of writing one (`register_module(pruner="passes_through")` or
`pruner="reduces"`).

A deformable conv's input and output channels prune like a conv's. Its two other inputs, the offsets
(2 x offset_groups x k x k channels) and the modulation mask (offset_groups x k x k), are fixed by the kernel
size: the graph does not couple them to the features (`tp_fixes.FixedDependencyGraph`), and the conv that
predicts them keeps its outputs whole (the guard lists it with that reason).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch_pruning.pruner.function import BasePruningFunc

from ..core.errors import PruningError

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


class TracedWidths(BasePruningFunc):
    """A black-box module's channel counts, as seen while the graph was traced. Not a root of its own groups:
    it holds no weights to rank, and its channels are pruned from the layers around it."""
    ROOT = False

    def get_out_channels(self, layer):
        return getattr(layer, "_blackbox_channels", (None, None))[1]

    def get_in_channels(self, layer):
        return getattr(layer, "_blackbox_channels", (None, None))[0]

    def get_in_channel_groups(self, layer):
        return 1

    def get_out_channel_groups(self, layer):
        return 1


class PassesThrough(TracedWidths):
    """A module whose output channel c is its input channel c (any per-position work, no weight per channel):
    its inputs and outputs are one group, and pruning one removes the same channels from the other. One function
    for both sides is how Torch-Pruning couples them."""

    def prune_out_channels(self, layer, idxs):
        return layer

    prune_in_channels = prune_out_channels


class Reduces(TracedWidths):
    """A module that reduces over its input channels to a count fixed by its code (a channel mean, a pooled
    descriptor): its inputs prune freely, its outputs are kept whole."""

    def prune_in_channels(self, layer, idxs):
        return layer

    def prune_out_channels(self, layer, idxs):
        raise PruningError(f"{type(layer).__name__} reduces over its input channels: its output channels are "
                           "fixed by its code and kept whole")


BUILTIN_HANDLERS = {"passes_through": PassesThrough, "reduces": Reduces}


def handler_for(declared):
    """The handler object of a `register_module(pruner=...)` declaration (a built-in name or the user's)."""
    return BUILTIN_HANDLERS[declared]() if isinstance(declared, str) else declared


def customized_pruners() -> dict:
    """The handlers to pass to every pruner and graph (`customized_pruners=`)."""
    return {DeformConv2d: DeformConvPruner()} if DeformConv2d is not None else {}
