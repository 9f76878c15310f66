"""Run folders (`runs/<command>/expN/`) and the results.csv they hold."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path


def increment_path(path, exist_ok: bool = False) -> Path:
    """runs/train/exp -> runs/train/exp2, exp3, ... unless exist_ok."""
    path = Path(path)
    if exist_ok or not path.exists():
        return path
    stem = re.sub(r"\d+$", "", path.name)
    n = 2
    while (path.parent / f"{stem}{n}").exists():
        n += 1
    return path.parent / f"{stem}{n}"


def _default_file_mode() -> int:
    """0o666 less the process umask: the mode `open()` would give a new file (0644 under the usual umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def publish(tmp, path) -> None:
    """Move a finished temporary file into place with an ordinary file's mode.

    `tempfile.mkstemp` creates files readable by their owner only (0600); outputs a user shares (weights,
    ONNX, caches) must get the same mode as every other file the run writes.
    """
    os.chmod(tmp, _default_file_mode())
    os.replace(tmp, path)


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultsCSV:
    """One row per epoch. Rewritten whole and atomically, so a crash never leaves a half row, and a
    resumed run drops rows of epochs it is about to redo (no duplicates, no gaps)."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def truncate(self, epochs_done: int) -> None:
        self.rows = [r for r in self.rows if int(float(r["epoch"])) < epochs_done]

    def append(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in self.rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
