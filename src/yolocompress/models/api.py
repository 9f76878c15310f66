"""Library entry points for `yolocompress info` and `yolocompress export`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import ConfigError
from ..core.options import imgsz_option, modules_option, option, positive_int
from ..core.stats import model_summary, uncounted_modules
from .builder import Model
from .checkpoint import load_model
from .registry import load_user_modules, lookup


@dataclass
class InfoOptions:
    """Model summary"""

    cfg: str | None = option(None, "model yaml (ours, e.g. yolov5s.yaml, or your own)", metavar="MODEL.yaml")
    weights: str | None = option(None, "checkpoint (ours or an official .pt)", metavar="W.pt")
    nc: int | None = option(None, "number of classes of a yaml model (default: the yaml's)", type=positive_int)
    imgsz: int = imgsz_option()
    modules: list = modules_option()


@dataclass
class ExportOptions:
    """Export"""

    weights: str = option("", "checkpoint to export (ours or an official .pt)", required=True, metavar="W.pt")
    format: str = option("onnx", "export format", choices=("onnx",))
    imgsz: int = imgsz_option()
    batch_size: int = option(1, "input batch size (fixed unless --dynamic)", type=positive_int)
    dynamic: bool = option(False, "dynamic batch and image size axes")
    half: bool = option(False, "FP16 model (CUDA only)")
    device: str = option("cpu", "device the model is traced on")
    opset: int | None = option(None, "ONNX opset, 11..20 (default: 17, or 19 when the model holds a DeformConv2d, "
                               "which ONNX writes as DeformConv from opset 19)", type=positive_int)
    modules: list = modules_option()


def _model(cfg=None, weights=None, nc=None, modules=()):
    load_user_modules(modules)
    if weights:
        model, _ = load_model(weights)
        if nc is not None and nc != model.nc:
            raise ConfigError(f"--nc {nc} does not apply to a checkpoint ({weights} has {model.nc} classes)")
        return model
    return Model(cfg, nc=nc)


def layer_channels(model: Model) -> dict[int, tuple]:
    """(input channels, output channels) of every layer as the model really is, measured in one small forward
    pass: a pruned model's numbers, which its yaml (written before pruning) does not know."""
    seen: dict[int, tuple] = {}

    def hook(m, inputs, output):
        x = inputs[0]
        c_in = [t.shape[1] for t in x] if isinstance(x, (list, tuple)) else x.shape[1]
        seen[m.i] = (c_in, output.shape[1] if isinstance(output, torch.Tensor) else None)

    hooks = [m.register_forward_hook(hook) for m in model.model]
    training = model.training
    s = 2 * max(int(model.stride.max()), 32)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, s, s, device=next(model.parameters()).device))
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return seen


def layer_table(model: Model) -> str:
    """The official layer table; a layer whose first yaml argument is its output channel count shows the real
    [in, out, *rest] instead, as official YOLOv5 prints its parsed arguments."""
    rows = [f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<22}arguments"]
    layers = model.yaml["backbone"] + model.yaml["head"]
    channels = layer_channels(model)
    for m in model.model:
        np_now = sum(p.numel() for p in m.parameters())  # the real count: a pruned layer has fewer
        args = list(layers[m.i][3])
        c_in, c_out = channels.get(m.i, (None, None))
        if lookup(m.type).kind == "channels" and c_out is not None and args:
            args = [c_in, c_out, *args[1:]]
        rows.append(f"{m.i:>3}{str(m.f):>18}{getattr(m, 'n', 1):>3}{np_now:>10}  {m.type:<22}{args}")
    return "\n".join(rows)


def info(opts: InfoOptions) -> dict:
    if bool(opts.cfg) == bool(opts.weights):
        raise ConfigError("info: give exactly one of --cfg MODEL.yaml or --weights W.pt")
    cfg, weights, imgsz = opts.cfg, opts.weights, opts.imgsz
    model = _model(cfg, weights, opts.nc, opts.modules)
    s = model_summary(model, imgsz)
    name = Path(weights or cfg).stem
    print(layer_table(model))
    print(f"{name} summary: {s['layers']} layers, {s['params']:,} parameters, {s['gflops']:.1f} GFLOPs at {imgsz}; "
          f"fused: {s['params_fused']:,} parameters, {s['gflops_fused']:.1f} GFLOPs")
    uncounted = uncounted_modules(model)
    if uncounted:
        print(f"not in the GFLOPs count (weights no counting rule reads, see docs/custom-modules.md): "
              f"{'; '.join(uncounted)}")
    return {**s, "nc": model.nc, "imgsz": imgsz, "uncounted": uncounted}


def export(opts: ExportOptions) -> dict:
    """ONNX next to the checkpoint, parity-checked in onnxruntime (fp32) where the runtime can run it."""
    from .export import choose_opset, export_onnx, parity_or_reason
    if opts.format != "onnx":
        raise ConfigError(f"--format {opts.format}: only onnx is supported")
    model = _model(weights=opts.weights, modules=opts.modules)
    out = Path(opts.weights).with_suffix(".onnx")
    opset = choose_opset(model, opts.opset)
    export_onnx(model, out, imgsz=opts.imgsz, batch_size=opts.batch_size, dynamic=opts.dynamic, half=opts.half,
                device=opts.device, opset=opset)
    diff, reason = (None, "") if opts.half else parity_or_reason(out, model, opts.imgsz, opts.batch_size)
    print(f"exported {out} (opset {opset})" + (f" (onnxruntime vs PyTorch max abs diff {diff:.2e})"
                                               if diff is not None else ""))
    if reason:
        print(reason)
    return {"onnx": str(out), "opset": opset, "max_abs_diff": diff, "parity_skipped": reason or None}
