"""Detection on images as the official detect.py does it: letterbox to the model's stride, one forward pass,
NMS, boxes mapped back to the original image. `Detector` is the library's way to run a model on pictures;
`model.predict(...)` on a model from `yolocompress.load` is a shortcut to it."""
from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..core.device import select_device
from ..core.errors import ConfigError
from ..data.augment import letterbox
from ..data.sources import load_image
from .nms import non_max_suppression, scale_boxes
from .options import check_imgsz, model_stride


@dataclass
class Detections:
    """The detections of one image, in pixels of that image as it was given (before any resizing)."""
    boxes: np.ndarray  # [n, 4] float32 x1, y1, x2, y2
    scores: np.ndarray  # [n] float32, objectness x class probability
    classes: np.ndarray  # [n] int64 class ids
    names: list[str]  # the model's class names (index = class id)
    shape: tuple[int, int]  # the image's (h, w)
    path: str | None = None  # the file it came from, when it came from one

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> list[str]:
        """The class name of each detection."""
        return [self.names[c] if c < len(self.names) else str(c) for c in self.classes.tolist()]

    def rows(self) -> np.ndarray:
        """`[n, 6]` (x1, y1, x2, y2, score, class), the layout of the NMS output."""
        return np.concatenate((self.boxes, self.scores[:, None], self.classes[:, None].astype(np.float32)), 1)


@dataclass
class _Timing:
    """Seconds spent per phase, summed over the images seen (for the 'ms per image' line)."""
    preprocess: float = 0.0
    inference: float = 0.0
    nms: float = 0.0
    images: int = 0
    shapes: set = field(default_factory=set)

    def per_image_ms(self) -> dict:
        n = max(self.images, 1)
        return {"preprocess": self.preprocess * 1e3 / n, "inference": self.inference * 1e3 / n,
                "nms": self.nms * 1e3 / n}


class Detector:
    """Runs a model (a loaded `Model` or a checkpoint path: ours, pruned, or official) on images.

    Images are file paths or numpy arrays `H x W x 3` uint8 in **BGR** channel order (what `cv2.imread` gives;
    convert RGB arrays, e.g. from PIL, with `img[..., ::-1]`). Defaults follow the official detect.py: conf 0.25,
    IoU 0.45, at most 1000 detections, the best class per box. A `device` moves the model there; without one
    the model runs where it is.
    """

    def __init__(self, model: nn.Module | str | Path, imgsz: int = 640, conf_thres: float = 0.25,
                 iou_thres: float = 0.45, max_det: int = 1000, device=None, classes=None, agnostic: bool = False):
        if isinstance(model, (str, Path)):
            from ..models.checkpoint import load_model
            model = load_model(model)[0]
        if device in (None, ""):  # stay where the model is
            self.device = next(model.parameters()).device
        else:
            self.device = select_device(device)
            model = model.to(self.device)
        self.model = model
        self.stride = model_stride(model)
        self.imgsz = check_imgsz(imgsz, self.stride)
        self.conf_thres, self.iou_thres, self.max_det = conf_thres, iou_thres, max_det
        self.classes, self.agnostic = classes, agnostic
        self.names = list(getattr(model, "names", [])) or [str(i) for i in range(model.nc)]
        self.timing = _Timing()

    def predict(self, source):
        """Detections of one image (a path or an array), or a list of them for a list of images."""
        if isinstance(source, (list, tuple)):
            return [self.predict(s) for s in source]
        if isinstance(source, (str, Path)):
            return self.detect_array(load_image(source), path=str(source))
        if isinstance(source, np.ndarray):
            return self.detect_array(source)
        raise ConfigError(f"predict takes an image path, an HxWx3 BGR uint8 numpy array or a list of them, "
                          f"got {type(source).__name__}; call the model itself on a [B, 3, H, W] tensor batch")

    __call__ = predict

    @torch.no_grad()
    def detect_array(self, img: np.ndarray, path: str | None = None) -> Detections:
        """Detections of one BGR uint8 image `[H, W, 3]`."""
        _check_array(img)
        t0 = time.perf_counter()
        x, ratio, pad = letterbox(img, self.imgsz, stride=self.stride, auto=True)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[::-1])).to(self.device)
        x = x.float()[None] / 255
        t1 = time.perf_counter()
        training = self.model.training
        self.model.eval()
        try:
            pred = self.model(x)[0]
        finally:
            self.model.train(training)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        det = non_max_suppression(pred.float(), self.conf_thres, self.iou_thres, classes=self.classes,
                                  agnostic=self.agnostic, multi_label=False, max_det=self.max_det)[0]
        scale_boxes(x.shape[2:], det[:, :4], img.shape[:2], (ratio, pad))
        det = det.cpu().numpy()
        t3 = time.perf_counter()
        tm = self.timing
        tm.preprocess, tm.inference, tm.nms = tm.preprocess + t1 - t0, tm.inference + t2 - t1, tm.nms + t3 - t2
        tm.images += 1
        tm.shapes.add(tuple(x.shape[2:]))
        return Detections(det[:, :4].astype(np.float32), det[:, 4].astype(np.float32), det[:, 5].astype(np.int64),
                          self.names, tuple(img.shape[:2]), path)


def _check_array(img) -> None:
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8):
        what = f"shape {tuple(img.shape)} dtype {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ConfigError(f"predict: expected an HxWx3 uint8 image in BGR order (as cv2.imread returns), got "
                          f"{what}; convert grey images with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)")


def _predict(model, source, **options):
    """Detections of an image path, an HxWx3 uint8 BGR array (OpenCV's layout) or a list of them: boxes (xyxy,
    the image's own pixels), scores and classes after NMS; options as `Detector` (imgsz=640, conf_thres=0.25,
    iou_thres=0.45, max_det=1000, classes, agnostic, device)."""
    return Detector(model, **options).predict(source)


def with_predict(model: nn.Module) -> nn.Module:
    """Give a loaded model its `predict(source, **options)` method (a bound method: copies keep their own).

    The model classes live below the engine (models/ may not import it), so the method is attached here, by
    `yolocompress.load`, rather than defined on `Model`.
    """
    model.predict = types.MethodType(_predict, model)
    return model
