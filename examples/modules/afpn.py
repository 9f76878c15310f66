"""An AFPN-style neck (asymptotic feature pyramid): adaptive spatial fusion (ASFF) of levels of one width.

`ASFF_2` / `ASFF_3` take two or three inputs of strides 1x, 2x(, 4x) relative to the first, bring each to the
resolution of `level` (up: 1x1 conv and nearest upsampling; down: a conv with kernel = stride = the factor),
predict one weight map per input (1x1 convs to 8 channels, concat, 1x1 conv, softmax over inputs), add the
weighted inputs and end in a 3x3 conv. The yaml first aligns the backbone levels to one width with 1x1 Convs,
fuses adjacent levels, then all three (yolov5n-afpn.yaml)."""
import torch
import torch.nn as nn

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


def resample(c, factor: int) -> nn.Module:
    """`factor` > 1 upsamples, < 0 downsamples by -factor, 1 keeps the size."""
    if factor > 1:
        return nn.Sequential(Conv(c, c, 1), nn.Upsample(scale_factor=factor, mode="nearest"))
    if factor < 0:
        return Conv(c, c, -factor, -factor, 0)
    return nn.Identity()


class ASFF(nn.Module):
    def __init__(self, c1, c2, level=0, n=2, compress=8):
        super().__init__()
        self.resize = nn.ModuleList(resample(c1, 2 ** (j - level) if j >= level else -2 ** (level - j))
                                    for j in range(n))
        self.weight_inputs = nn.ModuleList(Conv(c1, compress, 1) for _ in range(n))
        self.weight_levels = nn.Conv2d(compress * n, n, 1)
        self.conv = Conv(c1, c2, 3, 1)

    def forward(self, x):
        feats = [r(xi) for r, xi in zip(self.resize, x)]
        w = torch.softmax(self.weight_levels(torch.cat([m(f) for m, f in zip(self.weight_inputs, feats)], 1)), 1)
        fused = feats[0] * w[:, 0:1]
        for j in range(1, len(feats)):
            fused = fused + feats[j] * w[:, j:j + 1]
        return self.conv(fused)


@register_module()
class ASFF_2(ASFF):
    def __init__(self, c1, c2, level=0):
        super().__init__(c1, c2, level, n=2)


@register_module()
class ASFF_3(ASFF):
    def __init__(self, c1, c2, level=0):
        super().__init__(c1, c2, level, n=3)
