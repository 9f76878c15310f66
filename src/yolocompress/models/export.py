"""ONNX export of a detector: fused, eval mode, one input `images` and one output `output0` (decoded `pred`).

The legacy TorchScript exporter (`dynamo=False`) is used: it needs no onnxscript, is fast, and handles the
heads' grid construction under tracing; the export runs on a copy so the caller's model is left untouched.

The opset defaults to the lowest that expresses the model: 17, or 19 when it holds a
`torchvision.ops.DeformConv2d` (DCNv2, DyHead), which is written as ONNX `DeformConv` (from opset 19) through
the symbolic registered here for `torchvision::deform_conv2d`.
"""
from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.onnx import symbolic_helper

from ..core.errors import CheckpointError, ConfigError
from ..core.device import select_device
from ..core.rundir import publish

INPUT_NAME, OUTPUT_NAME = "images", "output0"
OPSETS = range(11, 21)  # Resize matches PyTorch's upsampling from 11; 20 is the TorchScript exporter's last
DEFAULT_OPSET = 17
DEFORM_CONV_OPSET = 19  # ONNX DeformConv first appears in opset 19


@symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d_symbolic(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                            groups, offset_groups, use_mask):
    """torchvision's deform_conv2d as ONNX DeformConv: the same offset layout ((y, x) per kernel position),
    the modulation mask as its optional last input."""
    kernel = symbolic_helper._get_tensor_sizes(weight)[-2:]
    inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op("DeformConv", *inputs, strides_i=[stride_h, stride_w], pads_i=[pad_h, pad_w, pad_h, pad_w],
                dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups, kernel_shape_i=kernel)


torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, DEFORM_CONV_OPSET)


def _deform_layers(model: nn.Module) -> list[str]:
    """Names of the model's DeformConv2d modules (they need opset 19)."""
    try:
        from torchvision.ops import DeformConv2d
    except ImportError:  # pragma: no cover
        return []
    return [name for name, m in model.named_modules() if isinstance(m, DeformConv2d)]


def choose_opset(model: nn.Module, opset: int | None) -> int:
    """`opset` checked against what the model needs; None: the lowest opset that expresses the model."""
    deform = _deform_layers(model)
    if opset is None:
        return DEFORM_CONV_OPSET if deform else DEFAULT_OPSET
    if opset not in OPSETS:
        raise ConfigError(f"export: --opset {opset!r} is not supported; use {OPSETS.start}..{OPSETS.stop - 1} "
                          f"(default {DEFAULT_OPSET}, {DEFORM_CONV_OPSET} for a model with DeformConv2d)")
    if deform and opset < DEFORM_CONV_OPSET:
        raise ConfigError(f"export: {deform[0]} is a DeformConv2d, which ONNX expresses (as DeformConv) from "
                          f"opset {DEFORM_CONV_OPSET}; use --opset {DEFORM_CONV_OPSET} or {OPSETS.stop - 1} "
                          f"(or leave --opset unset), not {opset}")
    return opset


class PredOnly(nn.Module):
    """Eval-mode detector that returns only the decoded predictions `[B, N, 5 + nc]`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def _check_args(imgsz: int, batch_size: int, stride: int):
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0 or imgsz % stride:
        raise ConfigError(f"export: --imgsz {imgsz!r} must be a positive multiple of the model stride {stride}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"export: --batch-size {batch_size!r} must be a positive integer")


def inference_copy(model: nn.Module, device: torch.device, half: bool = False) -> PredOnly:
    """A fused eval-mode copy of `model` on `device`, wrapped to return `pred` only."""
    m = copy.deepcopy(model).to(device).float().eval()
    if hasattr(m, "fuse"):
        m.fuse()
    for p in m.parameters():
        p.requires_grad_(False)
    wrapped = PredOnly(m).eval()
    return wrapped.half() if half else wrapped


def _model_stride(model: nn.Module) -> int:
    s = getattr(model, "stride", None)
    return int(s.max()) if isinstance(s, torch.Tensor) and s.numel() else 32


def export_onnx(model: nn.Module, path, imgsz: int = 640, batch_size: int = 1, dynamic: bool = False,
                half: bool = False, opset: int | None = None, device="cpu") -> Path:
    """Write `model` as ONNX to `path` atomically; returns the path. `half` needs a CUDA device.

    `opset` None: the lowest that expresses the model (`choose_opset`)."""
    import onnx

    dev = select_device(device)
    if half and dev.type != "cuda":
        raise ConfigError(f"export: --half needs a CUDA device (got {dev}); drop --half or use --device 0")
    opset = choose_opset(model, opset)
    _check_args(imgsz, batch_size, _model_stride(model))
    net = inference_copy(model, dev, half)
    x = torch.zeros(batch_size, 3, imgsz, imgsz, device=dev, dtype=torch.float16 if half else torch.float32)
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "anchors"}} \
        if dynamic else None

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)  # legacy exporter notice
            warnings.simplefilter("ignore", category=getattr(torch.jit, "TracerWarning", UserWarning))
            torch.onnx.export(net, (x,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
        proto = onnx.load(tmp)
        onnx.checker.check_model(proto)
        _add_metadata(proto, model, imgsz)
        onnx.save(proto, tmp)
        publish(tmp, path)
    except Exception as e:  # a module the tracer or this opset cannot express: say so in one line
        Path(tmp).unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(f"export {path}: ONNX export failed at opset {opset} ({type(e).__name__}: {first}); "
                          f"if the failing operator exists at another opset, choose it with --opset N ({OPSETS.start}.."
                          f"{OPSETS.stop - 1}); a custom module must be traceable (tensor operations only, no "
                          "Python-side decisions on tensor values)") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _add_metadata(proto, model: nn.Module, imgsz: int):
    """Stride and class names in the ONNX metadata, so a runtime can decode and label without our code."""
    meta = {"stride": str(_model_stride(model)), "imgsz": str(imgsz),
            "names": repr(list(getattr(model, "names", [])))}
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    """`output0` of an ONNX file for input `x` under onnxruntime (CPU), as float32."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    feed = x.cpu().numpy().astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
    return session.run([OUTPUT_NAME], {inp.name: feed})[0].astype(np.float32)


def check_onnx(path, model: nn.Module, imgsz: int = 640, batch_size: int = 1, seed: int = 0) -> float:
    """Max absolute difference between onnxruntime and the fused fp32 PyTorch model on a random input.

    Box columns are pixels: float32 rounding alone gives ~1e-4 at a few hundred pixels.
    """
    x = torch.rand(batch_size, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = inference_copy(model, torch.device("cpu"))(x).numpy()
    got = run_onnx(path, x)
    if got.shape != expected.shape:
        raise CheckpointError(f"{path}: ONNX output shape {got.shape} differs from the model's {expected.shape}")
    return float(np.abs(got - expected).max())


def _missing_kernel(e: Exception) -> str | None:
    """The operator onnxruntime names in a 'no implementation' error, else None."""
    text = str(e)
    if "Could not find an implementation for" not in text:
        return None
    return text.split("Could not find an implementation for", 1)[1].strip().split(" ")[0]


def parity_or_reason(path, model: nn.Module, imgsz: int = 640, batch_size: int = 1) -> tuple[float | None, str]:
    """(max abs diff onnxruntime vs PyTorch, "") or (None, one line saying why onnxruntime cannot run it)."""
    import onnxruntime as ort

    try:
        return check_onnx(path, model, imgsz, batch_size), ""
    except Exception as e:  # only a missing kernel is a runtime limit; anything else is a real failure
        op = _missing_kernel(e)
        if op is None:
            raise
        return None, (f"onnxruntime {ort.__version__} has no kernel for {op}: {Path(path).name} is valid ONNX "
                      f"(onnx.checker) but its parity with PyTorch was not checked; run it where {op} is "
                      "implemented")
