"""Tiny YOLOv5 / YOLOv7 configs and user modules for the prune-to-target tests (milliseconds per forward)."""
from __future__ import annotations

import contextlib
import os

import torch

from yolocompress.models.builder import Model

ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
IMGSZ = 64


def v5_cfg(nc: int = 3, width: float = 0.125) -> dict:
    """yolov5n's layer list at 1/8 width (channels 8..128)."""
    return {
        "nc": nc, "depth_multiple": 0.33, "width_multiple": width, "anchors": ANCHORS,
        "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                     [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                     [-1, 9, "C3", [512]], [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
                     [-1, 1, "SPPF", [1024, 5]]],
        "head": [[-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
                 [[-1, 6], 1, "Concat", [1]], [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [256, 1, 1]],
                 [-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 4], 1, "Concat", [1]],
                 [-1, 3, "C3", [256, False]], [-1, 1, "Conv", [256, 3, 2]], [[-1, 14], 1, "Concat", [1]],
                 [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]], [[-1, 10], 1, "Concat", [1]],
                 [-1, 3, "C3", [1024, False]], [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]],
    }


def v7_cfg(nc: int = 3, width: float = 0.25) -> dict:
    """A yolov7-tiny-like net: ELAN-style concat blocks, MP/SP pools, SPPCSPC, RepConv (with identity
    branches: c_in == c_out) in front of an IDetect head."""
    act = "nn.LeakyReLU(0.1)"
    return {
        "nc": nc, "depth_multiple": 1.0, "width_multiple": width, "anchors": ANCHORS,
        "backbone": [[-1, 1, "Conv", [32, 3, 2, None, 1, act]], [-1, 1, "Conv", [64, 3, 2, None, 1, act]],
                     [-1, 1, "Conv", [32, 1, 1, None, 1, act]], [-2, 1, "Conv", [32, 1, 1, None, 1, act]],
                     [-1, 1, "Conv", [32, 3, 1, None, 1, act]], [[-1, -2, -3], 1, "Concat", [1]],
                     [-1, 1, "Conv", [64, 1, 1, None, 1, act]], [-1, 1, "MP", []],                       # 7 /8
                     [-1, 1, "Conv", [128, 3, 1, None, 1, act]], [-1, 1, "MP", []],                      # 9 /16
                     [-1, 1, "Conv", [128, 3, 1, None, 1, act]], [-1, 1, "MP", []],                      # 11 /32
                     [-1, 1, "SPPCSPC", [128]]],                                                          # 12
        "head": [[-1, 1, "Conv", [64, 1, 1, None, 1, act]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
                 [[-1, 10], 1, "Concat", [1]], [-1, 1, "Conv", [64, 1, 1, None, 1, act]],                  # 16
                 [-1, 1, "SP", [5]],                                                                     # 17
                 [8, 1, "RepConv", [128, 3, 1]], [17, 1, "RepConv", [64, 3, 1]], [12, 1, "RepConv", [128, 3, 1]],
                 [[18, 19, 20], 1, "IDetect", ["nc", "anchors"]]],
    }


CONFIGS = {"v5": v5_cfg, "v7": v7_cfg}


def tiny(family: str, nc: int = 3, seed: int = 0, **cfg) -> Model:
    """A tiny model with non-trivial BatchNorm and implicit parameters (random weights); `cfg` goes to the config
    function (e.g. width=0.25 for yolov5n's real widths)."""
    torch.manual_seed(seed)
    model = Model(CONFIGS[family](nc, **cfg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif hasattr(m, "implicit"):
                m.implicit.add_(torch.randn(m.implicit.shape, generator=g) * 0.1)
    return model.eval()


def image(batch: int = 1, size: int = IMGSZ, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def outputs(model, x) -> list[torch.Tensor]:
    pred, raw = model.eval()(x)
    return [pred, *raw]


@contextlib.contextmanager
def one_thread():
    """Tiny convs on a busy 2-core machine run many times faster on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# A user file as `--modules` would load it. Torch-Pruning's trace fails on ChunkTranspose (chunk, transpose
# one half, concatenate); ChunkAdd traces but its chunk-cat-slice maps channels past the layer;
# ChannelShuffle traces but the forward pass fails once its input is pruned (view into 2 groups).
USER_MODULES = '''
import torch
import torch.nn as nn
from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


@register_module()
class ChunkTranspose(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2, c2, 3)

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a.transpose(2, 3), b], 1))


@register_module()
class ChunkAdd(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2 // 2, c2, 3)

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a, b], 1)[:, : a.shape[1]] + b)


@register_module()
class ChannelShuffle(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2, c2, 3)

    def forward(self, x):
        y = self.cv1(x)
        b, c, h, w = y.shape
        return self.cv2(y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w))
'''


def write_user_modules(folder) -> str:
    path = os.path.join(folder, "my_modules.py")
    with open(path, "w") as f:
        f.write(USER_MODULES)
    return path
