"""Write checkpoints shaped like the official repositories' own: pickled model objects whose classes are named
`models.yolo.Model`, `models.common.Conv`, ... (FP16, requires_grad=False, IDetect with an `anchor_grid` buffer).

The stand-in classes live in fake `models*` modules registered in sys.modules only while pickling.
"""
from __future__ import annotations

import contextlib
import copy
import io
import pickle
import pickletools
import sys
import types
import zipfile

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


def _officialise_head(head: nn.Module, anchor_grid: bool):
    """Official heads keep `stride` as a plain attribute; YOLOv7's cache `anchor_grid` (pixels) as a buffer."""
    stride = head._buffers.pop("stride")
    head._non_persistent_buffers_set.discard("stride")
    head.__dict__.pop("_grids", None)
    head.stride, head.grid = stride, [torch.zeros(1)] * head.nl
    if anchor_grid:
        head.register_buffer("anchor_grid", (head.anchors * stride.view(-1, 1, 1)).view(head.nl, 1, -1, 1, 1, 2))
    return stride


class _RenamingPickler(pickle._Pickler):
    """Writes chosen globals under the names other Python/numpy versions give them (e.g. numpy 1's
    `numpy.core.multiarray._reconstruct` where numpy 2 writes `numpy._core...`), byte for byte as those would."""
    renames: dict = {}

    def save_global(self, obj, name=None):
        natural = f"{getattr(obj, '__module__', None)}.{name or getattr(obj, '__qualname__', None)}"
        if natural not in self.renames:
            return super().save_global(obj, name)
        module, _, qualname = self.renames[natural].rpartition(".")
        self.write(pickle.GLOBAL + module.encode() + b"\n" + qualname.encode() + b"\n")
        self.memoize(obj)


def _pickle_module(renames: dict | None):
    if not renames:
        return pickle
    pickler = type("Pickler", (_RenamingPickler,), {"renames": dict(renames)})
    return types.SimpleNamespace(Pickler=pickler, __name__="renaming_pickle")


def pickled_globals(path) -> set[str]:
    """Every global the checkpoint's pickle names ('module.name'), read with pickletools (nothing is loaded)."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    out, strings, memo, last = set(), [], {}, None
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            out.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":  # protocol 4+: module and name are the two strings pushed before it
            out.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            last = arg
            strings.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = last
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(arg)
            strings.append(last)
        else:
            last = None
    return out


def officialise(model: Model, standin, model_class: str = "Model", anchor_grid: bool | None = None) -> nn.Module:
    """An FP16 copy of `model` whose classes are the official ones (`models.yolo.Model`, ...), as train.py
    pickles it."""
    obj = copy.deepcopy(model).half()
    for p in obj.parameters():
        p.requires_grad_(False)
    head = obj.model[-1]
    stride = _officialise_head(head, type(head) is heads.IDetect if anchor_grid is None else anchor_grid)
    for m in obj.modules():
        if type(m) in _OFFICIAL:
            m.__class__ = standin(*_OFFICIAL[type(m)])
    obj.__class__ = standin("models.yolo", model_class)
    obj.stride, obj.traced = stride, False
    obj.yaml = {k: v for k, v in obj.yaml.items() if k != "yaml_file"}
    return obj


def write_official_checkpoint(model: Model, path, model_class: str = "Model", epoch: int = -1,
                              extra: dict | None = None, tamper=None, ema: Model | None = None,
                              anchor_grid: bool | None = None, renames: dict | None = None,
                              pickle_protocol: int = 2):
    """Pickle `model` as the official train.py/strip_optimizer leaves it: {'model': <FP16 module>, ...}.

    `extra` adds (or replaces) top-level entries, and may be a callable `extra(official_model)` returning them
    (an optimizer over the pickled parameters); `ema` pickles a second model under 'ema' (an unstripped train.py
    checkpoint); `tamper(obj)` may edit the official model object just before saving; `anchor_grid` forces the
    YOLOv7 `anchor_grid` buffer on or off (default: on for IDetect); `renames` writes globals under other
    versions' names; `pickle_protocol` as torch.save's.
    """
    with fake_official_modules() as standin:
        obj = officialise(model, standin, model_class, anchor_grid)
        ema_obj = officialise(ema, standin, model_class, anchor_grid) if ema is not None else None
        more = extra(obj) if callable(extra) else (extra or {})
        ckpt = {"model": obj, "optimizer": None, "training_results": None, "epoch": epoch,
                "best_fitness": None, "ema": ema_obj, "updates": None, "wandb_id": None, **more}
        if tamper is not None:
            tamper(obj)
        torch.save(ckpt, path, pickle_module=_pickle_module(renames), pickle_protocol=pickle_protocol)
    return path
