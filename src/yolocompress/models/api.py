"""Library entry points for `yolocompress info` and `yolocompress export`."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from ..core.stats import model_summary
from .builder import Model
from .checkpoint import load_model
from .registry import load_user_modules


def _model(cfg=None, weights=None, nc=None, modules=()):
    load_user_modules(modules)
    if weights:
        model, _ = load_model(weights)
        if nc is not None and nc != model.nc:
            raise ConfigError(f"--nc {nc} does not apply to a checkpoint ({weights} has {model.nc} classes)")
        return model
    return Model(cfg, nc=nc)


def layer_table(model: Model) -> str:
    rows = [f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<22}arguments"]
    layers = model.yaml["backbone"] + model.yaml["head"]
    for m in model.model:
        np_now = sum(p.numel() for p in m.parameters())  # the real count: a pruned layer has fewer
        rows.append(f"{m.i:>3}{str(m.f):>18}{getattr(m, 'n', 1):>3}{np_now:>10}  {m.type:<22}{layers[m.i][3]}")
    return "\n".join(rows)


def info(cfg=None, weights=None, nc=None, imgsz=640, modules=()) -> dict:
    model = _model(cfg, weights, nc, modules)
    s = model_summary(model, imgsz)
    name = Path(weights or cfg).stem
    print(layer_table(model))
    print(f"{name} summary: {s['layers']} layers, {s['params']:,} parameters, {s['gflops']:.1f} GFLOPs at {imgsz}; "
          f"fused: {s['params_fused']:,} parameters, {s['gflops_fused']:.1f} GFLOPs")
    return {**s, "nc": model.nc, "imgsz": imgsz}


def export(weights, fmt="onnx", imgsz=640, batch_size=1, dynamic=False, half=False, device="cpu", modules=()) -> dict:
    from .export import check_onnx, export_onnx
    if fmt != "onnx":
        raise ConfigError(f"--format {fmt}: only onnx is supported")
    model = _model(weights=weights, modules=modules)
    out = Path(weights).with_suffix(".onnx")
    export_onnx(model, out, imgsz=imgsz, batch_size=batch_size, dynamic=dynamic, half=half, device=device)
    diff = None if half else check_onnx(out, model, imgsz, batch_size)
    print(f"exported {out}" + (f" (onnxruntime vs PyTorch max abs diff {diff:.2e})" if diff is not None else ""))
    return {"onnx": str(out), "max_abs_diff": diff}
