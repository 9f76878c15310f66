"""Fixtures of the data-stage tests: tiny YOLO datasets written into tmp_path with cv2."""
from pathlib import Path

import cv2
import numpy as np
import pytest


def _write_image(path: Path, h: int = 64, w: int = 64, color=(40, 90, 160), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), color, np.uint8)
    noise = np.random.default_rng(seed).integers(0, 8, img.shape)  # keeps JPEG honest
    img = (img + noise).clip(0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _write_label(img_path: Path, text: str) -> Path:
    lb = Path(str(img_path).replace("/images/", "/labels/")).with_suffix(".txt")
    lb.parent.mkdir(parents=True, exist_ok=True)
    lb.write_text(text)
    return lb


@pytest.fixture
def write_image():
    """write_image(path, h=64, w=64, color=BGR, seed=0) -> path of a small noisy flat-colour image."""
    return _write_image


@pytest.fixture
def write_label():
    """write_label(image_path, text) -> the label file of that image, holding `text`."""
    return _write_label


@pytest.fixture
def make_split():
    """make_split(root, split, n, h, w, ext) -> image paths, each with one box of class i % 3."""
    def make(root: Path, split: str = "train", n: int = 4, h: int = 64, w: int = 64, ext: str = "jpg"):
        files = []
        for i in range(n):
            p = _write_image(root / "images" / split / f"{i:03d}.{ext}", h, w, seed=i)
            _write_label(p, f"{i % 3} 0.5 0.5 {0.2 + 0.05 * (i % 4):.2f} 0.3\n")
            files.append(p)
        return files
    return make
