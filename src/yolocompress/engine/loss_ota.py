"""YOLOv7 loss with OTA assignment (official ComputeLossOTA behaviour).

It scores predictions exactly as the YOLOv5 loss; only the assignment differs: of the YOLOv5 candidates of an
image, each target keeps its `k` cheapest (k from the IoUs of its best candidates), and a candidate wanted by
several targets goes to the one it costs least.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .boxes import box_iou, xywh2xyxy
from .loss import DetectionLoss, Positives, find_candidates

_TOPK = 10  # IoUs summed to get a target's number of positives
_IOU_WEIGHT = 3.0
_EPS = 1e-7


def dynamic_k_match(iou: Tensor, cost: Tensor) -> tuple[Tensor, Tensor]:
    """Match targets (rows) to candidates (columns) of one image by cost.

    Target g takes its k_g cheapest candidates, k_g = max(1, floor(sum of its top-10 IoUs)); a candidate taken
    by several targets goes to the target of least cost for it. Returns `fg` (candidate is matched, `[C]`
    bool) and `gt` (its target row, `[C]`, meaningful where `fg`).
    """
    k = min(_TOPK, iou.shape[1])
    dynamic_k = iou.topk(k, dim=1).values.sum(1).int().clamp(min=1)
    cheapest = cost.topk(k, dim=1, largest=False).indices
    take = torch.arange(k, device=cost.device)[None] < dynamic_k[:, None]
    match = torch.zeros_like(cost, dtype=torch.bool).scatter_(1, cheapest, take)
    count = match.sum(0)
    gt = torch.where(count > 1, cost.argmin(0), match.int().argmax(0))
    return count > 0, gt


def class_cost(scores: Tensor, cls: Tensor) -> Tensor:
    """Summed BCE of candidate scores `[C, nc]` (probabilities) against one-hot classes `cls` `[G]` -> `[G, C]`.

    Equals the BCE sum over classes without building the `[G, C, nc]` tensor: the all-negative part is shared
    by every target, only the target's own class term differs.
    """
    scores = scores.clamp(_EPS, 1 - _EPS)
    log_neg = torch.log1p(-scores)
    all_negative = -log_neg.sum(1)
    logit = scores.log() - log_neg
    return all_negative[None] - logit[:, cls].T


class OTADetectionLoss(DetectionLoss):
    """YOLOv7 OTA loss: same call and outputs as `DetectionLoss`, cost-based assignment."""

    def assign(self, raw: list[Tensor], targets: Tensor) -> list[Positives]:
        anchors = self.anchors(targets.device)
        stride = self.head.stride.to(device=targets.device, dtype=torch.float32)
        levels = find_candidates(targets, [tuple(p.shape[2:4]) for p in raw], anchors, self.anchor_t)
        cand = Positives.cat(levels)
        level = torch.cat([torch.full((len(p),), i, device=targets.device) for i, p in enumerate(levels)])
        with torch.no_grad():
            boxes, scores = self._decode(raw, levels, anchors, stride)
        img_h, img_w = raw[0].shape[2] * stride[0], raw[0].shape[3] * stride[0]
        gt_boxes = xywh2xyxy(targets[:, 2:6] * torch.stack((img_w, img_h, img_w, img_h)))
        gt_cls = targets[:, 1].long()

        # Group candidates and targets by image so each image is one contiguous slice.
        bs = raw[0].shape[0]
        cand_order = torch.sort(cand.b, stable=True).indices
        tgt_img = targets[:, 0].long()
        tgt_order = torch.sort(tgt_img, stable=True).indices
        cand_counts, tgt_counts = torch.stack((torch.bincount(cand.b, minlength=bs),
                                               torch.bincount(tgt_img, minlength=bs))).tolist()
        fg = torch.zeros(len(cand), dtype=torch.bool, device=targets.device)
        owner = torch.zeros(len(cand), dtype=torch.long, device=targets.device)
        c0 = t0 = 0
        for nc_img, nt_img in zip(cand_counts, tgt_counts):
            if nc_img and nt_img:
                ci, ti = cand_order[c0:c0 + nc_img], tgt_order[t0:t0 + nt_img]
                iou = box_iou(gt_boxes[ti], boxes[ci])
                cost = class_cost(scores[ci], gt_cls[ti]) - _IOU_WEIGHT * torch.log(iou + 1e-8)
                matched, gt = dynamic_k_match(iou, cost)
                fg[ci], owner[ci] = matched, ti[gt]
            c0, t0 = c0 + nc_img, t0 + nt_img
        cand.t = owner
        cand, level = cand[fg], level[fg]
        return [cand[level == i] for i in range(len(raw))]

    @staticmethod
    def _decode(raw: list[Tensor], levels: list[Positives], anchors: Tensor,
                stride: Tensor) -> tuple[Tensor, Tensor]:
        """Candidate boxes (corners, input pixels) and scores sqrt(class prob * objectness), all levels."""
        boxes, scores = [], []
        for i, (pi, pos) in enumerate(zip(raw, levels)):
            ps = pi[pos.b, pos.a, pos.gj, pos.gi].detach().float()
            xy = (ps[:, :2].sigmoid() * 2 - 0.5 + torch.stack((pos.gi, pos.gj), 1)) * stride[i]
            wh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i][pos.a] * stride[i]
            boxes.append(xywh2xyxy(torch.cat((xy, wh), 1)))
            scores.append((ps[:, 5:].sigmoid() * ps[:, 4:5].sigmoid()).sqrt())
        return torch.cat(boxes), torch.cat(scores)
