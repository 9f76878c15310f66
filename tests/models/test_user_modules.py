"""User modules: a .py file registers a block with @register_module, a yaml names it, --modules loads it."""
import sys

import pytest
import torch

from yolocompress.core.errors import ConfigError
from yolocompress.models import registry
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.models.registry import load_user_modules, registered_names

from .helpers import IMGSZ, image, outputs, small_cfg

USER_FILE = '''
import torch.nn as nn
from yolocompress.models.registry import register_module


@register_module()
class UserDWBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 + BN + ReLU: takes (c1, c2, stride) like Conv."""

    def __init__(self, c1, c2, s=1):
        super().__init__()
        self.dw = nn.Conv2d(c1, c1, 3, s, 1, groups=c1, bias=False)
        self.pw = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.pw(self.dw(x))))
'''


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    """The user's file on disk; registry and sys.modules are restored after the test."""
    path = tmp_path / "my_blocks.py"
    path.write_text(USER_FILE)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "yolocompress_user_my_blocks", raising=False)
    yield path
    sys.modules.pop("yolocompress_user_my_blocks", None)


def _cfg():
    cfg = small_cfg("yolov5n")
    cfg["backbone"][1] = [-1, 1, "UserDWBlock", [128, 2]]  # replaces Conv [128, 3, 2]: same stride and width
    return cfg


def test_user_module_builds_runs_and_round_trips(tmp_path, user_file):
    with pytest.raises(ConfigError, match=r"layer 1 \(UserDWBlock\): unknown module.*--modules"):
        Model(_cfg())
    load_user_modules([user_file])
    assert "UserDWBlock" in registered_names()
    model = Model(_cfg())
    block = model.model[1]
    assert type(block).__name__ == "UserDWBlock" and block.pw.out_channels == 32  # 128 * width 0.25
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    raw = model.train()(image(2))
    assert raw[0].shape == (2, 3, IMGSZ // 8, IMGSZ // 8, 8)

    path = save_checkpoint(tmp_path / "user.pt", model)
    loaded, _ = load_model(path)
    x = image()
    assert all(torch.equal(a, b) for a, b in zip(outputs(loaded, x), outputs(model, x)))


def test_checkpoint_needs_the_user_file_to_load(tmp_path, user_file, monkeypatch):
    load_user_modules([user_file])
    path = save_checkpoint(tmp_path / "user.pt", Model(_cfg()))
    monkeypatch.delitem(registry._REGISTRY, "UserDWBlock")  # as in a new process without --modules
    with pytest.raises(ConfigError, match="unknown module 'UserDWBlock'.*--modules FILE.py"):
        load_model(path)
    load_user_modules([user_file])
    assert type(load_model(path)[0].model[1]).__name__ == "UserDWBlock"


def test_bad_user_files(tmp_path):
    with pytest.raises(ConfigError, match="--modules: file not found"):
        load_user_modules([tmp_path / "absent.py"])
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_package_xyz\n")
    with pytest.raises(ConfigError, match=r"--modules .*broken.py: importing it failed: ModuleNotFoundError"):
        load_user_modules([broken])
    sys.modules.pop("yolocompress_user_broken", None)


def test_register_module_rejects_unknown_kind():
    with pytest.raises(ConfigError, match="kind must be one of"):
        registry.register_module("X", kind="magic")
