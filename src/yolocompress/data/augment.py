"""Image and box augmentations with the official YOLOv5 behaviour, drawing randomness from one numpy Generator.

Every random choice goes through the `rng` argument (never the global `random`), so that a data loader
seeded once gives the same batches run after run. Boxes here are numpy arrays `[n, 5]`: class then either
pixel `x1 y1 x2 y2` ("xyxy") or normalised `xc yc w h` ("xywhn"), as each function says.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..core.hyp import Hyp

PAD_VALUE = 114


def xywhn2xyxy(x: np.ndarray, w: float, h: float, padw: float = 0.0, padh: float = 0.0) -> np.ndarray:
    """Normalised centre boxes `[n, 4]` to pixel corners in an image of `w x h` placed at offset (padw, padh)."""
    y = np.empty_like(x)
    y[:, 0] = w * (x[:, 0] - x[:, 2] / 2) + padw
    y[:, 1] = h * (x[:, 1] - x[:, 3] / 2) + padh
    y[:, 2] = w * (x[:, 0] + x[:, 2] / 2) + padw
    y[:, 3] = h * (x[:, 1] + x[:, 3] / 2) + padh
    return y


def xyxy2xywhn(x: np.ndarray, w: float, h: float, clip: bool = False, eps: float = 0.0) -> np.ndarray:
    """Pixel corners `[n, 4]` to centre boxes normalised by `w x h`; `clip` first clips to `(w - eps, h - eps)`."""
    x = x.copy()
    if clip:
        x[:, [0, 2]] = x[:, [0, 2]].clip(0, w - eps)
        x[:, [1, 3]] = x[:, [1, 3]].clip(0, h - eps)
    y = np.empty_like(x)
    y[:, 0] = (x[:, 0] + x[:, 2]) / 2 / w
    y[:, 1] = (x[:, 1] + x[:, 3]) / 2 / h
    y[:, 2] = (x[:, 2] - x[:, 0]) / w
    y[:, 3] = (x[:, 3] - x[:, 1]) / h
    return y


def letterbox(img: np.ndarray, new_shape: int | Sequence[int] = 640, color=(PAD_VALUE,) * 3, auto: bool = True,
              scaleup: bool = True, stride: int = 32):
    """Resize keeping the aspect ratio, then pad to `new_shape` (h, w), or only to a multiple of `stride` with `auto`.

    Returns (image, (rw, rh) ratios, (padw, padh)) where the pads are the left/top offsets (possibly x.5),
    exactly what is needed to map boxes back to the original image.
    """
    shape = img.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    new_shape = (int(new_shape[0]), int(new_shape[1]))
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:  # only shrink: enlarging would blur validation images
        r = min(r, 1.0)
    new_unpad = (int(round(shape[1] * r)), int(round(shape[0] * r)))  # (w, h)
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    dw, dh = dw / 2, dh / 2
    if shape[::-1] != new_unpad:
        img = cv2.resize(img, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, (r, r), (dw, dh)


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Keep boxes (given as `[4, n]`) that stay over `wh_thr` px, keep `area_thr` of their area, aspect < `ar_thr`."""
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def random_perspective(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, degrees: float = 10,
                       translate: float = 0.1, scale: float = 0.1, shear: float = 10, perspective: float = 0.0,
                       border: Sequence[int] = (0, 0)):
    """Warp by a random centre-perspective-rotate/scale-shear-translate matrix; `labels` are xyxy pixels.

    A negative `border` crops: the 2s mosaic canvas comes out at s with `border=(-s/2, -s/2)`.
    """
    height, width = img.shape[0] + border[0] * 2, img.shape[1] + border[1] * 2
    C = np.eye(3)
    C[0, 2], C[1, 2] = -img.shape[1] / 2, -img.shape[0] / 2
    P = np.eye(3)
    P[2, 0], P[2, 1] = rng.uniform(-perspective, perspective), rng.uniform(-perspective, perspective)
    R = np.eye(3)
    angle, s = rng.uniform(-degrees, degrees), rng.uniform(1 - scale, 1 + scale)
    R[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
    S = np.eye(3)
    S[0, 1] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    S[1, 0] = math.tan(rng.uniform(-shear, shear) * math.pi / 180)
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    T[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    M = T @ S @ R @ P @ C
    if border[0] != 0 or border[1] != 0 or (M != np.eye(3)).any():
        fill = (PAD_VALUE,) * 3
        if perspective:
            img = cv2.warpPerspective(img, M, dsize=(width, height), borderValue=fill)
        else:
            img = cv2.warpAffine(img, M[:2], dsize=(width, height), borderValue=fill)

    n = len(labels)
    if n:
        xy = np.ones((n * 4, 3))
        xy[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # the four corners
        xy = xy @ M.T
        xy = (xy[:, :2] / xy[:, 2:3] if perspective else xy[:, :2]).reshape(n, 8)
        x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
        new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1)
        new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
        new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(labels[:, 1:5].T * s, new.T)
        labels = labels[keep].copy()
        labels[:, 1:5] = new[keep]
    return img, labels


def _tile_span(centre: int, size: int, limit: int, before: bool):
    """Canvas span [a1, a2) and image span [b1, b2) of a tile that ends (`before`) or starts at `centre`."""
    if before:
        a1, a2 = max(centre - size, 0), centre
        return a1, a2, size - (a2 - a1), size
    a1, a2 = centre, min(centre + size, limit)
    return a1, a2, 0, a2 - a1


def mosaic4(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], s: int, rng: np.random.Generator,
            hyp: Hyp):
    """Four images (long side `s`) with xywhn labels -> one `s x s` image with xyxy pixel labels (YOLOv5 mosaic).

    The tiles meet at a random centre in [s/2, 3s/2] on a 2s canvas filled with 114; the canvas is then
    warped by `random_perspective` with `border=-s/2`, which also crops it back to s.
    """
    border = -s // 2
    yc, xc = (int(rng.uniform(-border, 2 * s + border)) for _ in range(2))
    canvas = np.full((2 * s, 2 * s, images[0].shape[2]), PAD_VALUE, dtype=np.uint8)
    placed = []
    for k, (img, lb) in enumerate(zip(images, labels)):
        h, w = img.shape[:2]
        x1a, x2a, x1b, x2b = _tile_span(xc, w, 2 * s, before=k in (0, 2))
        y1a, y2a, y1b, y2b = _tile_span(yc, h, 2 * s, before=k in (0, 1))
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        lb = np.array(lb, dtype=np.float32).reshape(-1, 5).copy()
        lb[:, 1:] = xywhn2xyxy(lb[:, 1:], w, h, x1a - x1b, y1a - y1b)
        placed.append(lb)
    out = np.concatenate(placed, 0)
    out[:, 1:] = out[:, 1:].clip(0, 2 * s)
    return random_perspective(canvas, out, rng, degrees=hyp.degrees, translate=hyp.translate, scale=hyp.scale,
                              shear=hyp.shear, perspective=hyp.perspective, border=(border, border))


def mixup(img: np.ndarray, labels: np.ndarray, img2: np.ndarray, labels2: np.ndarray, rng: np.random.Generator):
    """Blend two images with a Beta(32, 32) ratio and keep the labels of both."""
    r = rng.beta(32.0, 32.0)
    img = (img * r + img2 * (1 - r)).astype(np.uint8)
    return img, np.concatenate((labels, labels2), 0)


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float = 0.5, sgain: float = 0.5,
                vgain: float = 0.5) -> None:
    """Scale hue, saturation and value of a BGR uint8 image in place by random gains (via lookup tables)."""
    if not (hgain or sgain or vgain):
        return
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(img.dtype)
    lut_sat = np.clip(x * r[1], 0, 255).astype(img.dtype)
    lut_val = np.clip(x * r[2], 0, 255).astype(img.dtype)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


def random_flip(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, fliplr: float = 0.5,
                flipud: float = 0.0):
    """Flip up-down with probability `flipud`, then left-right with `fliplr`; `labels` are xywhn (edited in place)."""
    if rng.random() < flipud:
        img = np.flipud(img)
        labels[:, 2] = 1 - labels[:, 2]
    if rng.random() < fliplr:
        img = np.fliplr(img)
        labels[:, 1] = 1 - labels[:, 1]
    return img, labels
