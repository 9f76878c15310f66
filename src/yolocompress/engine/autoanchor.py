"""AutoAnchor: before training, check the anchors fit the data's boxes and re-fit them when they do not (as YOLOv5).

The fit of an anchor set is its best possible recall (BPR): the share of training boxes whose width and height
are both within `anchor_t` times some anchor, i.e. the boxes the loss can assign at all. Below 0.98 the anchors
are re-fitted by k-means on the box sizes followed by a mutation search on the same fitness the official
`utils/autoanchor.py` uses, and kept only if the new BPR is higher. Everything is drawn from a seeded generator,
so every DDP rank computes the same anchors from the same labels without a broadcast.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

LOGGER = logging.getLogger("yolocompress")
BPR_GOOD = 0.98


def label_sizes(shapes_hw: np.ndarray, labels: list, imgsz: int, rng: np.random.Generator | None = None,
                jitter: float = 0.1) -> np.ndarray:
    """Box (w, h) in pixels of images resized so their long side is `imgsz`, optionally scaled by U(1-j, 1+j)."""
    shapes_wh = np.asarray(shapes_hw, dtype=np.float64).reshape(-1, 2)[:, ::-1]
    shapes_wh = imgsz * shapes_wh / shapes_wh.max(1, keepdims=True)
    if rng is not None:
        shapes_wh = shapes_wh * rng.uniform(1 - jitter, 1 + jitter, size=(len(shapes_wh), 1))
    wh = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(shapes_wh, labels)]
    return np.concatenate(wh, 0) if wh else np.zeros((0, 2))


def ratio_metric(anchors: np.ndarray, wh: np.ndarray, thr: float):
    """(BPR, anchors above threshold per box, best ratio per box) of `anchors` [k, 2] for boxes `wh` [n, 2]."""
    r = wh[:, None] / anchors[None]
    x = np.minimum(r, 1 / r).min(2)  # worse of the w and h ratios, per box and anchor
    best = x.max(1)
    return float((best > 1 / thr).mean()), float((x > 1 / thr).sum(1).mean()), best


def anchor_fitness(anchors: np.ndarray, wh: np.ndarray, thr: float) -> float:
    """Mean best ratio over the boxes that some anchor can match (the official evolution objective)."""
    best = ratio_metric(anchors, wh, thr)[2]
    return float((best * (best > 1 / thr)).mean())


def kmean_anchors(wh: np.ndarray, n: int, thr: float = 4.0, gen: int = 1000, seed: int = 0) -> np.ndarray:
    """`n` anchors (w, h) in pixels fitted to the boxes `wh`, sorted by area: k-means, then mutation search."""
    from scipy.cluster.vq import kmeans

    wh = wh[(wh >= 2.0).any(1)]  # boxes under 2 px carry no shape information
    if len(wh) < n:
        raise ValueError(f"{len(wh)} labelled boxes cannot fit {n} anchors")
    rng = np.random.default_rng(seed)
    s = wh.std(0) + 1e-9
    k, _ = kmeans(wh / s, n, iter=30, seed=seed)
    if len(k) != n:  # k-means can lose clusters on degenerate data; fall back to random boxes
        k = np.sort(rng.random((n, 2)) * wh.max(0) / s, axis=0)
    k = k * s
    f = anchor_fitness(k, wh, thr)
    for _ in range(gen):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < 0.9) * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1).clip(0.3, 3.0)
        kg = (k * v).clip(min=2.0)
        fg = anchor_fitness(kg, wh, thr)
        if fg > f:
            f, k = fg, kg
    return k[np.argsort(k.prod(1))]


def check_anchors(head, shapes_hw: np.ndarray, labels: list, imgsz: int, thr: float = 4.0, seed: int = 0,
                  log: bool = True) -> bool:
    """Re-fit `head.anchors` in place when their BPR on the data is under 0.98; True when they were replaced."""
    stride = head.stride.detach().cpu().double().view(-1, 1, 1)
    current = (head.anchors.detach().cpu().double() * stride).view(-1, 2).numpy()
    wh = label_sizes(shapes_hw, labels, imgsz, rng=np.random.default_rng(seed))
    if not len(wh):
        return False
    bpr, aat, _ = ratio_metric(current, wh, thr)
    msg = f"AutoAnchor: {aat:.2f} anchors/target, best possible recall {bpr:.4f}"
    if bpr > BPR_GOOD:
        if log:
            LOGGER.info(f"{msg}: current anchors fit the data")
        return False
    try:
        new = kmean_anchors(label_sizes(shapes_hw, labels, imgsz), len(current), thr=thr, seed=seed)
    except ValueError as e:
        LOGGER.warning(f"{msg}: could not re-fit anchors ({e}); keeping the current ones")
        return False
    new_bpr = ratio_metric(new, wh, thr)[0]
    if new_bpr <= bpr:
        if log:
            LOGGER.info(f"{msg}: re-fitted anchors are no better ({new_bpr:.4f}); keeping the current ones")
        return False
    head.anchors[:] = torch.tensor(new, dtype=head.anchors.dtype, device=head.anchors.device).view_as(head.anchors)
    head.set_strides(head.stride)  # pixels -> grid units, small anchors on the fine levels, grid cache cleared
    if log:
        LOGGER.info(f"{msg}: re-fitted anchors raise it to {new_bpr:.4f} and are saved with the model: "
                    + ", ".join(f"{w:.0f},{h:.0f}" for w, h in new))
    return True
