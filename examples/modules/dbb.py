"""DiverseBranchBlock (DBB), re-parameterisable: in training four branches with BatchNorm each (kxk conv,
1x1 conv, 1x1 conv then kxk conv, 1x1 conv then average pooling) are summed; `fuse()` folds all four into
one kxk conv with bias for deployment (the export path fuses first). `DiverseBranchBlock(c1, c2, k, s)`
replaces a `Conv(c1, c2, k, s)` and ends with SiLU like it."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from yolocompress.models.registry import register_module


def conv_bn(c1, c2, k, s=1, p=0):
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, p, bias=False), nn.BatchNorm2d(c2))


def _fold(conv, bn):
    return fuse_conv_bn_eval(conv.eval(), bn.eval())


class BNAndPad(nn.BatchNorm2d):
    """BatchNorm whose output is padded with what it gives for a zero input (its shift) instead of zeros.

    The fused kxk conv pads its input with zeros; a branch that pads after a 1x1 conv+BN must pad with the
    value that conv+BN produces from those zeros, or the borders differ after fusing."""

    def __init__(self, c, pad):
        super().__init__(c)
        self.pad = pad

    def forward(self, x):
        y = super().forward(x)
        shift = (self.bias - self.running_mean * self.weight / torch.sqrt(self.running_var + self.eps))
        shift = shift.view(1, -1, 1, 1)
        return F.pad(y - shift, [self.pad] * 4) + shift


@register_module()
class DiverseBranchBlock(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.k, self.s, self.p = k, s, k // 2
        self.dbb_origin = conv_bn(c1, c2, k, s, self.p)
        self.dbb_1x1 = conv_bn(c1, c2, 1, s, 0)
        self.dbb_avg = nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), BNAndPad(c2, self.p),
                                     nn.AvgPool2d(k, s, 0), nn.BatchNorm2d(c2))
        self.dbb_1x1_kxk = nn.Sequential(nn.Conv2d(c1, c1, 1, bias=False), BNAndPad(c1, self.p),
                                         nn.Conv2d(c1, c2, k, s, 0, bias=False), nn.BatchNorm2d(c2))
        self.act = nn.SiLU()

    def forward(self, x):
        if hasattr(self, "dbb_reparam"):
            return self.act(self.dbb_reparam(x))
        return self.act(self.dbb_origin(x) + self.dbb_1x1(x) + self.dbb_avg(x) + self.dbb_1x1_kxk(x))

    @torch.no_grad()
    def fuse(self):
        """One kxk conv with bias equal to the sum of the four branches (eval-mode BatchNorm)."""
        if hasattr(self, "dbb_reparam"):
            return
        k = self.k
        origin, one = _fold(*self.dbb_origin), _fold(*self.dbb_1x1)
        weight = origin.weight + F.pad(one.weight, [k // 2] * 4)
        bias = origin.bias + one.bias
        # 1x1 then kxk: compose the kernels; the first conv's bias passes through the sum of the kxk kernel
        a, b = _fold(*self.dbb_1x1_kxk[:2]), _fold(*self.dbb_1x1_kxk[2:])
        weight = weight + torch.einsum("oikl,ij->ojkl", b.weight, a.weight[:, :, 0, 0])
        bias = bias + b.bias + b.weight.sum((2, 3)) @ a.bias
        # 1x1 then average pooling then BN: the pooling is a kxk kernel of 1/k^2
        first, bn = _fold(*self.dbb_avg[:2]), self.dbb_avg[3]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = weight + (first.weight * scale.view(-1, 1, 1, 1) / (k * k)).expand_as(weight)
        bias = bias + (first.bias - bn.running_mean) * scale + bn.bias
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], k, self.s, self.p, bias=True).to(weight.device)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        self.dbb_reparam = conv
        del self.dbb_origin, self.dbb_1x1, self.dbb_avg, self.dbb_1x1_kxk
