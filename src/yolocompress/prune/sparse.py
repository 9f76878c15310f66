"""Sparse training: the pruner's regulariser as a trainer callback, its coefficient schedule, and the
BatchNorm-scale records (results.csv columns, TensorBoard histogram, ridge plot) that show it working.

Methods whose importance is only meaningful after sparse training (slim, group_slim, group_sl,
group_reg) train here first; `yolocompress prune` then removes the channels the penalty drove to zero.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch_pruning.pruner import function as tp_function

from ..core.errors import CheckpointError, ConfigError, PruningError, YoloCompressError
from ..distill.api import distill_callbacks_factory
from ..distill.options import DistillOptions
from ..engine.api import find_resume_checkpoint, train
from ..engine.callbacks import Callback
from ..engine.ema import unwrap
from ..engine.options import TrainOptions
from ..models.checkpoint import read_checkpoint
from . import methods
from ..core.runrecord import options_record, restore
from .bn_plot import HIST_EDGES, MAX_PLOT_ROWS, THRESHOLD, histogram, plot_bn_ridge  # noqa: F401 (re-exported)
from .graph import implicit_parameters
from .options import REG_SCHEDULES, SparseOptions

LOGGER = logging.getLogger("yolocompress")



@dataclass(frozen=True)
class RegSchedule:
    """The regularisation coefficient per epoch.

    linear: `reg` at the first epoch to `reg_end` at the last (default reg/10): a strong push early,
    a light one late so that accuracy recovers before pruning. constant: `reg` throughout.
    """
    reg: float
    reg_end: float | None = None
    kind: str = "linear"

    def __post_init__(self):
        if self.kind not in REG_SCHEDULES:
            raise ConfigError(f"--reg-schedule {self.kind!r} is unknown; choose one of: {', '.join(REG_SCHEDULES)}")
        for flag, v in (("--reg", self.reg), ("--reg-end", self.reg_end)):
            if v is not None and not (v >= 0 and np.isfinite(v)):
                raise ConfigError(f"{flag} must be a finite number >= 0, got {v}")
        if self.kind == "constant" and self.reg_end not in (None, self.reg):
            LOGGER.warning(f"--reg-end {self.reg_end} is ignored with --reg-schedule constant (using --reg {self.reg})")

    @property
    def end(self) -> float:
        if self.kind == "constant":
            return self.reg
        return self.reg / 10 if self.reg_end is None else self.reg_end

    def value(self, epoch: int, epochs: int) -> float:
        if epochs <= 1:
            return self.reg
        t = min(max(epoch, 0), epochs - 1) / (epochs - 1)
        return self.reg + (self.end - self.reg) * t


def sparse_method(name: str) -> methods.PruneMethod:
    method = methods.get_method(name)
    if not method.needs_sparse:
        sparse = ", ".join(methods.sparse_method_names())
        raise ConfigError(f"method {method.name} needs no sparse training; sparse training supports: {sparse}")
    return method


def bn_scales(model: nn.Module) -> torch.Tensor:
    """|gamma| of every affine BatchNorm layer, concatenated (float32, CPU)."""
    ws = [m.weight.detach().abs().flatten().float().cpu() for m in model.modules()
          if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    return torch.cat(ws) if ws else torch.zeros(0)


def group_bn_norms(pruner) -> torch.Tensor:
    """One L2 norm per channel of every pruner group, over the BN scales coupled to that channel.

    BN scales (not the convolutions) because every group method penalises them, group_slim only
    them: a channel whose coupled scales are all ~0 is dead whatever its convolution weights.
    """
    norms = []
    for group in pruner._groups:
        sq = torch.zeros(len(group[0].idxs))
        found = False
        for k, (dep, idxs) in enumerate(group):
            layer = dep.layer
            if dep.pruning_fn == tp_function.prune_batchnorm_out_channels and getattr(layer, "affine", False):
                w = layer.weight.detach().float().cpu()[torch.as_tensor(idxs, dtype=torch.long)]
                sq.index_add_(0, torch.as_tensor(group[k].root_idxs, dtype=torch.long), w.square())
                found = True
        if found:
            norms.append(sq.sqrt())
    return torch.cat(norms) if norms else torch.zeros(0)


def head_pruning_args(model: nn.Module) -> tuple[list, list | None]:
    """(ignored layers, unwrapped parameters) of a YOLO model: the head's output convs never change;
    IDetect's implicit terms follow their channels (dim 1)."""
    head = getattr(model, "head", None)
    ignored = list(getattr(head, "m", []) or [])
    implicit = list(implicit_parameters(head).items()) if head is not None else []
    return ignored, implicit or None


class SparseCallback(Callback):
    """Adds the method's penalty to the gradients at every optimizer step and records BN sparsity.

    The pruner is built at train start on the trainer's (unwrapped) model, only for its regulariser:
    nothing is pruned. `model` (what the callbacks factory got) gives the ignored layers when
    `ignored_layers` is None: the head's output convs. `epochs` and `imgsz` default to the trainer's.
    group_reg: once per epoch (first optimizer step of every epoch after the first) each channel's
    coefficient grows by up to `delta_reg` (default `reg`), the most for the group's weakest
    channels; the schedule then scales all coefficients by coefficient(epoch) / reg. The growth is
    saved with the run, so a resumed run continues it.
    """
    name = "sparse"

    def __init__(self, method: str, model: nn.Module | None = None, example_inputs=None, reg: float = 5e-4,
                 reg_end: float | None = None, schedule: str = "linear", epochs: int | None = None,
                 imgsz: int | None = None, ignored_layers=None, delta_reg: float | None = None):
        self.method = sparse_method(method)
        self.schedule = RegSchedule(reg, reg_end, schedule)
        self.example_inputs, self.epochs, self.imgsz = example_inputs, epochs, imgsz
        self.ignored_layers = ignored_layers
        if ignored_layers is None and model is not None:
            self.ignored_layers = head_pruning_args(model)[0]
        self.delta_reg = reg if delta_reg is None else delta_reg
        self.pruner = None
        self.hists: dict[int, list[int]] = {}  # epoch -> |gamma| counts over HIST_EDGES
        self.last: dict = {}
        self._grown_epoch = 0
        self._pending: dict | None = None

    # ---- training -------------------------------------------------------------------------------
    def on_train_start(self, trainer) -> None:
        model = unwrap(trainer.model)
        self.epochs = self.epochs or trainer.opts.epochs
        if self.method.name == "slim" and trainer.opts.sync_bn and getattr(trainer, "world", 1) > 1:
            raise ConfigError("sparse --method slim cannot regularise SyncBatchNorm layers (Torch-Pruning's "
                              "BNScalePruner skips them); drop --sync-bn or use --method group_slim")
        ignored, unwrapped = head_pruning_args(model)
        if self.ignored_layers is not None:
            ignored = list(self.ignored_layers)
        x = self.example_inputs
        if x is None:
            size = self.imgsz or trainer.imgsz
            x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
        was_training = model.training
        try:
            self.pruner = methods.build_pruner(self.method.name, model, x, ignored_layers=ignored,
                                               reg=self.schedule.reg, unwrapped=unwrapped)
        except YoloCompressError:
            raise
        except Exception as e:  # Torch-Pruning fails on graphs it cannot follow; say so in one line
            why = (str(e).splitlines() or [""])[0][:160]
            raise PruningError(f"sparse training ({self.method.name}): Torch-Pruning cannot build the channel "
                               f"groups of this model ({type(e).__name__}: {why}); remove or register the "
                               "module it fails on") from None
        finally:
            model.train(was_training)
        if self.method.sparse_kind == "growing":
            self.pruner.delta_reg = self.delta_reg
        if self._pending is not None:
            self._apply_state(self._pending)
            self._pending = None
        LOGGER.info(f"sparse training ({self.method.name}): {self.schedule.kind} coefficient "
                    f"{self.schedule.reg:g} -> {self.schedule.end:g} over {self.epochs} epochs, "
                    f"{len(self.pruner._groups)} channel groups")

    def coefficient(self, epoch: int) -> float:
        return self.schedule.value(epoch, self.epochs or 1)

    def after_backward(self, trainer) -> None:
        grow = self.method.sparse_kind == "growing" and trainer.epoch > self._grown_epoch
        if grow:
            self._grown_epoch = trainer.epoch
        methods.regularize(self.pruner, unwrap(trainer.model), reg=self.coefficient(trainer.epoch),
                           **({"grow": True} if grow else {}))

    # ---- records --------------------------------------------------------------------------------
    def on_epoch_end(self, trainer, epoch: int) -> dict:
        scales = bn_scales(unwrap(trainer.model))
        self.hists = {e: c for e, c in self.hists.items() if e < epoch}
        self.hists[epoch] = histogram(scales.numpy())
        row = {"sparse/reg": self.coefficient(epoch), "sparse/bn_lt_1e-2": _share_below(scales)}
        norms = group_bn_norms(self.pruner) if self.method.sparse_kind != "bn_l1" else None
        if norms is not None:
            row["sparse/group_norm_lt_1e-2"] = _share_below(norms)
        self.last = dict(row)
        tb = getattr(trainer, "tb", None)
        if tb is not None and scales.numel():
            tb.add_histogram("sparse/bn_gamma_abs", scales, epoch)
            if norms is not None and norms.numel():
                tb.add_histogram("sparse/group_bn_norm", norms, epoch)
        try:
            plot_bn_ridge(self.hists, Path(trainer.save_dir) / "bn_gamma.png", self.method.name)
        except Exception as e:  # a plot must never cost the user their run
            LOGGER.warning(f"bn_gamma.png not written: {e}")
        return row

    # ---- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        st = {"method": self.method.name, "grown_epoch": self._grown_epoch,
              "hists": [{"epoch": e, "counts": c} for e, c in sorted(self.hists.items())]}
        if self.pruner is not None and self.method.sparse_kind == "growing":
            names = self.pruner.DG._module2name
            st["group_reg"] = {names[g[0].dep.target.module]: r.clone() for g, r in self.pruner.group_reg.items()}
        return st

    def load_state_dict(self, state: dict) -> None:
        if self.pruner is None:
            self._pending = dict(state)  # applied once the pruner exists (on_train_start)
        else:
            self._apply_state(state)

    def _apply_state(self, state: dict) -> None:
        self.hists = {int(h["epoch"]): list(h["counts"]) for h in state.get("hists", [])}
        self._grown_epoch = int(state.get("grown_epoch", 0))
        saved = state.get("group_reg") or {}
        if saved and self.method.sparse_kind == "growing":
            names = self.pruner.DG._module2name
            for group in self.pruner._groups:
                r = saved.get(names[group[0].dep.target.module])
                if r is not None and len(r) == len(self.pruner.group_reg[group]):
                    self.pruner.group_reg[group] = torch.as_tensor(r, dtype=torch.float32).clone()


def _share_below(values: torch.Tensor, threshold: float = THRESHOLD) -> float:
    return float((values < threshold).float().mean()) if values.numel() else 0.0


# ---- the command ----------------------------------------------------------------------------------
def sparse_command(weights: str | None, sparse: SparseOptions, train_opts: TrainOptions,
                   distill: DistillOptions | None = None, resume=None) -> dict:
    """`yolocompress sparse`: train `weights` with the method's regulariser into runs/sparse/expN.

    `resume` (True: the newest interrupted sparse run under the project; or a run folder / last.pt) restores
    every option of that run: the sparsity, the distillation and the training options."""
    if resume:
        last = find_resume_checkpoint(resume, train_opts.project, kind="sparse")
        saved = read_checkpoint(last).get("meta") or {}
        if "sparse" in (saved.get("options") or {}):
            sparse = restore(SparseOptions, saved["options"]["sparse"])
            distill = restore(DistillOptions, saved["options"].get("distill"))
        else:  # a run saved before the options were recorded: its sparse settings, the distillation as given now
            sparse = SparseOptions(saved.get("sparse_method", sparse.method), saved.get("sparse_reg", sparse.reg),
                                   saved.get("sparse_reg_end", sparse.reg_end),
                                   saved.get("sparse_schedule", sparse.reg_schedule))
        train_opts = restore(TrainOptions, saved.get("opt"), runtime=train_opts) or train_opts  # the distiller's imgsz
        LOGGER.info(f"resuming sparse training {last.parent.parent} with its saved settings: {sparse}")
        resume = str(last)
    elif not weights:
        raise ConfigError("sparse: --weights W.pt is required (the trained model to make sparse), except with --resume")
    if not sparse.method:
        raise ConfigError(f"sparse: --method is required: one of {', '.join(methods.sparse_method_names())}")
    settings = {"sparse_method": sparse.method, "sparse_reg": sparse.reg, "sparse_reg_end": sparse.reg_end,
                "sparse_schedule": sparse.reg_schedule}
    schedule = RegSchedule(settings["sparse_reg"], settings["sparse_reg_end"], settings["sparse_schedule"])
    sparse_method(settings["sparse_method"])
    settings["sparse_reg_end"] = schedule.end
    distill_factory = distill_callbacks_factory(distill, train_opts.imgsz)
    made: list[SparseCallback] = []

    def factory(model, data):
        cb = SparseCallback(settings["sparse_method"], model, reg=schedule.reg, reg_end=schedule.end,
                            schedule=schedule.kind)
        made.append(cb)
        return [cb] + (list(distill_factory(model, data)) if distill_factory else [])

    meta = {**settings, "options": options_record(sparse=sparse, distill=distill)}
    res = train(train_opts, weights=weights, resume=resume, callbacks_factory=factory, meta=meta, kind="sparse",
                transfer=False)  # sparse training needs a model trained on the data
    m = res.metrics or {}
    final = made[-1].last.get("sparse/bn_lt_1e-2") if made else None
    print(f"results saved to {res.save_dir}\n  best: {res.best}\n  last: {res.last}")
    if m:
        print(f"  mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50-95']:.4f}")
    if final is not None:
        print(f"  share of |gamma| < {THRESHOLD:g}: {final:.3f} (see {Path(res.save_dir) / 'bn_gamma.png'})")
    return {"save_dir": str(res.save_dir), "best": str(res.best), "last": str(res.last),
            "mAP50": m.get("mAP50"), "mAP50-95": m.get("mAP50-95"), "bn_lt_1e-2": final,
            "method": settings["sparse_method"]}
