"""Which top-level layers a user's module file supplies, and how many channels they own: what the gallery test
and benchmark measure a family's pruned share by."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .registry import lookup


def user_module_layers(model, modules_file) -> list[int]:
    """Indices of the layers whose module class comes from `modules_file` (as `--modules` loads it)."""
    own = f"yolocompress_user_{Path(modules_file).stem}"
    return [m.i for m in model.model if lookup(m.type).cls.__module__ == own]


def layer_channels(model, layers: list[int]) -> int:
    """Output channels of the convs and Linears in `layers`, leaving out the head's prediction convs and layers of
    one output (ECA's Conv1d, CBAM's spatial conv): never pruned, by nature."""
    prefixes = tuple(f"model.{i}." for i in layers)
    fixed = {id(m) for m in model.head.m.modules()}
    return sum(m.weight.shape[0] for n, m in model.named_modules()
               if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
               and not isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight.shape[0] > 1
               and n.startswith(prefixes) and id(m) not in fixed)


def input_layers(model, layers: list[int]) -> list[int]:
    """The layers that feed `layers` (for a family with no channels of its own, e.g. ECA: its neighbours)."""
    n = len(model.model)
    return sorted({(j if j >= 0 else model.model[i].i + j) % n for i in layers
                   for j in ([model.model[i].f] if isinstance(model.model[i].f, int) else model.model[i].f)})
