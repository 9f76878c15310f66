"""Feature distillation losses between chosen student and teacher layers.

Every loss is an ``nn.Module`` called as ``loss(student_feats, teacher_feats) -> scalar`` with one ``[B, C, H, W]``
tensor per chosen layer pair. A loss owns its adapters (and MGD its generators) so the trainer can hand their
parameters to the optimizer; the teacher is detached inside the loss.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError
from .logit import build_registered


class Adapter(nn.Module):
    """1x1 conv that maps student channels to teacher channels; identity when they already match."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.proj = (nn.Identity() if student_channels == teacher_channels
                     else nn.Conv2d(student_channels, teacher_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FeatureLoss(nn.Module):
    """Base: checks each layer pair, adapts the student, detaches the teacher and sums ``pair_loss`` over pairs.

    ``names`` (one per pair, e.g. ``"student 17 / teacher 24"``) only label error messages.
    ``DEFAULT_WEIGHT``: the loss's weight when none is given, chosen from the benchmark's measured shares
    (docs/distillation.md, "Default weights").
    """

    DEFAULT_WEIGHT = 1.0

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int],
                 names: Sequence[str] | None = None):
        super().__init__()
        self.student_channels = [int(c) for c in student_channels]
        self.teacher_channels = [int(c) for c in teacher_channels]
        n = len(self.student_channels)
        if n == 0 or n != len(self.teacher_channels):
            raise ConfigError(f"feature distillation needs one teacher layer per student layer (at least one): "
                              f"student channels {self.student_channels}, teacher channels {self.teacher_channels}")
        self.names = list(names) if names is not None else [f"pair {i}" for i in range(n)]
        if len(self.names) != n:
            raise ConfigError(f"feature distillation: {len(self.names)} names for {n} layer pairs")
        self.adapters = nn.ModuleList(Adapter(s, t) for s, t in zip(self.student_channels, self.teacher_channels))

    def check(self, i: int, s: Tensor, t: Tensor) -> None:
        expected = (self.student_channels[i], self.teacher_channels[i])
        if s.dim() != 4 or t.dim() != 4 or (s.shape[1], t.shape[1]) != expected:
            raise ConfigError(f"feature distillation {self.names[i]}: got student {tuple(s.shape)} and teacher "
                              f"{tuple(t.shape)}, expected [B, C, H, W] with channels {expected}; "
                              f"check the chosen layers")
        if s.shape[0] != t.shape[0] or s.shape[2:] != t.shape[2:]:
            raise ConfigError(f"feature distillation {self.names[i]}: student {tuple(s.shape)} and teacher "
                              f"{tuple(t.shape)} differ in batch or spatial size; pair layers of the same stride")

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        if len(student) != len(self.adapters) or len(teacher) != len(self.adapters):
            raise ConfigError(f"feature distillation expects {len(self.adapters)} layer pairs, got "
                              f"{len(student)} student and {len(teacher)} teacher features")
        total = 0.0
        for i, (s, t) in enumerate(zip(student, teacher)):
            self.check(i, s, t)
            total = total + self.pair_loss(i, self.adapters[i](s).float(), t.detach().float())
        return total

    def pair_loss(self, i: int, s: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def start(self, device: torch.device, seed: int) -> None:
        """Called when training starts on `device`: a loss with randomness seeds it here (per rank)."""


class Mimic(FeatureLoss):
    """Mean squared error between adapted student and teacher features."""

    DEFAULT_WEIGHT = 0.02  # weight 1 took 0.7-0.9 of the loss and hurt; 0.02 took 0.13

    def pair_loss(self, i: int, s: Tensor, t: Tensor) -> Tensor:
        return F.mse_loss(s, t)


def random_keep_mask(n: int, h: int, w: int, ratio: float, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> Tensor:
    """``[n, 1, h, w]`` float mask that drops each (sample, position) with probability ``ratio`` (1 = kept)."""
    rand = torch.rand((n, 1, h, w), generator=generator,
                      device=generator.device if generator is not None else device)
    return (rand >= ratio).to(device=device, dtype=torch.float32)


class MGD(FeatureLoss):
    """Masked Generative Distillation (Yang et al., ECCV 2022): regenerate the teacher from a masked student.

    Hiding ``mask_ratio`` of the positions forces the student to carry enough context for a small generator
    (3x3 conv, ReLU, 3x3 conv) to rebuild the full teacher feature. Loss: squared error summed, divided by the
    batch size, times ``alpha``. ``generator`` (a seeded ``torch.Generator``) makes the masks reproducible.
    """

    DEFAULT_WEIGHT = 0.1  # share 0.25 of the loss; +0.003 mAP50-95 in each of three seeds (setting (b))

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int],
                 names: Sequence[str] | None = None, mask_ratio: float = 0.65, alpha: float = 2e-5,
                 generator: torch.Generator | None = None):
        super().__init__(student_channels, teacher_channels, names)
        if not 0.0 <= mask_ratio < 1.0:
            raise ConfigError(f"MGD mask_ratio must be in [0, 1), got {mask_ratio}")
        self.mask_ratio, self.alpha, self.generator = float(mask_ratio), float(alpha), generator
        self.generators = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))
            for c in self.teacher_channels)

    def start(self, device: torch.device, seed: int) -> None:
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def pair_loss(self, i: int, s: Tensor, t: Tensor) -> Tensor:
        b, _, h, w = s.shape
        mask = random_keep_mask(b, h, w, self.mask_ratio, s.device, self.generator)
        rebuilt = self.generators[i](s * mask)
        return self.alpha * ((rebuilt - t) ** 2).sum() / b


class CWD(FeatureLoss):
    """Channel-wise Distillation (Shu et al., ICCV 2021): match each channel's spatial distribution.

    Each channel becomes a softmax over positions at temperature ``tau``; the loss is KL(teacher || student)
    times ``tau**2``, summed over positions and averaged over channels and batch.
    """

    DEFAULT_WEIGHT = 0.02  # share 0.13 (neutral); at 1 it took 0.7-0.9 and cost 0.06

    def __init__(self, student_channels: Sequence[int], teacher_channels: Sequence[int],
                 names: Sequence[str] | None = None, tau: float = 1.0):
        super().__init__(student_channels, teacher_channels, names)
        if tau <= 0:
            raise ConfigError(f"CWD temperature tau must be positive, got {tau}")
        self.tau = float(tau)

    def pair_loss(self, i: int, s: Tensor, t: Tensor) -> Tensor:
        b, c = s.shape[:2]
        log_ps = F.log_softmax(s.flatten(2) / self.tau, -1)
        log_pt = F.log_softmax(t.flatten(2) / self.tau, -1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum()
        return kl * self.tau ** 2 / (b * c)


FEATURE_LOSSES: dict[str, type[FeatureLoss]] = {"mimic": Mimic, "mgd": MGD, "cwd": CWD}


def build_feature_loss(name: str, student_channels: list[int], teacher_channels: list[int],
                       **options) -> FeatureLoss:
    """Feature loss ``name`` over layer pairs with these channels; ``options`` go to the class."""
    return build_registered(FEATURE_LOSSES, "feature distillation loss", name,
                            student_channels, teacher_channels, **options)
