"""Validation and training plots (matplotlib, headless): PR / F1 / P / R curves, the confusion matrix, the
and the labels overview (batch mosaics are drawn by draw.py, without matplotlib). Plain numbers in (engine/run_plots.py reads them off a
validation), one file out per function, its path returned."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .draw import class_color  # noqa: E402

MAX_LEGEND_CLASSES = 20  # above this, per-class curves are drawn in grey without a legend entry each
DPI = 150


def _curve_axes(xlabel: str, ylabel: str, title: str):
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path, dpi: int = DPI) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # tight: legends outside the axes are kept whole
    plt.close(fig)
    return Path(path)


def _per_class_lines(ax, x, curves, labels):
    many = len(labels) > MAX_LEGEND_CLASSES
    for y, label in zip(curves, labels):
        ax.plot(x, y, linewidth=1, alpha=0.8 if not many else 0.4, color="grey" if many else None,
                label=None if many else label)


def _legend(ax):
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)


def _no_match(ax):
    ax.text(0.5, 0.5, "no detection matched a label:\nnothing to draw", ha="center", va="center",
            transform=ax.transAxes, color="grey")


def plot_pr_curve(recall, curves, ap50, class_names, path) -> Path:
    """Precision against recall at IoU 0.5: `curves[k]` over the `recall` grid for class `class_names[k]` (its
    AP50 `ap50[k]` in the legend), their mean in bold. No classes: the axes say there is nothing to draw."""
    fig, ax = _curve_axes("Recall", "Precision", "Precision-Recall curve (IoU 0.5)")
    if not len(class_names):
        _no_match(ax)
    else:
        curves = np.asarray(curves)
        _per_class_lines(ax, recall, curves, [f"{n}  AP50 {ap:.3f}" for n, ap in zip(class_names, ap50)])
        ax.plot(recall, curves.mean(0), linewidth=3, color="tab:blue",
                label=f"all classes  mAP50 {float(np.mean(ap50)):.3f}")
        _legend(ax)
    return _save(fig, path)


def plot_confidence_curve(conf, curves, mean, class_names, path, ylabel: str) -> Path:
    """P, R or F1 against the confidence threshold: a line per class, the (smoothed) class mean `mean` in bold
    with its peak marked and given in the legend (the threshold to deploy at, for F1)."""
    fig, ax = _curve_axes("Confidence threshold", ylabel, f"{ylabel}-confidence curve")
    if not len(class_names):
        _no_match(ax)
    else:
        _per_class_lines(ax, conf, np.asarray(curves), list(class_names))
        i = int(np.argmax(mean))
        ax.plot(conf, mean, linewidth=3, color="tab:blue",
                label=f"all classes  (peak {mean[i]:.2f} at conf {conf[i]:.3f})")
        ax.plot([conf[i]], [mean[i]], "o", color="tab:blue")
        _legend(ax)
    return _save(fig, path)


def plot_confusion_matrix(matrix, names, path, conf: float, iou: float) -> Path:
    """`matrix` `[nc + 1, nc + 1]` (predicted x true, columns normalised): each column (a true class) split over
    the predicted classes; the last row and column are background: labels missed, detections on no label."""
    matrix = np.asarray(matrix, dtype=float)
    nc = matrix.shape[0] - 1
    ticks = [names[c] if c < len(names) else str(c) for c in range(nc)] + ["background"]
    side = min(max(6.0, 0.45 * (nc + 1) + 2.5), 24.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    shown = np.where(matrix > 0.005, matrix, np.nan)  # empty cells stay white: the matches stand out
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    if nc < 30:
        for (r, c), v in np.ndenumerate(matrix):
            if v > 0.005:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=8 if nc < 15 else 6,
                        color="white" if v > 0.5 else "black")
    ax.set_xticks(range(nc + 1), ticks, rotation=90 if nc > 10 else 0, fontsize=8)
    ax.set_yticks(range(nc + 1), ticks, fontsize=8)
    ax.set_xlabel("True class")
    ax.set_ylabel("Predicted class")
    ax.set_title(f"Confusion matrix (columns sum to 1; detections with conf > {conf:g}, IoU > {iou:g})")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class's labels")
    return _save(fig, path)


def plot_labels(labels, names, path) -> Path:
    """Overview of the training labels: instances per class, box centres and box sizes (normalised)."""
    lab = np.concatenate([np.asarray(x).reshape(-1, 5) for x in labels], 0) if len(labels) else np.zeros((0, 5))
    nc = len(names)
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    counts = np.bincount(lab[:, 0].astype(int), minlength=nc)[:nc] if len(lab) else np.zeros(nc, int)
    ax = axes[0, 0]
    ax.bar(range(nc), counts, color=[_rgb(c) for c in range(nc)])
    ax.set_xticks(range(nc), names, rotation=90 if nc > 10 else 0, fontsize=8 if nc <= 30 else 5)
    ax.set_ylabel("instances")
    ax.set_title(f"Instances per class ({len(lab)} boxes in {len(labels)} images)")
    ax = axes[0, 1]
    for row in lab[:1000]:
        ax.add_patch(plt.Rectangle((0.5 - row[3] / 2, 0.5 - row[4] / 2), row[3], row[4], fill=False,
                                   alpha=0.25, color=_rgb(int(row[0]))))
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_aspect("equal")
    ax.set_title(f"Box shapes, centred ({min(len(lab), 1000)} shown)")
    ax.set_xlabel("width (fraction of the image)")
    ax.set_ylabel("height (fraction of the image)")
    for ax, (a, b), title, xl, yl in ((axes[1, 0], (1, 2), "Box centres", "x centre", "y centre"),
                                      (axes[1, 1], (3, 4), "Box sizes", "width", "height")):
        h = ax.hist2d(lab[:, a], lab[:, b], bins=40, range=[[0, 1], [0, 1]], cmap="Blues", cmin=1) \
            if len(lab) else None
        if a == 1:
            ax.set_ylim(1, 0)  # image coordinates: y grows downwards
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.set_xlabel(f"{xl} (fraction of the image width)")
        ax.set_ylabel(f"{yl} (fraction of the image height)")
        if h is not None:
            fig.colorbar(h[3], ax=ax, fraction=0.046, pad=0.04).set_label("boxes")
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def _rgb(c: int) -> np.ndarray:
    """A class's drawing colour for matplotlib (RGB in [0, 1])."""
    return np.array(class_color(c)[::-1]) / 255
