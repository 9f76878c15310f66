"""Does the model still train? One forward and backward pass, and on failure the layer to blame.

A user module can break autograd (an in-place write into a slice) or break once pruned (a hard-coded
channel count). Training would stop with a bare traceback deep in autograd; here the failure becomes one
error line (a `PruningError` before and after pruning, a `TrainingError` in training) that names the layer
index, its module and, when we know it, what to change.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..core.errors import PruningError, YoloCompressError

_HINTS = (
    ("modified by an inplace operation", "an in-place write into a slice (x[:, :c] = conv(x[:, :c])); "
     "write torch.cat instead"),
    ("expected input", "a channel count fixed in its code or arguments; derive it from the input "
     "(x.shape[1]) or from its own layers"),
    ("is invalid for input of size", "a reshape to a channel count it stored (e.g. reshape(b, self.c2, w, h)); "
     "write -1 there or take the count from the tensor"),
    ("split_with_sizes expects split_sizes", "split sizes kept as Python ints; declare them with "
     "register_module(split_sizes=...) (docs/custom-modules.md)"),
)


def hint_for(error_text: str) -> str | None:
    """What the module does that pruning or training cannot follow, from an error's text (None: unknown)."""
    return next((h for key, h in _HINTS if key in error_text), None)


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def _scalar(out) -> torch.Tensor | None:
    ts = [t.float().sum() for t in _tensors(out) if t.requires_grad]
    return torch.stack(ts).sum() if ts else None


def _training_copy(model: nn.Module) -> nn.Module:
    """A copy in training mode with BatchNorm frozen (batch statistics of one image may be undefined)."""
    m = copy.deepcopy(model).train()
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.eval()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def _layers(model: nn.Module) -> list[nn.Module]:
    return list(getattr(model, "model", [])) or [model]


def _describe(layer: nn.Module) -> str:
    i = getattr(layer, "i", None)
    return f"layer {i} ({getattr(layer, 'type', type(layer).__name__)})" if i is not None else type(layer).__name__


def _message(when: str, layer: nn.Module | None, phase: str, error: Exception) -> str:
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    hint = hint_for(str(error))
    where = _describe(layer) if layer is not None else "the model"
    return (f"{when}: {where} fails in the {phase} pass ({type(error).__name__}: {text}); "
            + (f"the module makes {hint}" if hint else "check that module's forward"))


def _forward_culprit(model: nn.Module, x) -> nn.Module | None:
    """The layer whose forward raised: the last one entered and not left."""
    stack, handles = [], []
    for layer in _layers(model):
        handles.append(layer.register_forward_pre_hook(lambda m, a: stack.append(m) and None))
        handles.append(layer.register_forward_hook(lambda m, a, o: stack.pop() and None))
    try:
        model(x)
    except Exception:
        return stack[-1] if stack else None
    finally:
        for h in handles:
            h.remove()
    return None


def _backward_culprit(model: nn.Module, x) -> nn.Module | None:
    """The first layer (in order) whose output cannot be differentiated back to the input."""
    outputs, handles = [], []
    for layer in _layers(model):
        handles.append(layer.register_forward_hook(lambda m, a, o: outputs.append((m, o)) and None))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    for layer, out in outputs:
        s = _scalar(out)
        if s is None:
            continue
        try:
            torch.autograd.backward(s, retain_graph=True)
        except Exception:
            return layer
    return None


def check_runs(model: nn.Module, x, when: str, error: type[YoloCompressError] = PruningError) -> None:
    """Raise one `error` line when `model` fails a training forward or backward pass on `x`."""
    m = _training_copy(model)
    with torch.enable_grad():
        try:
            out = m(x)
        except Exception as e:
            raise error(_message(when, _forward_culprit(_training_copy(model), x), "forward", e)) from e
        loss = _scalar(out)
        if loss is None:
            return
        try:
            loss.backward()
        except Exception as e:
            raise error(_message(when, _backward_culprit(_training_copy(model), x), "backward", e)) from e
