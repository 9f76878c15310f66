"""Import checkpoints written by ultralytics/yolov5 (v6.0-v7.0) and WongKinYiu/yolov7 without their code.

Their .pt files are pickles of whole model objects. A restricted unpickler maps their classes (and the
torch.nn classes inside them) to inert stand-ins that only hold attributes, allows the few torch, numpy and
collections globals a checkpoint needs, and refuses every other global before anything runs. The state_dict
and the embedded yaml are then read off the stand-ins and our own model is rebuilt from them.
"""
from __future__ import annotations

import _compat_pickle
import pickle
import types
from collections import OrderedDict

import torch

from ..core.errors import CheckpointError

_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size, ("torch", "device"): torch.device,
}
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool"):
    _ALLOWED[("torch", _dt)] = getattr(torch, _dt)
if hasattr(torch._utils, "_rebuild_parameter_with_state"):
    _ALLOWED[("torch._utils", "_rebuild_parameter_with_state")] = torch._utils._rebuild_parameter_with_state


def _numpy_allowed():
    import numpy as np
    out = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    # numpy 2 warns on any np.core access (an error under -W error); numpy 1 has only np.core
    multiarray = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "scalar")] = multiarray.scalar
        out[(mod, "_reconstruct")] = multiarray._reconstruct
    for name in ("Float64DType", "Float32DType", "Int64DType"):
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name):
            out[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return out


# Classes of the official code (and torch.nn modules) become inert attribute holders.
_STANDIN_MODULES = ("models.common", "models.yolo", "models.experimental", "torch.nn.modules.")


class Inert:
    """Holds a pickled object's attributes; has no behaviour, so unpickling it runs nothing."""
    official_name = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


_standins: dict[str, type] = {}


def _standin(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _standins:
        _standins[key] = type(name, (Inert,), {"official_name": key})
    return _standins[key]


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses any global outside the allow-list, before it is imported or called."""

    def find_class(self, module, name):
        # Python 2 era names (protocol 2 pickles), mapped as pickle's fix_imports would
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        numpy_ok = _numpy_allowed()
        if (module, name) in numpy_ok:
            return numpy_ok[(module, name)]
        if any(module == m or module.startswith(m) for m in _STANDIN_MODULES) and name[:1].isupper():
            return _standin(module, name)
        raise CheckpointError(f"refused to load: the checkpoint names the global '{module}.{name}', which is "
                              "not part of a YOLO checkpoint (it could run code); only load files you trust")


restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
                                          __name__="restricted_pickle")


def _state_dict(obj, prefix: str = "", out=None) -> OrderedDict:
    """Read parameters and persistent buffers off a tree of stand-ins, like nn.Module.state_dict()."""
    out = OrderedDict() if out is None else out
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set", set()) or set()
    for group in ("_parameters", "_buffers"):
        for k, v in (d.get(group) or {}).items():
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
    return {"yaml": dict(yaml_dict), "state_dict": _state_dict(obj), "names": list(names) if names else None,
            "meta": meta}
