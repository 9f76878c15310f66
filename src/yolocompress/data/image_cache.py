"""`--cache ram|disk`: decode every image once instead of once per epoch (as the official `--cache`).

ram: the resized images stay in memory (decoded up front, before the loader's workers fork, so they share them).
disk: each image's decoded pixels are saved as `<image>.npy` beside it (written atomically, re-written when the
image is newer) and read back with `np.load`, which is much cheaper than decoding a JPEG.
"""
from __future__ import annotations

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import DataError
from ..core.rundir import publish
from .labels import read_image

LOGGER = logging.getLogger("yolocompress.data")
MODES = ("ram", "disk")


def npy_path(image: str | Path) -> Path:
    return Path(image).with_suffix(".npy")


def _fresh(npy: Path, image: Path) -> bool:
    try:
        return npy.stat().st_mtime_ns >= image.stat().st_mtime_ns
    except OSError:
        return False


def _save_npy(npy: Path, img: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{npy.stem}.", suffix=".npy.tmp", dir=npy.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, img)
        publish(tmp, npy)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_writable(files: list[str], prefix: str) -> None:
    for folder in sorted({str(Path(f).parent) for f in files}):
        p = Path(folder)
        if not (p.stat().st_mode & 0o222) or not os.access(p, os.W_OK):
            raise DataError(f"{prefix or 'dataset'}: --cache disk writes <image>.npy beside each image, but {p} is "
                            f"read-only; use --cache ram, or copy the dataset to a writable folder")


class ImageCache:
    """Decoded images of one dataset; `get(i)` returns what `load(i)` would, without decoding again."""

    def __init__(self, files: list[str], mode: str, load: Callable[[int], tuple], prefix: str = ""):
        if mode not in MODES:
            raise DataError(f"--cache must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.files, self._load = mode, files, load
        self._ram: list | None = None
        if mode == "disk":
            _check_writable(files, prefix)
            written = self._fill_disk()
            LOGGER.info(f"{prefix or 'dataset'}: images cached on disk as .npy ({written} written, "
                        f"{len(files) - written} up to date)")
        else:
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # cv2 decodes without the GIL
                self._ram = list(pool.map(load, range(len(files))))
            mb = sum(item[0].nbytes for item in self._ram) / 1e6
            LOGGER.info(f"{prefix or 'dataset'}: {len(files)} images cached in RAM ({mb:.1f} MB)")

    def _fill_disk(self) -> int:
        written = 0
        for f in self.files:
            npy = npy_path(f)
            if _fresh(npy, Path(f)):
                continue
            img = read_image(f)
            if img is None:
                raise DataError(f"{f}: image can no longer be read (it passed the check when the dataset was "
                                f"loaded); restore the file")
            _save_npy(npy, img)
            written += 1
        return written

    def decoded(self, i: int) -> np.ndarray | None:
        """The full-resolution BGR pixels from the disk cache (None for the RAM cache, which keeps resized ones)."""
        if self.mode != "disk":
            return None
        try:
            return np.load(npy_path(self.files[i]), allow_pickle=False)
        except (OSError, ValueError):  # removed or damaged since: decode the image itself
            return read_image(self.files[i])

    def resized(self, i: int):
        """(img, (h0, w0), (h, w)) from the RAM cache, the image a copy (augmentations work in place); else None."""
        if self._ram is None:
            return None
        img, hw0, hw = self._ram[i]
        return img.copy(), hw0, hw
