"""GFLOPs counting of what community modules add: DeformConv2d, Linear, attention (both ways it is written),
and the modules whose weights no rule reads, named instead of counted as zero."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import DeformConv2d

from yolocompress.core.stats import count_gflops, uncounted_modules

SIZE = 32  # count_gflops runs a stride-sized (32 x 32) input: every hand count below is at 32 x 32


class DCN(nn.Module):
    """DCNv2 as the gallery writes it: offsets and mask from a conv, then the deformable conv."""

    def __init__(self, c1=4, c2=6, k=3):
        super().__init__()
        self.conv_offset_mask = nn.Conv2d(c1, 3 * k * k, k, 1, k // 2)
        self.dcn = DeformConv2d(c1, c2, k, 1, k // 2, bias=False)

    def forward(self, x):
        o1, o2, mask = self.conv_offset_mask(x).chunk(3, 1)
        return self.dcn(x, torch.cat((o1, o2), 1), mask.sigmoid())


class Tokens(nn.Module):
    """nn.MultiheadAttention over the flattened positions of a [1, C, H, W] map (YOLOv5's TransformerLayer)."""

    def __init__(self, c=8, heads=2):
        super().__init__()
        self.ma = nn.MultiheadAttention(c, heads)

    def forward(self, x):
        p = x.flatten(2).permute(2, 0, 1)
        return self.ma(p, p, p)[0]


class WrittenOut(nn.Module):
    """MHSA written with two torch.matmul calls and the @ operator (BoTNet style)."""

    def __init__(self, c=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Conv2d(c, 3 * c, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attn = torch.matmul(q.transpose(-1, -2), k).softmax(-1)
        return (v @ attn.transpose(-1, -2)).view(b, c, h, w)


def gflops(model, ch):
    return count_gflops(model, SIZE, ch=ch)


def test_deform_conv_is_its_conv_plus_the_offset_conv():
    hw, k2 = SIZE * SIZE, 9
    offset_macs = 27 * hw * 4 * k2  # nn.Conv2d: 27 = 3 x k x k outputs, each over 4 inputs x 3 x 3
    deform_macs = 6 * hw * 4 * k2  # the deformable conv: 6 outputs over the same window
    assert gflops(DCN(), 4) == pytest.approx(2 * (offset_macs + deform_macs) / 1e9, rel=1e-12)
    assert uncounted_modules(DCN()) == []


def test_multihead_attention_by_the_stated_rule():
    L, E = SIZE * SIZE, 8
    projections = 4 * L * E * E  # q, k, v and output projections
    products = 2 * L * L * E  # q.k and attn.v, over all heads
    assert gflops(Tokens(), 8) == pytest.approx(2 * (projections + products) / 1e9, rel=1e-12)


def test_attention_written_with_matmul_counts_the_same_products():
    L, E = SIZE * SIZE, 8
    qkv = L * 3 * E * E
    assert gflops(WrittenOut(), 8) == pytest.approx(2 * (qkv + 2 * L * L * E) / 1e9, rel=1e-12)


def test_linear_and_conv1d():
    model = nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.Flatten(1), nn.Linear(5 * SIZE, 7))

    class Rows(nn.Module):  # [1, 3, 32, 32] -> [1, 3, 32] rows for the Conv1d
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return self.m(x.mean(2))

    assert gflops(Rows(), 3) == pytest.approx(2 * (5 * SIZE * 3 * 3 + 7 * 5 * SIZE) / 1e9, rel=1e-12)


def test_weights_no_rule_reads_are_named():
    class RawConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))
            self.scale = nn.Parameter(torch.ones(1, 4, 1, 1))  # per channel: elementwise, zero by the rule

        def forward(self, x):
            return F.conv2d(x, self.weight, padding=1) * self.scale

    model = nn.Sequential(nn.Conv2d(3, 3, 1), RawConv())
    assert uncounted_modules(model) == ["1 (RawConv, 112 parameters)"]
