"""Slim-neck modules: `GSConv` (a conv to half the outputs, a 5x5 depthwise conv of those, concatenated and
channel-shuffled: even channels first, then odd, a fixed permutation) and `VoVGSCSP` (a one-shot aggregation
CSP block of GS bottlenecks), as the slim-neck-by-gsconv YOLO repositories write them."""
import torch
import torch.nn as nn
import torch_pruning as tp

from yolocompress.models.modules import Conv
from yolocompress.models.registry import register_module


class GSConvPruner(tp.pruner.BasePruningFunc):
    """Prunes a GSConv as one layer: the graph cannot follow its shuffle (a reshape-permute-reshape).

    With c_ = cv1's outputs (even), the output is four blocks of c_/2 channels: cv1's even channels, the
    depthwise conv's even channels, cv1's odd ones, the depthwise conv's odd ones. Dropping offset j of every
    block is dropping cv1's channels 2j and 2j+1 (and the depthwise conv's, which follow cv1 one to one), and
    the shuffle of the smaller module puts every kept channel where the next layer expects it. So the output
    is pruned in four channel groups (`get_out_channel_groups`), and the inputs like cv1's."""

    def prune_out_channels(self, layer, idxs):
        half = layer.cv1.conv.out_channels // 2
        offsets = sorted({int(i) % half for i in idxs})
        if layer.cv1.conv.out_channels % 2 or len(idxs) != 4 * len(offsets):
            raise ValueError("a GSConv's outputs are pruned four at a time (offset j of each quarter), and cv1 "
                             "needs an even width")
        pairs = [c for j in offsets for c in (2 * j, 2 * j + 1)]
        for conv, bn in ((layer.cv1.conv, layer.cv1.bn), (layer.cv2.conv, layer.cv2.bn)):
            fn = tp.prune_depthwise_conv_out_channels if conv.groups == conv.out_channels > 1 else \
                tp.prune_conv_out_channels
            fn(conv, pairs)
            tp.prune_batchnorm_out_channels(bn, pairs)
        return layer

    def prune_in_channels(self, layer, idxs):
        if layer.cv1.conv.groups != 1:
            raise ValueError("a grouped GSConv keeps its inputs")
        tp.prune_conv_in_channels(layer.cv1.conv, list(idxs))
        return layer

    def get_out_channels(self, layer):
        return 2 * layer.cv1.conv.out_channels

    def get_in_channels(self, layer):
        return layer.cv1.conv.in_channels

    def get_out_channel_groups(self, layer):
        return 4 if layer.cv1.conv.out_channels % 2 == 0 else 1

    def get_in_channel_groups(self, layer):
        return layer.cv1.conv.groups


@register_module(pruner=GSConvPruner)
class GSConv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1, act=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x):
        x1 = self.cv1(x)
        x2 = torch.cat((x1, self.cv2(x1)), 1)
        b, n, h, w = x2.size()
        y = x2.reshape(b * n // 2, 2, h * w)
        y = y.permute(1, 0, 2)
        y = y.reshape(2, -1, n // 2, h, w)
        return torch.cat((y[0], y[1]), 1)


class GSBottleneck(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.conv_lighting = nn.Sequential(GSConv(c1, c_, 1, 1), GSConv(c_, c2, 3, 1, act=False))
        self.shortcut = Conv(c1, c2, 1, 1, act=False)

    def forward(self, x):
        return self.conv_lighting(x) + self.shortcut(x)


@register_module(repeats_as_arg=True)
class VoVGSCSP(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.gsb = nn.Sequential(*(GSBottleneck(c_, c_, e=1.0) for _ in range(n)))
        self.cv3 = Conv(2 * c_, c2, 1)

    def forward(self, x):
        return self.cv3(torch.cat((self.gsb(self.cv1(x)), self.cv2(x)), 1))
