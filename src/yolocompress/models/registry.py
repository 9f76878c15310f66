"""Names a yaml may use for a layer, and how the builder derives each layer's channels.

User modules enter the same table through `register_module`, so a custom block is named in a yaml exactly
like a built-in one (the idea of timm's model registry).
"""
from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch.nn as nn

from ..core.errors import ConfigError

# How a layer's output channels follow from its inputs:
#   "channels": args start with c2; the builder prepends c1, scales c2 by width_multiple (CSP modules
#               may also take the repeat count as their third argument);
#   "same":     output channels equal input channels (pooling, upsampling, activations);
#   "concat":   output channels are the sum of the inputs';
#   "head":     a detection head, which receives the list of its input channels;
#   "bn":       BatchNorm-like, built from the input channels alone.
KINDS = ("channels", "same", "concat", "head", "bn")


@dataclass(frozen=True)
class ModuleSpec:
    """How the builder makes a registered module, and what pruning must know that the graph cannot see.

    split_sizes: where the module (or a submodule) keeps the sizes of a `split` along the channels, as
        `"attr"` (one int for equal pieces, or a tuple/list of sizes), `("attr_a", "attr_b")` (one int per
        piece), or `{"sub.module.path": one of those}`; pruning rewrites them (docs/custom-modules.md).
    heads: the layers whose outputs the module splits into attention heads (a `view(b, heads, c // heads, ...)`
        the graph cannot see), as `{"sub.module.path": head count}`, the count an int or the name of the
        attribute holding it; pruning then removes the same head dimensions from every head, so `c % heads`
        holds and the head count stays.
    widths: attributes that hold a layer's width and are read in forward (`reshape(b, self.c2, w, h)`), as
        `{"attr.path": "layer.path"}`: before every forward the attribute is set to that layer's output width
        (`out_channels`/`out_features`), so it follows pruning and a reload.
    pruner: a Torch-Pruning handler (`prune_out_channels`, `prune_in_channels`, `get_out_channels`,
        `get_in_channels`, optionally `get_out_channel_groups`) for a module whose inside the graph cannot follow
        (a channel shuffle, a permutation): the module is traced as one layer and pruned by the handler; or
        "passes_through" (output channel c is input channel c) or "reduces" (its outputs do not depend on
        which input channels there are), built-in handlers for modules without weights per channel.
    """
    cls: type
    kind: str
    repeats_as_arg: bool = False
    out_channels: Callable[[int, list], int] | None = None
    split_sizes: str | tuple | dict | None = None
    heads: dict | None = None
    pruner: object | None = None
    widths: dict | None = None


_REGISTRY: dict[str, ModuleSpec] = {}


def register_module(name: str | None = None, *, kind: str = "channels", repeats_as_arg: bool = False,
                    out_channels: Callable[[int, list], int] | None = None,
                    split_sizes: str | tuple | dict | None = None, heads: dict | None = None, pruner=None,
                    widths: dict | None = None):
    """Class decorator: make `cls` usable in model yaml files under `name` (default: the class name).

    kind "channels" means the first yaml argument is the output channel count (scaled by width_multiple) and the
    builder passes the input channel count first, as for Conv; kind "same" means channels pass through unchanged.
    `out_channels(c_in, args)` may override the output channel count for any other rule.
    `split_sizes` names the attribute(s) that hold the sizes of a channel split in forward (see ModuleSpec), so
    that pruning can follow the split and rewrite them; `heads` names the layers whose outputs are split into
    attention heads, and their head counts; `pruner` is a Torch-Pruning handler that prunes the whole module
    (docs/custom-modules.md, "A pruner of your own"); `widths` names attributes that must follow a layer's
    width.
    """
    if kind not in KINDS:
        raise ConfigError(f"register_module: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _check_split_sizes(split_sizes)
    _check_heads(heads)
    pruner = _checked_pruner(pruner)
    _check_widths(widths)

    def wrap(cls):
        _REGISTRY[name or cls.__name__] = ModuleSpec(cls, kind, repeats_as_arg, out_channels, split_sizes, heads,
                                                   pruner, widths)
        return cls

    return wrap


def _check_split_sizes(decl) -> None:
    def attrs_ok(a):
        return isinstance(a, str) or (isinstance(a, tuple) and a and all(isinstance(x, str) for x in a))
    if decl is None or attrs_ok(decl):
        return
    if isinstance(decl, dict) and all(isinstance(k, str) and attrs_ok(v) for k, v in decl.items()):
        return
    raise ConfigError(f"register_module: split_sizes must be an attribute name, a tuple of names, or a dict "
                      f"{{submodule path: name(s)}}, got {decl!r}")


def _check_heads(decl) -> None:
    ok = decl is None or (isinstance(decl, dict) and decl and all(
        isinstance(k, str) and k and (isinstance(v, str) or (isinstance(v, int) and v > 0)) for k, v in decl.items()))
    if not ok:
        raise ConfigError(f"register_module: heads must be a dict {{submodule path: head count or the name of the "
                          f"attribute holding it}}, e.g. {{'query': 'heads'}}, got {decl!r}")


def _check_widths(decl) -> None:
    ok = decl is None or (isinstance(decl, dict) and decl and all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in decl.items()))
    if not ok:
        raise ConfigError(f"register_module: widths must be a dict {{attribute path: layer path}}, e.g. "
                          f"{{'m.c2': 'm.linear'}}, got {decl!r}")


_PRUNER_METHODS = ("prune_out_channels", "prune_in_channels", "get_out_channels", "get_in_channels")


BUILTIN_PRUNERS = ("passes_through", "reduces")  # prune/custom_pruners.py makes their handlers


def _checked_pruner(pruner):
    """The handler instance (a class is instantiated) or a built-in's name; one that lacks a handler method,
    or an unknown name, is refused in one line."""
    if isinstance(pruner, str):
        if pruner not in BUILTIN_PRUNERS:
            raise ConfigError(f"register_module: pruner {pruner!r} is not a built-in handler; use "
                              f"{' or '.join(map(repr, BUILTIN_PRUNERS))}, or a Torch-Pruning handler class")
        return pruner
    if isinstance(pruner, type):
        pruner = pruner()
    missing = [m for m in _PRUNER_METHODS if not callable(getattr(pruner, m, None))]
    if pruner is not None and missing:
        raise ConfigError(f"register_module: pruner must be a Torch-Pruning handler (a BasePruningFunc subclass); "
                          f"{type(pruner).__name__} has no {', '.join(missing)}")
    return pruner


def spec_for_class(cls: type) -> ModuleSpec | None:
    """The spec under which `cls` was registered (the last one, if several), or None."""
    found = [s for s in _REGISTRY.values() if s.cls is cls]
    return found[-1] if found else None


def split_size_owners(model: nn.Module) -> dict[nn.Module, str | tuple]:
    """Every module of `model` that does a declared split (`split_sizes=`), with the attribute(s) holding its
    sizes."""
    owners = {}
    for m in model.modules():
        spec = spec_for_class(type(m))
        decl = spec.split_sizes if spec is not None else None
        if decl is None:
            continue
        for path, attrs in (decl.items() if isinstance(decl, dict) else [("", decl)]):
            owners[m.get_submodule(path) if path else m] = attrs
    return owners


def declared_heads(model: nn.Module) -> dict[nn.Module, int]:
    """Every layer whose outputs a registered module splits into attention heads (`heads=`), with its head
    count, read from the module now (a checkpoint rebuilds the module with the same attribute)."""
    found = {}
    for m in model.modules():
        spec = spec_for_class(type(m))
        for path, count in ((spec.heads or {}).items() if spec is not None else ()):
            try:
                layer = m.get_submodule(path)
                n = getattr(m, count) if isinstance(count, str) else count
            except AttributeError as e:
                raise ConfigError(f"register_module(heads=...) of {type(m).__name__}: {e}; name a submodule "
                                  f"path of the module and an int or the attribute holding the head count") from e
            if not isinstance(n, int) or n < 1:
                raise ConfigError(f"register_module(heads=...) of {type(m).__name__}: {count!r} is {n!r}, "
                                  f"not a head count (a positive int)")
            if n > 1:
                found[layer] = n
    return found


def declared_pruners(model: nn.Module) -> dict[str, object]:
    """{module path: handler} of every module whose class was registered with its own `pruner=`."""
    found = {}
    for name, m in model.named_modules():
        spec = spec_for_class(type(m))
        if spec is not None and spec.pruner is not None:
            found[name] = spec.pruner
    return found


def _layer_width(layer: nn.Module) -> int:
    for name in ("out_channels", "out_features"):
        if isinstance(getattr(layer, name, None), int):
            return getattr(layer, name)
    raise AttributeError(f"{type(layer).__name__} has no out_channels or out_features")


def _sync_widths(widths: dict, module: nn.Module, _args) -> None:
    """Forward pre-hook: each declared width attribute set to its layer's output width now."""
    for attr, path in widths.items():
        owner_path, _, name = attr.rpartition(".")
        try:
            owner = module.get_submodule(owner_path) if owner_path else module
            width = _layer_width(module.get_submodule(path))
        except AttributeError as e:
            raise ConfigError(f"register_module(widths=...) of {type(module).__name__}: {e}; name an attribute "
                              f"path and a layer path of the module") from e
        setattr(owner, name, width)


def attach_width_hooks(model: nn.Module) -> None:
    """Make every module registered with `widths=` refresh those attributes before its forward."""
    for m in model.modules():
        spec = spec_for_class(type(m))
        if spec is not None and spec.widths and not getattr(m, "_widths_hooked", False):
            m.register_forward_pre_hook(functools.partial(_sync_widths, dict(spec.widths)))  # kept with the module
            m._widths_hooked = True


def declared_attributes(model: nn.Module) -> dict[str, dict]:
    """{module path: {attribute: value}} of every attribute a declaration names (the split sizes pruning
    rewrites), so that a checkpoint of a pruned model rebuilds with them."""
    paths = {m: name for name, m in model.named_modules()}
    out: dict[str, dict] = {}
    for owner, attrs in split_size_owners(model).items():
        for attr in (attrs,) if isinstance(attrs, str) else attrs:
            value = getattr(owner, attr)
            out.setdefault(paths[owner], {})[attr] = list(value) if isinstance(value, tuple) else value
    return out


def lookup(name: str) -> ModuleSpec:
    """The spec registered for a yaml module name (`nn.X` names are looked up without their prefix too)."""
    key = name[3:] if name.startswith("nn.") and name not in _REGISTRY else name
    spec = _REGISTRY.get(name) or _REGISTRY.get(key)
    if spec is None:
        raise KeyError(name)
    return spec


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def load_user_modules(paths) -> None:
    """Import each user file so that its `@register_module` classes enter the registry (`--modules FILE.py`)."""
    for p in paths or []:
        path = Path(p)
        if not path.is_file():
            raise ConfigError(f"--modules: file not found: {path}")
        mod_name = f"yolocompress_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # a user's file: report which one failed and why, in one line
            raise ConfigError(f"--modules {path}: importing it failed: {type(e).__name__}: {e}") from e


for _cls, _kind in ((nn.Conv2d, "channels"), (nn.BatchNorm2d, "bn"), (nn.Upsample, "same"),
                    (nn.MaxPool2d, "same"), (nn.Identity, "same")):
    register_module(f"nn.{_cls.__name__}", kind=_kind)(_cls)
