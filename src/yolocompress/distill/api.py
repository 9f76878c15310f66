"""From `DistillOptions` (the `--teacher`/`--kd-*` flags of train, sparse, prune and compress) to callbacks.

`build_distill_callbacks` returns a list, so a command with callbacks of its own (sparse training) appends
them; `distill_callbacks_factory` wraps it in the `(model, data) -> callbacks` form `engine.api.train` takes.
A teacher without any `--kd-*` loss distils with the logit L2 loss (the plainest choice; it works whenever the
teacher has the student's head, which is always the case for `--teacher auto` after pruning).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..core.errors import CheckpointError, ConfigError
from .distiller import DistillCallback
from .options import DistillOptions

LOGGER = logging.getLogger("yolocompress")
DEFAULT_LOGIT = "l2"


def with_default_loss(opts: DistillOptions) -> DistillOptions:
    if opts.logit is None and opts.feature is None:
        LOGGER.info(f"--teacher without --kd-logit/--kd-feature: distilling with --kd-logit {DEFAULT_LOGIT}")
        return dataclasses.replace(opts, logit=DEFAULT_LOGIT)
    return opts


def resolve_teacher(opts: DistillOptions, default_teacher=None):
    """The teacher to load (a path or a model), or None when no distillation is asked for.

    `--teacher auto` is `default_teacher` (the unpruned model in prune/compress); any `--kd-*` flag without a
    teacher is an error rather than a silent no-op.
    """
    teacher = opts.teacher
    if teacher in (None, ""):
        given = opts.given()
        if given:
            raise ConfigError(f"{given[0]} needs a teacher: add --teacher T.pt "
                              f"(or --teacher auto in prune/compress, the unpruned model)")
        return None
    if str(teacher) == "auto":
        if default_teacher is None:
            raise ConfigError("--teacher auto means the unpruned model and works in prune and compress only; "
                              "give a checkpoint here: --teacher T.pt")
        return default_teacher
    if not Path(teacher).is_file():
        raise CheckpointError(f"--teacher {teacher}: file not found; give a checkpoint of ours or an official .pt")
    return teacher


def build_distill_callbacks(opts: DistillOptions, model, data=None, default_teacher=None, imgsz: int = 640) -> list:
    """`[DistillCallback]` for `model` (the student) as the options ask, or `[]` without a teacher.

    `data` (a DataConfig) is only used to name the classes in a mismatch message.
    """
    teacher = resolve_teacher(opts, default_teacher)
    if teacher is None:
        return []
    name = str(teacher) if isinstance(teacher, (str, Path)) else "the unpruned model"
    cb = DistillCallback(model, teacher, with_default_loss(opts), imgsz=imgsz, teacher_name=name)
    if data is not None and int(cb.teacher.head.nc) != int(data.nc):
        raise CheckpointError(f"teacher {name} has {int(cb.teacher.head.nc)} classes, the data {int(data.nc)}: "
                              f"use a teacher trained on this dataset's classes")
    return [cb]


def distill_callbacks_factory(opts: DistillOptions | None, imgsz: int = 640, default_teacher=None):
    """None when no distillation is asked for, else `(model, data) -> [DistillCallback]` for `engine.api.train`.

    Option errors (a `--kd-*` flag without a teacher, `--teacher auto` outside prune) are raised here, at once.
    """
    if opts is None or resolve_teacher(opts, default_teacher) is None:
        return None
    return lambda model, data: build_distill_callbacks(opts, model, data, default_teacher, imgsz)


def train_command(train_opts, *, weights=None, cfg=None, resume=None, distill: DistillOptions | None = None):
    """`yolocompress train`: training, distilled when the options name a teacher. The distillation options go into
    the checkpoints, so `resume` (True: the newest interrupted train run; or its folder / last.pt) continues with
    the interrupted run's own distillation, whatever the command line says now."""
    from ..core.runrecord import options_record, restore
    from ..engine.api import find_resume_checkpoint, train
    from ..engine.options import TrainOptions
    from ..models.checkpoint import read_checkpoint

    if resume:
        last = find_resume_checkpoint(resume, train_opts.project, kind="train")
        meta = read_checkpoint(last).get("meta") or {}
        saved = meta.get("options") or {}
        if "distill" in saved:  # runs saved before the options were recorded: the distillation given now
            distill = restore(DistillOptions, saved["distill"])
        train_opts = restore(TrainOptions, meta.get("opt"), runtime=train_opts) or train_opts
        resume = str(last)
    return train(train_opts, weights=weights, cfg=cfg, resume=resume, kind="train",
                 callbacks_factory=distill_callbacks_factory(distill, train_opts.imgsz),
                 meta={"options": options_record(distill=distill)})
