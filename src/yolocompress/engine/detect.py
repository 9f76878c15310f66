"""`yolocompress detect`: run a model on images, folders, glob patterns or videos and write what it sees into
`runs/detect/expN/`, as the official detect.py: annotated images (or videos), `labels/*.txt`, `crops/<class>/`."""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from ..core.device import select_device
from ..core.errors import DataError
from ..core.options import (device_option, exist_ok_option, imgsz_option, modules_option, name_option,
                            non_negative_int, option, positive_int, project_option)
from ..core.rundir import increment_path
from ..data.sources import Video, is_video, load_image, resolve_source
from ..report.draw import crop_box, draw_detections
from .predict import Detections, Detector
from .val_outputs import txt_rows

LOGGER = logging.getLogger("yolocompress")


@dataclass
class DetectOptions:
    """Detection"""

    weights: str = option("", "checkpoint to run: ours (pruned or not) or an official YOLOv5/YOLOv7 .pt",
                          required=True, metavar="W.pt")
    source: str = option("", "an image, a folder (its images and videos), a glob pattern (quote it: 'imgs/*.jpg') "
                             "or a video file", required=True, metavar="SOURCE")
    imgsz: int = imgsz_option()
    conf_thres: float = option(0.25, "keep detections whose score (objectness x class probability) is above this")
    iou_thres: float = option(0.45, "NMS IoU threshold: of two overlapping boxes of a class, the weaker goes")
    max_det: int = option(1000, "most detections kept per image", type=positive_int)
    device: str = device_option()
    classes: list[int] = option(help="keep only these class ids (default: all)", default_factory=list,
                                metavar="CLS")
    agnostic_nms: bool = option(False, "NMS across classes (a box suppresses overlapping boxes of any class)")
    save_txt: bool = option(False, "write labels/<name>.txt: a 'cls xc yc w h' row per detection, normalised to "
                                   "the image (an empty file when nothing is found)")
    save_conf: bool = option(False, "with --save-txt, add each detection's score as a 6th column")
    save_crop: bool = option(False, "write each detection's region to crops/<class>/<name>_<k>.jpg (k: its row "
                                    "in the txt file)")
    nosave: bool = option(False, "write no annotated images or videos")
    line_thickness: int = option(0, "box line width in pixels (0: scaled to the image, 0.003 of its mean side, "
                                    "at least 2)", type=non_negative_int)
    hide_labels: bool = option(False, "draw boxes without class names")
    hide_conf: bool = option(False, "draw class names without scores")
    project: str = project_option("runs/detect")
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    modules: list = modules_option()


class _Writer:
    """Everything detect writes for one run folder."""

    def __init__(self, opts: DetectOptions, save_dir: Path):
        self.opts, self.save_dir = opts, save_dir
        self.labels_dir = save_dir / "labels"
        if opts.save_txt:
            self.labels_dir.mkdir(parents=True, exist_ok=True)

    def annotate(self, img, d: Detections):
        o = self.opts
        return draw_detections(img, d.boxes, d.classes, d.scores, d.names, o.line_thickness or None,
                               o.hide_labels, o.hide_conf)

    def outputs(self, img, d: Detections, stem: str) -> None:
        """txt and crops of one image or frame."""
        if self.opts.save_txt:
            rows = txt_rows(d.rows(), d.shape, self.opts.save_conf)
            (self.labels_dir / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))
        if self.opts.save_crop:
            for k, (box, name) in enumerate(zip(d.boxes, d.labels)):
                folder = self.save_dir / "crops" / name
                folder.mkdir(parents=True, exist_ok=True)
                _imwrite(folder / f"{stem}_{k}.jpg", crop_box(img, box))


def _imwrite(path: Path, img) -> None:
    if not cv2.imwrite(str(path), img):
        raise DataError(f"{path}: cannot be written (disk full, or no permission); choose another --project")


def detect(opts: DetectOptions) -> dict:
    """Run `opts.weights` on `opts.source`; returns the run folder, counts and the time per image."""
    files = resolve_source(opts.source)  # a bad source fails before the model is loaded
    videos = {f: Video.open(f) for f in files if is_video(f)}
    from ..models.checkpoint import load_model
    from ..models.registry import load_user_modules
    load_user_modules(opts.modules)
    model = load_model(opts.weights)[0].eval()
    detector = Detector(model, opts.imgsz, opts.conf_thres, opts.iou_thres, opts.max_det, select_device(opts.device),
                        classes=opts.classes or None, agnostic=opts.agnostic_nms)
    save_dir = increment_path(Path(opts.project) / opts.name, opts.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(opts, save_dir)
    total = sum(v.frames or 1 for v in videos.values()) + len(files) - len(videos)
    counts: Counter = Counter()
    n_images = n_frames = 0
    bar = tqdm(total=total, desc=f"{'detecting':>12}", unit="img", bar_format="{l_bar}{bar:10}{r_bar}",
               disable=os.environ.get("YOLOCOMPRESS_NO_BAR") == "1")
    try:
        for f in files:
            if f in videos:
                n_frames += _detect_video(videos[f], detector, writer, counts, bar)
                continue
            img = load_image(f)
            d = detector.detect_array(img, str(f))
            counts.update(d.labels)
            writer.outputs(img, d, f.stem)
            if not opts.nosave:
                _imwrite(save_dir / f.name, writer.annotate(img, d))
            n_images += 1
            bar.update(1)
    finally:
        bar.close()
    speed = detector.timing.per_image_ms()
    per_class = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    LOGGER.info(f"{n_images} images, {n_frames} video frames at --imgsz {detector.imgsz}: {sum(counts.values())} "
                f"detections" + (f" (class: count, {per_class})" if per_class else ""))
    LOGGER.info(f"Speed: {speed['preprocess']:.1f}ms pre-process, {speed['inference']:.1f}ms inference, "
                f"{speed['nms']:.1f}ms NMS per image")
    LOGGER.info(f"results saved to {save_dir}" + (f" (labels: {writer.labels_dir})" if opts.save_txt else ""))
    return {"save_dir": str(save_dir), "images": n_images, "frames": n_frames,
            "detections": int(sum(counts.values())), "per_class": dict(counts), "speed_ms": speed}


def _detect_video(video: Video, detector: Detector, writer: _Writer, counts: Counter, bar) -> int:
    """Every frame of one video: an annotated copy `<name>.mp4` and per-frame `<name>_<frame>.txt`."""
    out = None
    n = 0
    try:
        for n, frame in enumerate(video, start=1):
            d = detector.detect_array(frame, str(video.path))
            counts.update(d.labels)
            writer.outputs(frame, d, f"{video.path.stem}_{n}")
            if not writer.opts.nosave:
                if out is None:
                    path = writer.save_dir / f"{video.path.stem}.mp4"
                    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), video.fps,
                                          (frame.shape[1], frame.shape[0]))
                    if not out.isOpened():
                        raise DataError(f"{path}: OpenCV cannot write an mp4v video here; use --nosave with "
                                        f"--save-txt, or extract the frames as images")
                out.write(writer.annotate(frame, d))
            bar.update(1)
    finally:
        if out is not None:
            out.release()
    if n == 0:
        raise DataError(f"{video.path}: no frame could be read (empty or damaged video)")
    return n
