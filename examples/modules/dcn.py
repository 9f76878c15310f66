"""DCNv2 as YOLO forks write it: `torchvision.ops.DeformConv2d` with offsets and a modulation mask predicted
by a plain conv (`conv_offset_mask`, 3*k*k channels, zero-initialised so training starts as a normal conv),
then BatchNorm and SiLU. `DCNv2(c1, c2, k, s)` replaces a `Conv(c1, c2, k, s)`.

ONNX: exported as ONNX `DeformConv` (opset 19+), see docs/custom-modules.md.
"""
import torch
import torch.nn as nn
from torchvision.ops import DeformConv2d

from yolocompress.models.registry import register_module


@register_module()
class DCNv2(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, p=None, g=1):
        super().__init__()
        p = k // 2 if p is None else p
        self.conv_offset_mask = nn.Conv2d(c1, 3 * k * k, k, s, p, bias=True)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        self.dcn = DeformConv2d(c1, c2, k, s, p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return self.act(self.bn(self.dcn(x, offset, torch.sigmoid(mask))))
