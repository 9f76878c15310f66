"""Validation exactly as the official YOLOv5 val.py: rect batches padded by half a stride, NMS at
conf 0.001 / IoU 0.6 / 300 detections, boxes mapped back to the original images, then mAP."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from tqdm import tqdm

from ..data.dataset import DataConfig, create_dataloader
from ..core.device import select_device
from ..core.errors import DataError
from .metrics import ConfusionMatrix, DetectionMetrics
from .nms import non_max_suppression, scale_boxes, xywh2xyxy

LOGGER = logging.getLogger("yolocompress")
MOSAIC_BATCHES = 3  # val_batch0..2 mosaics, as val.py


@dataclass
class ImageResult:
    """One validation image: its detections `[n, 6]` and labels `[m, 5]` (cls, xyxy), original pixels, CPU."""
    path: str
    shape: tuple[int, int]  # original (h, w)
    pred: torch.Tensor
    labels: torch.Tensor


@dataclass
class BatchSample:
    """A batch as the network saw it (for mosaics): uint8 images, normalised targets, detections in input pixels."""
    images: torch.Tensor  # [B, 3, H, W] uint8 RGB
    targets: torch.Tensor  # [N, 6] (image index, cls, xc, yc, w, h) normalised
    paths: list[str]
    preds: list[torch.Tensor]  # per image [n, 6] xyxy in input pixels


@dataclass
class ValRecord:
    """What a validation pass saw, kept when asked (`record=True`): for JSON/txt results and the plots."""
    names: list[str]
    images: list[ImageResult] = field(default_factory=list)
    batches: list[BatchSample] = field(default_factory=list)
    metrics: DetectionMetrics | None = None
    confusion: ConfusionMatrix | None = None


def split_files(data: DataConfig, split: str) -> list:
    """The image files of `split` (val or test); a test split the yaml does not declare is an error."""
    files = getattr(data, split, None)
    if split == "test" and not files:
        raise DataError(f"{data.yaml_path}: --task test needs a 'test:' split in the dataset yaml; add e.g. "
                        f"'test: images/test' (a folder or a .txt list of images), or validate with --task val")
    return files


class Validator:
    """Builds the validation loader once and measures any model on it the same way."""

    def __init__(self, data: DataConfig, imgsz: int = 640, batch_size: int = 32, device="", workers: int = 8,
                 conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300, split: str = "val",
                 stride: int = 32, half: bool = True, progress: bool = True):
        self.data, self.imgsz = data, imgsz
        self.device = select_device(device)
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.half = half and self.device.type == "cuda"
        self.progress = progress and os.environ.get("YOLOCOMPRESS_NO_BAR") != "1"
        self.loader, self.dataset = create_dataloader(split_files(data, split), imgsz, batch_size, stride,
                                                      augment=False, rect=True, pad=0.5, workers=workers,
                                                      shuffle=False, nc=data.labels_nc,
                                                      single_cls=data.single_cls, prefix=split)
        self.record: ValRecord | None = None

    @torch.no_grad()
    def run(self, model: nn.Module, loss_fn=None, verbose: bool = False, record: bool = False) -> dict:
        """mAP50, mAP50-95, precision, recall, per-class rows, speed (ms/image) and the val losses.

        `record=True` also keeps every image's detections, the first batches and a confusion matrix in
        `self.record` (what `engine.val_outputs` writes as JSON, txt and plots).
        """
        training = model.training
        model = model.to(self.device).eval()
        if self.half:
            model.half()
        metrics = DetectionMetrics(self.data.nc, self.data.names)
        rec = ValRecord(list(self.data.names), metrics=metrics, confusion=ConfusionMatrix(self.data.nc)) \
            if record else None
        dt = [0.0, 0.0, 0.0]
        loss = torch.zeros(3, device=self.device)
        batches = tqdm(self.loader, desc=f"{'validating':>12}", total=len(self.loader), leave=False,
                       bar_format="{l_bar}{bar:10}{r_bar}", disable=not self.progress)
        for bi, (imgs, targets, paths, shapes) in enumerate(batches):
            t0 = time.perf_counter()
            imgs_u8 = imgs
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
            if rec is not None:
                self._record(rec, bi, imgs_u8, targets, paths, shapes, preds, batch_preds, batch_labels)
        out = metrics.compute()
        n = max(len(self.dataset), 1)
        out["speed_ms"] = {"preprocess": dt[0] * 1e3 / n, "inference": dt[1] * 1e3 / n, "nms": dt[2] * 1e3 / n}
        out["loss"] = (loss / max(len(self.loader), 1)).tolist()
        self.record = rec
        model.float()
        if training:
            model.train()
        return out

    @staticmethod
    def _record(rec: ValRecord, bi, imgs_u8, targets, paths, shapes, preds, batch_preds, batch_labels):
        for path, shape, det, lab in zip(paths, shapes, batch_preds, batch_labels):
            det, lab = det.float().cpu(), lab.float().cpu()
            rec.images.append(ImageResult(str(path), tuple(int(s) for s in shape[0]), det, lab))
            rec.confusion.update(det, lab)
        if bi < MOSAIC_BATCHES:
            rec.batches.append(BatchSample(imgs_u8.cpu(), targets.cpu(), [str(p) for p in paths],
                                           [p.float().cpu() for p in preds]))

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def format_metrics(m: dict, names=None, per_class: bool = False, speed: bool = True) -> str:
    """The val.py table: all-classes row, then per-class rows when asked."""
    head = f"{'Class':>12}{'Images':>10}{'Instances':>11}{'P':>10}{'R':>10}{'mAP50':>10}{'mAP50-95':>10}"
    rows = [head, f"{'all':>12}{m['images']:>10}{m['instances']:>11}{m['precision']:>10.3g}{m['recall']:>10.3g}"
                  f"{m['mAP50']:>10.3g}{m['mAP50-95']:>10.3g}"]
    if per_class:
        for r in m["per_class"]:
            rows.append(f"{str(r.get('name', r['class'])):>12}{r['images']:>10}{r['instances']:>11}{r['precision']:>10.3g}"
                        f"{r['recall']:>10.3g}{r['mAP50']:>10.3g}{r['mAP50-95']:>10.3g}")
    s = m.get("speed_ms")
    if s and speed:
        rows.append(f"Speed: {s['preprocess']:.1f}ms pre-process, {s['inference']:.1f}ms inference, "
                    f"{s['nms']:.1f}ms NMS per image")
    return "\n".join(rows)
