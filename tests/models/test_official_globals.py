"""Every global that official training scripts pickle besides the model classes is accepted, each in a
checkpoint shaped like the official ones (protocol 2, the real module paths), and the model still loads exactly.

The entries are what yolov5 v6.0-v7.0 and yolov7 `train.py` write (`best_fitness` from `fitness()` is a numpy
array, evolved hyperparameters are numpy scalars, `opt`, `ema`, the optimizer, FP64 `class_weights`), and what
other versions name differently (numpy 1's `numpy.core`, protocol 0/1's `copy_reg._reconstructor`, Windows paths).
"""
import argparse
import collections
import copy
import datetime
import pathlib

import numpy as np
import pytest
import torch

from yolocompress.models.checkpoint import load_model

from .helpers import assert_outputs_close, image, outputs, randomise, small_model
from .official_fakes import pickled_globals, write_official_checkpoint


class _V1Tensor:
    """Pickles a tensor the way torch before 0.4.1 did: torch._utils._rebuild_tensor(storage, offset, size, stride)."""

    def __init__(self, t):
        self.t = t

    def __reduce__(self):
        t = self.t
        storage = torch.storage.TypedStorage(wrap_storage=t.untyped_storage(), dtype=t.dtype, _internal=True)
        return torch._utils._rebuild_tensor, (storage, t.storage_offset(), tuple(t.size()), t.stride())


def _attr(**values):
    """Set attributes on the official model object, as train.py does (`model.hyp = hyp`, `model.class_weights`)."""
    return {"tamper": lambda obj: obj.__dict__.update(values)}


def _optimizer(cls, **kw):
    """An optimizer object over the pickled parameters (forks save the object instead of its state_dict)."""
    def extra(obj):
        params = [p for p in obj.parameters()]
        opt = cls(params, lr=0.01, **kw)
        for p in params:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
        return {"optimizer": opt}
    return {"extra": extra}


def _param_with_state(obj):
    p = obj.model[0].conv.weight
    p.official_note = "frozen"  # a parameter with attributes pickles through _rebuild_parameter_with_state


_ARRAY = {"extra": {"best_fitness": np.array([0.6125])}}  # yolov7/yolov5 fitness() returns an array
_SCALARS = _attr(hyp={"lr0": np.float64(0.01), "mosaic": np.float64(1.0), "anchors": np.int64(3)})  # evolved hyps
_NS = {"extra": {"opt": argparse.Namespace(weights="yolov5s.pt", epochs=300, save_dir=pathlib.PosixPath("runs/exp"))}}
_WIN = {"extra": {"opt": argparse.Namespace(save_dir=pathlib.PureWindowsPath(r"C:\runs\train\exp"))},
        "renames": {"pathlib.PureWindowsPath": "pathlib.WindowsPath"}}

_SGD = _optimizer(torch.optim.SGD, momentum=0.9, nesterov=True)

# what an official-shaped checkpoint holds -> the globals its pickle then names (each of them must be accepted)
CASES = {
    "stripped release file": ({}, ["torch.HalfStorage", "torch.LongStorage", "torch._utils._rebuild_tensor_v2",
                                   "torch._utils._rebuild_parameter", "collections.OrderedDict",
                                   "__builtin__.set"]),  # every nn.Module's _non_persistent_buffers_set
    "best_fitness array": (_ARRAY, ["_codecs.encode", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
                                    "numpy.dtype"]),
    "array under numpy 1": ({**_ARRAY, "renames": {"numpy._core.multiarray._reconstruct":
                                                   "numpy.core.multiarray._reconstruct"}},
                            ["numpy.core.multiarray._reconstruct"]),
    "evolved hyps": (_SCALARS, ["numpy._core.multiarray.scalar"]),
    "evolved hyps under numpy 1": ({**_SCALARS, "renames": {"numpy._core.multiarray.scalar":
                                                            "numpy.core.multiarray.scalar"}},
                                   ["numpy.core.multiarray.scalar"]),
    "set at protocol 3+": ({"renames": {"builtins.set": "builtins.set"}}, ["builtins.set"]),
    "SGD object": (_SGD, ["torch.optim.sgd.SGD", "collections.defaultdict", "__builtin__.dict"]),
    "Adam object": (_optimizer(torch.optim.Adam, betas=(0.937, 0.999)), ["torch.optim.adam.Adam"]),
    "AdamW object": (_optimizer(torch.optim.AdamW, betas=(0.937, 0.999)), ["torch.optim.adamw.AdamW"]),
    "opt Namespace": (_NS, ["argparse.Namespace", "pathlib.PosixPath"]),
    "opt with a Windows path": (_WIN, ["pathlib.WindowsPath"]),
    "FP64 class_weights": (_attr(class_weights=torch.rand(3, dtype=torch.float64)), ["torch.DoubleStorage"]),
    "FP32 optimizer state": ({"extra": {"optimizer": {"state": {0: {"momentum_buffer": torch.zeros(4)}},
                                                      "param_groups": [{"lr": 0.01, "params": [0]}]}}},
                             ["torch.FloatStorage"]),
    "torch 0.4 tensor": (_attr(class_weights=_V1Tensor(torch.rand(3))), ["torch._utils._rebuild_tensor"]),
    "parameter with attributes": ({"tamper": _param_with_state}, ["torch._utils._rebuild_parameter_with_state"]),
    "shape and device": (_attr(input_shape=torch.Size([1, 3, 64, 64]), device=torch.device("cpu")),
                         ["torch.Size", "torch.device"]),
    "protocol 1": ({"pickle_protocol": 1}, ["copy_reg._reconstructor", "__builtin__.object"]),
    "date": ({"extra": {"date": datetime.datetime(2022, 11, 22, 15, 0, 0)}}, ["datetime.datetime"]),
    # the other storage dtypes, and the rest of torch's list and of the plain-data rules
    "every other storage dtype": (_attr(**{f"buffer_{i}": torch.zeros(3, dtype=t) for i, t in enumerate(
        (torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.bfloat16, torch.complex64,
         torch.complex128))}),
                                  ["torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage",
                                   "torch.BoolStorage", "torch.BFloat16Storage", "torch.ComplexFloatStorage",
                                   "torch.ComplexDoubleStorage"]),
    "plain values": ({"extra": {"dtype": torch.float16, "class_counts": collections.Counter({0: 12, 2: 5}),
                                "gain": complex(1, 2), "blob": bytearray(b"\x00\x01"), "classes": frozenset({0, 1}),
                                "rows": slice(0, 3), "per_class": collections.defaultdict(list, {0: [1]}),
                                "counts": collections.defaultdict(int, {0: 1}),
                                "dtype_class": type(np.dtype("float64")), "scalar_type": np.float32}},
                     ["torch.float16", "collections.Counter", "__builtin__.complex", "__builtin__.bytearray",
                      "__builtin__.frozenset", "__builtin__.slice", "__builtin__.list",
                      "__builtin__.long",  # int, as protocol 2 names it
                      "numpy.dtypes.Float64DType", "numpy.float32"]),
    "protocol 5 arrays": ({**_ARRAY, "pickle_protocol": 5}, ["numpy._core.numeric._frombuffer"]),
}


@pytest.fixture(scope="module")
def model():
    return randomise(small_model("yolov5n")).eval()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("name", list(CASES))
def test_official_checkpoint_naming_globals_loads(tmp_path, model, name):
    options, names = CASES[name]
    path = write_official_checkpoint(model, tmp_path / "official.pt", model_class="DetectionModel", **options)
    assert set(names) <= pickled_globals(path)  # the file really names them, under those module paths
    loaded, ckpt = load_model(path)
    assert ckpt["format"] == "official" and ckpt["meta"]["source"] == "models.yolo.DetectionModel"
    x = image(1)
    assert_outputs_close(outputs(loaded, x), outputs(copy.deepcopy(model).half().float(), x))


def _train_py_entries(kind: str, seed: int):
    """The top-level entries of an unstripped train.py checkpoint, per repository and version."""
    fitness = np.array([0.5321])
    if kind == "yolov7":
        return {"epoch": 41, "best_fitness": fitness, "training_results": "  41/299  1.2G  0.0412 ...\n",
                "updates": 5200, "wandb_id": None}
    entries = {"epoch": 41, "best_fitness": fitness, "updates": 5200, "wandb_id": None,
               "date": "2022-11-22T15:00:00.000000"}
    if kind == "yolov5 v7.0":
        entries.pop("wandb_id")
        entries["opt"] = {"weights": "yolov5n.pt", "cfg": "", "epochs": 300, "batch_size": 16, "imgsz": 640,
                          "hyp": {"lr0": np.float64(0.01)}, "save_dir": "runs/train/exp", "freeze": [0]}
        entries["git"] = {"remote": "https://github.com/ultralytics/yolov5", "branch": "master", "commit": "915bbf2"}
    return entries


@pytest.mark.parametrize("kind, name, cls", [("yolov5 v6.0", "yolov5n", "Model"),
                                            ("yolov5 v7.0", "yolov5n", "DetectionModel"),
                                            ("yolov7", "yolov7-tiny", "Model")])
def test_unstripped_train_py_checkpoint_loads_the_ema(tmp_path, kind, name, cls):
    """train.py's last.pt: model, ema (what we load, as the official loaders do), optimizer state, numpy fitness."""
    model, ema = randomise(small_model(name), seed=1).eval(), randomise(small_model(name, seed=5), seed=2).eval()

    def extra(obj):
        opt = torch.optim.SGD(list(obj.parameters()), lr=0.01, momentum=0.937, nesterov=True)
        return {**_train_py_entries(kind, 0), "optimizer": opt.state_dict()}

    path = write_official_checkpoint(model, tmp_path / "last.pt", model_class=cls, ema=ema, extra=extra)
    loaded, ckpt = load_model(path)
    assert ckpt["meta"]["epoch"] == 41
    x = image(1)
    assert_outputs_close(outputs(loaded, x), outputs(copy.deepcopy(ema).half().float(), x))


def test_release_page_yolov5_v7_checkpoint_with_names_dict(tmp_path, model):
    """yolov5 v7.0 stores names as {index: name}; the release files are stripped (epoch -1, FP16, no ema)."""
    names = {0: "person", 1: "bicycle", 2: "car"}
    path = write_official_checkpoint(model, tmp_path / "yolov5n.pt", model_class="DetectionModel",
                                     tamper=lambda obj: setattr(obj, "names", names))
    loaded, ckpt = load_model(path)
    assert loaded.names == ["person", "bicycle", "car"] and ckpt["meta"]["epoch"] == -1
