"""Gold-YOLO's gather-and-distribute neck, in the small form YOLO forks add to YOLOv5: `GDGather` brings
every input to the resolution of input `target` (average pooling down, bilinear interpolation up) and
concatenates them (a 1x1 Conv after it makes the global feature); `GDInject` distributes it into one level:
local 1x1 embedding x sigmoid(global gate) + global embedding, the global feature resized to the level.
GDInject's two inputs share one width (the yaml aligns the global feature with a 1x1 Conv per level)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


def resize_to(t, size):
    h, w = size
    if t.shape[-1] > w:
        k = t.shape[-1] // w
        return F.avg_pool2d(t, k, k)
    if t.shape[-1] < w:
        return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
    return t


@register_module(kind="concat")
class GDGather(nn.Module):
    def __init__(self, target=1):
        super().__init__()
        self.target = target

    def forward(self, x):
        size = x[self.target].shape[-2:]
        return torch.cat([resize_to(t, size) for t in x], 1)


@register_module()
class GDInject(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.local_embedding = Conv(c1, c2, 1, act=False)
        self.global_embedding = Conv(c1, c2, 1, act=False)
        self.global_act = Conv(c1, c2, 1, act=False)
        self.act = nn.Hardsigmoid()

    def forward(self, x):
        local, glob = x
        size = local.shape[-2:]
        gate = resize_to(self.act(self.global_act(glob)), size)
        return self.local_embedding(local) * gate + resize_to(self.global_embedding(glob), size)
