"""The detection loss a model trains with, chosen by the hyperparameters (never by the model's version)."""
from __future__ import annotations

import torch.nn as nn

from ..core.hyp import Hyp
from .loss import DetectionLoss
from .loss_ota import OTADetectionLoss


def build_loss(model: nn.Module, hyp: Hyp, imgsz: int) -> DetectionLoss:
    """The YOLOv7 OTA loss when `hyp.loss_ota`, else the YOLOv5 loss."""
    return OTADetectionLoss(model, hyp, imgsz) if hyp.loss_ota else DetectionLoss(model, hyp, imgsz)
