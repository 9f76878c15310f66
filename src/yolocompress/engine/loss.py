"""YOLOv5 detection loss (official ComputeLoss behaviour) and the parts the YOLOv7 OTA loss reuses.

A loss is two steps: *assign* picks, per level, the predictions (image, anchor, cell) that answer for each
target; the shared *loss terms* then score them (CIoU box loss, IoU-valued objectness, class BCE).
YOLOv5 assigns every candidate from `find_candidates`; the OTA loss (loss_ota.py) filters those same
candidates by cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import ConfigError, DataError
from .boxes import bbox_ciou
from ..core.hyp import Hyp

# Objectness weight per level (P3 first): small-stride levels see many more negatives.
_BALANCE = {3: [4.0, 1.0, 0.4]}
_BALANCE_DEEP = [4.0, 1.0, 0.25, 0.06, 0.02]  # P3-P7, as the official losses for other level counts

# Cell offsets (x, y) subtracted from the target centre: own cell, then left, up, right, down neighbours.
_OFFSETS = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [-0.5, 0.0], [0.0, -0.5]])


@dataclass
class Positives:
    """Predictions answering for targets on one level: image `b`, anchor `a`, cell `gj, gi`, target row `t`."""
    b: Tensor
    a: Tensor
    gj: Tensor
    gi: Tensor
    t: Tensor

    def __len__(self) -> int:
        return self.b.shape[0]

    def __getitem__(self, index: Tensor) -> "Positives":
        return Positives(self.b[index], self.a[index], self.gj[index], self.gi[index], self.t[index])

    @staticmethod
    def cat(parts: list["Positives"]) -> "Positives":
        return Positives(*(torch.cat([getattr(p, k) for p in parts]) for k in ("b", "a", "gj", "gi", "t")))


def find_candidates(targets: Tensor, grids: list[tuple[int, int]], anchors: Tensor,
                    anchor_t: float) -> list[Positives]:
    """Per level, the (anchor, cell) pairs that may predict each target (v5 build_targets = v7 find_3_positive).

    An anchor qualifies when neither side ratio target/anchor (or its inverse) reaches `anchor_t`; each
    qualifying anchor is tried in the target's own cell and in the two neighbour cells nearest its centre.
    `targets` `[N, 6]` (image, class, xc, yc, w, h normalised), `grids` the `(H, W)` of each level,
    `anchors` `[nl, na, 2]` in grid units.
    """
    offsets = _OFFSETS.to(targets.device)
    out = []
    for (h, w), level_anchors in zip(grids, anchors):
        size = targets.new_tensor([w, h])
        gxy, gwh = targets[:, 2:4] * size, targets[:, 4:6] * size
        ratio = gwh[None] / level_anchors[:, None]  # [na, nt, 2]
        a, t = (torch.max(ratio, 1 / ratio).amax(-1) < anchor_t).nonzero(as_tuple=True)
        xy = gxy[t]
        inv = size - xy
        near = torch.cat(((xy % 1 < 0.5) & (xy > 1), (inv % 1 < 0.5) & (inv > 1)), 1)  # left, up, right, down
        use = torch.cat((torch.ones_like(near[:, :1]), near), 1).T  # [5, n]
        k, n = use.nonzero(as_tuple=True)
        cell = (xy[n] - offsets[k]).long()
        t = t[n]
        out.append(Positives(b=targets[t, 0].long(), a=a[n], gj=cell[:, 1].clamp(0, h - 1),
                             gi=cell[:, 0].clamp(0, w - 1), t=t))
    return out


class _BCE:
    """Mean BCE-with-logits with the official positive weight and optional focal modulation (alpha 0.25)."""

    def __init__(self, pos_weight: float, gamma: float, alpha: float = 0.25):
        self.pos_weight, self.gamma, self.alpha = pos_weight, gamma, alpha
        self._weight: Tensor | None = None

    def __call__(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = None
        if self.pos_weight != 1.0:
            if self._weight is None or self._weight.device != logits.device:
                self._weight = torch.tensor([self.pos_weight], device=logits.device)
            weight = self._weight
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight, reduction="none")
        if self.gamma > 0:
            p = logits.sigmoid()
            p_t = target * p + (1 - target) * (1 - p)
            loss = loss * (target * self.alpha + (1 - target) * (1 - self.alpha)) * (1.0 - p_t) ** self.gamma
        return loss.mean()


def detect_head(model: nn.Module) -> nn.Module:
    """The Detect/IDetect head of `model` (unwrapping DDP/DataParallel), checked for what the losses read."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    head = getattr(model, "head", None)
    missing = [k for k in ("nc", "nl", "na", "anchors", "stride") if not hasattr(head, k)]
    if missing:
        raise ConfigError(f"{type(model).__name__}.head lacks {', '.join(missing)}: the loss needs a model "
                          "whose last layer is a Detect/IDetect head")
    return head


class DetectionLoss:
    """YOLOv5 loss: `loss, items = loss_fn(raw, targets)`; `loss` is (box + obj + cls) * batch size."""

    def __init__(self, model: nn.Module, hyp: Hyp, imgsz: int):
        head = detect_head(model)
        self.head, self.nc, self.nl, self.na = head, int(head.nc), int(head.nl), int(head.na)
        if self.nl not in _BALANCE and self.nl > len(_BALANCE_DEEP):
            raise ConfigError(f"detection head has {self.nl} levels; the loss supports 1 to "
                              f"{len(_BALANCE_DEEP)}: use a model with at most {len(_BALANCE_DEEP)} outputs")
        if hyp.anchor_t <= 1 or not 0 <= hyp.label_smoothing < 1 or hyp.fl_gamma < 0:
            raise ConfigError(f"hyp: need anchor_t > 1, 0 <= label_smoothing < 1, fl_gamma >= 0 (got "
                              f"{hyp.anchor_t}, {hyp.label_smoothing}, {hyp.fl_gamma}): fix the hyp file")
        self.balance = _BALANCE.get(self.nl, _BALANCE_DEEP[:self.nl])
        self.anchor_t = hyp.anchor_t
        self.box_gain = hyp.box * 3 / self.nl
        self.cls_gain = hyp.cls * self.nc / 80 * 3 / self.nl
        self.obj_gain = hyp.obj * (imgsz / 640) ** 2 * 3 / self.nl
        self.cp, self.cn = 1.0 - 0.5 * hyp.label_smoothing, 0.5 * hyp.label_smoothing
        self.bce_cls = _BCE(hyp.cls_pw, hyp.fl_gamma)
        self.bce_obj = _BCE(hyp.obj_pw, hyp.fl_gamma)

    def anchors(self, device: torch.device) -> Tensor:
        return self.head.anchors.detach().to(device=device, dtype=torch.float32)

    def assign(self, raw: list[Tensor], targets: Tensor) -> list[Positives]:
        """Per level, the predictions that answer for targets (YOLOv5: every candidate)."""
        grids = [tuple(p.shape[2:4]) for p in raw]
        return find_candidates(targets, grids, self.anchors(targets.device), self.anchor_t)

    def _check(self, raw: list[Tensor], targets: Tensor) -> Tensor:
        if len(raw) != self.nl or any(p.ndim != 5 or p.shape[1] != self.na or p.shape[4] != self.nc + 5
                                      for p in raw):
            shapes = [tuple(p.shape) for p in raw]
            raise ConfigError(f"loss got outputs {shapes}; expected {self.nl} tensors [B, {self.na}, H, W, "
                              f"{self.nc + 5}]: pass the train-mode output of the model the loss was built for")
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise DataError(f"targets have shape {tuple(targets.shape)}; expected [N, 6] rows "
                            "(image, class, xc, yc, w, h): check the data loader's collate function")
        targets = targets.to(device=raw[0].device, dtype=torch.float32)
        img, cls = targets[:, 0], targets[:, 1]
        if bool(((img < 0) | (img >= raw[0].shape[0]) | (cls < 0) | (cls >= self.nc)).any()):
            raise DataError(f"targets hold a class outside 0..{self.nc - 1} or an image index outside the "
                            f"batch of {raw[0].shape[0]}: check the dataset's nc and labels")
        return targets

    def __call__(self, raw: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        targets = self._check(raw, targets)
        anchors = self.anchors(targets.device)
        lbox, lobj, lcls = (torch.zeros((), device=targets.device) for _ in range(3))
        for i, (pi, pos) in enumerate(zip(raw, self.assign(raw, targets))):
            tobj = torch.zeros(pi.shape[:4], device=pi.device)
            if len(pos):
                ps = pi[pos.b, pos.a, pos.gj, pos.gi].float()
                t = targets[pos.t]
                size = t.new_tensor([pi.shape[3], pi.shape[2]])
                tbox = torch.cat((t[:, 2:4] * size - torch.stack((pos.gi, pos.gj), 1), t[:, 4:6] * size), 1)
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i][pos.a]
                pbox = torch.cat((ps[:, :2].sigmoid() * 2 - 0.5, pwh), 1)
                iou = bbox_ciou(pbox, tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[pos.b, pos.a, pos.gj, pos.gi] = iou.detach().clamp(min=0)
                if self.nc > 1:
                    tcls = torch.full_like(ps[:, 5:], self.cn)
                    tcls[torch.arange(len(pos), device=tcls.device), t[:, 1].long()] = self.cp
                    lcls = lcls + self.bce_cls(ps[:, 5:], tcls)
            lobj = lobj + self.bce_obj(pi[..., 4].float(), tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        return (lbox + lobj + lcls) * raw[0].shape[0], torch.stack((lbox, lobj, lcls)).detach()
