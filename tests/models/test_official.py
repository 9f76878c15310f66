"""Official checkpoints import through the safe unpickler and reproduce the official outputs."""
import copy
import pickle
import shutil
import sys

import numpy as np
import pytest
import torch

import yolocompress
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.models.official import restricted_pickle

from .helpers import FIXTURES, assert_outputs_close, image, outputs, randomise, small_model
from .official_fakes import write_official_checkpoint

OFFICIAL_PT = FIXTURES / "yolov5n_official_digits.pt"
OFFICIAL_IO = FIXTURES / "yolov5n_official_digits_io.npz"


def test_official_yolov5n_reproduces_official_outputs():
    model = yolocompress.load(OFFICIAL_PT)
    io = np.load(OFFICIAL_IO)
    expected = [torch.from_numpy(io[k]) for k in ("pred", "raw0", "raw1", "raw2")]
    got = outputs(model, torch.from_numpy(io["x"]))
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert_outputs_close(got, expected)
    assert model.nc == 10 and len(model.names) == 10


def test_official_import_then_our_format_round_trip(tmp_path):
    model, ckpt = load_model(OFFICIAL_PT)
    assert ckpt["format"] == "official" and ckpt["meta"]["source"] == "models.yolo.DetectionModel"
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())
    path = save_checkpoint(tmp_path / "ours.pt", model)
    torch.load(path, map_location="cpu", weights_only=True)
    again, _ = load_model(path)
    x = image(1, 128)
    assert all(torch.equal(a, b) for a, b in zip(outputs(again, x), outputs(model, x)))


def test_official_import_leaves_file_and_sys_modules_alone(tmp_path):
    path = tmp_path / "copy.pt"
    shutil.copy(OFFICIAL_PT, path)
    before = path.read_bytes()
    yolocompress.load(path)
    assert path.read_bytes() == before
    assert not any(name == "models" or name.startswith("models.") for name in sys.modules)


def _official_params(obj):
    yield from (t for t in (obj.__dict__.get("_parameters") or {}).values() if t is not None)
    for child in (obj.__dict__.get("_modules") or {}).values():
        if child is not None:
            yield from _official_params(child)


def _assert_official_structure(path, head_index):
    """The fake is shaped like the real thing: official class names, FP16 frozen weights, an anchor_grid buffer."""
    ckpt = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    obj = ckpt["model"]
    assert obj.official_name == "models.yolo.Model" and ckpt["epoch"] == -1 and ckpt["ema"] is None
    head = obj._modules["model"]._modules[str(head_index)]
    assert head.official_name == "models.yolo.IDetect" and "anchor_grid" in head._buffers
    assert obj._modules["model"]._modules["0"].official_name == "models.common.Conv"
    weights = list(_official_params(obj))
    assert weights and all(t.dtype == torch.float16 and not t.requires_grad for t in weights)


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov7"])
def test_synthetic_official_yolov7_checkpoint_imports(tmp_path, name):
    model = randomise(small_model(name)).eval()
    path = write_official_checkpoint(model, tmp_path / f"{name}.pt")
    assert "models.yolo" not in sys.modules
    _assert_official_structure(path, len(model.model) - 1)
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        torch.load(path, weights_only=True)  # really an official-style pickle of code objects
    loaded, ckpt = load_model(path)
    assert ckpt["meta"]["source"] == "models.yolo.Model"
    assert "models.yolo" not in sys.modules
    reference = copy.deepcopy(model).half().float()  # the checkpoint holds FP16 weights
    x = image(2)
    assert_outputs_close(outputs(loaded, x), outputs(reference, x))
    assert torch.equal(loaded.head.anchors, model.head.anchors)
