"""A small detection dataset made on the spot: scikit-learn's handwritten digits on cluttered backgrounds.

It needs no download, has 10 classes ("0".."9") and objects from small to large, and val digits come from
handwriting samples train never saw, so a demo model's mAP means something. Same seed, same files.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import DataError
from ..core.options import option, positive_int

MARKER = "# yolocompress demo dataset"
VAL_FRACTION = 0.2
MAX_IOU = 0.1  # objects may touch, but hardly overlap
_TRIES = 20


def digit_pools(seed: int, n_samples: int = 1797) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint indices into `load_digits()` for train and val handwriting samples."""
    order = np.random.default_rng([seed, 1]).permutation(n_samples)
    n_val = int(round(n_samples * VAL_FRACTION))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient in a random direction, soft blotches, a few distracting shapes and sensor noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    blotches = cv2.resize(rng.normal(0, 1, (4, 4, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    img += blotches * rng.uniform(5, 25)
    for _ in range(int(rng.integers(2, 7))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p1, p2 = (tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, p1, p2, color, -1 if rng.random() < 0.3 else int(rng.integers(1, 3)))
        else:
            cv2.circle(img, p1, int(rng.integers(3, max(4, size // 5))), color, int(rng.integers(1, 3)),
                       cv2.LINE_AA)
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return img


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def _paste_digit(img, rng, glyph, size, obj_min, obj_max, boxes):
    """Draw one digit at a free spot; returns its tight ink box (x1, y1, x2, y2) or None."""
    side = int(rng.integers(int(size * obj_min), max(int(size * obj_min) + 1, int(size * obj_max) + 1)))
    h, w = side, max(4, int(side * rng.uniform(0.65, 0.95)))
    ink = cv2.resize(glyph / 16.0, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    ys, xs = np.nonzero(ink > 0.3)
    if len(xs) == 0:
        return None
    for _ in range(_TRIES):
        x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
        if all(_iou(box, b) <= MAX_IOU for b in boxes):
            break
    else:
        return None
    region = img[y0:y0 + h, x0:x0 + w]
    bg = region.mean((0, 1))
    fg = np.where(bg > 128, rng.uniform(0, 70, 3), rng.uniform(185, 255, 3))  # ink that stands out
    region[:] = region * (1 - ink[..., None]) + fg * ink[..., None]
    return box


def _scene(rng, size, glyphs, classes, obj_min, obj_max, max_objects):
    img = _background(rng, size)
    boxes, cls = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        i = int(rng.integers(len(glyphs)))
        box = _paste_digit(img, rng, glyphs[i], size, obj_min, obj_max, boxes)
        if box is not None:
            boxes.append(box)
            cls.append(int(classes[i]))
    return img.clip(0, 255).astype(np.uint8), cls, boxes


def write_split(root: Path, split: str, n: int, rng: np.random.Generator, glyphs: np.ndarray, classes: np.ndarray,
                size: int, obj_min: float, obj_max: float, max_objects: int) -> None:
    """Render `n` scenes from the given digit samples into images/<split> and labels/<split>."""
    img_dir, lb_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lb_dir.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img, cls, boxes = _scene(rng, size, glyphs, classes, obj_min, obj_max, max_objects)
        cv2.imwrite(str(img_dir / f"{k:06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows = [f"{c} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} "
                f"{(y2 - y1) / size:.6f}" for c, (x1, y1, x2, y2) in zip(cls, boxes)]
        (lb_dir / f"{k:06d}.txt").write_text("".join(r + "\n" for r in rows))


def _prepare(out: Path) -> None:
    """Make `out` ready: new or empty, or a previous demo dataset whose images and labels are replaced."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; choose a folder for the demo dataset")
    if not out.exists() or not any(out.iterdir()):
        return
    yaml_path = out / "data.yaml"
    if not (yaml_path.is_file() and yaml_path.read_text(errors="replace").startswith(MARKER)):
        raise DataError(f"{out} is not empty and holds no demo dataset; choose a new or empty folder")
    for sub in ("images", "labels"):
        shutil.rmtree(out / sub, ignore_errors=True)


def _check_args(n_train, n_val, imgsz, obj_min, obj_max, max_objects) -> None:
    problems = []
    if n_train < 1 or n_val < 1:
        problems.append("--train and --val must be at least 1")
    if imgsz < 32:
        problems.append("--imgsz must be at least 32")
    if not 0 < obj_min <= obj_max <= 1 or obj_min * imgsz < 4:
        problems.append("object sizes need 0 < obj_min <= obj_max <= 1 and obj_min * imgsz >= 4 px")
    if max_objects < 1:
        problems.append("max_objects must be at least 1")
    if problems:
        raise DataError("demo dataset: " + "; ".join(problems))


@dataclass
class DemoDataOptions:
    """The built-in digits dataset"""

    out: str = option("data/digits", "folder to write the dataset into", flag="OUT")
    train: int = option(600, "training images", type=positive_int)
    val: int = option(120, "validation images", type=positive_int)
    imgsz: int = option(128, "image side in pixels", type=positive_int)
    seed: int = option(0, "random seed (the same seed and library versions give the same files)")


def make_demo_dataset(out: str | Path, n_train: int = 600, n_val: int = 120, imgsz: int = 128, seed: int = 0,
                      obj_min: float = 0.15, obj_max: float = 0.45, max_objects: int = 4) -> Path:
    """Write a YOLO-format digits detection dataset under `out` and return the path of its `data.yaml`.

    Objects have sides from `obj_min` to `obj_max` of the image and there are 1..`max_objects` per image.
    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    _check_args(n_train, n_val, imgsz, obj_min, obj_max, max_objects)
    out = Path(out).expanduser().resolve()
    _prepare(out)
    digits = load_digits()
    train_idx, val_idx = digit_pools(seed, len(digits.images))
    rng_train, rng_val = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    shape = (imgsz, obj_min, obj_max, max_objects)
    write_split(out, "train", n_train, rng_train, digits.images[train_idx], digits.target[train_idx], *shape)
    write_split(out, "val", n_val, rng_val, digits.images[val_idx], digits.target[val_idx], *shape)
    names = ", ".join(f"'{i}'" for i in range(10))
    yaml_path = out / "data.yaml"
    yaml_path.write_text(f"{MARKER}: handwritten digits on cluttered backgrounds (seed {seed})\n"
                         f"path: {json.dumps(str(out))}\ntrain: images/train\nval: images/val\nnc: 10\nnames: [{names}]\n")
    return yaml_path
