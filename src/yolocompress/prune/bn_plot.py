"""`bn_gamma.png` of sparse training: the distribution of BatchNorm |gamma| per epoch, one ridge per epoch.

Fine log-spaced bins (20 per decade) show the shape of the distribution and how it drifts toward zero, and
each ridge carries the share of |gamma| under the sparsity threshold, the number that decides how much the
pruning can take.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.rundir import publish

THRESHOLD = 1e-2  # |gamma| (or group norm) under this counts as "sparse"
BINS_PER_DECADE = 20
HIST_EDGES = np.logspace(-4, 1, 5 * BINS_PER_DECADE + 1)  # fixed, so that epochs line up; 1e-2 is an edge
MAX_PLOT_ROWS = 40


def histogram(values: np.ndarray, edges: np.ndarray = HIST_EDGES) -> list[int]:
    """Counts of |gamma| over `edges`; values outside are counted in the first or last bin."""
    counts, _ = np.histogram(np.clip(np.abs(values), edges[0], edges[-1]), bins=edges)
    return counts.tolist()


def edges_for(counts) -> np.ndarray:
    """The bin edges a stored histogram was counted with (runs saved before the finer bins had 50)."""
    n = len(counts)
    return HIST_EDGES if n == len(HIST_EDGES) - 1 else np.logspace(-4, 1, n + 1)


def share_below(counts, threshold: float = THRESHOLD) -> float:
    """The share of values under `threshold`, from a histogram whose edges include it."""
    counts = np.asarray(counts, dtype=float)
    edges = edges_for(counts)
    k = int(np.argmin(np.abs(np.log10(edges) - np.log10(threshold))))
    return float(counts[:k].sum() / counts.sum()) if counts.sum() else 0.0


def plot_bn_ridge(hists: dict[int, list[int]], path, title: str = "") -> Path:
    """Histograms of |gamma| per epoch, one above the other (first epoch on top), log x axis, each with its
    share under THRESHOLD written at its right. At most MAX_PLOT_ROWS epochs, evenly spread, the last always."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = sorted(hists)
    if len(epochs) > MAX_PLOT_ROWS:
        keep = np.unique(np.linspace(0, len(epochs) - 1, MAX_PLOT_ROWS).round().astype(int))
        epochs = [epochs[i] for i in keep]
    fig = Figure(figsize=(8, 1.6 + 0.36 * len(epochs)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"]
    for row, e in enumerate(epochs):
        counts = np.asarray(hists[e], dtype=float)
        edges = edges_for(counts)
        base = len(epochs) - 1 - row
        y = base + 1.6 * counts / max(counts.max(), 1.0)
        color = cmap(0.15 + 0.7 * row / max(len(epochs) - 1, 1))
        # a step outline: each bin drawn as its own flat top, so the fine bins show the real shape
        ax.fill_between(edges, base, np.append(y, y[-1]), step="post", color=color, alpha=0.8, zorder=row + 1,
                        linewidth=0)
        ax.step(edges, np.append(y, y[-1]), where="post", color="white", linewidth=0.6, zorder=row + 1)
        ax.text(1.01, base + 0.2, f"{100 * share_below(counts):.1f}% < {THRESHOLD:g}", transform=ax.get_yaxis_transform(),
                fontsize=8, va="bottom", ha="left")
    ax.axvline(THRESHOLD, color="red", linestyle="--", linewidth=1, zorder=len(epochs) + 2,
               label=f"|gamma| = {THRESHOLD:g}")
    ax.set_xscale("log")
    ax.set_xlim(HIST_EDGES[0], HIST_EDGES[-1])
    ax.set_yticks([len(epochs) - 1 - r for r in range(len(epochs))], [f"epoch {e + 1}" for e in epochs])
    ax.set_xlabel(f"|gamma| of BatchNorm scales ({BINS_PER_DECADE} bins per decade; values outside the axis "
                  f"are counted at its ends)")
    ax.set_title(f"BN scale distribution per epoch{f' ({title})' if title else ''}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    publish(tmp, path)
    return path
