"""Tiny stand-ins for a detection model, shared by the loss tests: a head with the attributes the losses read."""
from __future__ import annotations

import torch
from torch import nn

STRIDES = (8, 16, 32)
ANCHORS_PX = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))  # YOLOv5 P3-P5


class FakeHead(nn.Module):
    def __init__(self, nc: int = 3):
        super().__init__()
        self.nc, self.nl, self.na, self.no = nc, 3, 3, nc + 5
        self.register_buffer("stride", torch.tensor(STRIDES, dtype=torch.float32))
        anchors = torch.tensor(ANCHORS_PX, dtype=torch.float32).view(3, 3, 2)
        self.register_buffer("anchors", anchors / self.stride.view(-1, 1, 1))


class FakeModel(nn.Module):
    """Per level one strided conv on the image: enough capacity to fit a fixed target, cheap on CPU."""

    def __init__(self, nc: int = 3):
        super().__init__()
        self.head = FakeHead(nc)
        self.convs = nn.ModuleList(nn.Conv2d(3, 3 * (nc + 5), s, s) for s in STRIDES)

    def forward(self, x):
        out = []
        for conv in self.convs:
            y = conv(x)
            b, _, h, w = y.shape
            out.append(y.view(b, 3, -1, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out


def zero_raw(bs: int, h: int, w: int, nc: int = 3, fill: float = 0.0) -> list[torch.Tensor]:
    """Raw outputs for an `h x w` pixel input, filled with one logit value."""
    return [torch.full((bs, 3, h // s, w // s, nc + 5), fill) for s in STRIDES]


def logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def encode_box(box: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Logits (tx, ty, tw, th) that decode to `box` (x, y relative to the cell, w, h; grid units)."""
    xy = logit((box[:2] + 0.5) / 2)
    wh = logit(torch.sqrt(box[2:] / anchor) / 2)
    return torch.cat((xy, wh))
