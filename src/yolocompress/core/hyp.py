"""Training hyperparameters under the official YOLOv5/YOLOv7 key names, as one typed dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import yaml

from .errors import ConfigError


@dataclass
class Hyp:
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    box: float = 0.05
    cls: float = 0.5
    cls_pw: float = 1.0
    obj: float = 1.0
    obj_pw: float = 1.0
    iou_t: float = 0.20
    anchor_t: float = 4.0
    fl_gamma: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    flipud: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    paste_in: float = 0.0
    label_smoothing: float = 0.0
    loss_ota: int = 0

    @classmethod
    def from_dict(cls, values: dict, source: str = "hyp") -> "Hyp":
        """Build from a dict; unknown keys or non-numeric values are errors (a typo must not be ignored)."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of hyperparameter names to numbers")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(k if isinstance(k, str) and k.isprintable() else repr(k) for k in set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown hyperparameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(known)}")
        out = {}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{source}: '{k}' must be a number, got {v!r}")
            out[k] = int(v) if known[k].type in ("int", int) else float(v)
        return cls(**out)

    @classmethod
    def load(cls, path: str | Path) -> "Hyp":
        """Read a hyp yaml; every key must be known, missing keys take the defaults of this dataclass."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"hyp file not found: {p}")
        try:
            values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{p}: not a text (UTF-8) file ({e.reason} at byte {e.start})") from None
        return cls.from_dict(values, str(p))

    @classmethod
    def default_for(cls, model_yaml: dict) -> "Hyp":
        """The official defaults: scratch-low for YOLOv5, the tiny OTA hyps for models with an IDetect head."""
        head = model_yaml.get("head") or [[None, None, "Detect"]]
        name = "yolov7-tiny.yaml" if str(head[-1][2]) == "IDetect" else "scratch-low.yaml"
        text = resources.files(__package__).joinpath("hyps", name).read_text()
        return cls.from_dict(yaml.safe_load(text), name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
