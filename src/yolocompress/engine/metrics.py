"""Detection metrics (P, R, mAP@0.5, mAP@0.5:0.95) defined exactly as YOLOv5 v7.0 `val.py` computes them.

Numbers are only comparable with published ones if every quirk is kept: the per-threshold matching in
`process_batch`, the 101-point interpolated AP (a perfect class scores 0.995, not 1.0, because the precision
sentinel 0 sits at recall 1), and P/R read at the maximum of the smoothed mean F1 curve.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchvision

from yolocompress.core.errors import DataError

IOU_THRESHOLDS = torch.linspace(0.5, 0.95, 10)  # float32, as val.py: comparisons use these exact values
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU `[N, M]` of xyxy boxes `[N, 4]` and `[M, 4]`."""
    return torchvision.ops.box_iou(box1, box2)


def _unique_first(matches: np.ndarray, column: int) -> np.ndarray:
    """Rows holding the first occurrence of each value of `column`, ordered by that value (np.unique)."""
    return matches[np.unique(matches[:, column], return_index=True)[1]]


def match_predictions(detections: torch.Tensor, labels: torch.Tensor,
                      iouv: torch.Tensor | None = None) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold: bool `[n, len(iouv)]`.

    `detections` `[n, 6]` (x1, y1, x2, y2, conf, cls), `labels` `[m, 5]` (cls, x1, y1, x2, y2), same pixels.
    Per threshold, pairs with IoU >= thr and equal class are ranked by IoU; each detection keeps its best
    label, then each label keeps the lowest-index (highest-confidence) detection among those, as val.py does.
    """
    iouv = IOU_THRESHOLDS.to(detections.device) if iouv is None else iouv
    correct = np.zeros((detections.shape[0], iouv.shape[0]), dtype=bool)
    if detections.shape[0] and labels.shape[0]:
        iou = box_iou(labels[:, 1:], detections[:, :4])
        same_class = labels[:, 0:1] == detections[:, 5]
        for t in range(iouv.shape[0]):
            label_idx, det_idx = torch.where((iou >= iouv[t]) & same_class)
            if not label_idx.shape[0]:
                continue
            matches = torch.stack((label_idx.to(iou.dtype), det_idx.to(iou.dtype), iou[label_idx, det_idx]), 1)
            matches = matches.cpu().numpy()
            if matches.shape[0] > 1:
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = _unique_first(_unique_first(matches, 1), 0)
            correct[matches[:, 1].astype(int), t] = True
    return torch.tensor(correct, dtype=torch.bool, device=iouv.device)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """101-point interpolated AP of one PR curve; also returns the envelope precision and its recall."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(_trapezoid(np.interp(x, mrec, mpre), x)), mpre, mrec


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box-filter `y` over a window of fraction `f` of its length, padding with the end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(nf) / nf, mode="valid")


@dataclass
class APResult:
    """Per-class results of `ap_per_class`; rows follow `classes` (the classes present in the targets)."""

    tp: np.ndarray  # [nc] true positives at the chosen confidence
    fp: np.ndarray  # [nc] false positives at the chosen confidence
    p: np.ndarray  # [nc] precision at the max of the smoothed mean F1
    r: np.ndarray  # [nc] recall there
    f1: np.ndarray  # [nc] F1 there
    ap: np.ndarray  # [nc, n_iou] AP per IoU threshold
    classes: np.ndarray  # [nc] class indices (int)
    px: np.ndarray  # [1000] confidence grid of the curves below
    p_curve: np.ndarray  # [nc, 1000] precision vs confidence
    r_curve: np.ndarray  # [nc, 1000] recall vs confidence
    f1_curve: np.ndarray  # [nc, 1000] F1 vs confidence
    pr_curve: np.ndarray  # [nc, 1000] envelope precision vs recall (recall grid px), at IoU 0.5

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> np.ndarray:
        return self.ap.mean(1)


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def ap_per_class(tp, conf, pred_cls, target_cls, eps: float = 1e-16) -> APResult:
    """AP per class and IoU threshold from stacked per-detection stats, as YOLOv5 `ap_per_class`.

    `tp` bool `[n, n_iou]`, `conf` `[n]`, `pred_cls` `[n]`, `target_cls` `[m]` (one entry per label).
    """
    tp, conf, pred_cls, target_cls = map(_as_numpy, (tp, conf, pred_cls, target_cls))
    tp = tp.reshape(len(conf), -1)
    order = np.argsort(-conf)
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    nc, n_grid = classes.shape[0], 1000
    px = np.linspace(0, 1, n_grid)
    ap = np.zeros((nc, tp.shape[1]))
    p, r, pr = np.zeros((nc, n_grid)), np.zeros((nc, n_grid)), np.zeros((nc, n_grid))
    for ci, c in enumerate(classes):
        sel = pred_cls == c
        if sel.sum() == 0 or nt[ci] == 0:
            continue
        tpc = tp[sel].cumsum(0)
        fpc = (1 - tp[sel]).cumsum(0)
        recall = tpc / (nt[ci] + eps)
        precision = tpc / (tpc + fpc)
        r[ci] = np.interp(-px, -conf[sel], recall[:, 0], left=0)
        p[ci] = np.interp(-px, -conf[sel], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                pr[ci] = np.interp(px, mrec, mpre)
    f1 = 2 * p * r / (p + r + eps)
    best = smooth(f1.mean(0), 0.1).argmax() if nc else 0
    pb, rb, f1b = p[:, best], r[:, best], f1[:, best]
    tp_b = (rb * nt).round()
    fp_b = (tp_b / (pb + eps) - tp_b).round()
    return APResult(tp_b, fp_b, pb, rb, f1b, ap, classes.astype(int), px, p, r, f1, pr)


def fitness(metrics) -> float:
    """YOLOv5 model fitness 0.1 * mAP50 + 0.9 * mAP50-95, from a metrics dict or (P, R, mAP50, mAP50-95)."""
    if isinstance(metrics, Mapping):
        map50, map50_95 = metrics["mAP50"], metrics["mAP50-95"]
    else:
        map50, map50_95 = metrics[2], metrics[3]
    return 0.1 * float(map50) + 0.9 * float(map50_95)


class DetectionMetrics:
    """Accumulates per-image matches over a validation pass, then reduces them to val.py's numbers.

    Images with labels but no predictions add only their labels (missed objects); images with predictions
    but no labels add only false positives; images with neither count in `images` and nothing else.
    """

    def __init__(self, nc: int, names: Sequence[str] | None = None, iouv: torch.Tensor | None = None):
        self.nc = nc
        self.names = list(names) if names is not None else None
        self.iouv = IOU_THRESHOLDS.clone() if iouv is None else iouv.cpu()
        self.reset()

    def reset(self) -> None:
        self.seen = 0
        self._stats: list[tuple[torch.Tensor, ...]] = []
        self.result: APResult | None = None

    def update(self, preds: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> None:
        """Add a batch: per image, detections `[n, 6]` and labels `[m, 5]` (cls, xyxy), both original pixels."""
        if len(preds) != len(labels):
            raise ValueError(f"DetectionMetrics.update: {len(preds)} prediction sets for {len(labels)} images")
        for pred, lab in zip(preds, labels):
            pred = pred.detach().float().cpu().reshape(-1, 6)
            lab = torch.as_tensor(lab).detach().float().cpu().reshape(-1, 5)
            self._check_classes(lab[:, 0])
            self.seen += 1
            if pred.shape[0] == 0:
                if lab.shape[0]:
                    empty = torch.zeros(0)
                    self._stats.append((torch.zeros(0, self.iouv.numel(), dtype=torch.bool), empty, empty,
                                        lab[:, 0]))
                continue
            correct = match_predictions(pred, lab, self.iouv)
            self._stats.append((correct, pred[:, 4], pred[:, 5], lab[:, 0]))

    def _check_classes(self, cls: torch.Tensor) -> None:
        if cls.numel() and (cls.min() < 0 or cls.max() >= self.nc):
            raise DataError(f"validation labels hold class {int(cls.max())} but the dataset declares nc={self.nc}; "
                            f"fix the label files or the dataset yaml's nc/names")

    def compute(self) -> dict:
        """Return precision, recall, mAP50, mAP50-95 (means over classes with labels), counts and rows."""
        n_iou = self.iouv.numel()
        if self._stats:
            correct, conf, pred_cls, target_cls = (torch.cat(s, 0).numpy() for s in zip(*self._stats))
        else:
            correct, conf, pred_cls, target_cls = np.zeros((0, n_iou), bool), np.zeros(0), np.zeros(0), np.zeros(0)
        nt = np.bincount(target_cls.astype(np.int64), minlength=self.nc)
        out = {"precision": 0.0, "recall": 0.0, "mAP50": 0.0, "mAP50-95": 0.0, "images": self.seen,
               "instances": int(nt.sum()), "per_class": [], "maps": [0.0] * self.nc}
        self.result = None
        if not correct.any():  # val.py reports zeros when nothing matched at IoU 0.5..0.95
            return out
        res = self.result = ap_per_class(correct, conf, pred_cls, target_cls)
        ap50, ap = res.ap50, res.ap50_95
        out.update(precision=float(res.p.mean()), recall=float(res.r.mean()),
                   mAP50=float(ap50.mean()), **{"mAP50-95": float(ap.mean())})
        maps = np.full(self.nc, ap.mean())
        maps[res.classes] = ap
        out["maps"] = maps.tolist()
        out["per_class"] = [self._row(i, int(c), nt) for i, c in enumerate(res.classes)]
        return out

    def _row(self, i: int, c: int, nt: np.ndarray) -> dict:
        res = self.result
        # v7.0 prints the total image count on every class row; kept so tables read the same
        row = {"class": c, "images": self.seen, "instances": int(nt[c]), "precision": float(res.p[i]),
               "recall": float(res.r[i]), "mAP50": float(res.ap50[i]), "mAP50-95": float(res.ap50_95[i])}
        if self.names is not None and c < len(self.names):
            row["name"] = self.names[c]
        return row


class ConfusionMatrix:
    """Counts of (predicted class, true class) pairs over a validation pass, with a background row and column.

    As YOLOv5's confusion matrix: detections under `conf` are ignored; a label and a detection pair up when
    their IoU exceeds `iou_thres`, greedily by IoU, each at most once. `matrix[p, t]`: detections of class p on
    labels of class t; row `nc` holds missed labels (predicted background), column `nc` detections on nothing.
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.nc, self.conf, self.iou_thres = nc, conf, iou_thres
        self.matrix = np.zeros((nc + 1, nc + 1), dtype=np.int64)

    def update(self, detections: torch.Tensor, labels: torch.Tensor) -> None:
        """One image: detections `[n, 6]` (xyxy, conf, cls) and labels `[m, 5]` (cls, xyxy), same pixels."""
        detections = detections.detach().float().cpu().reshape(-1, 6)
        labels = torch.as_tensor(labels).detach().float().cpu().reshape(-1, 5)
        detections = detections[detections[:, 4] > self.conf]
        true_cls = labels[:, 0].long().numpy()
        pred_cls = detections[:, 5].long().numpy()
        pairs = np.zeros((0, 3))
        if len(true_cls) and len(pred_cls):
            iou = box_iou(labels[:, 1:], detections[:, :4])
            li, di = torch.where(iou > self.iou_thres)
            if li.numel():
                pairs = torch.stack((li.float(), di.float(), iou[li, di]), 1).numpy()
                pairs = pairs[pairs[:, 2].argsort()[::-1]]
                pairs = _unique_first(pairs, 1)  # each detection keeps its best label
                pairs = _unique_first(pairs[pairs[:, 2].argsort()[::-1]], 0)  # each label its best detection
        label_to_det = {int(li): int(di) for li, di, _ in pairs}
        for li, t in enumerate(true_cls):
            p = pred_cls[label_to_det[li]] if li in label_to_det else self.nc
            self.matrix[p, t] += 1
        matched = set(label_to_det.values())
        for di, p in enumerate(pred_cls):
            if di not in matched:
                self.matrix[p, self.nc] += 1

    def normalized(self) -> np.ndarray:
        """Each true-class column divided by its total (the share of that class's labels predicted as each row)."""
        return self.matrix / np.maximum(self.matrix.sum(0, keepdims=True), 1)
