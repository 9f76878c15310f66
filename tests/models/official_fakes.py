"""Write checkpoints shaped like the official repositories' own: pickled model objects whose classes are named
`models.yolo.Model`, `models.common.Conv`, ... (FP16, requires_grad=False, IDetect with an `anchor_grid` buffer).

The stand-in classes live in fake `models*` modules registered in sys.modules only while pickling.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import types

import torch
import torch.nn as nn

from yolocompress.models import heads, modules
from yolocompress.models.builder import Model

_FAKE_PACKAGES = ("models", "models.common", "models.yolo")
# our class -> (official module, official class name); YOLOv5 names its model class DetectionModel
_OFFICIAL = {
    heads.Detect: ("models.yolo", "Detect"), heads.IDetect: ("models.yolo", "IDetect"),
    heads.ImplicitA: ("models.common", "ImplicitA"), heads.ImplicitM: ("models.common", "ImplicitM"),
    **{getattr(modules, n): ("models.common", n)
       for n in ("Conv", "Bottleneck", "C3", "SPPF", "SPPCSPC", "RepConv", "Concat", "MP", "SP")},
}


@contextlib.contextmanager
def fake_official_modules():
    """Yield a factory of stand-in classes importable as `models.<x>.<Name>`; undo everything afterwards."""
    saved = {n: sys.modules.get(n) for n in _FAKE_PACKAGES}
    fakes = {n: types.ModuleType(n) for n in _FAKE_PACKAGES}
    sys.modules.update(fakes)

    def standin(module: str, name: str) -> type:
        if not hasattr(fakes[module], name):
            setattr(fakes[module], name, type(name, (nn.Module,), {"__module__": module, "__qualname__": name}))
        return getattr(fakes[module], name)

    try:
        yield standin
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def _officialise_head(head: nn.Module):
    """Official heads keep `stride` as a plain attribute and cache `anchor_grid` (pixels) as a buffer."""
    stride = head._buffers.pop("stride")
    head._non_persistent_buffers_set.discard("stride")
    head.__dict__.pop("_grids", None)
    head.stride, head.grid = stride, [torch.zeros(1)] * head.nl
    if type(head) is heads.IDetect:
        head.register_buffer("anchor_grid", (head.anchors * stride.view(-1, 1, 1)).view(head.nl, 1, -1, 1, 1, 2))
    return stride


def write_official_checkpoint(model: Model, path, model_class: str = "Model", epoch: int = -1,
                              extra: dict | None = None, tamper=None):
    """Pickle `model` as the official train.py/strip_optimizer leaves it: {'model': <FP16 module>, ...}.

    `extra` adds top-level entries; `tamper(obj)` may edit the official model object just before saving.
    """
    obj = copy.deepcopy(model).half()
    for p in obj.parameters():
        p.requires_grad_(False)
    with fake_official_modules() as standin:
        stride = _officialise_head(obj.model[-1])
        for m in obj.modules():
            if type(m) in _OFFICIAL:
                m.__class__ = standin(*_OFFICIAL[type(m)])
        obj.__class__ = standin("models.yolo", model_class)
        obj.stride, obj.traced = stride, False
        obj.yaml = {k: v for k, v in obj.yaml.items() if k != "yaml_file"}
        ckpt = {"model": obj, "optimizer": None, "training_results": None, "epoch": epoch,
                "best_fitness": None, "ema": None, "updates": None, "wandb_id": None, **(extra or {})}
        if tamper is not None:
            tamper(obj)
        torch.save(ckpt, path)
    return path
