"""Typed options of a training run (what the CLI's train flags fill in)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..core.errors import ConfigError


@dataclass
class TrainOptions:
    data: str = ""
    epochs: int = 100
    batch_size: int = 16
    imgsz: int = 640
    device: str = ""
    workers: int = 8
    seed: int = 0
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False
    cos_lr: bool = False
    nbs: int = 64  # nominal batch size: gradients accumulate to it
    patience: int = 100
    sync_bn: bool = False
    val_every: int = 1  # validate every N epochs (the last epoch always)
    noval: bool = False  # validate after the last epoch only
    noautoanchor: bool = False  # keep the config's anchors even when they fit the data badly
    amp: bool = True  # on CUDA only
    max_grad_norm: float = 10.0
    label_smoothing: float = 0.0
    modules: list = field(default_factory=list)

    def check(self) -> "TrainOptions":
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.imgsz < 32:
            raise ConfigError(f"--imgsz must be at least 32, got {self.imgsz}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def check_imgsz(imgsz: int, stride: int) -> int:
    """Round the image size up to a multiple of the model's stride, saying so when it changes."""
    new = max(int(-(-imgsz // stride) * stride), stride)
    if new != imgsz:
        import logging
        logging.getLogger("yolocompress").warning(
            f"--imgsz {imgsz} is not a multiple of the model stride {stride}; using {new}")
    return new
