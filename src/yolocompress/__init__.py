"""yolocompress: structured pruning and distillation for YOLOv5 and YOLOv7."""
__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a yolocompress or official YOLOv5/YOLOv7 checkpoint; returns the model in eval mode."""
    from .models.checkpoint import load as _load
    return _load(path, device)
