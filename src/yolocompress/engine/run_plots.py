"""The pictures a run folder gets (labels overview, train_batch and val_batch mosaics, validation curves):
the numbers are read off the engine's records here and drawn by report/val_plots.py, each plot guarded: a
plot that fails is one warning line, never the end of a training or validation run."""
from __future__ import annotations

import logging
from pathlib import Path

from ..report.draw import plot_batch
from .metrics import smooth

LOGGER = logging.getLogger("yolocompress")


def _guarded(what: str, fn, *args) -> list[Path]:
    try:
        out = fn(*args)
        return out if isinstance(out, list) else [out]
    except Exception as e:  # matplotlib/OpenCV trouble must not cost the user their run
        LOGGER.warning(f"{what} not written: {type(e).__name__}: {e}")
        return []


def plot_validation(save_dir, record) -> list[Path]:
    """PR / F1 / P / R curves, the confusion matrix and val_batch mosaics of a recorded validation (a ValRecord)."""
    return _guarded(f"validation plots in {save_dir}", _validation_plots, Path(save_dir), record)


def _validation_plots(save_dir: Path, record) -> list[Path]:
    from ..report import val_plots as vp  # matplotlib is imported only when a plot is written
    res, names = record.metrics.result, record.names  # res is None when no detection matched a label
    cls_names = [names[c] if c < len(names) else str(c) for c in res.classes] if res is not None else []
    px = res.px if res is not None else None
    out = [vp.plot_pr_curve(px, res.pr_curve if res else None, res.ap50 if res else None, cls_names,
                            save_dir / "PR_curve.png")]
    for key, ylabel, file in (("f1_curve", "F1", "F1_curve.png"), ("p_curve", "Precision", "P_curve.png"),
                              ("r_curve", "Recall", "R_curve.png")):
        curves = getattr(res, key) if res is not None else None
        mean = smooth(curves.mean(0), 0.05) if res is not None else None
        out.append(vp.plot_confidence_curve(px, curves, mean, cls_names, save_dir / file, ylabel))
    cm = record.confusion
    out.append(vp.plot_confusion_matrix(cm.normalized(), names, save_dir / "confusion_matrix.png", cm.conf,
                                        cm.iou_thres))
    for i, b in enumerate(record.batches):
        out.append(plot_batch(save_dir / f"val_batch{i}_labels.jpg", b.images.numpy(), b.targets.numpy(), b.paths,
                              names))
        out.append(plot_batch(save_dir / f"val_batch{i}_pred.jpg", b.images.numpy(), None, b.paths, names,
                              [p.numpy() for p in b.preds]))
    return out


def plot_labels(save_dir, labels, names) -> list[Path]:
    """labels.jpg: instances per class, box shapes, centres and sizes of the training labels."""
    from ..report import val_plots
    return _guarded(f"{save_dir}/labels.jpg", val_plots.plot_labels, labels, names, Path(save_dir) / "labels.jpg")


def plot_train_batch(save_dir, index: int, images, targets, paths, names) -> list[Path]:
    """train_batch<index>.jpg: an augmented training batch with its boxes (OpenCV only: milliseconds)."""
    return _guarded(f"train_batch{index}.jpg", plot_batch, Path(save_dir) / f"train_batch{index}.jpg",
                    images.numpy(), targets.numpy(), paths, names)
