"""Detection heads: YOLOv5's Detect and YOLOv7's IDetect share decoding; IDetect adds implicit knowledge."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .registry import register_module


class _Head(nn.Module):
    """Per level: 1x1 conv to na*(5+nc) logits, reshaped to [B, na, H, W, no]; decoded to pixels in eval mode.

    `anchors` is a buffer [nl, na, 2] in grid units (pixels / stride) once the builder has measured the strides.
    """
    cls_prior_eps = 0.99999  # official bias-init constant (YOLOv5); IDetect uses YOLOv7's 0.99

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self._grids: dict = {}

    def _level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.m[i](x)

    def forward(self, xs):
        raw, decoded = [], []
        for i in range(self.nl):
            y = self._level(i, xs[i])
            bs, _, ny, nx = y.shape
            y = y.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(y)
            if not self.training:
                decoded.append(self._decode(i, y).view(bs, -1, self.no))
        return raw if self.training else (torch.cat(decoded, 1), raw)

    def _decode(self, i: int, y: torch.Tensor) -> torch.Tensor:
        grid, anchor_grid = self._grid(i, y)
        xy, wh, conf = y.sigmoid().split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + grid) * self.stride[i]
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4)

    def _grid(self, i: int, y: torch.Tensor):
        ny, nx = y.shape[2:4]
        key = (i, ny, nx, y.device, y.dtype)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or key not in self._grids:
            shape = 1, self.na, ny, nx, 2
            yv, xv = torch.meshgrid(torch.arange(ny, device=y.device, dtype=y.dtype),
                                    torch.arange(nx, device=y.device, dtype=y.dtype), indexing="ij")
            grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
            anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape).to(y.dtype)
            if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
                return grid, anchor_grid
            self._grids = {k: v for k, v in self._grids.items() if k[0] != i}
            self._grids[key] = (grid, anchor_grid)
        return self._grids[key]

    def _apply(self, fn, *args, **kwargs):
        self._grids = {}  # device/dtype moves invalidate cached grids
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Official YOLOv7 heads (IDetect, and Detect in its deploy configs) carry `anchor_grid` (pixels);
        # we derive it from anchors * stride.
        state_dict.pop(prefix + "anchor_grid", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def initialize_biases(self):
        """Official prior: objectness ~8 objects per 640 image, class probability ~0.6/nc."""
        for conv, s in zip(self.m, self.stride):
            b = conv.bias.view(self.na, -1)
            b.data[:, 4] += math.log(8 / (640 / float(s)) ** 2)
            b.data[:, 5:5 + self.nc] += math.log(0.6 / (self.nc - self.cls_prior_eps))
            conv.bias = nn.Parameter(b.view(-1), requires_grad=True)

    def set_strides(self, strides: torch.Tensor):
        """Record measured strides; anchors given in pixels become grid units, ordered like the strides."""
        self.stride = strides.to(self.anchors.device)
        a = self.anchors.prod(-1).mean(-1).view(-1)
        da, ds = a[-1] - a[0], self.stride[-1] - self.stride[0]
        if da and (da.sign() != ds.sign()):
            self.anchors[:] = self.anchors.flip(0)
        self.anchors /= self.stride.view(-1, 1, 1)
        self._grids = {}


@register_module(kind="head")
class Detect(_Head):
    """YOLOv5 detection head."""


class ImplicitA(nn.Module):
    """Learned additive implicit knowledge (YOLOv7)."""

    def __init__(self, channel, mean=0.0, std=0.02):
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x):
        return self.implicit + x


class ImplicitM(nn.Module):
    """Learned multiplicative implicit knowledge (YOLOv7)."""

    def __init__(self, channel, mean=1.0, std=0.02):
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=mean, std=std)

    def forward(self, x):
        return self.implicit * x


@register_module(kind="head")
class IDetect(_Head):
    """YOLOv7 detection head: conv(x + a) * m per level; `fuse()` folds a and m into the conv."""
    cls_prior_eps = 0.99

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch)
        self.ia = nn.ModuleList(ImplicitA(c) for c in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)
        self.fused = False

    def _level(self, i, x):
        if self.fused:
            return self.m[i](x)
        return self.im[i](self.m[i](self.ia[i](x)))

    def fuse(self):
        if self.fused:
            return
        with torch.no_grad():
            for conv, ia, im in zip(self.m, self.ia, self.im):
                w = conv.weight.view(conv.out_channels, -1)
                conv.bias += (w @ ia.implicit.view(-1, 1)).view(-1)
                conv.bias *= im.implicit.view(-1)
                conv.weight *= im.implicit.view(-1, 1, 1, 1)
        del self.ia, self.im
        self.fused = True

