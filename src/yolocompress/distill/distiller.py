"""The training callback that lets a frozen teacher pull a student through logit and feature losses.

The trainer stays ignorant of distillation: `DistillCallback` asks it to capture the student's chosen layers,
runs the teacher on the same batch, and returns the terms `kd_logit` and `kd_feature` (weight x schedule x
loss), which the trainer adds to the detection loss and logs by name. Every check that can fail runs in the
constructor, with one dummy forward at the training image size, so a bad pairing stops before the run starts.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as td
from torch import Tensor, nn

from ..engine.callbacks import Callback
from ..engine.options import model_stride
from ..core.errors import CheckpointError, ConfigError
from ..models.checkpoint import load_model
from ..core.stats import count_params
from .auto_weight import AutoWeight
from .feature import build_feature_loss
from .logit import Gains, build_logit_loss
from .options import DistillOptions
from .schedule import KDSchedule

LOGGER = logging.getLogger("yolocompress")
TERMS = ("kd_logit", "kd_feature")


def detection_loss(trainer, out) -> float:
    """The per-image detection loss of this batch (box + obj + cls, as the trainer logs it), for auto-weighting."""
    with torch.no_grad():
        _, items = trainer.loss_fn([r.detach() for r in out.raw], out.targets.to(out.raw[0].device))
    return float(items.sum())


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode (BN statistics never move) and no parameter asks for a gradient."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(source) -> nn.Module:
    """A frozen teacher on the CPU from a checkpoint path (ours or official) or a model (copied, never mutated)."""
    if isinstance(source, nn.Module):
        return freeze(copy.deepcopy(source).cpu())
    return freeze(load_model(source, device="cpu")[0])


def training_imgsz(imgsz: int, model: nn.Module) -> int:
    """The image size the trainer will really use (rounded up to the stride, as the trainer does)."""
    stride = model_stride(model)
    return max(-(-int(imgsz) // stride) * stride, stride)


def check_layers(model: nn.Module, layers: list[int], flag: str, who: str) -> None:
    n = len(model.model) - 1  # the last layer is the detection head, whose output is not a feature map
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{flag} {bad}: no such {who} layer; valid indices are 0..{n - 1} "
                          f"(`yolocompress info --weights ...` lists them)")


@torch.no_grad()
def probe(model: nn.Module, layers: list[int], imgsz: int) -> tuple[list[tuple], dict]:
    """Raw output shapes and captured feature shapes (without batch) of one eval-mode forward."""
    p = next(model.parameters())
    x = torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()  # a train-mode forward would move the student's BN statistics
    try:
        out = model(x, capture=layers) if layers else (model(x), {})
    finally:
        model.train(was_training)
    (_, raw), feats = out
    return [tuple(r.shape[1:]) for r in raw], {i: tuple(f.shape[1:]) if isinstance(f, Tensor) else None
                                               for i, f in feats.items()}


class DistillCallback(Callback):
    """Distil `teacher` into `student` during training (see docs/distillation.md).

    ``teacher`` is a checkpoint path or a model; it is copied, frozen and kept out of the optimizer. ``imgsz``
    is the training image size, used for the shape checks. ``teacher_name`` only labels logs and errors.
    """

    name = "distill"

    def __init__(self, student: nn.Module, teacher, options: DistillOptions, imgsz: int = 640,
                 teacher_name: str | None = None):
        self.options = options.check()
        self.teacher_name = teacher_name or (str(teacher) if isinstance(teacher, (str, Path)) else "teacher model")
        self.teacher = load_teacher(teacher)
        s_head, t_head = student.head, self.teacher.head
        if int(s_head.nc) != int(t_head.nc):
            raise CheckpointError(f"teacher {self.teacher_name} has {int(t_head.nc)} classes, the student "
                                  f"{int(s_head.nc)}: use a teacher trained on the same classes")
        if list(getattr(student, "names", [])) != list(getattr(self.teacher, "names", [])):
            LOGGER.warning(f"distillation: teacher class names {self.teacher.names} differ from the student's "
                           f"{student.names}; class i of the teacher teaches class i of the student")
        self.layers = list(options.layers or student.head_inputs()) if options.feature else []
        self.teacher_layers = list(options.teacher_layers or self.teacher.head_inputs()) if options.feature else []
        self.logit_loss = None
        self.imgsz = training_imgsz(imgsz, student)
        self._check_heads_and_layers(student)
        s_feats, t_feats = self._check_shapes(student, self.imgsz)
        self.feature_loss = build_feature_loss(
            options.feature, [s_feats[i][0] for i in self.layers], [t_feats[j][0] for j in self.teacher_layers],
            names=self._pairs(), **options.feature_options) if options.feature else None
        self.device = torch.device("cpu")
        self._schedule: KDSchedule | None = None
        self.fixed_weights = options.weights()
        self.auto = AutoWeight(options.auto_weight, options.auto_weight_batches, options.auto_weight_per_epoch,
                               list(self.fixed_weights)) if options.auto_weight is not None else None
        LOGGER.info(self.describe())

    # ---- checks (before training) --------------------------------------------------------------------
    @property
    def fixes_anchors(self) -> bool:
        return self.options.logit is not None

    def _pairs(self) -> list[str]:
        return [f"student layer {s} / teacher layer {t}" for s, t in zip(self.layers, self.teacher_layers)]

    def _check_heads_and_layers(self, student: nn.Module) -> None:
        s_head, t_head = student.head, self.teacher.head
        s_geo, t_geo = (int(s_head.nl), int(s_head.na)), (int(t_head.nl), int(t_head.na))
        if self.options.logit and s_geo != t_geo:
            raise ConfigError(f"logit distillation needs the same detection levels and anchors: student "
                              f"{s_geo[0]}x{s_geo[1]}, teacher {t_geo[0]}x{t_geo[1]} (levels x anchors); "
                              f"use --kd-feature only or a teacher with the same head")
        if self.options.logit and not torch.allclose(s_head.anchors.float().cpu(), t_head.anchors.float().cpu(),
                                                     rtol=1e-3, atol=1e-3):
            LOGGER.warning("distillation: student and teacher anchors differ; the logit loss decodes both with "
                           "the student's anchors, so its box term is only approximate")
        if len(self.layers) != len(self.teacher_layers):
            raise ConfigError(f"feature distillation pairs layers one to one: student layers {self.layers}, "
                              f"teacher layers {self.teacher_layers}; give as many --kd-teacher-layers as --kd-layers")
        check_layers(student, self.layers, "--kd-layers", "student")
        check_layers(self.teacher, self.teacher_layers, "--kd-teacher-layers", "teacher")

    def _check_shapes(self, student: nn.Module, imgsz: int) -> tuple[dict, dict]:
        """One dummy forward of both models at the training size: the output and feature shapes must pair up."""
        s_raw, s_feats = probe(student, self.layers, imgsz)
        t_raw, t_feats = probe(self.teacher, self.teacher_layers, imgsz)
        if self.options.logit and s_raw != t_raw:
            raise ConfigError(f"logit distillation needs the same detection levels and anchors: student outputs "
                              f"{s_raw}, teacher {t_raw} at imgsz {imgsz}; the strides differ: use --kd-feature only")
        for name, i, j in zip(self._pairs(), self.layers, self.teacher_layers):
            s, t = s_feats[i], t_feats[j]
            if s is None or t is None or len(s) != 3 or len(t) != 3:
                raise ConfigError(f"feature distillation {name}: outputs {s} and {t} are not [C, H, W] feature "
                                  f"maps; choose convolutional layers")
            if s[1:] != t[1:]:
                raise ConfigError(f"feature distillation {name}: spatial sizes differ at imgsz {imgsz} (student "
                                  f"{s[1]}x{s[2]}, teacher {t[1]}x{t[2]}); pair layers of the same stride")
        return s_feats, t_feats

    def describe(self) -> str:
        o = self.options
        parts = [f"distillation from {self.teacher_name} ({count_params(self.teacher):,} params)"]
        w = {t: (f"auto {o.auto_weight:g} of the detection loss" if o.auto_weight is not None else f"x{v:g}")
             for t, v in self.fixed_weights.items()}
        if o.logit:
            parts.append(f"logit {o.logit} {w['kd_logit']}" + (" (obj-weighted)" if o.obj_weighted else ""))
        if o.feature:
            n_adapt = sum(1 for a in self.feature_loss.adapters if isinstance(a.proj, nn.Conv2d))
            parts.append(f"feature {o.feature} {w['kd_feature']} on student layers {self.layers} <- teacher "
                         f"{self.teacher_layers} ({n_adapt} adapter(s))")
        sched = o.schedule + (f" to x{o.final_ratio:g}" if o.schedule != "constant" else "")
        parts.append(f"schedule {sched}" + (f", off after epoch {o.stop_epoch}" if o.stop_epoch else ""))
        return ", ".join(parts)

    # ---- the Callback interface ----------------------------------------------------------------------
    def capture_layers(self) -> list[int]:
        return list(self.layers)

    def extra_parameters(self) -> list:
        return list(self.feature_loss.parameters()) if self.feature_loss is not None else []

    def on_train_start(self, trainer) -> None:
        self.device = torch.device(trainer.device)
        self.teacher.to(self.device).eval()
        if self.options.teacher_half and self.device.type == "cuda":
            self.teacher.half()
        student = getattr(trainer.model, "module", trainer.model)
        if trainer.imgsz != self.imgsz:  # e.g. a resumed run trains at its saved size
            self.imgsz = trainer.imgsz
            self._check_shapes(student, self.imgsz)  # channels, hence adapters, do not depend on the size
        hyp = trainer.hyp
        if self.options.logit:
            gains = Gains(box=hyp.box, obj=hyp.obj, cls=hyp.cls)
            logit_options = dict(self.options.logit_options)
            if self.options.obj_weighted:
                logit_options["obj_weighted"] = True
            self.logit_loss = build_logit_loss(self.options.logit, student.head, gains, **logit_options).to(self.device)
        if self.feature_loss is not None:
            self.feature_loss.to(self.device).train()
            seed = int(getattr(trainer.opts, "seed", 0)) + max(int(getattr(trainer, "rank", -1)), 0)
            self.feature_loss.start(self.device, seed)
        self._schedule = None

    def multiplier(self, trainer, out) -> float:
        """The schedule's factor at this iteration (0 from --kd-stop-epoch on)."""
        if self._schedule is None or self._schedule.total_iters != out.total_iterations:
            o = self.options
            per_epoch = max(out.total_iterations // max(int(trainer.opts.epochs), 1), 1)
            stop = None if o.stop_epoch is None else o.stop_epoch * per_epoch
            self._schedule = KDSchedule(o.schedule, max(out.total_iterations, 1), o.final_ratio, stop)
        return self._schedule(out.iteration)

    def teacher_outputs(self, imgs: Tensor) -> tuple[list[Tensor], dict]:
        """Teacher raw logits (eval mode returns (pred, raw); raw has the student's train-mode layout) and features."""
        x = imgs.to(device=self.device, dtype=next(self.teacher.parameters()).dtype)
        with torch.no_grad():
            out = self.teacher(x, capture=self.teacher_layers) if self.teacher_layers else (self.teacher(x), {})
        (_, raw), feats = out
        return raw, feats

    def loss_terms(self, trainer, out) -> dict:
        k = self.multiplier(trainer, out)
        names = [n for n, on in zip(TERMS, (self.options.logit, self.options.feature)) if on]
        if k == 0.0:  # switched off: skip the teacher, keep the columns
            return {n: torch.zeros((), device=out.imgs.device) for n in names}
        t_raw, t_feats = self.teacher_outputs(out.imgs)
        raw = {}
        if self.logit_loss is not None:
            raw["kd_logit"] = self.logit_loss(out.raw, t_raw)
        if self.feature_loss is not None:
            s = [out.features[i] for i in self.layers]
            t = [t_feats[j] for j in self.teacher_layers]
            raw["kd_feature"] = self.feature_loss(s, t)
        if self.auto is not None and self.auto.measuring(out.epoch):
            self.auto.update(detection_loss(trainer, out), {n: float(v.detach()) for n, v in raw.items()})
        return {n: v * (self.weight(n) * k) for n, v in raw.items()}

    def weight(self, term: str) -> float:
        """The term's weight now: measured by --kd-auto-weight, else the fixed one."""
        fixed = self.fixed_weights[term]
        return self.auto.weight(term, fixed) if self.auto is not None else fixed

    def on_epoch_end(self, trainer, epoch: int) -> dict:
        """The weights used (the last one of the epoch) as results.csv columns `train/kd_*_weight`."""
        if self.auto is not None:
            self.auto.end_epoch()
        return {f"train/{t}_weight": self.weight(t) for t in self.fixed_weights}

    def after_backward(self, trainer) -> None:
        """Under DDP, average the adapters' gradients over ranks (they live outside the DDP-wrapped student)."""
        params = self.extra_parameters()
        if not params or not (td.is_available() and td.is_initialized()) or td.get_world_size() < 2:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.flatten() for g in grads])
        td.all_reduce(flat)
        flat /= td.get_world_size()
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def state_dict(self) -> dict:
        """Adapters and generators (saved with the run, never in the exported model) and what they were built for."""
        sd = self.feature_loss.state_dict() if self.feature_loss is not None else {}
        return {"teacher": self.teacher_name, "options": asdict(self.options), "layers": self.layers,
                "teacher_layers": self.teacher_layers, "feature_loss": {k: v.detach().cpu() for k, v in sd.items()},
                "auto_weight": self.auto.state_dict() if self.auto is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        saved = state.get("options") or {}
        now = (self.options.feature, self.layers, self.teacher_layers)
        before = (saved.get("feature"), list(state.get("layers") or []), list(state.get("teacher_layers") or []))
        if now != before:
            raise CheckpointError(f"the run was distilled with feature loss {before[0]} on layers {before[1]} <- "
                                  f"{before[2]}, now {now[0]} on {now[1]} <- {now[2]}; "
                                  f"resume with the same --kd-* options")
        if self.feature_loss is not None:
            self.feature_loss.load_state_dict(state.get("feature_loss") or {})
        if self.auto is not None and state.get("auto_weight"):
            self.auto.load_state_dict(state["auto_weight"])
