"""Writers of tiny images and label files for the data-stage tests (a unique name, so imports cannot clash)."""
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, h: int = 64, w: int = 64, color=(40, 90, 160), seed: int = 0) -> Path:
    """A small BGR image: a flat colour with a little noise, so JPEG and PNG both stay decodable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), color, np.uint8)
    img = (img + np.random.default_rng(seed).integers(0, 8, img.shape)).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def write_label(img_path: Path, text: str) -> Path:
    lb = Path(str(img_path).replace("/images/", "/labels/")).with_suffix(".txt")
    lb.parent.mkdir(parents=True, exist_ok=True)
    lb.write_text(text)
    return lb
