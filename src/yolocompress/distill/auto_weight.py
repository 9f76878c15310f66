"""`--kd-auto-weight SHARE`: choose a distillation term's weight from the first batches of training.

The losses have scales that differ by orders of magnitude (MGD sums squared errors over positions, CWD averages
a KL divergence, a logit loss depends on the teacher's confidence), so a fixed weight says little about how much
the teacher pulls. Auto-weighting measures, on the first `batches` batches (with the teacher), the mean detection
loss D and the mean unweighted distillation loss K of each term, and sets weight = SHARE x D / K, so the term is
SHARE of the detection loss there. During those batches the running estimate is used (the term is never absent).
Optionally the weight is measured again at the start of every epoch, which keeps the share constant while both
losses fall.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.distributed as td

LOGGER = logging.getLogger("yolocompress")


class AutoWeight:
    """The running measurement of one run's distillation weights (one per term name)."""

    def __init__(self, share: float, batches: int, per_epoch: bool, terms: list[str]):
        self.share, self.batches, self.per_epoch, self.terms = float(share), int(batches), bool(per_epoch), list(terms)
        self.weights: dict[str, float] = {}
        self.epoch: int | None = None  # the epoch of the current (or last) measurement
        self._reset()

    def _reset(self) -> None:
        self.seen, self.det_sum = 0, 0.0
        self.raw_sum = {t: 0.0 for t in self.terms}

    def measuring(self, epoch: int) -> bool:
        """True while batches of this epoch still go into the measurement (starts a new one when due)."""
        if self.epoch is None or (self.per_epoch and epoch != self.epoch):
            self.epoch = epoch
            self._reset()
        return self.seen < self.batches

    def update(self, det: float, raw: dict[str, float]) -> None:
        """Add one batch (per-image detection loss, unweighted terms) and refresh the weights."""
        det, raw = _mean_over_ranks(det, raw)
        self.seen += 1
        self.det_sum += det
        for t in self.terms:
            self.raw_sum[t] += raw[t]
            if self.raw_sum[t] > 0 and math.isfinite(self.raw_sum[t]):
                self.weights[t] = self.share * self.det_sum / self.raw_sum[t]
        if self.seen == self.batches:
            self._log()

    def end_epoch(self) -> None:
        """An epoch shorter than `batches` ends the measurement's logging early (it goes on next epoch)."""
        if 0 < self.seen < self.batches:
            self._log()

    def _log(self) -> None:
        chosen = ", ".join(f"{t} weight {self.weights.get(t, float('nan')):.4g}" for t in self.terms)
        LOGGER.info(f"--kd-auto-weight {self.share:g} (epoch {self.epoch + 1}, {self.seen} batches): {chosen}")

    def weight(self, term: str, fallback: float) -> float:
        return self.weights.get(term, fallback)

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights), "epoch": self.epoch, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        """A resumed run keeps the measured weights (a per-epoch run measures again at its next epoch)."""
        self.weights = {k: float(v) for k, v in (state.get("weights") or {}).items()}
        self.epoch = state.get("epoch")
        self._reset()
        self.seen = self.batches if self.weights else 0


def _mean_over_ranks(det: float, raw: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Under DDP every rank sees other images: average, so that all ranks choose the same weights."""
    if not (td.is_available() and td.is_initialized()) or td.get_world_size() < 2:
        return det, raw
    names = sorted(raw)
    v = torch.tensor([det] + [raw[n] for n in names], dtype=torch.float64,
                     device="cuda" if td.get_backend() == "nccl" else "cpu")
    td.all_reduce(v)
    v /= td.get_world_size()
    return float(v[0]), {n: float(x) for n, x in zip(names, v[1:])}
