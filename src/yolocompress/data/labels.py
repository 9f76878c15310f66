"""YOLO label files: where they are, a row-by-row check of each image and its labels, and a cache of the result.

A bad item never stops a run: it is repaired where that is safe (coordinates a hair outside the image,
duplicate rows) or dropped with one warning line `path: what`, and counted in a one-line summary.
The cache (`<labels dir>.cache`, JSON) keeps the parsed labels with the size and mtime of every file, so a
second run only re-reads what changed.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..core.errors import DataError
from ..core.rundir import publish

LOGGER = logging.getLogger("yolocompress.data")
IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")
COORD_TOL = 0.01  # box corners this far outside [0, 1] are clipped; further out the row is dropped
MIN_SIDE = 10  # images with a side under this many pixels are skipped
CACHE_VERSION = 1
_SHOWN_REASONS = 3


def img2label_path(img: str | Path) -> Path:
    """The label file of an image: the last `/images/` becomes `/labels/`, the extension `.txt`."""
    s = str(img)
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    i = s.rfind(a)
    if i >= 0:
        s = s[:i] + b + s[i + len(a):]
    return Path(s).with_suffix(".txt")


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image file as BGR uint8 (works with non-ASCII paths); None when it cannot be decoded."""
    try:
        data = np.fromfile(str(path), np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, cv2.error):
        return None


@dataclass
class ItemCheck:
    """The outcome for one image; unpacks as `(labels, shape, warnings, status)`.

    `labels` is float32 `[n, 5]` (class, xc, yc, w, h normalised), `shape` the original (h, w),
    `status` one of "ok", "background" (no boxes) or "skipped" (image unusable).
    """
    labels: np.ndarray
    shape: tuple[int, int]
    warnings: list[str]
    status: str
    repaired: int = 0
    dropped: int = 0

    def __iter__(self):
        return iter((self.labels, self.shape, self.warnings, self.status))


def _empty() -> np.ndarray:
    return np.zeros((0, 5), np.float32)


def _image_problem(path: Path) -> tuple[tuple[int, int], str | None]:
    ext = path.suffix[1:].lower()
    if ext not in IMG_FORMATS:
        return (0, 0), f"not an image file (extension '{path.suffix}'), skipped"
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as e:
        return (0, 0), f"unreadable image ({e.strerror or e}), skipped"
    if data.size == 0:
        return (0, 0), "empty image file, skipped"
    if ext in ("jpg", "jpeg") and not bytes(data[-1024:]).rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return (0, 0), "truncated JPEG (no end marker), skipped; re-save the image to use it"
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None:
        return (0, 0), "corrupt image (cannot be decoded), skipped"
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        return (h, w), f"image is {w}x{h} px, under {MIN_SIDE} px, skipped"
    return (h, w), None


def _parse_row(fields: list[str], nc: int):
    """One label row -> (row [5] or None, reason it was dropped or None, whether it was clipped)."""
    n = len(fields)
    if n != 5 and not (n >= 7 and n % 2 == 1):  # 5 fields, or a class and a polygon of >= 3 points
        return None, f"{n} fields, expected 5 (class xc yc w h)", False
    try:
        v = np.array([float(f) for f in fields])
    except ValueError:
        return None, "non-numeric field", False
    if not np.isfinite(v).all():
        return None, "non-numeric field", False
    if v[0] != int(v[0]) or not 0 <= v[0] < nc:
        return None, f"class {fields[0]} not in 0..{nc - 1}", False
    if n == 5:
        xc, yc, w, h = v[1:]
        if w <= 0 or h <= 0:
            return None, "zero or negative box size", False
        box = np.array([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
    else:
        xy = v[1:].reshape(-1, 2)
        box = np.concatenate((xy.min(0), xy.max(0)))
    if box.min() < -COORD_TOL or box.max() > 1 + COORD_TOL:
        return None, "box outside the image (coordinates must be normalised to 0..1)", False
    clipped = box.clip(0, 1)
    changed = bool((np.abs(clipped - box) > 1e-5).any())  # smaller excess is rounding in the file, not an error
    x1, y1, x2, y2 = clipped
    if x2 <= x1 or y2 <= y1:
        return None, "zero or negative box size", False
    if n == 5 and not changed:
        return v, None, False
    return np.array([v[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]), None, changed


def parse_labels(text: str, nc: int) -> tuple[np.ndarray, list[str], int, int]:
    """Label file text -> (labels [n, 5] float32, notes on what was fixed, rows repaired, rows dropped)."""
    rows, reasons, repaired = [], [], 0
    for ln, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        row, why, fixed = _parse_row(fields, nc)
        if why:
            reasons.append(f"line {ln}: {why}")
            continue
        repaired += fixed
        rows.append(row)
    labels = np.array(rows, np.float32).reshape(-1, 5)
    notes = []
    if reasons:
        more = len(reasons) - _SHOWN_REASONS
        shown = "; ".join(reasons[:_SHOWN_REASONS]) + (f"; and {more} more" if more > 0 else "")
        notes.append(f"{len(reasons)} row(s) dropped ({shown})")
    if repaired:
        notes.append(f"{repaired} row(s) clipped to the image")
    _, first = np.unique(labels, axis=0, return_index=True)
    duplicates = len(labels) - len(first)
    if duplicates:
        labels = labels[np.sort(first)]
        notes.append(f"{duplicates} duplicate row(s) removed")
    return labels, notes, repaired, len(reasons) + duplicates


def check_item(img_path: str | Path, nc: int) -> ItemCheck:
    """Check one image and its label file (missing label file = background image)."""
    img_path = Path(img_path)
    shape, problem = _image_problem(img_path)
    if problem:
        return ItemCheck(_empty(), shape, [f"{img_path}: {problem}"], "skipped")
    lb_path = img2label_path(img_path)
    if not lb_path.is_file():
        return ItemCheck(_empty(), shape, [], "background")
    try:
        text = lb_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return ItemCheck(_empty(), shape, [f"{lb_path}: unreadable label file ({e}), image skipped"], "skipped")
    labels, notes, repaired, dropped = parse_labels(text, nc)
    warnings = [f"{lb_path}: {'; '.join(notes)}"] if notes else []
    return ItemCheck(labels, shape, warnings, "ok" if len(labels) else "background", repaired, dropped)


@dataclass
class LabelSummary:
    images: int = 0  # usable images, backgrounds included
    backgrounds: int = 0
    skipped: int = 0
    repaired: int = 0  # rows clipped into the image
    dropped: int = 0  # invalid or duplicate rows removed

    def line(self, prefix: str) -> str:
        parts = [f"{self.images} images"]
        for n, what in ((self.backgrounds, "backgrounds"), (self.skipped, "corrupt skipped"),
                        (self.repaired, "rows repaired"), (self.dropped, "rows dropped")):
            if n:
                parts.append(f"{n} {what}")
        return f"{prefix}: " + ", ".join(parts) if prefix else ", ".join(parts)


@dataclass
class LabelIndex:
    """The usable images of a split with their labels and original (h, w) shapes."""
    files: list[Path]
    labels: list[np.ndarray]
    shapes: list[tuple[int, int]]
    summary: LabelSummary
    warnings: list[str] = field(default_factory=list)
    from_cache: int = 0  # how many items were taken from the cache
    unlabelled: list[Path] = field(default_factory=list)  # usable images that have no label file at all


def refuse_unlabelled(index: LabelIndex, prefix: str = "") -> None:
    """Refuse a split where no image has a label file: it is a wrong path far more often than a wish to train
    on background only (which `--allow-background` says explicitly)."""
    if not index.files or len(index.unlabelled) < len(index.files):
        return
    first = ", ".join(str(p) for p in index.unlabelled[:3]) + (", ..." if len(index.unlabelled) > 3 else "")
    where = img2label_path(index.unlabelled[0]).parent
    raise DataError(f"{prefix + ': ' if prefix else ''}no labels found for {len(index.unlabelled)} images: {first}; "
                    f"put labels in {where} (YOLO format) or pass --allow-background to train on background only")


def cache_path(files: Sequence[str | Path]) -> Path:
    """`<labels dir>.cache` next to the label folder of the first image (as YOLOv5 names it)."""
    return img2label_path(files[0]).parent.with_suffix(".cache")


def _stamp(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _stamps(img: Path):
    return [_stamp(img), _stamp(img2label_path(img))]


def _to_record(stamps, item: ItemCheck) -> dict:
    return {"stamps": stamps, "labels": item.labels.tolist(), "shape": list(item.shape), "warnings": item.warnings,
            "status": item.status, "repaired": item.repaired, "dropped": item.dropped}


_RECORD_KEYS = {"stamps", "labels", "shape", "warnings", "status", "repaired", "dropped"}


def _from_record(rec: dict) -> ItemCheck:
    labels = np.array(rec["labels"], np.float32).reshape(-1, 5)
    return ItemCheck(labels, tuple(rec["shape"]), list(rec["warnings"]), rec["status"], rec["repaired"],
                     rec["dropped"])


def _read_cache(path: Path, nc: int) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("nc") != nc:
        return {}
    items = data.get("items")
    return items if isinstance(items, dict) else {}


def _write_cache(path: Path, nc: int, items: dict) -> bool:
    """Write atomically (temp file + rename); a read-only folder just means no cache."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CACHE_VERSION, "nc": nc, "items": items}, f)
        publish(tmp, path)  # mkstemp makes it private; a cache is as readable as the labels
        return True
    except OSError as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        LOGGER.warning(f"{path}: label cache not written ({e.strerror or e}); labels will be checked again next run")
        return False


def _writable(folder: Path) -> bool:
    """A folder we may write into; a folder with no write bit counts as read-only even for root."""
    try:
        return folder.is_dir() and bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


def _check_all(files: Iterable[Path], nc: int) -> list[ItemCheck]:
    files = list(files)
    if len(files) < 32:
        return [check_item(f, nc) for f in files]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # cv2 decodes without the GIL
        return list(pool.map(lambda f: check_item(f, nc), files))


def load_labels(files: Sequence[str | Path], nc: int, prefix: str = "", cache: bool = True) -> LabelIndex:
    """Check every image of a split (re-using the cache for unchanged files), log warnings and the summary."""
    files = [Path(f) for f in files]
    cpath = cache_path(files) if files else None
    old = _read_cache(cpath, nc) if cache and cpath else {}
    stamps = [_stamps(f) for f in files]
    records, stale = {}, []
    for f, st in zip(files, stamps):
        rec = old.get(str(f))
        if isinstance(rec, dict) and _RECORD_KEYS <= rec.keys() and rec["stamps"] == st:
            records[str(f)] = rec
        else:
            stale.append((f, st))
    from_cache = len(records)
    for (f, st), item in zip(stale, _check_all((f for f, _ in stale), nc)):
        records[str(f)] = _to_record(st, item)
    if cache and cpath and (stale or len(old) != len(records)):
        if _writable(cpath.parent):
            _write_cache(cpath, nc, records)
        else:
            LOGGER.info(f"{cpath.parent}: read-only, label cache not written")

    index = LabelIndex([], [], [], LabelSummary(), from_cache=from_cache)
    s = index.summary
    for f in files:
        item = _from_record(records[str(f)])
        index.warnings += item.warnings
        s.repaired += item.repaired
        s.dropped += item.dropped
        if item.status == "skipped":
            s.skipped += 1
            continue
        s.images += 1
        s.backgrounds += item.status == "background"
        index.files.append(f)
        index.labels.append(item.labels)
        index.shapes.append(item.shape)
        if records[str(f)]["stamps"][1] is None:  # no label file (an empty one is a deliberate background)
            index.unlabelled.append(f)
    for w in index.warnings:
        LOGGER.warning(w)
    LOGGER.info(s.line(prefix) + (f" (cache: {from_cache} reused)" if from_cache else ""))
    return index
