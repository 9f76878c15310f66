"""Turn an official-format model yaml into an nn.Module, with the official parse rules.

One short loop, as in YOLOv5's parse_model: each layer remembers its index (`i`), its inputs (`f`), its
type name and its parameter count. Nothing in a yaml is ever `eval`-ed: argument strings are resolved
against a small table of names.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import math
import re
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from ..core.errors import ConfigError
from . import heads, modules  # noqa: F401  (registers the built-in modules)
from .registry import attach_width_hooks, lookup, registered_names

REQUIRED_KEYS = ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head")
_ACTIVATIONS = {name: getattr(nn, name) for name in
                ("SiLU", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Mish", "GELU", "Sigmoid", "Tanh", "Identity")}
_CALL = re.compile(r"^(?:nn\.)?(\w+)\((.*)\)$")
# Sanity bounds: far above any real detector (YOLOv7-E6E: 1280 channels; LVIS: 1203 classes), low enough that a
# typo (`width_multiple: 50`, `nc: 100000000`) is an error instead of an allocation that hangs or exhausts memory.
MAX_CHANNELS, MAX_CLASSES, MAX_REPEATS = 8192, 10000, 100


def builtin_configs() -> list[str]:
    return sorted(p.name for p in resources.files(__package__).joinpath("configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(cfg) -> dict:
    """A model yaml as a dict: a dict, a path, or the name of a shipped config (e.g. `yolov5n.yaml`)."""
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    if not isinstance(cfg, (str, Path)):
        raise ConfigError(f"model config must be a mapping, a yaml path or a shipped config name, got {cfg!r:.80}")
    path = Path(cfg)
    if not path.is_file():
        shipped = resources.files(__package__).joinpath("configs", path.name if path.suffix else path.name + ".yaml")
        if not shipped.is_file():
            raise ConfigError(f"model config not found: {cfg} (shipped configs: {', '.join(builtin_configs())})")
        text, source = shipped.read_text(), path.name
    else:
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a text (UTF-8) file ({e.reason} at byte {e.start})") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: a model config must be a mapping with keys {', '.join(REQUIRED_KEYS)}")
    d.setdefault("yaml_file", Path(source).name)
    return d


def parse_activation(value):
    """'nn.LeakyReLU(0.1)' -> nn.LeakyReLU(0.1, inplace=True), without eval."""
    m = _CALL.match(str(value).strip())
    if not m or m.group(1) not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {value!r} (known: {', '.join(_ACTIVATIONS)})")
    args = [ast.literal_eval(a.strip()) for a in m.group(2).split(",") if a.strip()] if m.group(2) else []
    act = _ACTIVATIONS[m.group(1)](*args)
    if hasattr(act, "inplace"):
        act.inplace = True
    return act


def _resolve_arg(a, names: dict):
    """Map a yaml argument string to a value: 'nc', 'anchors', 'None', activations; other strings stay strings."""
    if not isinstance(a, str):
        return a
    if a in names:
        return names[a]
    if _CALL.match(a.strip()):
        return parse_activation(a)
    with contextlib.suppress(ValueError, SyntaxError):
        return ast.literal_eval(a)
    return a


def make_divisible(x, divisor=8):
    return math.ceil(x / divisor) * divisor


def _is_anchor_free(d: dict) -> bool:
    """A YOLOv8-style yaml (ultralytics 8.x): `scales:` and an anchor-free `Detect` head, no `anchors`."""
    head = d.get("head") if isinstance(d.get("head"), list) else []
    anchorless_detect = any(isinstance(row, (list, tuple)) and len(row) > 3 and str(row[2]) == "Detect"
                            and "anchors" not in [str(a) for a in (row[3] if isinstance(row[3], list) else [])]
                            for row in head)
    return "anchors" not in d and ("scales" in d or anchorless_detect)


def _check_config(d: dict, source: str):
    if _is_anchor_free(d):
        raise ConfigError(f"{source}: a YOLOv8-style (anchor-free) config, which yolocompress does not support; "
                          f"use a YOLOv5 or YOLOv7 config (anchor-based), e.g. one of {', '.join(builtin_configs())}")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
    for k in ("nc",):
        if isinstance(d[k], bool) or not isinstance(d[k], int) or not 1 <= d[k] <= MAX_CLASSES:
            raise ConfigError(f"{source}: '{k}' must be an integer in 1..{MAX_CLASSES}, got {d[k]!r}")
    for k in ("depth_multiple", "width_multiple"):
        if isinstance(d[k], bool) or not isinstance(d[k], (int, float)) or not 0 < d[k] < math.inf:
            raise ConfigError(f"{source}: '{k}' must be a positive number, got {d[k]!r}")
    for k in ("backbone", "head"):
        if not isinstance(d[k], list) or not d[k]:
            raise ConfigError(f"{source}: '{k}' must be a non-empty list of [from, number, module, args]")
    for i, row in enumerate(d["backbone"] + d["head"]):
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[3], list)):
            raise ConfigError(f"{source}: layer {i}: expected [from, number, module, args], got {row!r}")
        if isinstance(row[1], bool) or not isinstance(row[1], int) or row[1] < 1:
            raise ConfigError(f"{source}: layer {i}: 'number' must be a positive integer, got {row[1]!r}")


def _check_anchors(anchors, source: str):
    """One list per level of (w, h) pixel pairs, the same count on every level."""
    def number(v):
        return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v < math.inf
    ok = isinstance(anchors, list) and anchors and all(
        isinstance(a, list) and a and len(a) % 2 == 0 and len(a) == len(anchors[0]) and all(map(number, a))
        for a in anchors)
    if not ok:
        raise ConfigError(f"{source}: 'anchors' must be one list of (w, h) pixel pairs per detection level, e.g. "
                          f"[[10,13, 16,30], [30,61, 62,45]] (auto-anchors are not supported), got {anchors!r:.80}")


def parse_model(d: dict, ch: int = 3):
    """Build the layer list and the indices whose outputs later layers read."""
    source = d.get("yaml_file", "model yaml")
    _check_config(d, source)
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    _check_anchors(anchors, source)
    na = len(anchors[0]) // 2
    no = na * (nc + 5)
    names = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    previous_act = modules.Conv.default_act
    try:
        if d.get("activation"):
            modules.Conv.default_act = parse_activation(d["activation"])
        return _parse_layers(d, ch, gd, gw, no, names, source)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None
    finally:
        modules.Conv.default_act = previous_act


def _parse_layers(d, ch, gd, gw, no, names, source):
    layers, save, chs = [], [], [ch]
    rows = d["backbone"] + d["head"]
    for i, (f, n, name, args) in enumerate(rows):
        where = f"{source}: layer {i} ({name})"
        try:
            spec = lookup(str(name))
        except KeyError:
            raise ConfigError(f"{where}: unknown module '{name}'; registered: {', '.join(registered_names())}; "
                              "register your own with @register_module and --modules FILE.py") from None
        froms = [f] if isinstance(f, int) else f
        if not isinstance(froms, list) or not froms or not all(isinstance(x, int) and not isinstance(x, bool) for x in froms):
            raise ConfigError(f"{where}: 'from' must be an integer or a list of integers, got {f!r}")
        for x in froms:
            j = x if x >= 0 else i + x
            if not (0 <= j < i or (x == -1 and i == 0)):
                raise ConfigError(f"{where}: 'from' index {x} does not name an earlier layer (valid: -{i}..{i - 1})")
        args = [_resolve_arg(a, names) for a in args]
        n = n_ = max(round(n * gd), 1) if n > 1 else n
        if n > MAX_REPEATS:
            raise ConfigError(f"{where}: {n} repeats (number x depth_multiple) is over {MAX_REPEATS}; check the yaml")
        c_in = [chs[x] if x < 0 else chs[x + 1] for x in froms]
        if spec.kind == "channels":
            if not args or not isinstance(args[0], int):
                raise ConfigError(f"{where}: first argument must be the output channel count, got {args!r}")
            c1, c2 = c_in[0], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            if not 1 <= c2 <= MAX_CHANNELS:
                raise ConfigError(f"{where}: {c2} output channels (after width_multiple) is outside "
                                  f"1..{MAX_CHANNELS}; check the yaml")
            args = [c1, c2, *args[1:]]
            if spec.repeats_as_arg:
                args.insert(2, n)
                n = 1
        elif spec.kind == "bn":
            args, c2 = [c_in[0]], c_in[0]
        elif spec.kind == "concat":
            c2 = sum(c_in)
        elif spec.kind == "head":
            args.append(c_in)
            if len(args) > 1 and isinstance(args[1], int):
                args[1] = [list(range(args[1] * 2))] * len(froms)
            c2 = None
        else:
            c2 = c_in[0]
        if spec.out_channels is not None:
            c2 = spec.out_channels(c_in[0] if len(c_in) == 1 else c_in, args)
        try:
            m = nn.Sequential(*(spec.cls(*args) for _ in range(n))) if n > 1 else spec.cls(*args)
        except Exception as e:
            raise ConfigError(f"{where}: cannot build with args {args!r}: {type(e).__name__}: {e}") from None
        m.i, m.f, m.type, m.np = i, f, str(name), sum(p.numel() for p in m.parameters())
        m.n = n_
        save.extend(x % i for x in froms if x != -1)
        layers.append(m)
        chs.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


class Model(nn.Module):
    """A YOLO detector built from an official-format yaml (YOLOv5, YOLOv7, or with user modules)."""

    def __init__(self, cfg="yolov5s.yaml", ch: int = 3, nc: int | None = None, names: list | None = None):
        super().__init__()
        self.yaml = load_config(cfg)
        if nc is not None and nc != self.yaml.get("nc"):
            self.yaml["nc"] = nc
        self.model, self.save = parse_model(copy.deepcopy(self.yaml), ch)
        attach_width_hooks(self)  # declared width attributes follow their layers (pruning, reloads)
        self.names = list(names) if names else [str(i) for i in range(self.yaml["nc"])]
        head = self.head
        if not hasattr(head, "set_strides"):
            raise ConfigError(f"{self.yaml.get('yaml_file', 'model yaml')}: the last layer must be a detection head "
                              f"(Detect or IDetect), got {head.type}")
        self._init_weights()
        self._probe_strides(ch)

    def _probe_strides(self, ch: int, s: int = 256):
        """Run a blank image through once to learn the head's strides; a layer that cannot run is a config error."""
        entered = []
        hooks = [m.register_forward_pre_hook(lambda m, _: entered.append(m)) for m in self.model]
        try:
            with torch.no_grad():
                raw = self._forward_layers(torch.zeros(1, ch, s, s))
            self.head.set_strides(torch.tensor([s / x.shape[-3] for x in raw]))
            self.head.initialize_biases()
        except Exception as e:  # shapes or arguments that do not fit together: name the layer, not torch's frame
            m = entered[-1] if entered else self.head
            msg = str(e).splitlines()[0][:200] if str(e) else ""
            raise ConfigError(f"{self.yaml.get('yaml_file', 'model yaml')}: layer {m.i} ({m.type}) fails on a "
                              f"{s}x{s} input: {type(e).__name__}: {msg}; check its 'from' and arguments") from None
        finally:
            for h in hooks:
                h.remove()

    @property
    def head(self):
        return self.model[-1]

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    @property
    def nc(self) -> int:
        return self.head.nc

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
            elif isinstance(m, (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)):
                m.inplace = True

    @staticmethod
    def sources(m) -> list[int]:
        """Absolute indices of the layers layer `m` reads; -1 is the output of the layer before it."""
        froms = m.f if isinstance(m.f, list) else [m.f]
        return [j if j == -1 or j >= 0 else m.i + j for j in froms]

    def run_layers(self, x, saved: dict, start: int = 0, stop: int | None = None, capture=(), feats=None):
        """Run layers `start:stop` on `x` (the input, or the output of layer start-1). `saved` holds the outputs
        of earlier layers that later ones read and is updated in place; with `feats`, the outputs of the
        `capture` layers are put there. `forward` is this from 0; pruning's trials resume it mid-way."""
        for m in self.model[start:stop] if (start or stop is not None) else self.model:
            if m.f != -1:
                srcs = [x if j == -1 else saved[j] for j in self.sources(m)]
                x = srcs if isinstance(m.f, list) else srcs[0]
            x = m(x)
            if m.i in self.save:
                saved[m.i] = x
            if feats is not None and m.i in capture:
                feats[m.i] = x
        return x

    def _forward_layers(self, x, capture=()):
        feats = {}
        x = self.run_layers(x, {}, capture=capture, feats=feats)
        return (x, feats) if capture else x

    def forward(self, x, capture=None):
        """Train mode: per-level raw outputs. Eval mode: (decoded predictions, raw outputs).

        `capture` (layer indices) additionally returns those layers' outputs: `(out, {index: tensor})`.
        """
        return self._forward_layers(x, tuple(capture) if capture else ())

    def fuse(self):
        """Fold BatchNorm into convs, reparameterise RepConv, fold IDetect's implicit terms (for inference)."""
        for m in self.modules():
            if m is not self and hasattr(m, "fuse"):
                m.fuse()
        return self

    def head_inputs(self) -> list[int]:
        f = self.head.f
        return [x % len(self.model) for x in ([f] if isinstance(f, int) else f)]


def build_model(cfg, nc: int | None = None, names=None, ch: int = 3) -> Model:
    return Model(cfg, ch=ch, nc=nc, names=names)
