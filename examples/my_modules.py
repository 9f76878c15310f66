"""Example user modules for `--modules examples/my_modules.py` (see docs/user-guide.md, scenario 2)."""
import torch
import torch.nn as nn

from yolocompress.models.registry import register_module


@register_module()  # a channel-taking block: the builder passes (c_in, scaled c2, *yaml args)
class DWConv(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 + BN + LeakyReLU: a cheaper replacement for a 3x3 Conv."""

    def __init__(self, c1, c2, s=1):
        super().__init__()
        self.dw = nn.Conv2d(c1, c1, 3, s, 1, groups=c1, bias=False)
        self.pw = nn.Conv2d(c1, c2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.pw(self.dw(x))))


@register_module(kind="same")  # channels pass through unchanged
class ChannelShuffle(nn.Module):
    """Splits the channels in two halves and interleaves them; pruning cannot follow this, so the tool keeps the
    channels around it whole and lists them as skipped in the report."""

    def forward(self, x):
        a, b = torch.chunk(x, 2, dim=1)
        return torch.stack((a, b), 2).flatten(1, 2)
