"""Boxes drawn on images (OpenCV, BGR): annotated detections, crops, and batch mosaics of labels or predictions
(train_batch / val_batch files), without matplotlib so that drawing them costs milliseconds."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

# 20 distinct colours (matplotlib's tab20, reordered so neighbouring class ids contrast), as BGR
_TAB20 = ["1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "17becf", "bcbd22", "7f7f7f",
          "aec7e8", "ffbb78", "98df8a", "ff9896", "c5b0d5", "c49c94", "f7b6d2", "9edae5", "dbdb8d", "c7c7c7"]
PALETTE = [tuple(int(h[i:i + 2], 16) for i in (4, 2, 0)) for h in _TAB20]


def class_color(c: int) -> tuple[int, int, int]:
    return PALETTE[int(c) % len(PALETTE)]


def default_line_width(shape) -> int:
    """About 0.3 % of the mean image side, at least 2 px (the official annotator's rule)."""
    return max(round((shape[0] + shape[1]) / 2 * 0.003), 2)


def label_text(name: str, score: float | None, hide_labels: bool = False, hide_conf: bool = False) -> str:
    if hide_labels:
        return ""
    return name if (hide_conf or score is None) else f"{name} {score:.2f}"


def default_font_scale(shape, line_width: int) -> float:
    """Labels a third of the line width high (as official), smaller on small images so that boxes stay visible."""
    return line_width / 3 * float(np.clip(min(shape[0], shape[1]) / 400, 0.45, 1.0))


def draw_box(img: np.ndarray, box, color, text: str = "", line_width: int = 2, font_scale: float | None = None) -> None:
    """One rectangle and, above it (or inside when at the top edge), its label on a filled tag; in place."""
    p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
    cv2.rectangle(img, p1, p2, color, thickness=line_width, lineType=cv2.LINE_AA)
    if not text:
        return
    font_scale = font_scale or default_font_scale(img.shape, line_width)
    thickness = max(line_width - 1, 1) if font_scale >= 0.5 else 1
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    above = p1[1] - th - 3 >= 0
    x = max(min(p1[0], img.shape[1] - tw), 0)  # a tag at the right edge moves left instead of being cut
    y2 = p1[1] - th - 3 if above else p1[1] + th + 3
    cv2.rectangle(img, (x, p1[1]), (x + tw, y2), color, -1, cv2.LINE_AA)
    text_color = (0, 0, 0) if sum(color) > 450 else (255, 255, 255)
    cv2.putText(img, text, (x, p1[1] - 2 if above else p1[1] + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                text_color, thickness, cv2.LINE_AA)


def draw_detections(img: np.ndarray, boxes, classes, scores, names, line_width: int | None = None,
                    hide_labels: bool = False, hide_conf: bool = False) -> np.ndarray:
    """Draw xyxy `boxes` with their class names (and scores unless hidden) on a copy of the BGR image."""
    out = np.ascontiguousarray(img).copy()
    lw = line_width or default_line_width(out.shape)
    for box, c, s in zip(np.asarray(boxes), np.asarray(classes), np.asarray(scores) if scores is not None
                         else [None] * len(boxes)):
        name = names[int(c)] if int(c) < len(names) else str(int(c))
        draw_box(out, box, class_color(int(c)), label_text(name, s, hide_labels, hide_conf), lw)
    return out


def crop_box(img: np.ndarray, box, gain: float = 1.02, pad: int = 10) -> np.ndarray:
    """The image region of an xyxy box, enlarged by `gain` and `pad` pixels (as official crops), clipped."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) * gain + pad, (y2 - y1) * gain + pad
    H, W = img.shape[:2]
    a, b = int(max(cx - w / 2, 0)), int(max(cy - h / 2, 0))
    c, d = int(min(cx + w / 2, W)), int(min(cy + h / 2, H))
    return img[b:max(d, b + 1), a:max(c, a + 1)].copy()


def batch_mosaic(images: np.ndarray, boxes_per_image, names, paths=None, max_size: int = 1920,
                 min_tile: int = 320, max_images: int = 16, conf_thres: float = 0.25) -> np.ndarray:
    """A grid of up to 16 images (`[B, 3, H, W]` uint8 RGB) with their boxes, file names on top; BGR out.

    `boxes_per_image[i]` is `[n, 5]` (cls, xyxy in input pixels) for labels or `[n, 6]` (xyxy, conf, cls) for
    predictions (drawn with their score, those under `conf_thres` left out). Small tiles are enlarged to
    `min_tile` pixels so that labels stay readable; the mosaic's long side stays within `max_size`.
    """
    images = np.asarray(images)[:max_images]
    bs, _, h, w = images.shape
    ns = math.ceil(bs ** 0.5)
    scale = max(min_tile / max(h, w), 1.0)
    scale = min(scale, max_size / (ns * max(h, w)))
    th, tw = int(h * scale), int(w * scale)
    mosaic = np.full((ns * th, ns * tw, 3), 255, dtype=np.uint8)
    lw = max(2, round(max(th, tw) / 160))
    for i in range(bs):
        tile = cv2.resize(np.ascontiguousarray(images[i].transpose(1, 2, 0)[..., ::-1]), (tw, th),
                          interpolation=cv2.INTER_LINEAR)
        boxes = np.asarray(boxes_per_image[i], dtype=np.float64).reshape(-1, boxes_per_image[i].shape[-1]
                                                                         if len(boxes_per_image[i]) else 5)
        is_pred = boxes.shape[1] == 6
        for row in boxes:
            if is_pred:
                if row[4] < conf_thres:
                    continue
                c, box, s = int(row[5]), row[:4], float(row[4])
            else:
                c, box, s = int(row[0]), row[1:5], None
            name = names[c] if c < len(names) else str(c)
            draw_box(tile, box * scale, class_color(c), label_text(name, s), lw)
        if paths is not None:
            _caption(tile, Path(paths[i]).name[:40], lw)
        r, c = divmod(i, ns)
        mosaic[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
        cv2.rectangle(mosaic, (c * tw, r * th), ((c + 1) * tw - 1, (r + 1) * th - 1), (255, 255, 255), 2)
    return mosaic


def _caption(img: np.ndarray, text: str, line_width: int) -> None:
    """White text on a dark strip at the top-left corner (a file name over its tile)."""
    scale, thickness = line_width / 4, max(line_width // 2, 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(img, (0, 0), (tw + 6, th + base + 6), (40, 40, 40), -1)
    cv2.putText(img, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def targets_to_boxes(targets, n_images: int, height: int, width: int) -> list[np.ndarray]:
    """Loader targets `[N, 6]` (image, cls, xc, yc, w, h normalised) -> per image `[n, 5]` (cls, xyxy pixels)."""
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    out = []
    for i in range(n_images):
        rows = t[t[:, 0] == i]
        xc, yc, w, h = rows[:, 2] * width, rows[:, 3] * height, rows[:, 4] * width, rows[:, 5] * height
        out.append(np.stack((rows[:, 1], xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2), 1))
    return out


def plot_batch(path, images, targets, paths, names, preds=None) -> Path:
    """A JPEG mosaic of one batch (`[B, 3, H, W]` uint8 RGB) with its loader targets, or with `preds` (per image
    `[n, 6]` xyxy, conf, cls in input pixels)."""
    images = np.asarray(images)
    boxes = preds if preds is not None else targets_to_boxes(targets, len(images), *images.shape[2:])
    mosaic = batch_mosaic(images, [np.asarray(b) for b in boxes], names, paths)
    if not cv2.imwrite(str(path), mosaic, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"cannot write {path}")
    return Path(path)
