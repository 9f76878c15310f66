"""Our checkpoint format: tensors and plain values only, so `torch.load(weights_only=True)` reads it.

A checkpoint carries the architecture yaml and the real (possibly pruned) shape of every conv and norm
layer, so a pruned model is rebuilt exactly: build from the yaml, re-shape the layers, load the weights.
"""
from __future__ import annotations

import copy
import datetime
import os
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from ..core.errors import CheckpointError, YoloCompressError
from ..core.rundir import publish
from .builder import Model
from .registry import declared_attributes
from .official import read_official

FORMAT = "yolocompress-checkpoint"
VERSION = 1


class ClassCountError(CheckpointError):
    """The weights were trained for another number of classes than the data has."""


def layer_structure(model: nn.Module) -> dict:
    """The shape-defining attributes of every conv, linear, attention and norm layer, by module path."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                         "groups": m.groups}
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"type": "BatchNorm2d", "num_features": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features}
        elif isinstance(m, nn.MultiheadAttention):  # pruned a head dimension at a time: the head count stays
            out[name] = {"type": "MultiheadAttention", "embed_dim": m.embed_dim, "kdim": m.kdim, "vdim": m.vdim,
                         "head_dim": m.head_dim, "num_heads": m.num_heads}
        elif isinstance(m, nn.LayerNorm):
            out[name] = {"type": "LayerNorm", "normalized_shape": list(m.normalized_shape)}
    for name, attrs in declared_attributes(model).items():  # split sizes pruning rewrote (register_module)
        out.setdefault(name, {}).update(attrs)
    return out


def conform_to(model: nn.Module, state_dict: dict, structure: dict | None = None) -> nn.Module:
    """Re-shape the model's layers (in place) so that a pruned state_dict loads into a freshly built model."""
    structure = structure or {}
    for name, m in model.named_modules():
        for attr, value in structure.get(name, {}).items():
            if attr != "type" and hasattr(m, attr):
                old = getattr(m, attr)
                setattr(m, attr, tuple(value) if isinstance(old, tuple) and isinstance(value, list) else value)
        prefix = f"{name}." if name else ""
        for group in ("_parameters", "_buffers"):
            for key, t in list(getattr(m, group).items()):
                src = state_dict.get(prefix + key)
                if t is not None and src is not None and src.shape != t.shape:
                    new = torch.empty(src.shape, dtype=t.dtype, device=t.device)
                    getattr(m, group)[key] = nn.Parameter(new, requires_grad=t.requires_grad) \
                        if isinstance(t, nn.Parameter) else new
    return model


def fuse_like(model: nn.Module, state_dict: dict) -> nn.Module:
    """Fuse (in place) each layer that `state_dict` holds in its fused, deploy form.

    Official files come with layers fused one by one: YOLOv7's RepConv as one `rbr_reparam` conv, a Conv
    without its BatchNorm. A layer whose keys differ from the state_dict's, and match once the layer is fused,
    is fused before loading; any other difference is left for the strict load to report.
    """
    keys = {k for k in state_dict if not k.endswith(".anchor_grid")}

    def visit(m: nn.Module, prefix: str):
        if m is not model and hasattr(m, "fuse"):
            theirs = {k for k in keys if k.startswith(prefix)}
            if {prefix + k for k in m.state_dict()} != theirs:
                trial = copy.deepcopy(m)
                trial.fuse()
                if {prefix + k for k in trial.state_dict()} == theirs:
                    m.fuse()
                    return
        for name, child in m.named_children():
            visit(child, f"{prefix}{name}.")

    visit(model, "")
    return model


def _plain(obj):
    """Only plain Python values and tensors go into a checkpoint (weights_only loading must accept it)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool, type(None), torch.Tensor)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _is_fused(model: nn.Module) -> bool:
    return not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) or any(
        getattr(m, "fused", False) for m in model.modules())


def model_record(model: Model) -> dict:
    """Everything needed to rebuild `model` exactly, without its weights."""
    return {"yaml": _plain(model.yaml), "names": list(model.names), "structure": layer_structure(model),
            "fused": _is_fused(model)}


def save_checkpoint(path, model: Model, *, state_dict=None, train_state=None, meta=None, extra=None) -> Path:
    """Write atomically (temporary file in the same folder, then rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    ckpt = {"format": FORMAT, "version": VERSION, **model_record(model),
            "model": {k: v.detach().cpu().clone() for k, v in sd.items()},
            "train_state": _plain(train_state) if train_state else None,
            "meta": _plain({"date": datetime.datetime.now().isoformat(timespec="seconds"), **(meta or {})}),
            "extra": _plain(extra) if extra else None}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-save (kill -9, power loss)
        stale.unlink(missing_ok=True)
    return path


def read_checkpoint(path) -> dict:
    """Read our format (weights_only) or, failing that, import an official checkpoint safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        is_zip = zipfile.is_zipfile(path)
    except (OSError, zipfile.BadZipFile):
        is_zip = False
    if not is_zip:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (truncated, or another kind of file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # damaged bytes surface as any error type (KeyError, UnicodeDecodeError, ...)
        if "Unsupported global" in str(e) or "weights_only" in str(e).lower():
            return {"format": "official", **read_official(path)}
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path}: cannot read it ({type(e).__name__}: {msg}); the file is damaged or "
                              "truncated, copy it again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a yolocompress checkpoint nor an official YOLOv5/YOLOv7 one")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer yolocompress (format version {ckpt['version']})")
    return ckpt


def model_from_record(record: dict, state_dict: dict) -> Model:
    """Rebuild a model (pruned or not) from a checkpoint record and load its weights."""
    model = Model(record["yaml"], names=record.get("names"))
    if record.get("fused"):
        model.fuse()
    fuse_like(model, state_dict)
    conform_to(model, state_dict, record.get("structure"))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights do not fit the architecture they came with: {str(e).splitlines()[1][:300] if len(str(e).splitlines()) > 1 else e}") from None
    return model


def architecture_for(record: dict, state_dict: dict, nc: int, names=None) -> Model:
    """The checkpoint's model (pruned or fused layers as it holds them) with a new head for `nc` classes.

    The head keeps its type, anchors, strides and input widths; its convs are new (initialised as the builder
    does, with the official bias priors), so only the class-independent tensors carry over.
    """
    model = model_from_record(record, state_dict)
    old = model.head
    if old.nc != nc:
        anchors = (old.anchors * old.stride.view(-1, 1, 1)).view(old.nl, -1).tolist()  # pixels, by stride
        new = type(old)(nc, anchors, [conv.in_channels for conv in old.m]).to(old.anchors.device)
        new.set_strides(old.stride.clone())
        new.initialize_biases()
        new.i, new.f, new.type, new.n = old.i, old.f, old.type, getattr(old, "n", 1)
        new.np = sum(p.numel() for p in new.parameters())
        model.model[-1] = new
        model.yaml["nc"] = nc
    model.names = list(names) if names else [str(i) for i in range(nc)]
    return model


def transfer_weights(model: nn.Module, state_dict: dict, exclude=()) -> tuple[int, int]:
    """Copy every tensor whose name and shape match (names ending in an `exclude` suffix aside), as the official
    trainers' intersect_dicts; returns (copied, tensors in the model)."""
    own = model.state_dict()
    take = {k: v for k, v in state_dict.items()
            if k in own and v.shape == own[k].shape and not k.endswith(tuple(exclude))}
    model.load_state_dict(take, strict=False)
    return len(take), len(own)


def load_model(path, device="cpu", nc: int | None = None) -> tuple[Model, dict]:
    """The model in a checkpoint of ours or an official one, and the checkpoint dict (for metadata/resume)."""
    ckpt = read_checkpoint(path)
    try:
        model = model_from_record(ckpt, ckpt["state_dict"] if ckpt["format"] == "official" else ckpt["model"])
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except YoloCompressError:  # e.g. a user module the yaml names is not registered: already one clear line
        raise
    except Exception as e:  # a damaged record (yaml, structure, tensors) must not surface as a traceback
        msg = " ".join(str(e).split())[:200]
        raise CheckpointError(f"{path}: the model it holds cannot be rebuilt ({type(e).__name__}: {msg})") from None
    if nc is not None and model.nc != nc:
        raise ClassCountError(f"{path}: the model has {model.nc} classes but the data has {nc}; this needs a model "
                              f"trained on this data: fine-tune it first (train --weights {path} --data ... "
                              f"transfers it to {nc} classes)")
    for p in model.parameters():
        p.requires_grad_(True)  # official checkpoints are stripped with requires_grad=False
    return model.to(device), ckpt


def load(path, device="cpu") -> Model:
    """Public API: the model in `path`, in eval mode; `model(x)` returns (pred, raw) like the official models."""
    return load_model(path, device)[0].eval()
