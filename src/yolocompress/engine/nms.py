"""Box conversions, letterbox undo and non-maximum suppression, numerically as YOLOv5 v7.0 validates.

mAP is only comparable with the official numbers if the candidates reaching the metric are the same, so the
thresholds, the multi-label expansion, the class-offset trick and the caps follow `utils/general.py` of v7.0.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchvision

from yolocompress.core.errors import ConfigError

Boxes = torch.Tensor | np.ndarray


def _copy(x: Boxes) -> Boxes:
    return x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=float, copy=True)


def xywh2xyxy(x: Boxes) -> Boxes:
    """Centre/size boxes `[..., 4]` to corner boxes (a new array; the input is untouched)."""
    y = _copy(x)
    half_w, half_h = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0] = x[..., 0] - half_w
    y[..., 1] = x[..., 1] - half_h
    y[..., 2] = x[..., 0] + half_w
    y[..., 3] = x[..., 1] + half_h
    return y


def xyxy2xywh(x: Boxes) -> Boxes:
    """Corner boxes `[..., 4]` to centre/size boxes (a new array; the input is untouched)."""
    y = _copy(x)
    y[..., 0] = (x[..., 0] + x[..., 2]) / 2
    y[..., 1] = (x[..., 1] + x[..., 3]) / 2
    y[..., 2] = x[..., 2] - x[..., 0]
    y[..., 3] = x[..., 3] - x[..., 1]
    return y


def clip_boxes(boxes: Boxes, shape: Sequence[int]) -> Boxes:
    """Clip xyxy boxes to an image of `shape` (h, w) in place, and return them."""
    h, w = shape[0], shape[1]
    if isinstance(boxes, torch.Tensor):
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, h)
    else:
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def scale_boxes(img1_shape: Sequence[int], boxes: Boxes, img0_shape: Sequence[int],
                ratio_pad=None) -> Boxes:
    """Map xyxy boxes from the network input `img1_shape` (h, w) back to the original `img0_shape`, in place.

    `ratio_pad` is the dataset's `((h / h0, w / w0), (padw, padh))`; as in YOLOv5 only the height ratio is
    used (the letterbox keeps the aspect). Without it the gain and centred padding are recomputed.
    The boxes are modified in place (as the official code, which callers may rely on) and returned.
    """
    if ratio_pad is None:
        gain = min(img1_shape[0] / img0_shape[0], img1_shape[1] / img0_shape[1])
        padw = (img1_shape[1] - img0_shape[1] * gain) / 2
        padh = (img1_shape[0] - img0_shape[0] * gain) / 2
    else:
        gain = ratio_pad[0][0]
        padw, padh = ratio_pad[1][0], ratio_pad[1][1]
    boxes[:, [0, 2]] -= padw
    boxes[:, [1, 3]] -= padh
    boxes[:, :4] /= gain
    return clip_boxes(boxes, img0_shape)


def _check_thresholds(conf_thres: float, iou_thres: float, max_det: int) -> None:
    if not 0.0 <= conf_thres <= 1.0:
        raise ConfigError(f"NMS: conf_thres={conf_thres} is outside [0, 1]; pass a confidence such as 0.001")
    if not 0.0 <= iou_thres <= 1.0:
        raise ConfigError(f"NMS: iou_thres={iou_thres} is outside [0, 1]; pass an IoU such as 0.6")
    if max_det < 1:
        raise ConfigError(f"NMS: max_det={max_det} keeps no detection; pass a positive count such as 300")


def _candidates(x: torch.Tensor, conf_thres: float, multi_label: bool) -> torch.Tensor:
    """Rows of one image (already obj-filtered) to `[k, 6]` (x1, y1, x2, y2, obj*cls, cls)."""
    box = xywh2xyxy(x[:, :4])
    scores = x[:, 5:] * x[:, 4:5]
    if multi_label:
        i, j = (scores > conf_thres).nonzero(as_tuple=False).T
        return torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
    conf, j = scores.max(1, keepdim=True)
    return torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]


def non_max_suppression(pred, conf_thres: float = 0.001, iou_thres: float = 0.6, classes=None,
                        agnostic: bool = False, multi_label: bool = True, max_det: int = 300,
                        max_nms: int = 30000, max_wh: int = 7680) -> list[torch.Tensor]:
    """Per-image detections `[n, 6]` (x1, y1, x2, y2, conf, cls) from decoded predictions `[B, N, 5 + nc]`.

    A box is a candidate when objectness > `conf_thres`; its score for a class is obj * cls prob. With
    `multi_label` (and nc > 1) every (box, class) pair above the threshold is kept, else the best class.
    Classes are separated by offsetting boxes by `cls * max_wh` (0 when `agnostic`). Output rows are sorted
    by confidence, at most `max_det` per image. The eval-mode `(pred, raw)` tuple is accepted as is.
    """
    if isinstance(pred, (list, tuple)):
        pred = pred[0]
    _check_thresholds(conf_thres, iou_thres, max_det)
    nc = pred.shape[2] - 5
    multi_label = multi_label and nc > 1
    keep_cls = None if classes is None else torch.as_tensor(classes, device=pred.device, dtype=pred.dtype)
    output = []
    for x in pred:
        x = _candidates(x[x[:, 4] > conf_thres], conf_thres, multi_label)
        if keep_cls is not None:
            x = x[(x[:, 5:6] == keep_cls).any(1)]
        if not x.shape[0]:
            output.append(torch.zeros((0, 6), device=pred.device, dtype=pred.dtype))
            continue
        x = x[x[:, 4].argsort(descending=True)[:max_nms]]
        offset = x[:, 5:6] * (0 if agnostic else max_wh)
        keep = torchvision.ops.nms(x[:, :4] + offset, x[:, 4], iou_thres)[:max_det]
        output.append(x[keep])
    return output
