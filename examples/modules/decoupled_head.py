"""A YOLOX-style decoupled head for the anchor-based YOLOv5/YOLOv7 losses: per level a 1x1 stem, then two
3x3 convs for classification and two for box regression and objectness, each ending in its own 1x1
prediction conv. A `Detect` subclass: decoding, strides and the losses are the stock head's.

Use it in place of `Detect`/`IDetect`: `[[17, 20, 23], 1, DecoupledDetect, [nc, anchors]]`.
The prediction convs are `self.m` (per level [reg, obj, cls]), the outputs the pruner never touches.
"""
import math

import torch
import torch.nn as nn

from yolocompress.models.heads import Detect
from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


@register_module(kind="head")
class DecoupledDetect(Detect):
    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch)
        hidden = min(ch)
        self.stems = nn.ModuleList(Conv(c, hidden, 1, 1) for c in ch)
        self.cls_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1))
                                       for _ in ch)
        self.reg_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1))
                                       for _ in ch)
        self.m = nn.ModuleList(nn.ModuleList([nn.Conv2d(hidden, self.na * 4, 1), nn.Conv2d(hidden, self.na, 1),
                                              nn.Conv2d(hidden, self.na * self.nc, 1)]) for _ in ch)

    def _level(self, i, x):
        x = self.stems[i](x)
        cls_feat, reg_feat = self.cls_convs[i](x), self.reg_convs[i](x)
        reg, obj, cls = self.m[i]
        bs, _, ny, nx = x.shape
        parts = (reg(reg_feat), obj(reg_feat), cls(cls_feat))  # per anchor: box, objectness, classes
        y = torch.cat([p.view(bs, self.na, -1, ny, nx) for p in parts], 2)
        return y.view(bs, self.na * self.no, ny, nx)

    def initialize_biases(self):
        """The stock head's prior on the objectness and class biases."""
        for (_, obj, cls), s in zip(self.m, self.stride):
            obj.bias.data += math.log(8 / (640 / float(s)) ** 2)
            cls.bias.data += math.log(0.6 / (self.nc - self.cls_prior_eps))
