"""FasterNet's partial convolution (PConv) and the C3 variant built from FasterNet blocks (`C3Faster`).

PConv convolves the first `dim // n_div` channels with a 3x3 conv and passes the rest through untouched.
`PConv` writes it as FasterNet's training path does (`forward_split_cat`: `torch.split` by the two sizes it
stores, then `torch.cat`), with the sizes declared (`split_sizes=`) so that pruning rewrites them;
`PConvInplace` with the in-place write `x[:, :c] = conv(x[:, :c])` of FasterNet's inference path: autograd
refuses it in training, so it is the gallery's known-bad example (yolov5n-fasternet-inplace.yaml) of what not
to write.
"""
import torch
import torch.nn as nn

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


@register_module(kind="same", split_sizes=("dim_conv3", "dim_untouched"))
class PConv(nn.Module):
    def __init__(self, dim, n_div=4):
        super().__init__()
        self.dim_conv3 = dim // n_div
        self.dim_untouched = dim - self.dim_conv3
        self.partial_conv3 = nn.Conv2d(self.dim_conv3, self.dim_conv3, 3, 1, 1, bias=False)

    def forward(self, x):
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), 1)


@register_module(kind="same")
class PConvInplace(PConv):
    def forward(self, x):
        x[:, :self.dim_conv3] = self.partial_conv3(x[:, :self.dim_conv3])
        return x


class FasterBlock(nn.Module):
    """PConv, then a 1x1 expansion and a 1x1 projection, with a residual add."""

    def __init__(self, dim, n_div=4, mlp_ratio=2, pconv=PConv):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.spatial_mixing = pconv(dim, n_div)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), nn.Conv2d(hidden, dim, 1, bias=False))

    def forward(self, x):
        return x + self.mlp(self.spatial_mixing(x))


@register_module(repeats_as_arg=True)
class C3Faster(nn.Module):
    """C3 with FasterNet blocks in place of its bottlenecks."""
    pconv = PConv

    def __init__(self, c1, c2, n=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(FasterBlock(c_, pconv=self.pconv) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_module(repeats_as_arg=True)
class C3FasterInplace(C3Faster):
    pconv = PConvInplace
