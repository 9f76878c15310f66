"""Plots written into run folders (matplotlib, headless)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_results(csv_path, out_path) -> Path:
    """One panel per numeric column of results.csv against the epoch (only the epochs that have a value)."""
    rows = _read_csv(csv_path)
    keys = [k for k in rows[0] if k != "epoch" and not k.startswith("x/")] if rows else []
    n = max(len(keys), 1)
    cols = min(5, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    epochs = [int(float(r["epoch"])) + 1 for r in rows]
    for ax, k in zip(axes.flat, keys):
        # empty cells (epochs not validated under --val-every) are left out, not drawn as a flat step
        pts = [(e, float(r[k])) for e, r in zip(epochs, rows) if r.get(k) not in (None, "")]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", linewidth=1.5)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("epoch" if len(pts) == len(rows) else f"epoch ({len(pts)} of {len(rows)} validated)",
                      fontsize=8)
        if epochs:
            ax.set_xlim(min(epochs) - 0.2, max(epochs) + 0.2)  # every panel spans the whole run
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower cost x and higher accuracy y is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def axis_label(key: str) -> str:
    """A table column as an axis title with its unit (`Inference Time (bs 32)` -> `... (ms per batch of 32)`)."""
    m = re.match(r"Inference Time \(bs (\d+)\)", key)
    if m:
        return f"Inference Time (ms per batch of {m.group(1)})"
    return {"Model Size": "Model Size (MB)", "Parameters": "Parameters (M)"}.get(key, key)


def plot_tradeoff(rows: list[dict], x_key: str, y_key: str, out_path, title: str = "") -> Path:
    """Accuracy against cost, one labelled point per model, the Pareto front joined by a line.

    Labels of points in the right half are written to their left, so none runs off the figure.
    """
    pts = [(float(r[x_key]), float(r[y_key])) for r in rows]
    front = sorted(pareto_front(pts), key=lambda i: pts[i][0])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", zorder=3)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="tab:red", linestyle="--",
            marker="o", label="Pareto front", zorder=2)
    ax.margins(x=0.12, y=0.15)
    lo, hi = ax.get_xlim()
    for r, (x, y) in zip(rows, pts):
        right_half = x > (lo + hi) / 2
        ax.annotate(str(r.get("Model", "")), (x, y), textcoords="offset points", xytext=(-5 if right_half else 5, 5),
                    ha="right" if right_half else "left", fontsize=8)
    ax.set_xlabel(axis_label(x_key))
    ax.set_ylabel(axis_label(y_key))
    ax.set_title(title or f"{y_key} vs {axis_label(x_key)}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)


def plot_channels(per_layer: list[dict], path) -> Path:
    """Bars of output channels per convolution, before (light) and after (dark) pruning."""
    x = list(range(len(per_layer)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(x)), 3.2))
    ax.bar(x, [r["before"] for r in per_layer], color="#c6dbef", label="before")
    ax.bar(x, [r["after"] for r in per_layer], color="#2171b5", label="after")
    step = max(1, len(x) // 40)
    ax.set_xticks(x[::step], [r["name"].removeprefix("model.").removesuffix(".conv") for r in per_layer][::step],
                  rotation=90, fontsize=6)
    ax.set_ylabel("output channels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
