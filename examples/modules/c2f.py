"""C2f, YOLOv8's CSP block, in the two ways community repositories write its split.

`C2f` splits the first conv's output with `chunk(2, 1)`; `C2fSplit` with `split((self.c, self.c), 1)`, the
split size kept in the attribute `c`. Both: one 1x1 conv, bottlenecks chained on the second half, every
intermediate output concatenated into a last 1x1 conv.
Use: `--modules examples/modules/c2f.py` with yolov5n-c2f.yaml, yolov5n-c2f-split.yaml or yolov7-tiny-c2f.yaml.
"""
import torch
import torch.nn as nn

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


class Bottleneck3x3(nn.Module):
    """YOLOv8's bottleneck: two 3x3 convs, a residual add when the widths match."""

    def __init__(self, c1, c2, shortcut=True, e=1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 3, 1)
        self.cv2 = Conv(c_, c2, 3, 1)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register_module(repeats_as_arg=True)
class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False, e=0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck3x3(self.c, self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


@register_module(repeats_as_arg=True, split_sizes="c")  # pruning rewrites `c` when it prunes the split
class C2fSplit(C2f):
    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))
