"""Logit distillation losses on raw YOLO head outputs (same levels and anchors in student and teacher).

Every loss is an ``nn.Module`` called as ``loss(student_raw, teacher_raw) -> scalar``, where each argument is the
list of ``nl`` tensors ``[B, na, H, W, 5 + nc]`` of logits that a head returns in train mode. The teacher is
detached inside the loss, so callers may pass tensors that still carry a graph.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Gains:
    """Weights of the box, objectness and class terms (pass the detection loss gains so the terms stay balanced)."""

    box: float = 1.0
    obj: float = 1.0
    cls: float = 1.0

    @classmethod
    def from_mapping(cls, gains: Mapping | "Gains") -> "Gains":
        if isinstance(gains, Gains):
            return gains
        if not isinstance(gains, Mapping) or set(gains) != {"box", "obj", "cls"}:
            raise ConfigError(f"logit distillation gains must be a mapping with keys box, obj, cls; got {gains!r}")
        return cls(**{k: float(v) for k, v in gains.items()})


def decode_boxes(raw: Tensor, anchors: Tensor) -> Tensor:
    """``[..., 4]`` xy offset within the cell and wh, in grid units, as the YOLOv5 loss decodes them.

    The grid offset is left out: student and teacher share it, and both the distances and the IoU below are
    invariant to it.
    """
    pxy = raw[..., 0:2].sigmoid() * 2 - 0.5
    pwh = (raw[..., 2:4].sigmoid() * 2) ** 2 * anchors.view(1, -1, 1, 1, 2)
    return torch.cat((pxy, pwh), -1)


def elementwise_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of matching ``[..., 4]`` xywh boxes (pairwise by position, not all-vs-all)."""
    a1, a2 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b1, b2 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(min=0).prod(-1)
    union = a[..., 2:].prod(-1) + b[..., 2:].prod(-1) - inter
    return inter / (union + eps)


class LogitLoss(nn.Module):
    """Base: holds the head geometry and gains, checks and detaches the inputs, and sums ``level_loss`` over levels."""

    DEFAULT_WEIGHT = 1.0  # the weight when none is given (docs/distillation.md, "Default weights")

    def __init__(self, head, gains: Mapping | Gains):
        super().__init__()
        self.nc, self.nl, self.na = int(head.nc), int(head.nl), int(head.na)
        self.gains = Gains.from_mapping(gains)
        anchors = torch.as_tensor(head.anchors).detach().float().clone()
        if anchors.shape != (self.nl, self.na, 2):
            raise ConfigError(f"logit distillation: head anchors have shape {tuple(anchors.shape)}, "
                              f"expected [nl={self.nl}, na={self.na}, 2]; check the head passed to the loss")
        self.register_buffer("anchors", anchors, persistent=False)

    def check(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> None:
        s_shapes = [tuple(x.shape) for x in student]
        t_shapes = [tuple(x.shape) for x in teacher]
        if s_shapes != t_shapes:
            raise ConfigError(f"logit distillation needs the same detection levels and anchors: student {s_shapes} "
                              f"teacher {t_shapes}; use a teacher with the same anchors and strides or a feature loss")
        ok = len(s_shapes) == self.nl and all(len(s) == 5 and s[1] == self.na and s[4] == self.nc + 5
                                               for s in s_shapes)
        if not ok:
            raise ConfigError(f"logit distillation: outputs {s_shapes} do not fit the head (nl={self.nl}, "
                              f"na={self.na}, nc={self.nc}); pass raw train-mode outputs of the student's head")

    def forward(self, student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        self.check(student, teacher)
        levels = [self.level_loss(s.float(), t.detach().float(), self.anchors[i])
                  for i, (s, t) in enumerate(zip(student, teacher))]
        return self.reduce(levels, teacher)

    def reduce(self, levels: list[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        return torch.stack(levels).sum()

    def level_loss(self, s: Tensor, t: Tensor, anchors: Tensor) -> Tensor:
        raise NotImplementedError


class _DistanceLoss(LogitLoss):
    """Distance between student and teacher box, objectness and class outputs as the detection loss sees them.

    Plain: per-level mean over anchors, summed over levels. ``obj_weighted``: a mean over the anchors of all
    levels weighted by the teacher's objectness probability, so background (most anchors) barely counts.
    """

    @staticmethod
    def distance(a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def __init__(self, head, gains: Mapping | Gains, obj_weighted: bool = False):
        super().__init__(head, gains)
        self.obj_weighted = bool(obj_weighted)

    def level_loss(self, s: Tensor, t: Tensor, anchors: Tensor) -> Tensor:
        """``[B, na, H, W]``: gain-weighted sum of the three per-anchor distances."""
        g = self.gains
        return (g.box * self.distance(decode_boxes(s, anchors), decode_boxes(t, anchors)).mean(-1)
                + g.obj * self.distance(s[..., 4].sigmoid(), t[..., 4].sigmoid())
                + g.cls * self.distance(s[..., 5:].sigmoid(), t[..., 5:].sigmoid()).mean(-1))

    def reduce(self, levels: list[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        if not self.obj_weighted:
            return torch.stack([d.mean() for d in levels]).sum()
        w = torch.cat([t.detach()[..., 4].float().sigmoid().flatten() for t in teacher])
        d = torch.cat([d.flatten() for d in levels])
        return (w * d).sum() / w.sum().clamp(min=1e-9)


class L1Logit(_DistanceLoss):
    """Mean absolute difference of decoded boxes, objectness and class probabilities."""

    DEFAULT_WEIGHT = 1.0  # 1.5x the detection loss at the start of setting (b), +0.019 over three seeds

    @staticmethod
    def distance(a: Tensor, b: Tensor) -> Tensor:
        return (a - b).abs()


class L2Logit(_DistanceLoss):
    """Mean squared difference of decoded boxes, objectness and class probabilities."""

    DEFAULT_WEIGHT = 0.2  # 0.25 of the detection loss at the start of setting (b); at 1 (1.2x) it hurt

    @staticmethod
    def distance(a: Tensor, b: Tensor) -> Tensor:
        return (a - b) ** 2


class AlignSoftTarget(LogitLoss):
    """Binary soft-target distillation aligned with YOLO's sigmoid protocol (Yang et al., ICCV 2023).

    Objectness and each class are distilled as independent binary problems (BCE against the teacher's
    probability), each weighted by the probability gap ``|p_t - p_s|^beta`` so that already-agreeing outputs
    fade out; boxes by ``1 - IoU`` weighted by the largest class gap at the anchor. Sums are divided by the
    number of anchors the teacher calls positive (objectness > 0.5, at least 1), counted over all levels.
    """

    DEFAULT_WEIGHT = 0.01  # 0.26 of the detection loss at the start of setting (b); at 1: 26x, it hurt

    def __init__(self, head, gains: Mapping | Gains, beta: float = 1.0):
        super().__init__(head, gains)
        self.beta = float(beta)

    def _soft_bce(self, s_logit: Tensor, p_t: Tensor) -> tuple[Tensor, Tensor]:
        """Gap-weighted BCE summed over elements, and the (detached) gap itself."""
        gap = (p_t - s_logit.sigmoid()).abs().detach()
        bce = F.binary_cross_entropy_with_logits(s_logit, p_t, reduction="none")
        return (bce * gap.pow(self.beta)).sum(), gap

    def level_loss(self, s: Tensor, t: Tensor, anchors: Tensor) -> Tensor:
        obj, _ = self._soft_bce(s[..., 4], t[..., 4].sigmoid())
        cls, cls_gap = self._soft_bce(s[..., 5:], t[..., 5:].sigmoid())
        iou = elementwise_iou(decode_boxes(s, anchors), decode_boxes(t, anchors))
        box = ((1 - iou) * cls_gap.amax(-1)).sum()
        return self.gains.box * box + self.gains.obj * obj + self.gains.cls * cls

    def reduce(self, levels: list[Tensor], teacher: Sequence[Tensor]) -> Tensor:
        n_pos = sum((t.detach()[..., 4] > 0).sum() for t in teacher)  # logit > 0 <=> probability > 0.5
        return torch.stack(levels).sum() / n_pos.clamp(min=1)


LOGIT_LOSSES: dict[str, type[LogitLoss]] = {"l1": L1Logit, "l2": L2Logit, "ast": AlignSoftTarget}


def build_registered(registry: Mapping[str, type], what: str, name: str, *args, **options):
    """``registry[name](*args, **options)``, with unknown names and options reported as ConfigError."""
    if name not in registry:
        raise ConfigError(f"unknown {what} {name!r}; choose one of {', '.join(registry)}")
    cls = registry[name]
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as e:
        raise ConfigError(f"{what} {name!r}: bad options {sorted(options)} ({e}); fix the distillation config") from None
    return cls(*args, **options)


def build_logit_loss(name: str, head, gains: Mapping | Gains, **options) -> LogitLoss:
    """Logit loss ``name`` for a student ``head``; ``options`` go to the class (``obj_weighted``, ``beta``)."""
    return build_registered(LOGIT_LOSSES, "logit distillation loss", name, head, gains, **options)
