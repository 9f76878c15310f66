"""The building blocks of the official YOLOv5 (v6.0+) and YOLOv7 layouts, with the same parameter names,
so that official state_dicts load key for key."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .registry import register_module


def autopad(k, p=None, d=1):
    """'same' padding for odd kernels, as the official code computes it."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def _activation(act, default: nn.Module | None = None) -> nn.Module:
    if act is True:
        return default if default is not None else nn.SiLU(inplace=True)
    return act if isinstance(act, nn.Module) else nn.Identity()


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


@register_module()
class Conv(nn.Module):
    """Conv2d + BatchNorm2d + activation.

    Accepts both official argument orders: YOLOv5's (c1, c2, k, s, p, g, d, act) and YOLOv7's
    (c1, c2, k, s, p, g, act), where an activation module in the dilation slot means the YOLOv7 order.
    """
    default_act: nn.Module | None = None  # set by the builder from the yaml's `activation`

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        if isinstance(d, (nn.Module, bool)):
            d, act = 1, d
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act, self._default())

    @classmethod
    def _default(cls):
        return None if cls.default_act is None else _clone_activation(cls.default_act)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def fuse(self):
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv = _fuse_conv_bn(self.conv, self.bn)
            self.bn = nn.Identity()


def _clone_activation(act: nn.Module) -> nn.Module:
    import copy
    return copy.deepcopy(act)


@register_module()
class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register_module(repeats_as_arg=True)
class C3(nn.Module):
    """CSP bottleneck with three convolutions (YOLOv5)."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_module()
class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained max-pools equal SPP(5, 9, 13)."""

    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register_module(repeats_as_arg=True)
class SPPCSPC(nn.Module):
    """CSP spatial pyramid pooling (YOLOv7)."""

    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5, k=(5, 9, 13)):
        super().__init__()
        c_ = int(2 * c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), 1))


@register_module()
class RepConv(nn.Module):
    """RepVGG block: 3x3 + 1x1 + identity-BN branches in training, one 3x3 conv after `fuse()`."""

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, act=True, deploy=False):
        super().__init__()
        if k != 3 or autopad(k, p) != 1:
            raise ValueError("RepConv needs k=3 and padding 1")
        self.groups, self.in_channels, self.out_channels = g, c1, c2
        self.act = _activation(act, Conv._default())
        if deploy:
            self.rbr_reparam = nn.Conv2d(c1, c2, k, s, 1, groups=g, bias=True)
            return
        self.rbr_identity = nn.BatchNorm2d(c1) if c2 == c1 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, k, s, 1, groups=g, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        if hasattr(self, "rbr_reparam"):
            return self.act(self.rbr_reparam(x))
        identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.act(self.rbr_dense(x) + self.rbr_1x1(x) + identity)

    def fuse(self):
        """Fold the three branches into one 3x3 convolution with bias."""
        if hasattr(self, "rbr_reparam"):
            return
        dense = _fuse_conv_bn(self.rbr_dense[0], self.rbr_dense[1])
        one = _fuse_conv_bn(self.rbr_1x1[0], self.rbr_1x1[1])
        weight = dense.weight + nn.functional.pad(one.weight, [1, 1, 1, 1])
        bias = dense.bias + one.bias
        if self.rbr_identity is not None:
            c_in = dense.weight.shape[1]
            eye = torch.zeros_like(dense.weight)
            for i in range(dense.weight.shape[0]):
                eye[i, i % c_in, 1, 1] = 1.0
            ident = nn.Conv2d(c_in * self.groups, dense.weight.shape[0], 3, 1, 1, groups=self.groups, bias=False)
            ident.weight.data = eye
            ident = _fuse_conv_bn(ident, self.rbr_identity)
            weight, bias = weight + ident.weight, bias + ident.bias
        conv = self.rbr_dense[0]
        self.rbr_reparam = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1,
                                     groups=conv.groups, bias=True).to(weight.device)
        self.rbr_reparam.weight.data, self.rbr_reparam.bias.data = weight.detach(), bias.detach()
        del self.rbr_dense, self.rbr_1x1, self.rbr_identity


@register_module(kind="concat")
class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


@register_module(kind="same")
class MP(nn.Module):
    """Max-pool with stride = kernel (YOLOv7)."""

    def __init__(self, k=2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x):
        return self.m(x)


@register_module(kind="same")
class SP(nn.Module):
    """'same'-size max-pool (YOLOv7)."""

    def __init__(self, k=3, s=1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x):
        return self.m(x)
