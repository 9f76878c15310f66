"""Typed options of sparse training, pruning and PAGCP (what the `sparse`/`prune`/`compress` flags fill in).

The method names and which of them need sparse training come from the method table (prune/methods.py), so the
CLI choices can never list a method the library does not have.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import ConfigError
from ..core.options import non_negative_int, open_ratio, option, positive_int, speedup_factor
from .methods import METHODS, sparse_method_names
from .tp_fixes import ROUND_AUTO


def round_to_value(s) -> int | str | None:
    """`--round-to`: a positive channel count, `auto` (the unit follows each layer's width) or `none`."""
    text = str(s).strip().lower()
    if text == ROUND_AUTO:
        return ROUND_AUTO
    if text in ("none", "0"):
        return None
    try:
        return positive_int(text)
    except ValueError:
        raise ValueError(f"must be a positive channel count (8, 16, 32), 'auto' or 'none', got {s}") from None

SPEEDUP_METRICS = ("gflops", "latency")


def require_speedup(v: float) -> float:
    """The one rule for a speed-up target (the CLI's parser and every library entry point use it)."""
    try:
        return speedup_factor(v)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def finetune_epochs(s) -> int:
    v = int(s)
    if v < 0:
        raise ValueError(f"must be 0 (prune only, no finetune) or more, got {s}")
    return v

REG_SCHEDULES = ("linear", "constant")


@dataclass
class SparseOptions:
    """Sparse training (the method's regulariser during training)"""

    method: str = option("", "the pruning method the sparse training prepares for (required, except with "
                             "--resume)", choices=sparse_method_names)
    reg: float = option(5e-4, "regularisation coefficient at the start")
    reg_end: float | None = option(None, "coefficient at the end (default: --reg / 10 for linear)")
    reg_schedule: str = option("linear", "how the coefficient moves from --reg to --reg-end", choices=REG_SCHEDULES)


@dataclass
class PagcpOptions:
    """PAGCP (performance-aware global channel pruning; `--method pagcp`)

    initial_rate: tolerance d0 of the first visited layer (max_t L_t / B_t <= 1 + d).
    initial_thres: global bound D on max_t L_t / B0_t within a round; with `exp`, the per-layer
                   tolerances d0 * lambda**i are solved so that their product is exactly D.
    topk: share of the accepted layers (lowest loss increase per FLOP) applied at the end of a round.
    rate_slope, thres_slope: added to d0 and D at every further round.
    stop_at_target: apply the kept layers best first and stop once the GFLOPs target is met.
    """

    initial_rate: float = option(0.05, "loss-increase tolerance d0 of the first layer visited in a round")
    initial_thres: float = option(5.0, "bound D on the largest loss ratio of any component within a round")
    topk: float = option(1.0, "share of the accepted layers (lowest loss increase per FLOP) applied per round")
    exp: bool = option(False, "grow the per-layer tolerances geometrically (d0 * lambda**i) so they multiply to D")
    rate_slope: float = option(0.0, "added to --initial-rate at every further round")
    thres_slope: float = option(0.0, "added to --initial-thres at every further round")
    rounds: int = option(3, "most PAGCP rounds", type=positive_int)
    calib_batches: int = option(8, "training batches the losses are measured on", type=positive_int)
    round_finetune_epochs: int = option(0, "finetune epochs between rounds (0: none)", type=non_negative_int)
    speedup: float = option(2.0, "target GFLOPs ratio (set from --speedup)", cli=False)
    imgsz: int = option(640, "image size GFLOPs are counted at (set from --imgsz)", cli=False)
    stop_at_target: bool = option(True, "stop once the target is met", cli=False)

    def check(self) -> "PagcpOptions":
        require_speedup(self.speedup)
        bad = [(not 0 < self.topk <= 1, f"--topk must be in (0, 1], got {self.topk}"),
               (self.rounds < 1, f"--rounds must be >= 1, got {self.rounds}"),
               (self.imgsz < 32, f"--imgsz must be >= 32, got {self.imgsz}")]
        for r in range(max(self.rounds, 1)):
            d0, big_d = self.for_round(r, 1.0)
            need = " and --initial-thres > 1 + --initial-rate with --exp" if self.exp else ""
            bad.append((d0 <= 0 or big_d <= 1 or (self.exp and big_d <= 1 + d0),
                        f"round {r + 1} gets --initial-rate {d0:g} and --initial-thres {big_d:g} (slopes "
                        f"included); they must stay > 0 and > 1{need}"))
        for failed, message in bad:
            if failed:
                raise ConfigError(f"pagcp: {message}")
        return self

    def for_round(self, r: int, boost: float) -> tuple[float, float]:
        """(d0, D) of round `r`; `boost` (doubled after a round that accepted nothing) widens both."""
        d0 = self.initial_rate + r * self.rate_slope
        big_d = self.initial_thres + r * self.thres_slope
        return d0 * boost, 1 + (big_d - 1) * boost


@dataclass
class PruneOptions:
    """Pruning"""

    method: str = option("", "pruning method (a row of the method table; docs/pruning.md compares them; "
                             "required, except with --resume)", choices=lambda: list(METHODS))
    speedup: float = option(2.0, "target ratio of GFLOPs (or latency) before / after pruning, > 1",
                            type=speedup_factor)
    speedup_metric: str = option("gflops", "what --speedup measures", choices=SPEEDUP_METRICS)
    latency_device: str = option("cpu", "device the latency metric and the pruning summary time on")
    latency_batch: int = option(1, "batch size of the latency metric", type=positive_int)
    max_steps: int = option(200, "points of the pruning grid from 0 to --max-ratio (its resolution; the loop "
                                 "takes long strides far from the target)", type=positive_int)
    global_pruning: bool | None = option(
        None, "rank channels across layers (default: the method's design, docs/pruning.md)", flag="--global",
        off_flag="--local", off_help="rank channels within each layer: every layer loses the same share")
    max_ratio: float = option(0.9, "largest share of one layer's channels to remove", type=open_ratio)
    round_to: int | str | None = option(
        ROUND_AUTO, "keep pruned channel counts multiples of N (nearest multiple, at least one); auto: 16 for "
                    "layers of 32 channels or more, 8 for 16-31, narrower layers as they fall; none: no rounding "
                    "(docs/pruning.md measures them)", type=round_to_value, metavar="N|auto|none")
    finetune_epochs: int | None = option(None, "finetune epochs after pruning (default: --epochs; 0 prunes and "
                                               "reports without finetuning)", type=finetune_epochs)
    grad_batches: int = option(10, "training batches for gradient-based importance (group_hessian, group_taylor)",
                               type=positive_int)
    report_batch: int = option(32, "batch size of the report's inference time", type=positive_int)
    pagcp: PagcpOptions = field(default_factory=PagcpOptions, metadata={"cli": True, "help": ""})

    def check(self) -> "PruneOptions":
        if not self.method:
            raise ConfigError(f"--method is required: one of {', '.join(METHODS)} (only --resume restores it)")
        if self.method not in METHODS:
            raise ConfigError(f"unknown pruning method {self.method!r}; choose one of: {', '.join(METHODS)}")
        require_speedup(self.speedup)
        return self

    @property
    def row(self):
        """This method's row of the method table."""
        return METHODS[self.check().method]

    def finetune_epochs_for(self, train_epochs: int) -> int:
        """`--finetune-epochs`, else `--epochs`; 0 means prune and report without finetuning."""
        return train_epochs if self.finetune_epochs is None else self.finetune_epochs
