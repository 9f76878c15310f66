"""Validation exactly as the official YOLOv5 val.py: rect batches padded by half a stride, NMS at
conf 0.001 / IoU 0.6 / 300 detections, boxes mapped back to the original images, then mAP."""
from __future__ import annotations

import logging
import time

import torch
import torch.nn as nn

from ..data.dataset import DataConfig, create_dataloader
from ..core.device import select_device
from .metrics import DetectionMetrics
from .nms import non_max_suppression, scale_boxes, xywh2xyxy

LOGGER = logging.getLogger("yolocompress")


class Validator:
    """Builds the validation loader once and measures any model on it the same way."""

    def __init__(self, data: DataConfig, imgsz: int = 640, batch_size: int = 32, device="", workers: int = 8,
                 conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300, split: str = "val",
                 stride: int = 32, half: bool = True):
        self.data, self.imgsz = data, imgsz
        self.device = select_device(device)
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.half = half and self.device.type == "cuda"
        files = getattr(data, split)
        self.loader, self.dataset = create_dataloader(files, imgsz, batch_size, stride, augment=False, rect=True,
                                                      pad=0.5, workers=workers, shuffle=False, nc=data.nc,
                                                      prefix=split)

    @torch.no_grad()
    def run(self, model: nn.Module, loss_fn=None, verbose: bool = False) -> dict:
        """mAP50, mAP50-95, precision, recall, per-class rows, speed (ms/image) and the val losses."""
        training = model.training
        model = model.to(self.device).eval()
        if self.half:
            model.half()
        metrics = DetectionMetrics(self.data.nc, self.data.names)
        dt = [0.0, 0.0, 0.0]
        loss = torch.zeros(3, device=self.device)
        for imgs, targets, _paths, shapes in self.loader:
            t0 = time.perf_counter()
            imgs = imgs.to(self.device, non_blocking=True)
            imgs = (imgs.half() if self.half else imgs.float()) / 255
            targets = targets.to(self.device)
            nb, _, height, width = imgs.shape
            t1 = time.perf_counter()
            pred, raw = model(imgs)
            self._sync()
            t2 = time.perf_counter()
            if loss_fn is not None:
                loss += loss_fn([r.float() for r in raw], targets)[1].to(self.device)
            preds = non_max_suppression(pred.float(), self.conf_thres, self.iou_thres, multi_label=True,
                                        max_det=self.max_det)
            t3 = time.perf_counter()
            dt[0] += t1 - t0
            dt[1] += t2 - t1
            dt[2] += t3 - t2
            tboxes = targets[:, 2:] * torch.tensor((width, height, width, height), device=self.device)
            batch_preds, batch_labels = [], []
            for si, det in enumerate(preds):
                keep = targets[:, 0] == si
                shape0, ratio_pad = shapes[si][0], shapes[si][1]
                det = det.clone()
                scale_boxes(imgs[si].shape[1:], det[:, :4], shape0, ratio_pad)
                lbox = xywh2xyxy(tboxes[keep])
                scale_boxes(imgs[si].shape[1:], lbox, shape0, ratio_pad)
                batch_preds.append(det)
                batch_labels.append(torch.cat((targets[keep, 1:2], lbox), 1))
            metrics.update(batch_preds, batch_labels)
        out = metrics.compute()
        n = max(len(self.dataset), 1)
        out["speed_ms"] = {"preprocess": dt[0] * 1e3 / n, "inference": dt[1] * 1e3 / n, "nms": dt[2] * 1e3 / n}
        out["loss"] = (loss / max(len(self.loader), 1)).tolist()
        model.float()
        if training:
            model.train()
        return out

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def format_metrics(m: dict, names=None, per_class: bool = False) -> str:
    """The val.py table: all-classes row, then per-class rows when asked."""
    head = f"{'Class':>12}{'Images':>10}{'Instances':>11}{'P':>10}{'R':>10}{'mAP50':>10}{'mAP50-95':>10}"
    rows = [head, f"{'all':>12}{m['images']:>10}{m['instances']:>11}{m['precision']:>10.3g}{m['recall']:>10.3g}"
                  f"{m['mAP50']:>10.3g}{m['mAP50-95']:>10.3g}"]
    if per_class:
        for r in m["per_class"]:
            rows.append(f"{str(r.get('name', r['class'])):>12}{r['images']:>10}{r['instances']:>11}{r['precision']:>10.3g}"
                        f"{r['recall']:>10.3g}{r['mAP50']:>10.3g}{r['mAP50-95']:>10.3g}")
    s = m.get("speed_ms")
    if s:
        rows.append(f"Speed: {s['preprocess']:.1f}ms pre-process, {s['inference']:.1f}ms inference, "
                    f"{s['nms']:.1f}ms NMS per image")
    return "\n".join(rows)
