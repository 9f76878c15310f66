"""Typed options of training and validation: what the `train`/`val` flags fill in, and what the library takes.

Each field is declared once with `core.options.option` (its flag, default and help text come from here); the
options several commands share (`data_option`, `imgsz_option`, ...) are declared in core/options.py.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from ..core.errors import ConfigError
from ..core.options import (batch_option, data_option, device_option, exist_ok_option, imgsz_option, modules_option,
                            name_option, non_negative_int, option, positive_int, project_option, workers_option)

LOGGER = logging.getLogger("yolocompress")
VAL_TASKS = ("val", "test", "speed")

OPTIMIZERS = ("SGD", "Adam", "AdamW")
CACHE_MODES = ("ram", "disk")


@dataclass
class TrainOptions:
    """Training"""

    data: str = data_option(required=False)  # --resume restores it from the run
    epochs: int = option(100, "training epochs", type=positive_int)
    batch_size: int = batch_option(16)
    imgsz: int = imgsz_option()
    device: str = device_option()
    workers: int = workers_option()
    hyp: str | None = option(None, "hyperparameter yaml (default: the official values for the model: scratch-low "
                                   "for YOLOv5, the tiny or p5 file for YOLOv7)", metavar="HYP.yaml")
    seed: int = option(0, "random seed of initial weights, data order and augmentation")
    project: str = project_option("runs/train")
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    cos_lr: bool = option(False, "cosine learning-rate decay instead of the official linear one")
    patience: int = option(100, "stop when validation fitness has not improved for N epochs",
                           type=non_negative_int)
    sync_bn: bool = option(False, "SyncBatchNorm in multi-GPU (DDP) training")
    label_smoothing: float = option(0.0, "label smoothing epsilon of the class loss (official: 0.0)")
    val_every: int = option(1, "validate every N epochs (the last epoch always)", type=positive_int)
    noval: bool = option(False, "validate only after the last epoch")
    noautoanchor: bool = option(False, "keep the model's anchors even when their best possible recall on the data "
                                       "is under 0.98")
    noplots: bool = option(False, "write no labels.jpg, train_batch/val_batch mosaics or validation curves "
                                  "(results.png is still drawn)")
    modules: list = modules_option()
    optimizer: str = option("SGD", "optimizer, with the official parameter groups (weight decay on conv weights "
                                   "only): SGD (Nesterov, momentum = hyp momentum), Adam or AdamW (betas: hyp "
                                   "momentum, 0.999); Adam/AdamW usually want a lower lr0 (1e-3)", choices=OPTIMIZERS)
    rect: bool = option(False, "rectangular training batches: images sorted by aspect ratio, each batch letterboxed "
                               "to its own shape; turns off shuffling and mosaic")
    multi_scale: bool = option(False, "train each batch at a random size in imgsz x 0.5-1.5 (a multiple of the "
                                      "model stride)")
    single_cls: bool = option(False, "train as one class: every label becomes class 0, named 'item'")
    save_period: int = option(-1, "also save weights/epochN.pt after every N-th epoch (N counted from 1, as on the "
                                  "console); -1 or 0: never")
    cache: str | None = option(None, "decode each training image once: 'ram' keeps them in memory, 'disk' saves "
                                     "<image>.npy beside each image (the folder must be writable); --cache alone: ram",
                               choices=CACHE_MODES, nargs="?", const="ram")
    allow_background: bool = option(False, "train even when no training image has a label file (all background); "
                                           "without it such data is refused, as a wrong labels path is the usual cause")
    nbs: int = option(64, "nominal batch size: gradients accumulate to it", cli=False)
    amp: bool = option(True, "mixed precision on CUDA", cli=False)
    max_grad_norm: float = option(10.0, "gradient clipping norm", cli=False)
    freeze: list = option(default_factory=lambda: [0], nargs="+", type=non_negative_int, metavar="N",
                          help="freeze layers, as the official trainers do: one number N freezes the first N layers "
                               "(10 = the YOLOv5 backbone), several numbers freeze those layer indices "
                               "(0 1 2); 0 freezes nothing. Frozen parameters keep their values and leave the "
                               "optimizer; BatchNorm statistics still adapt")

    def check(self) -> "TrainOptions":
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.imgsz < 32:
            raise ConfigError(f"--imgsz must be at least 32, got {self.imgsz}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if not self.freeze or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.freeze):
            raise ConfigError(f"--freeze takes layer counts or indices >= 0, got {self.freeze}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.cache not in (None, *CACHE_MODES):
            raise ConfigError(f"--cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.patience < 0:
            raise ConfigError(f"--patience must be >= 0 (0 turns early stopping off), got {self.patience}")
        return self

    def frozen_layers(self) -> list[int]:
        """The layer indices `freeze` names: one number N is the first N layers, several are indices."""
        return list(range(self.freeze[0])) if len(self.freeze) == 1 else sorted(set(self.freeze))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "TrainOptions":
        """Options saved in a checkpoint by this or an older version (unknown keys of a newer one are dropped)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in saved.items() if k in known})


@dataclass
class ValOptions:
    """Validation"""

    weights: str = option("", "checkpoint to validate (ours or an official .pt)", required=True, metavar="W.pt")
    data: str = data_option()
    imgsz: int = imgsz_option()
    batch_size: int = batch_option(32)
    device: str = device_option()
    workers: int = workers_option()
    conf_thres: float = option(0.001, "confidence threshold of the predictions scored (official val.py: 0.001)")
    iou_thres: float = option(0.6, "NMS IoU threshold (official val.py: 0.6)")
    max_det: int = option(300, "most detections kept per image", type=positive_int)
    per_class: bool = option(False, "print the per-class table (it is always in the run folder's results.txt)")
    task: str = option("val", "val: the dataset yaml's val split; test: its test split; speed: time the model on "
                              "the val split at conf 0.25 / IoU 0.45, writing nothing", choices=VAL_TASKS)
    save_json: bool = option(False, "write COCO-format results <weights>_predictions.json (image_id, category_id, "
                                    "bbox [x, y, w, h] in original-image pixels, score)")
    save_txt: bool = option(False, "write labels/<image>.txt: a 'cls xc yc w h' row per detection, normalised to "
                                   "the original image")
    save_conf: bool = option(False, "with --save-txt, add each detection's confidence as a 6th column")
    plots: bool = option(True, "write PR/F1/P/R curves, the confusion matrix and val_batch mosaics")
    project: str = project_option("runs/val")
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
    modules: list = modules_option()


def check_imgsz(imgsz: int, stride: int) -> int:
    """Round the image size up to a multiple of the model's stride, saying so when it changes."""
    new = max(int(-(-imgsz // stride) * stride), stride)
    if new != imgsz:
        LOGGER.warning(f"--imgsz {imgsz} is not a multiple of the model stride {stride}; using {new}")
    return new


def model_stride(model) -> int:
    """The stride the data and image sizes must be multiples of (at least 32, as the official code)."""
    return max(int(model.stride.max()), 32)
