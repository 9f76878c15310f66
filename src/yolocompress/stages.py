"""Resumable multi-stage runs: each stage works in its own folder and writes a marker when complete.

Running the same pipeline again skips every stage whose marker exists and redoes (or resumes, when the stage
can) the first unfinished one. Used by `compress` and `demo`.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

from .core.rundir import atomic_write_text

LOGGER = logging.getLogger("yolocompress")
MARKER = "DONE.json"


class StageRunner:
    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> Path:
        return self.root / name / MARKER

    def outputs(self, name: str) -> dict | None:
        """What a finished stage produced, or None when it has not finished."""
        m = self.marker(name)
        return json.loads(m.read_text()) if m.is_file() else None

    def run(self, name: str, fn: Callable[[Path, bool], dict], resumable: bool = False) -> dict:
        """Run `fn(stage_dir, resuming)` unless the stage finished before; returns the stage's outputs.

        A stage that was interrupted is resumed when `resumable` (its function gets resuming=True and continues
        from what the folder holds), else its folder is cleared and the stage is redone from the start.
        """
        done = self.outputs(name)
        if done is not None:
            LOGGER.info(f"stage {name}: already complete, skipped")
            return done
        stage_dir = self.root / name
        resuming = stage_dir.exists() and resumable and any(stage_dir.iterdir())
        if stage_dir.exists() and not resuming:
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        LOGGER.info(f"stage {name}: {'resuming' if resuming else 'starting'}")
        out = fn(stage_dir, resuming) or {}
        atomic_write_text(self.marker(name), json.dumps(out, indent=1, default=str))
        return out
