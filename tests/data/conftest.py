"""Fixtures of the data-stage tests: tiny YOLO datasets written into tmp_path with cv2."""
from pathlib import Path

import pytest
from data_test_helpers import write_image, write_label


@pytest.fixture
def make_split():
    """make_split(root, split, n, h, w) -> image paths, each with one box of class i % 3."""
    def make(root: Path, split: str = "train", n: int = 4, h: int = 64, w: int = 64, ext: str = "jpg"):
        files = []
        for i in range(n):
            p = write_image(root / "images" / split / f"{i:03d}.{ext}", h, w, seed=i)
            write_label(p, f"{i % 3} 0.5 0.5 {0.2 + 0.05 * (i % 4):.2f} 0.3\n")
            files.append(p)
        return files
    return make
