"""Plots written into run folders (matplotlib, headless)."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_results(csv_path, out_path) -> Path:
    """One panel per numeric column of results.csv against the epoch."""
    rows = _read_csv(csv_path)
    keys = [k for k in rows[0] if k != "epoch" and not k.startswith("x/")] if rows else []
    n = max(len(keys), 1)
    cols = min(5, n)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    epochs = [int(float(r["epoch"])) + 1 for r in rows]
    for ax, k in zip(axes.flat, keys):
        ys = [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows]
        ax.plot(epochs, ys, marker=".", linewidth=1.5)
        ax.set_title(k, fontsize=9)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return Path(out_path)
