"""Transformer layers in YOLO backbones: YOLOv5's `C3TR` (a C3 whose bottlenecks are a transformer block over
the flattened positions, `nn.MultiheadAttention` with a learned linear position embedding) and a BoTNet-style
`MHSA` (1x1 convs for q, k, v; attention written out with two matmuls over the H*W positions).
`C3TR` uses 4 heads, `MHSA` takes the head count as its argument: both need channels divisible by it."""
import torch
import torch.nn as nn

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


class TransformerLayer(nn.Module):
    def __init__(self, c, num_heads):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x):
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


class TransformerBlock(nn.Module):
    def __init__(self, c1, c2, num_heads, num_layers):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        b, _, w, h = x.shape
        p = x.flatten(2).permute(2, 0, 1)
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, w, h)


@register_module(repeats_as_arg=True, widths={"m.c2": "m.linear"})  # forward reshapes to (b, self.c2, w, h)
class C3TR(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = TransformerBlock(c_, c_, 4, n)

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_module(heads={"query": "heads", "key": "heads", "value": "heads"})  # view(b, heads, c // heads, -1)
class MHSA(nn.Module):
    def __init__(self, c1, c2, heads=4):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {c1}, got {c2}")
        self.heads = heads
        self.query = nn.Conv2d(c1, c1, 1)
        self.key = nn.Conv2d(c1, c1, 1)
        self.value = nn.Conv2d(c1, c1, 1)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        b, c, w, h = x.size()
        q = self.query(x).view(b, self.heads, c // self.heads, -1)
        k = self.key(x).view(b, self.heads, c // self.heads, -1)
        v = self.value(x).view(b, self.heads, c // self.heads, -1)
        attention = self.softmax(torch.matmul(q.permute(0, 1, 3, 2), k) / (c // self.heads) ** 0.5)
        out = torch.matmul(v, attention.permute(0, 1, 3, 2))
        return out.view(b, c, w, h) + x
