"""yolocompress: structured pruning and distillation for YOLOv5 and YOLOv7."""
__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a yolocompress or official YOLOv5/YOLOv7 checkpoint; returns the model in eval mode.

    `model(x)` on a `[B, 3, H, W]` tensor returns `(pred, raw)` like the official models, and
    `model.predict(image)` (a path, an HxWx3 uint8 BGR array or a list of them) the detections after NMS in the
    image's own pixels (see `yolocompress.engine.predict.Detector` for the options).
    """
    from .engine.predict import with_predict
    from .models.checkpoint import load as _load
    return with_predict(_load(path, device))
