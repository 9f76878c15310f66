"""Multiplier for the distillation loss over training: fade the teacher's pull as the student matures."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.errors import ConfigError

KD_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class KDSchedule:
    """``schedule(it)`` is 1.0 at iteration 0 and ``final_ratio`` at ``total_iters`` (held after it);
    ``constant`` stays 1.0. From ``stop_iter`` on the multiplier is 0.0 (distillation switched off)."""

    kind: str
    total_iters: int
    final_ratio: float = 0.01
    stop_iter: int | None = None

    def __post_init__(self):
        if self.kind not in KD_SCHEDULES:
            raise ConfigError(f"unknown distillation schedule {self.kind!r}; choose one of {', '.join(KD_SCHEDULES)}")
        if self.total_iters < 1:
            raise ConfigError(f"distillation schedule total_iters must be >= 1, got {self.total_iters}")
        if self.final_ratio < 0:
            raise ConfigError(f"distillation schedule final_ratio must be >= 0, got {self.final_ratio}")
        if self.stop_iter is not None and self.stop_iter < 0:
            raise ConfigError(f"distillation schedule stop_iter must be >= 0 or None, got {self.stop_iter}")

    def __call__(self, it: int) -> float:
        if self.stop_iter is not None and it >= self.stop_iter:
            return 0.0
        t = min(max(it / self.total_iters, 0.0), 1.0)
        f = self.final_ratio
        if self.kind == "linear":
            return 1.0 - (1.0 - f) * t
        if self.kind == "cosine":
            return f + (1.0 - f) * (1.0 + math.cos(math.pi * t)) / 2
        return 1.0
