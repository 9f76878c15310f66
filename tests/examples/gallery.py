"""The gallery of community modules (examples/modules/) as test cases, and the steps every gallery model takes.

Each `Entry` is one yaml of the gallery; `build(entry)` loads its modules file and builds it at a tiny width.
The pruning tests plug in here: they take the same entries and models (`GALLERY`, `build`) and add their
per-method assertions; `KNOWN_BAD` entries fail in training by design (the gallery's what-not-to-write).
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from yolocompress.core.hyp import Hyp
from yolocompress.engine.losses import build_loss
from yolocompress.models.builder import Model, load_config
from yolocompress.models.layers import user_module_layers
from yolocompress.models.registry import load_user_modules

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "modules"
IMGSZ, WIDTH, NC = 64, 0.125, 3


def _catalogue():
    spec = importlib.util.spec_from_file_location("gallery_make_yamls", EXAMPLES / "make_yamls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Entry:
    family: str
    yaml: str
    modules: str

    @property
    def id(self) -> str:
        return self.yaml.removesuffix(".yaml")

    @property
    def base(self) -> str:
        return "yolov7-tiny" if self.yaml.startswith("yolov7-tiny") else "yolov5n"

    @property
    def modules_path(self) -> Path:
        return EXAMPLES / self.modules


CATALOGUE = _catalogue()
GALLERY = [Entry(*row) for row in CATALOGUE.gallery()]
KNOWN_BAD = {"fasternet-inplace"}  # in-place slice write: autograd refuses it in training
DEFORMABLE = {"dcn", "dyhead"}  # torchvision DeformConv2d: ONNX DeformConv, opset 19


def build(entry: Entry, width: float = WIDTH, nc: int = NC, seed: int = 0) -> Model:
    """The entry's model at `width` (registers its modules first; restore the registry around the test)."""
    load_user_modules([entry.modules_path])
    cfg = load_config(entry.modules_path.parent / entry.yaml)
    cfg.update(width_multiple=width, nc=nc)
    torch.manual_seed(seed)
    return Model(cfg)


def targets(batch: int, nc: int = NC, seed: int = 0) -> torch.Tensor:
    """Two boxes per image: rows (image, class, xc, yc, w, h), normalised."""
    g = torch.Generator().manual_seed(seed)
    rows = [[i, int(torch.randint(nc, (1,), generator=g)), *(0.3 + 0.4 * torch.rand(2, generator=g)).tolist(),
             *(0.1 + 0.3 * torch.rand(2, generator=g)).tolist()] for i in range(batch) for _ in range(2)]
    return torch.tensor(rows)


def train_step(model: nn.Module, batch: int = 2, lr: float = 0.01) -> float:
    """One SGD step on the detection loss (the v7 OTA loss for a yolov7 yaml's hyp is not needed here: the
    step checks that forward, loss and backward run through the modules and that the weights move)."""
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    imgs = torch.rand(batch, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(1))
    loss, _ = build_loss(model, Hyp(), IMGSZ)(model(imgs), targets(batch))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def unload(entry: Entry) -> None:
    sys.modules.pop(f"yolocompress_user_{Path(entry.modules).stem}", None)


# ---- pruning: the step the pruning tests share ----------------------------------------------------------------
PRUNE_METHODS = ("lamp", "group_norm")  # every gallery model is pruned by each, and one model per family by PAGCP


def family_layers(model: Model, entry: Entry) -> list[int]:
    """Indices of the layers whose module class comes from the entry's file."""
    return user_module_layers(model, entry.modules)


@dataclass
class Pruned:
    """What a pruning test needs from either loop: the pruned model (PAGCP returns a copy) and the outcome."""
    model: nn.Module
    reached: bool
    stop_reason: str
    skipped: list


def prune(model: Model, method: str, speedup: float = 2.0, max_steps: int = 15, family=(),
          global_pruning: bool | None = None) -> Pruned:
    """The method's loop as the prune command runs it (GFLOPs metric) on a tiny model. Torch-Pruning methods:
    `prune_to_target`, in place. PAGCP: its guard, then `pagcp_prune` on one random calibration batch in one
    round with coarse rates; to keep it fast, only the convs of the `family` layers (indices) and of the layers
    that feed them are candidates (every other conv is ignored), to `speedup` or the end of the round."""
    example = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(3))
    if method != "pagcp":
        from yolocompress.prune.speedup import prune_to_target
        out = prune_to_target(model, example, method, speedup, imgsz=IMGSZ, max_steps=max_steps, measure=False,
                              global_pruning=global_pruning)
        return Pruned(model, out.reached, out.stop_reason, out.skipped)
    from yolocompress.prune import pagcp
    g = torch.Generator().manual_seed(4)
    batches = [(torch.rand(2, 3, IMGSZ, IMGSZ, generator=g), targets(2))]
    ignored, skipped, opaque = pagcp._guard(model, example)
    ignored += [m for m in _convs_outside(model, family) if not any(m is i for i in ignored)]
    res = pagcp.pagcp_prune(model, batches, build_loss(model, Hyp.default_for(model.yaml), IMGSZ), speedup=speedup,
                            imgsz=IMGSZ, initial_rate=0.3, initial_thres=50.0, rounds=1, ignored_layers=ignored,
                            opaque=opaque, progress=lambda *_: None)
    return Pruned(res.model, res.gflops_ratio > 1.0, f"{res.gflops_ratio:.2f}x GFLOPs", skipped)


def _convs_outside(model: Model, family) -> list[nn.Module]:
    """The convolutions neither in the `family` layers nor in the layers that feed them (a group rooted just
    before a block holds its input side: an attention's residual, ECA's neighbour)."""
    from yolocompress.models.layers import input_layers
    keep = tuple(f"model.{i}." for i in sorted(set(family) | set(input_layers(model, list(family)))))
    return [m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and not n.startswith(keep)]
