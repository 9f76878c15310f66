"""Small model configs and weight perturbations shared by the model tests."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch_pruning as tp

from yolocompress.models.builder import Model, load_config
from yolocompress.models.heads import ImplicitA, ImplicitM

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMGSZ = 64

# Shipped layouts shrunk to yolov5n-like widths so that building and running them takes milliseconds.
SMALL_WIDTH = {"yolov5n": 0.25, "yolov5s": 0.25, "yolov7-tiny": 0.25, "yolov7": 0.125}


def small_cfg(name: str, nc: int = 3, width: float | None = None, **overrides) -> dict:
    cfg = load_config(f"{name}.yaml")
    cfg.update(nc=nc, width_multiple=width or SMALL_WIDTH[name], **overrides)
    return cfg


def small_model(name: str, nc: int = 3, seed: int = 0, **overrides) -> Model:
    torch.manual_seed(seed)
    return Model(small_cfg(name, nc, **overrides))


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics/affine terms and implicit knowledge, so fusing has work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
        elif isinstance(m, ImplicitA):
            m.implicit.copy_(torch.randn(m.implicit.shape, generator=g) * 0.3)
        elif isinstance(m, ImplicitM):
            m.implicit.copy_(1 + torch.randn(m.implicit.shape, generator=g) * 0.3)
    return model


def image(batch: int = 1, size: int = IMGSZ, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """[pred, raw0, raw1, raw2] of an eval-mode forward."""
    pred, raw = model.eval()(x)
    return [pred, *raw]


def assert_outputs_close(got, expected, atol: float = 1e-4):
    """Logits within `atol`; decoded boxes are pixels (hundreds), so they also get 1e-6 relative slack."""
    for i, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-6 if i == 0 else 0.0, msg=lambda m: f"output {i}: {m}")


def prune(model, ratio=0.3):
    """Prune channels with Torch-Pruning directly (head untouched; IDetect's implicit terms are channel dim 1)."""
    implicit = [(m.implicit, 1) for m in model.head.modules() if isinstance(m, (ImplicitA, ImplicitM))]
    pruner = tp.pruner.BasePruner(model.eval(), image(), importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=[model.head], unwrapped_parameters=implicit)
    pruner.step()
    return model
