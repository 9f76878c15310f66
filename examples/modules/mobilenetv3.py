"""MobileNetV3 backbone blocks as the yolov5-mobilenetv3 forks write them: a 3x3 stride-2 stem
(`Conv_BN_HSwish`) and the inverted residual `MobileNetV3Block` (1x1 expansion, kxk depthwise, optional SE,
1x1 projection; residual when stride 1 and widths match). The expansion is a ratio so that the block follows
`width_multiple`."""
import torch.nn as nn

from yolocompress.models.registry import register_module


@register_module()
class Conv_BN_HSwish(nn.Module):
    def __init__(self, c1, c2, s=2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, s, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SELayer(nn.Module):
    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel), nn.Hardsigmoid(inplace=True))

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y


@register_module()
class MobileNetV3Block(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, expand=4.0, use_se=True, use_hs=True):
        super().__init__()
        hidden = int(c1 * expand)
        act = nn.Hardswish if use_hs else nn.ReLU
        self.identity = s == 1 and c1 == c2
        self.conv = nn.Sequential(
            nn.Conv2d(c1, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, hidden, k, s, k // 2, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            SELayer(hidden) if use_se else nn.Identity(), act(),
            nn.Conv2d(hidden, c2, 1, 1, 0, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.identity else y
