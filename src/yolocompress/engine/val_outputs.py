"""What a validation run leaves in its run folder, as official val.py: COCO-format JSON results, YOLO txt
predictions, and the plots (PR / F1 / P / R curves, confusion matrix, val_batch mosaics)."""
from __future__ import annotations

import json
from pathlib import Path

from ..core.rundir import atomic_write_text
from .nms import xyxy2xywh
from .run_plots import plot_validation
from .validator import ValRecord


def image_id(path) -> int | str:
    """COCO image id of a file: its stem as a number when the stem is numeric (as val.py), else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def coco_results(record: ValRecord) -> list[dict]:
    """One COCO result per detection: bbox is [x_min, y_min, width, height] in original-image pixels."""
    out = []
    for im in record.images:
        boxes = xyxy2xywh(im.pred[:, :4])
        boxes[:, :2] -= boxes[:, 2:] / 2
        iid = image_id(im.path)
        for box, d in zip(boxes.tolist(), im.pred.tolist()):
            out.append({"image_id": iid, "category_id": int(d[5]), "bbox": [round(v, 3) for v in box],
                        "score": round(d[4], 5)})
    return out


def txt_rows(pred, shape, save_conf: bool) -> list[str]:
    """YOLO-format rows `cls xc yc w h [conf]` normalised by the image `shape` (h, w)."""
    h, w = shape
    xywh = xyxy2xywh(pred[:, :4])
    xywh[:, [0, 2]] /= w
    xywh[:, [1, 3]] /= h
    rows = []
    for b, d in zip(xywh.tolist(), pred.tolist()):
        vals = [int(d[5]), *b] + ([d[4]] if save_conf else [])
        rows.append(" ".join(f"{v:g}" if isinstance(v, int) else f"{v:.6g}" for v in vals))
    return rows


def write_txt(labels_dir: Path, stem: str, pred, shape, save_conf: bool) -> Path:
    """labels/<stem>.txt, empty when there is no detection (so every image has its file)."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows = txt_rows(pred, shape, save_conf)
    path = labels_dir / f"{stem}.txt"
    path.write_text("".join(r + "\n" for r in rows))
    return path


def write_val_outputs(save_dir: Path, record: ValRecord, opts, weights_stem: str = "model") -> dict:
    """Write what `opts` (a ValOptions: save_json, save_txt, save_conf, plots) asks for into `save_dir`;
    returns the paths written, by kind."""
    save_dir.mkdir(parents=True, exist_ok=True)
    written: dict = {}
    if opts.save_json:
        path = save_dir / f"{weights_stem}_predictions.json"
        atomic_write_text(path, json.dumps(coco_results(record)))
        written["json"] = str(path)
    if opts.save_txt:
        for im in record.images:
            write_txt(save_dir / "labels", Path(im.path).stem, im.pred, im.shape, opts.save_conf)
        written["labels"] = str(save_dir / "labels")
    if opts.plots:
        written["plots"] = [str(p) for p in plot_validation(save_dir, record)]
    return written
