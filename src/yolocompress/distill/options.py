"""Typed options of distillation (the `--teacher` and `--kd-*` flags), checked against the loss registries.

The loss names, their choices on the command line and the per-loss options `--kd-option key=value` reaches
all come from `LOGIT_LOSSES` / `FEATURE_LOSSES`: a new loss registered there needs nothing here.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import yaml

from ..core.errors import ConfigError
from ..core.options import option
from .feature import FEATURE_LOSSES
from .logit import LOGIT_LOSSES
from .schedule import KD_SCHEDULES, KDSchedule

# constructor arguments the distiller fills in itself (not user options)
_BUILT_IN = {"self", "head", "gains", "student_channels", "teacher_channels", "names", "generator"}


def loss_options(cls) -> list[str]:
    """The keyword options a loss class takes (what `--kd-option` may set for it)."""
    return [p for p in inspect.signature(cls).parameters if p not in _BUILT_IN]


@dataclass
class DistillOptions:
    """Distillation (a teacher's logits and/or features pull the student)"""

    teacher: str | None = option(None, "teacher checkpoint (ours or official); in prune/compress 'auto' is the "
                                       "unpruned model", flag="--teacher", metavar="T.pt")
    logit: str | None = option(None, "logit distillation loss", flag="--kd-logit", choices=lambda: list(LOGIT_LOSSES))
    logit_weight: float | None = option(
        None, "weight of the logit loss (default: the loss's own: l1 1, l2 0.2, ast 0.01; docs/distillation.md)", flag="--kd-logit-weight", metavar="W")
    obj_weighted: bool = option(False, "weight the l1/l2 logit loss by the teacher's objectness",
                                flag="--kd-obj-weighted")
    feature: str | None = option(None, "feature distillation loss", flag="--kd-feature",
                                 choices=lambda: list(FEATURE_LOSSES))
    feature_weight: float | None = option(
        None, "weight of the feature loss (default: the loss's own: mimic 0.02, mgd 0.1, cwd 0.02, which put it "
              "near 0.15-0.25 of the detection loss; docs/distillation.md)", flag="--kd-feature-weight", metavar="W")
    auto_weight: float | None = option(
        None, "choose each distillation weight on the first batches so that the term is SHARE of the detection "
              "loss (e.g. 0.25); replaces --kd-logit-weight/--kd-feature-weight; the chosen weights are logged "
              "(console and results.csv train/kd_*_weight)", flag="--kd-auto-weight", metavar="SHARE")
    auto_weight_per_epoch: bool = option(
        False, "with --kd-auto-weight: measure again at the start of every epoch, so the share stays SHARE while "
               "both losses fall", flag="--kd-auto-weight-per-epoch")
    auto_weight_batches: int = option(
        10, "with --kd-auto-weight: batches measured each time (the running estimate is used meanwhile)",
        flag="--kd-auto-weight-batches", metavar="N")
    layers: list[int] | None = option(None, "student layers of the feature loss (default: the head's inputs)",
                                      flag="--kd-layers", metavar="I")
    teacher_layers: list[int] | None = option(None, "teacher layers paired with --kd-layers (default: the "
                                                    "teacher head's inputs)", flag="--kd-teacher-layers", metavar="J")
    schedule: str = option("constant", "how the distillation weight changes over training",
                           flag="--kd-schedule", choices=KD_SCHEDULES)
    final_ratio: float = option(0.01, "weight multiplier reached at the end by the linear and cosine schedules",
                                flag="--kd-final-ratio")
    stop_epoch: int | None = option(None, "switch distillation off after this many epochs", flag="--kd-stop-epoch")
    options: list[str] = option(help="a per-loss option KEY=VALUE, routed to the chosen logit or feature loss "
                                     "that takes it (e.g. beta=2 for ast, tau=2 for cwd, mask_ratio=0.5 for mgd; "
                                     "repeatable)", default_factory=list, flag="--kd-option", action="append",
                                metavar="KEY=VALUE")
    logit_options: dict = option(help="options of the logit loss class", default_factory=dict, cli=False)
    feature_options: dict = option(help="options of the feature loss class", default_factory=dict, cli=False)
    teacher_half: bool = option(True, "FP16 teacher on CUDA", cli=False)

    def given(self) -> list[str]:
        """The `--kd-*` flags set to something other than their default (they need a teacher)."""
        default = DistillOptions()
        names = [f for f in self.__dataclass_fields__ if f not in ("teacher", "teacher_half")]
        return [self.__dataclass_fields__[f].metadata.get("flag") or f for f in names
                if getattr(self, f) not in (getattr(default, f), None)]

    def check(self) -> "DistillOptions":
        if self.logit is None and self.feature is None:
            raise ConfigError("distillation needs a loss: add --kd-logit " + "|".join(LOGIT_LOSSES)
                              + " and/or --kd-feature " + "|".join(FEATURE_LOSSES))
        for flag, name, table in (("--kd-logit", self.logit, LOGIT_LOSSES),
                                  ("--kd-feature", self.feature, FEATURE_LOSSES)):
            if name is not None and name not in table:
                raise ConfigError(f"{flag} {name!r} is unknown; choose one of {', '.join(table)}")
        for flag, w in (("--kd-logit-weight", self.logit_weight), ("--kd-feature-weight", self.feature_weight)):
            if w is not None and not w >= 0:
                raise ConfigError(f"{flag} must be >= 0, got {w}")
        if self.auto_weight is not None and not 0 < self.auto_weight <= 10:
            raise ConfigError(f"--kd-auto-weight is the distillation term's share of the detection loss: give a "
                              f"value in (0, 10], e.g. 0.25; got {self.auto_weight}")
        if self.auto_weight is None and self.auto_weight_per_epoch:
            raise ConfigError("--kd-auto-weight-per-epoch needs --kd-auto-weight SHARE")
        if self.auto_weight_batches < 1:
            raise ConfigError(f"--kd-auto-weight-batches must be >= 1, got {self.auto_weight_batches}")
        if self.obj_weighted and "obj_weighted" not in self._takes(self.logit, LOGIT_LOSSES):
            raise ConfigError("--kd-obj-weighted applies to --kd-logit "
                              + " or ".join(n for n, c in LOGIT_LOSSES.items() if "obj_weighted" in loss_options(c))
                              + " only; drop it or change the loss")
        if self.feature is None and (self.layers or self.teacher_layers):
            raise ConfigError("--kd-layers/--kd-teacher-layers choose the layers of a feature loss: "
                              "add --kd-feature " + "|".join(FEATURE_LOSSES) + " or drop them")
        if self.stop_epoch is not None and self.stop_epoch < 1:
            raise ConfigError(f"--kd-stop-epoch must be >= 1 (distil during the first E epochs), got {self.stop_epoch}")
        KDSchedule(self.schedule, 1, self.final_ratio)  # validates kind and ratio
        self._route_options()
        return self

    def weights(self) -> dict[str, float]:
        """The fixed weight of each chosen term: the one given, else the loss class's DEFAULT_WEIGHT."""
        out = {}
        for term, name, given, table in (("kd_logit", self.logit, self.logit_weight, LOGIT_LOSSES),
                                         ("kd_feature", self.feature, self.feature_weight, FEATURE_LOSSES)):
            if name is not None:
                out[term] = float(table[name].DEFAULT_WEIGHT if given is None else given)
        return out

    @staticmethod
    def _takes(name, table) -> list[str]:
        return loss_options(table[name]) if name in table else []

    def _route_options(self) -> None:
        """`--kd-option key=value` -> the options of whichever chosen loss takes `key`."""
        logit_keys = self._takes(self.logit, LOGIT_LOSSES)
        feature_keys = self._takes(self.feature, FEATURE_LOSSES)
        for item in self.options:
            key, sep, text = str(item).partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"--kd-option {item!r}: write KEY=VALUE, e.g. --kd-option tau=2")
            value = yaml.safe_load(text)
            if key in logit_keys:
                self.logit_options[key] = value
            elif key in feature_keys:
                self.feature_options[key] = value
            else:
                chosen = [f"{n} takes {', '.join(k) or 'no options'}" for n, k in
                          ((self.logit, logit_keys), (self.feature, feature_keys)) if n]
                raise ConfigError(f"--kd-option {key}: no chosen loss takes {key!r} ({'; '.join(chosen)})")
        self.options = []  # routed: checking twice must not route twice
