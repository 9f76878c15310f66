"""From the `--teacher`/`--kd-*` flags of `train`, `sparse`, `prune` and `compress` to distillation callbacks.

`build_distill_callbacks` returns a list, so a command with callbacks of its own (sparse training) appends
them; `distill_callbacks_factory` wraps it in the `(model, data) -> callbacks` form `engine.api.train` takes.
A teacher without any `--kd-*` loss distils with the logit L2 loss (the plainest choice; it works whenever the
teacher has the student's head, which is always the case for `--teacher auto` after pruning).
"""
from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

from ..core.errors import CheckpointError, ConfigError
from .distiller import DistillCallback, DistillOptions

LOGGER = logging.getLogger("yolocompress")
DEFAULT_LOGIT = "l2"

# argparse destination -> DistillOptions field (the flags are defined once, in cli.py)
_FLAGS = {"kd_logit": "logit", "kd_logit_weight": "logit_weight", "kd_obj_weighted": "obj_weighted",
          "kd_feature": "feature", "kd_feature_weight": "feature_weight", "kd_layers": "layers",
          "kd_teacher_layers": "teacher_layers", "kd_schedule": "schedule", "kd_final_ratio": "final_ratio",
          "kd_stop_epoch": "stop_epoch"}
_DEFAULTS = {f.name: f.default for f in fields(DistillOptions)}


def kd_flags_given(args) -> list[str]:
    """The `--kd-*` flags set to something other than their default."""
    return ["--" + dest.replace("_", "-") for dest, name in _FLAGS.items()
            if getattr(args, dest, _DEFAULTS[name]) not in (_DEFAULTS[name], None)]


def distill_options_from(args) -> DistillOptions:
    opts = DistillOptions(**{name: getattr(args, dest, _DEFAULTS[name]) for dest, name in _FLAGS.items()})
    if opts.logit is None and opts.feature is None:
        LOGGER.info(f"--teacher without --kd-logit/--kd-feature: distilling with --kd-logit {DEFAULT_LOGIT}")
        opts.logit = DEFAULT_LOGIT
    return opts


def resolve_teacher(args, default_teacher=None):
    """The teacher to load (a path or a model), or None when no distillation is asked for.

    `--teacher auto` is `default_teacher` (the unpruned model in prune/compress); any `--kd-*` flag without a
    teacher is an error rather than a silent no-op.
    """
    teacher = getattr(args, "teacher", None)
    if teacher in (None, ""):
        given = kd_flags_given(args)
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


def build_distill_callbacks(args, model, data=None, default_teacher=None) -> list:
    """`[DistillCallback]` for `model` (the student) as the flags ask, or `[]` without a teacher.

    `data` (a DataConfig) is only used to name the classes in a mismatch message.
    """
    teacher = resolve_teacher(args, default_teacher)
    if teacher is None:
        return []
    name = str(teacher) if isinstance(teacher, (str, Path)) else "the unpruned model"
    cb = DistillCallback(model, teacher, distill_options_from(args), imgsz=int(getattr(args, "imgsz", 640)),
                         teacher_name=name)
    if data is not None and int(cb.teacher.head.nc) != int(data.nc):
        raise CheckpointError(f"teacher {name} has {int(cb.teacher.head.nc)} classes, the data {int(data.nc)}: "
                              f"use a teacher trained on this dataset's classes")
    return [cb]


def distill_callbacks_factory(args, default_teacher=None):
    """None when no distillation is asked for, else `(model, data) -> [DistillCallback]` for `engine.api.train`.

    Flag errors (a `--kd-*` flag without a teacher, `--teacher auto` outside prune) are raised here, at once.
    """
    if resolve_teacher(args, default_teacher) is None:
        return None
    return lambda model, data: build_distill_callbacks(args, model, data, default_teacher)
