"""Box helpers shared by the losses (and anything else that compares boxes): one formula each, in torch."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def xywh2xyxy(boxes: Tensor) -> Tensor:
    """Centre/size boxes `[..., 4]` to corner boxes `[..., 4]`."""
    xy, wh = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((xy - wh, xy + wh), -1)


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU of corner boxes `[N, 4]` x `[M, 4]` -> `[N, M]`."""
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(-1)
    return inter / (area1[:, None] + area2[None, :] - inter + eps)


def bbox_ciou(box1: Tensor, box2: Tensor, eps: float = 1e-7) -> Tensor:
    """Element-wise Complete-IoU of centre/size boxes `[N, 4]` and `[N, 4]` -> `[N]` (1 for equal boxes).

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v, with v the aspect-ratio term; alpha is
    treated as a constant (no gradient), as in the CIoU paper and YOLOv5.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    h1, h2 = h1.clamp(min=eps), h2.clamp(min=eps)
    left1, right1, top1, bottom1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    left2, right2, top2, bottom2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = ((torch.minimum(right1, right2) - torch.maximum(left1, left2)).clamp(min=0)
             * (torch.minimum(bottom1, bottom2) - torch.maximum(top1, top2)).clamp(min=0))
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = torch.maximum(right1, right2) - torch.minimum(left1, left2)
    ch = torch.maximum(bottom1, bottom2) - torch.minimum(top1, top2)
    diag2 = cw ** 2 + ch ** 2 + eps
    dist2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v + (1 - iou).clamp(min=0) + eps)  # the clamp keeps rounding (IoU a hair over 1) from 0/0
    return iou - (dist2 / diag2 + alpha * v)
