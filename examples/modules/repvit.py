"""RepViT blocks (a MobileNetV3 block rebuilt the ViT way) as YOLO forks use them for backbones: a token mixer
(a re-parameterisable depthwise `RepVGGDW`: 3x3 dw conv+BN plus 1x1 dw conv plus identity, then BN; optional
SE) and a channel mixer (1x1 expansion x2, GELU, 1x1 projection, residual). A stride-2 block downsamples with
a depthwise 3x3 and widens with a 1x1 conv. `fuse()` folds `RepVGGDW` into one depthwise conv."""
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from yolocompress.models.registry import register_module


class Conv2d_BN(nn.Sequential):
    def __init__(self, a, b, ks=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class SqueezeExcite(nn.Module):
    def __init__(self, c, rd_ratio=0.25):
        super().__init__()
        rd = max(int(c * rd_ratio), 8)
        self.fc1 = nn.Conv2d(c, rd, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class RepVGGDW(nn.Module):
    def __init__(self, ed):
        super().__init__()
        self.conv = Conv2d_BN(ed, ed, 3, 1, 1, groups=ed)
        self.conv1 = nn.Conv2d(ed, ed, 1, 1, 0, groups=ed)
        self.bn = nn.BatchNorm2d(ed)

    def forward(self, x):
        if hasattr(self, "fused"):
            return self.fused(x)
        return self.bn(self.conv(x) + self.conv1(x) + x)

    def fuse(self):
        """3x3 dw + 1x1 dw (padded to 3x3) + identity (a centred 1) in one dw conv, then the outer BN folded in."""
        if hasattr(self, "fused"):
            return
        conv = fuse_conv_bn_eval(self.conv.c.eval(), self.conv.bn.eval())
        w = conv.weight + nn.functional.pad(self.conv1.weight, [1, 1, 1, 1])
        w[:, 0, 1, 1] += 1.0
        merged = nn.Conv2d(w.shape[0], w.shape[0], 3, 1, 1, groups=w.shape[0], bias=True).to(w.device)
        merged.weight.data, merged.bias.data = w.detach(), (conv.bias + self.conv1.bias).detach()
        self.fused = fuse_conv_bn_eval(merged.eval(), self.bn.eval())
        del self.conv, self.conv1, self.bn


@register_module()
class RepViTBlock(nn.Module):
    def __init__(self, c1, c2, s=1, use_se=True, expand=2):
        super().__init__()
        self.stride = s
        if s == 2:
            self.token_mixer = nn.Sequential(Conv2d_BN(c1, c1, 3, 2, 1, groups=c1),
                                             SqueezeExcite(c1) if use_se else nn.Identity(),
                                             Conv2d_BN(c1, c2, 1, 1, 0))
        else:
            if c1 != c2:
                raise ValueError(f"RepViTBlock with stride 1 keeps its width: c1 {c1} != c2 {c2}")
            self.token_mixer = nn.Sequential(RepVGGDW(c1), SqueezeExcite(c1) if use_se else nn.Identity())
        self.channel_mixer = nn.Sequential(Conv2d_BN(c2, c2 * expand), nn.GELU(), Conv2d_BN(c2 * expand, c2))

    def forward(self, x):
        x = self.token_mixer(x)
        return x + self.channel_mixer(x)
