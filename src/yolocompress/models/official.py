"""Import checkpoints written by ultralytics/yolov5 (v6.0-v7.0) and WongKinYiu/yolov7 without their code.

Their .pt files are pickles of whole model objects. The restricted unpickler of safe_pickle.py turns their
classes (and the torch.nn / torch.optim classes inside them) into inert stand-ins that only hold attributes,
accepts the globals that build plain data, and refuses every other global before anything runs. The
state_dict and the embedded yaml are then read off the stand-ins and our own model is rebuilt from them.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..core.errors import CheckpointError
from .safe_pickle import Inert, restricted_pickle

__all__ = ["Inert", "restricted_pickle", "read_official", "is_official"]


def _state_dict(obj, prefix: str = "", out=None) -> OrderedDict:
    """Read parameters and persistent buffers off a tree of stand-ins, like nn.Module.state_dict()."""
    out = OrderedDict() if out is None else out
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set", set()) or set()
    for group in ("_parameters", "_buffers"):
        for k, v in (d.get(group) or {}).items():
            if v is not None and not isinstance(v, torch.Tensor):
                raise CheckpointError(f"the official model holds a {type(v).__name__} as tensor '{prefix + k}'")
            if v is not None and k not in skip:
                out[prefix + k] = v.detach().float() if v.is_floating_point() else v.detach()
    for k, child in (d.get("_modules") or {}).items():
        if child is not None:
            _state_dict(child, f"{prefix}{k}.", out)
    return out


def is_official(ckpt) -> bool:
    return isinstance(ckpt, dict) and isinstance(ckpt.get("model") or ckpt.get("ema"), Inert)


def read_official(path) -> dict:
    """Unpickle an official checkpoint safely; returns {'yaml', 'state_dict', 'names', 'meta'}."""
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except CheckpointError as e:  # the unpickler's refusal does not know the file name
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:
        msg = " ".join(str(e).split())[:200]  # one line, whatever the unpickler said
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {msg})") from None
    if not is_official(ckpt):
        raise CheckpointError(f"{path}: not a yolocompress, ultralytics/yolov5 or WongKinYiu/yolov7 checkpoint "
                              "(no model object under 'model' or 'ema')")
    obj = ckpt.get("ema") or ckpt["model"]
    yaml_dict = getattr(obj, "yaml", None)
    if not isinstance(yaml_dict, dict):
        raise CheckpointError(f"{path}: the official model carries no architecture yaml; cannot rebuild it")
    names = getattr(obj, "names", None)
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    meta = {"source": obj.official_name, "epoch": ckpt.get("epoch"), "date": ckpt.get("date")}
    try:
        state_dict = _state_dict(obj)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return {"yaml": dict(yaml_dict), "state_dict": state_dict, "names": list(names) if names else None,
            "meta": meta}
