"""LSKBlock (large selective kernel) from LSKNet as YOLO forks insert it: a 5x5 depthwise conv and a 7x7
depthwise conv with dilation 3 chained (two receptive fields), each reduced to half the channels by a 1x1
conv; a 7x7 conv over their channel mean and max picks, per position, how much of each field to take; a
1x1 conv restores the width and the result gates the input. Keeps its input width (the yaml repeats it)."""
import torch
import torch.nn as nn

from yolocompress.models.registry import register_module


@register_module()
class LSKBlock(nn.Module):
    def __init__(self, dim, c2):
        super().__init__()
        if c2 != dim:
            raise ValueError(f"{type(self).__name__} keeps its input width: the yaml must give {dim}, got {c2}")
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim // 2, 1)
        self.conv2 = nn.Conv2d(dim, dim // 2, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(dim // 2, dim, 1)

    def forward(self, x):
        attn1 = self.conv0(x)
        attn2 = self.conv_spatial(attn1)
        attn1 = self.conv1(attn1)
        attn2 = self.conv2(attn2)
        attn = torch.cat([attn1, attn2], dim=1)
        avg_attn = torch.mean(attn, dim=1, keepdim=True)
        max_attn, _ = torch.max(attn, dim=1, keepdim=True)
        sig = self.conv_squeeze(torch.cat([avg_attn, max_attn], dim=1)).sigmoid()
        attn = attn1 * sig[:, 0, :, :].unsqueeze(1) + attn2 * sig[:, 1, :, :].unsqueeze(1)
        return x * self.conv(attn)
