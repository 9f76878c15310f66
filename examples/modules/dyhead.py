"""A DyHead block per detection level, as YOLO forks put one before each input of the head: spatial-aware
attention (a modulated deformable 3x3 conv, `torchvision.ops.DeformConv2d`, offsets and mask from a conv),
scale-aware attention (global pooling, a 1x1 conv to one value, ReLU, hard sigmoid) and task-aware
attention (DyReLU: two learned piecewise-linear branches per channel, max of the two). Keeps the width."""
import torch
import torch.nn as nn
from torchvision.ops import DeformConv2d

from yolocompress.models.registry import register_module


class DyReLU(nn.Module):
    def __init__(self, c, reduction=4):
        super().__init__()
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, max(c // reduction, 1), 1), nn.ReLU(),
                                nn.Conv2d(max(c // reduction, 1), 4 * c, 1), nn.Hardsigmoid())

    def forward(self, x):
        a1, b1, a2, b2 = torch.split(self.fc(x), x.shape[1], dim=1)
        return torch.max(x * ((a1 - 0.5) * 2 + 1.0) + (b1 - 0.5), x * ((a2 - 0.5) * 2) + (b2 - 0.5))


@register_module()
class DyHeadBlock(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {c1}, got {c2}")
        self.offset = nn.Conv2d(c1, 27, 3, 1, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.spatial_conv = DeformConv2d(c1, c1, 3, 1, 1, bias=False)
        self.spatial_norm = nn.BatchNorm2d(c1)
        self.scale_attn = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c1, 1, 1), nn.ReLU(), nn.Hardsigmoid())
        self.task_attn = DyReLU(c1)

    def forward(self, x):
        om = self.offset(x)
        feat = self.spatial_norm(self.spatial_conv(x, om[:, :18], om[:, 18:].sigmoid()))
        return self.task_attn(feat * self.scale_attn(feat))
