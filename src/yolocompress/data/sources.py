"""What `detect --source` names: an image, a folder, a glob pattern or a video, resolved to media files."""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..core.errors import DataError
from .labels import IMG_FORMATS, read_image

LOGGER = logging.getLogger("yolocompress")
VIDEO_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv")
_KINDS = f"images (.{', .'.join(IMG_FORMATS[:6])}, ...) or videos (.{', .'.join(VIDEO_FORMATS[3:8])}, ...)"


def is_image(path) -> bool:
    return Path(path).suffix[1:].lower() in IMG_FORMATS


def is_video(path) -> bool:
    return Path(path).suffix[1:].lower() in VIDEO_FORMATS


def resolve_source(source) -> list[Path]:
    """The image and video files of `source`, sorted; anything else in a folder is left out with one line."""
    text = str(source)
    p = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = [Path(f) for f in sorted(glob.glob(str(p), recursive=True)) if Path(f).is_file()]
        if not files:
            raise DataError(f"--source {text}: the pattern matches no file; check the folder and the pattern "
                            f"(quote it so that the shell does not expand it)")
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
    elif p.is_file():
        if not (is_image(p) or is_video(p)):
            raise DataError(f"--source {text}: not an image or video file (extension '{p.suffix}'); give {_KINDS}")
        return [p]
    else:
        raise DataError(f"--source {text}: no such file or folder")
    media = [f for f in files if is_image(f) or is_video(f)]
    if not media:
        raise DataError(f"--source {text}: no images or videos there ({len(files)} other files); expected {_KINDS}")
    if len(media) < len(files):
        LOGGER.info(f"--source {text}: {len(files) - len(media)} files that are neither images nor videos left out")
    return media


def load_image(path) -> np.ndarray:
    """A source image as BGR uint8; a file that cannot be decoded is an error naming it."""
    img = read_image(path)
    if img is None:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such image file")
        raise DataError(f"{path}: cannot be read as an image (corrupt, truncated or not an image); "
                        f"replace it or leave it out of --source")
    return img


@dataclass
class Video:
    """Frames of a video file, read with OpenCV, and what a writer of the same video needs."""
    path: Path
    fps: float
    frames: int  # as the container says (0 when it does not)
    size: tuple[int, int]  # (w, h)

    @classmethod
    def open(cls, path) -> "Video":
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise DataError(f"{path}: cannot be opened as a video (corrupt, or a codec OpenCV lacks); "
                                f"convert it to .mp4 (H.264) or extract its frames as images")
            fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        finally:
            cap.release()
        return cls(Path(path), float(fps), max(n, 0), size)

    def __iter__(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()
