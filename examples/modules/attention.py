"""Channel and spatial attention blocks as YOLO tutorials add them after a backbone stage: `CBAM` (channel
attention from an MLP over avg- and max-pooled features, then spatial attention: a 7x7 conv over the
2-channel map of the channel mean and max), `ECA` (a Conv1d across the pooled channels) and `SE`
(squeeze-and-excitation). All keep their input width (the yaml repeats it: `[-1, 1, CBAM, [1024]]`) and work at any width."""
import math

import torch
import torch.nn as nn

from yolocompress.models.registry import register_module


class ChannelAttention(nn.Module):
    def __init__(self, channels, ratio=16):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(),
                                nn.Conv2d(hidden, channels, 1, bias=False))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc(self.avg_pool(x)) + self.fc(self.max_pool(x)))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg = torch.mean(x, dim=1, keepdim=True)
        mx, _ = torch.max(x, dim=1, keepdim=True)
        return x * self.sigmoid(self.conv(torch.cat([avg, mx], 1)))


@register_module()
class CBAM(nn.Module):
    def __init__(self, c1, c2, ratio=16, kernel_size=7):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {c1}, got {c2}")
        self.channel_attention = ChannelAttention(c1, ratio)
        self.spatial_attention = SpatialAttention(kernel_size)

    def forward(self, x):
        return self.spatial_attention(self.channel_attention(x))


@register_module()
class ECA(nn.Module):
    """Efficient channel attention: the 1-D kernel size adapts to the channel count (gamma=2, b=1)."""

    def __init__(self, c1, c2, gamma=2, b=1):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {c1}, got {c2}")
        t = int(abs((math.log(c1, 2) + b) / gamma))
        k = t if t % 2 else t + 1
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.sigmoid(y).expand_as(x)


@register_module()
class SE(nn.Module):
    def __init__(self, c1, c2, ratio=16):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {c1}, got {c2}")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.l1 = nn.Linear(c1, max(c1 // ratio, 1), bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.l2 = nn.Linear(max(c1 // ratio, 1), c1, bias=False)
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avgpool(x).view(b, c)
        y = self.sig(self.l2(self.relu(self.l1(y)))).view(b, c, 1, 1)
        return x * y.expand_as(x)
