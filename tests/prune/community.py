"""Community modules written the way YOLO users write them, for the pruning tests (tiny sizes).

Each class follows the shape of its usual community source (YOLOv8's C2f, FasterNet's PConv, CBAM, ECA,
BiFPN's weighted add, a YOLOX-style decoupled head); `place(cfg, family, name)` puts one into a tiny
yolov5/yolov7 layer list so that every family is tried on both bases.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from yolocompress.models.heads import Detect
from yolocompress.models.modules import Conv
from yolocompress.models.registry import load_user_modules, register_module

# GSConv and VoVGSCSP exactly as the gallery writes them, with the Torch-Pruning handler GSConv declares
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "modules"
load_user_modules([EXAMPLES / "gsconv.py"])


class _Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True):
        super().__init__()
        self.cv1, self.cv2 = Conv(c1, c2, 3), Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


@register_module(repeats_as_arg=True)
class C2fChunk(nn.Module):
    """YOLOv8's C2f: one conv, `chunk(2, 1)`, bottlenecks on the second half, concat of everything."""

    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(_Bottleneck(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


@register_module(repeats_as_arg=True, split_sizes="c")
class C2fSplit(C2fChunk):
    """C2f written with `split((self.c, self.c), 1)`: the split size lives in the attribute `c`."""

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


@register_module(repeats_as_arg=True)
class C2fHiddenSplit(C2fChunk):
    """C2f whose split size is a Python int computed in forward and never stored: cannot be followed."""

    def forward(self, x):
        half = self.cv2.conv.in_channels // (2 + len(self.m))
        y = list(self.cv1(x).split((half, half), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class PConv(nn.Module):
    """FasterNet's partial convolution, `split_cat` forward: a dim//4 slice convolved, the rest passed through."""

    def __init__(self, dim, n_div=4):
        super().__init__()
        self.dim_conv3 = dim // n_div
        self.dim_untouched = dim - self.dim_conv3
        self.partial_conv3 = nn.Conv2d(self.dim_conv3, self.dim_conv3, 3, 1, 1, bias=False)

    def forward(self, x):
        x1, x2 = torch.split(x, [self.dim_conv3, self.dim_untouched], dim=1)
        return torch.cat((self.partial_conv3(x1), x2), 1)


class PConvSlicing(PConv):
    """FasterNet's `slicing` forward (inference only upstream): an in-place write into a slice."""

    def forward(self, x):
        x = x.clone()
        x[:, :self.dim_conv3, :, :] = self.partial_conv3(x[:, :self.dim_conv3, :, :])
        return x


@register_module(split_sizes={"spatial_mixing": ("dim_conv3", "dim_untouched")})
class FasterNetBlock(nn.Module):
    """PConv then a 1x1 MLP, with a residual (FasterNet's MLPBlock); c1 == c2."""
    mixer = PConv

    def __init__(self, c1, c2, expand=2):
        super().__init__()
        self.spatial_mixing = self.mixer(c1)
        self.mlp = nn.Sequential(nn.Conv2d(c1, c1 * expand, 1, bias=False), nn.BatchNorm2d(c1 * expand), nn.ReLU(),
                                 nn.Conv2d(c1 * expand, c2, 1, bias=False))

    def forward(self, x):
        return x + self.mlp(self.spatial_mixing(x))


@register_module()
class FasterNetSlicingBlock(FasterNetBlock):
    mixer = PConvSlicing


@register_module()
class CBAM(nn.Module):
    """Channel attention (shared 1x1 MLP on avg- and max-pooled features) then spatial attention (a 7x7 conv
    over the channel mean and max), as in the CBAM modules YOLOv5 users paste; c1 == c2."""

    def __init__(self, c1, c2, ratio=4, kernel_size=7):
        super().__init__()
        self.avg_pool, self.max_pool = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
        self.f1 = nn.Conv2d(c1, max(c1 // ratio, 1), 1, bias=False)
        self.relu = nn.ReLU()
        self.f2 = nn.Conv2d(max(c1 // ratio, 1), c1, 1, bias=False)
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        ca = self.sigmoid(self.f2(self.relu(self.f1(self.avg_pool(x)))) + self.f2(self.relu(self.f1(self.max_pool(x)))))
        x = x * ca
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return x * self.sigmoid(self.spatial(torch.cat([avg_out, max_out], dim=1)))


@register_module()
class ECA(nn.Module):
    """Efficient channel attention: a Conv1d (1 -> 1, k=3) across the pooled channels; c1 == c2."""

    def __init__(self, c1, c2, k_size=3):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.sigmoid(y).expand_as(x)


@register_module(out_channels=lambda c_in, args: args[1])
class BiFPNAdd2(nn.Module):
    """BiFPN's fast normalised fusion of two inputs: one learnable weight per input, then a 1x1 conv."""

    def __init__(self, c1, c2):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, dtype=torch.float32), requires_grad=True)
        self.epsilon = 0.0001
        self.conv = nn.Conv2d(c1, c2, kernel_size=1, stride=1, padding=0)
        self.silu = nn.SiLU()

    def forward(self, x):
        w = self.w
        weight = w / (torch.sum(w, dim=0) + self.epsilon)
        return self.conv(self.silu(weight[0] * x[0] + weight[1] * x[1]))


@register_module(kind="head")
class DecoupledDetect(Detect):
    """A YOLOX-style decoupled head: per level a 1x1 stem, then a cls branch and a reg branch (two 3x3 convs
    each); the predictions (cls, reg+obj) are concatenated into the anchors x (5 + nc) layout of Detect."""

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch)
        hidden = [max(c // 2, 8) for c in ch]
        self.stems = nn.ModuleList(Conv(c, h, 1) for c, h in zip(ch, hidden))
        self.cls_convs = nn.ModuleList(nn.Sequential(Conv(h, h, 3), Conv(h, h, 3)) for h in hidden)
        self.reg_convs = nn.ModuleList(nn.Sequential(Conv(h, h, 3), Conv(h, h, 3)) for h in hidden)
        self.cls_preds = nn.ModuleList(nn.Conv2d(h, self.na * nc, 1) for h in hidden)
        self.reg_preds = nn.ModuleList(nn.Conv2d(h, self.na * 5, 1) for h in hidden)
        del self.m
        self.m = nn.ModuleList()  # the prediction convs are cls_preds / reg_preds

    def _level(self, i, x):
        x = self.stems[i](x)
        cls, reg = self.cls_preds[i](self.cls_convs[i](x)), self.reg_preds[i](self.reg_convs[i](x))
        bs, _, ny, nx = x.shape
        out = torch.cat([reg.view(bs, self.na, 5, ny, nx), cls.view(bs, self.na, self.nc, ny, nx)], 2)
        return out.view(bs, -1, ny, nx)

    def initialize_biases(self):
        pass


class MHSAUndeclared(nn.Module):
    """BoTNet-style self-attention over the H*W positions, heads made by a view the graph cannot see;
    replaces a layer of the same width (the residual ties its q/k/v to the block input)."""

    def __init__(self, c1, c2, heads=4):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Conv2d(c1, c1, 1), nn.Conv2d(c1, c1, 1), nn.Conv2d(c1, c1, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (f(x).view(b, self.heads, c // self.heads, -1) for f in (self.query, self.key, self.value))
        attn = torch.softmax(q.transpose(-2, -1) @ k / (c // self.heads) ** 0.5, -1)
        return (v @ attn.transpose(-2, -1)).reshape(b, c, h, w) + x


register_module("MHSAUndeclared")(MHSAUndeclared)


@register_module(heads={"query": "heads", "key": "heads", "value": "heads"})
class MHSA(MHSAUndeclared):
    """The same, with its heads declared: pruning takes the same head dimensions from every head."""


@register_module()
class DeformConvBlock(nn.Module):
    """DCNv2 as mmcv-style forks write it: one conv predicts offsets (2*k*k) and mask (k*k), sliced apart;
    then torchvision's DeformConv2d, BatchNorm and SiLU; replaces a Conv(c1, c2, 3)."""

    def __init__(self, c1, c2, k=3):
        from torchvision.ops import DeformConv2d
        super().__init__()
        self.kk = k * k
        self.conv_offset = nn.Conv2d(c1, 3 * k * k, k, 1, k // 2)
        self.dcn = DeformConv2d(c1, c2, k, 1, k // 2, bias=False)
        self.bn, self.act = nn.BatchNorm2d(c2), nn.SiLU()

    def forward(self, x):
        om = self.conv_offset(x)
        return self.act(self.bn(self.dcn(x, om[:, :2 * self.kk], om[:, 2 * self.kk:].sigmoid())))


# ---- where each family goes in the tiny yolov5 / yolov7 layer lists --------------------------------------
# v5: layer 4 (C3 at 32 channels) is replaced; v7: layer 10 (a 3x3 conv at 32 channels in and out).
def place(cfg: dict, family: str, module: str, args=None) -> dict:
    """Put `module` in the place of one inner layer of the tiny `family` config (same in/out channels)."""
    if family == "v5":
        row, default = 4, [256]
    else:
        row, default = 10, [128]
    cfg["backbone"][row] = [-1, 1, module, args or default]
    return cfg
