"""BiFPN's fast normalised fusion as YOLOv5 forks write it: a learnable weight per input (`nn.Parameter`
of shape [n]), ReLU-ed and normalised, then a weighted sum of same-width inputs followed by a SiLU and a conv.
Used in place of the neck's `Concat`: `[[-1, 6], 1, BiFPN_Add2, [256]]`."""
import torch
import torch.nn as nn

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


@register_module()
class BiFPN_Add2(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, dtype=torch.float32), requires_grad=True)
        self.epsilon = 0.0001
        self.conv = Conv(c1, c2, 1, 1, act=False)
        self.silu = nn.SiLU()

    def forward(self, x):
        w = torch.relu(self.w)
        weight = w / (torch.sum(w, dim=0) + self.epsilon)
        return self.conv(self.silu(weight[0] * x[0] + weight[1] * x[1]))


@register_module()
class BiFPN_Add3(BiFPN_Add2):
    def __init__(self, c1, c2):
        super().__init__(c1, c2)
        self.w = nn.Parameter(torch.ones(3, dtype=torch.float32), requires_grad=True)

    def forward(self, x):
        w = torch.relu(self.w)
        weight = w / (torch.sum(w, dim=0) + self.epsilon)
        return self.conv(self.silu(weight[0] * x[0] + weight[1] * x[1] + weight[2] * x[2]))
