"""Tiny Conv-BN-SiLU networks with a residual add and a concat, for the pruning tests."""
import torch
import torch.nn as nn

INPUT_SHAPE = (1, 3, 32, 32)
OUTPUT_SHAPE = (1, 8, 8, 8)


class ConvBNAct(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, g=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    """stem -> down -> (x + res(x)) -> cat(x, branch(x)) -> fuse [* scale] -> head (1x1, ignored)."""

    def __init__(self, groups: int = 1, scale: bool = False):
        super().__init__()
        self.stem = ConvBNAct(3, 16, 3, 2)
        self.down = ConvBNAct(16, 32, 3, 2)
        self.res = ConvBNAct(32, 32, 3, 1, g=groups)
        self.branch = ConvBNAct(32, 16, 1)
        self.fuse = ConvBNAct(48, 32, 1)
        self.scale = nn.Parameter(torch.ones(1, 32, 1, 1)) if scale else None
        self.head = nn.Conv2d(32, 8, 1)

    def blocks(self):
        return [self.stem, self.down, self.res, self.branch, self.fuse]

    def forward(self, x):
        x = self.down(self.stem(x))
        x = x + self.res(x)
        x = self.fuse(torch.cat([x, self.branch(x)], 1))
        if self.scale is not None:
            x = x * self.scale
        return self.head(x)


def make(seed: int = 0, **kw) -> tuple[TinyNet, torch.Tensor]:
    """A seeded TinyNet with non-trivial BN statistics and affine parameters, and an input."""
    torch.manual_seed(seed)
    model = TinyNet(**kw)
    for b in model.blocks():
        nn.init.uniform_(b.bn.weight, 0.1, 1.0)
        nn.init.uniform_(b.bn.bias, -0.1, 0.1)
    return model, torch.randn(*INPUT_SHAPE)


def macs(model, x) -> float:
    import torch_pruning as tp
    return float(tp.utils.count_ops_and_params(model, x)[0])
