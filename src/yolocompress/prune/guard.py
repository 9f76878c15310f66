"""Find what cannot be pruned before pruning, so that pruning proceeds on the rest.

Never pruned: the output convolutions of the detection head (`model.head.m`): their channels are the
anchors x (5 + nc) predictions. Anchors are buffers, which Torch-Pruning never touches. IDetect's
ImplicitA/ImplicitM parameters are declared to Torch-Pruning as `[1, C, 1, 1]` parameters pruned along
dim 1. ImplicitA therefore follows the channels that feed the head, and ImplicitM follows the head
output, which is never pruned.

Then every prunable group (one per root convolution) is tried on a copy: prune a few channels and run
a forward pass. A group whose pruning raises, whose forward pass fails, or which changes the output
shapes is skipped: its root convolution goes into `ignored_layers`, with the reason. When the
dependency graph cannot even be built, each layer is traced alone. A layer that cannot be traced alone
(typically a user module) is traced as a black box, so none of its channels, inputs or outputs are
pruned.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning import ops

from ..core.errors import PruningError
from ..models.registry import declared_heads, declared_pruners
from ..models.runcheck import check_runs, hint_for
from .custom_pruners import TracedWidths, customized_pruners, handler_for
from .graph import group_heads, implicit_parameters, layer_index
from .methods import get_method
from .tp_fixes import DEFAULT_ROOT_MODULE_TYPES, FixedDependencyGraph, prepare_model_for_pruning, rounding_unit

LOGGER = logging.getLogger("yolocompress")
_CONV = (nn.Conv2d,)


@dataclass
class Unprunable:
    """What the guard found. Unpacks as `(ignored_layers, skipped)`.

    opaque: module paths of layers that Torch-Pruning cannot trace; they are traced as black boxes
            (`pruner_options` tells the pruner how).
    prunable: module paths of the convolutions some prunable group reaches (their in or out channels).
    convs: module paths of every convolution of the model.
    Each `skipped` entry is `{layer, module, reason, holds}`; `holds` lists every layer its group keeps whole.
    """
    ignored_layers: list[nn.Module]
    skipped: list[dict]
    opaque: list[str] = field(default_factory=list)
    prunable: set = field(default_factory=set)
    convs: list = field(default_factory=list)

    def __iter__(self):
        return iter((self.ignored_layers, self.skipped))

    def pruner_options(self, model: nn.Module) -> dict:
        """Keyword arguments for `build_pruner` on `model` (the guarded model itself, not a copy)."""
        return tracing_options(model, self.opaque)


# ---- tracing: implicit parameters and black-box layers ---------------------------------------------------
class _BlackBox(torch.autograd.Function):
    """Runs a layer without recording its inside. The output's grad_fn links straight to the inputs."""

    @staticmethod
    def forward(ctx, fn, as_list, *xs):
        return fn(list(xs) if as_list else xs[0])

    @staticmethod
    def backward(ctx, *grads):  # never used: the graph is only traced, not differentiated
        return (None,) * len(ctx.needs_input_grad)


class _OpaquePruner(TracedWidths):
    """Torch-Pruning handler for a black-box layer. Any pruning that reaches it fails, so the guard skips
    the group. The channel counts are the ones seen while tracing."""

    def prune_out_channels(self, layer, idxs):
        raise PruningError(f"{type(layer).__name__} is kept whole: its output channels cannot be pruned")

    def prune_in_channels(self, layer, idxs):  # a distinct function: TP couples in and out when they are one
        raise PruningError(f"{type(layer).__name__} is kept whole: its input channels cannot be pruned")


class _ForwardWithBlackBoxes:
    """`forward_fn` for Torch-Pruning that runs the named layers as black boxes while tracing."""

    def __init__(self, names):
        self.names = list(names)

    def __call__(self, model, inputs):
        modules = dict(model.named_modules())
        layers = [modules[n] for n in self.names]
        for layer in layers:
            layer.forward = self._wrap(layer)
        try:
            return model(inputs)
        finally:
            for layer in layers:
                del layer.forward  # drop the instance attribute: the class forward is back

    @staticmethod
    def _wrap(layer):
        forward = type(layer).forward.__get__(layer)

        def run(x):
            xs = list(x) if isinstance(x, (list, tuple)) else [x]
            if not any(t.requires_grad for t in xs):  # the model's first layer: give its output a grad_fn
                xs = [t.detach().requires_grad_(True) for t in xs]
            out = _BlackBox.apply(forward, isinstance(x, (list, tuple)), *xs)
            layer._blackbox_channels = (xs[0].shape[1] if len(xs) == 1 else None, out.shape[1])
            return out
        return run


def tracing_options(model: nn.Module, opaque=()) -> dict:
    """`unwrapped`, `customized_pruners` and `forward_fn` for `build_pruner` / `build_graph` on `model`."""
    modules = dict(model.named_modules())
    opts = {"unwrapped": implicit_parameters(model)}
    kinds = {type(m) for m in modules.values()}
    custom = {t: p for t, p in customized_pruners().items() if t in kinds}
    handled = handled_modules(model, opaque)
    custom.update({type(modules[n]): p for n, p in handled.items()})
    custom.update({type(modules[n]): _OpaquePruner() for n in opaque})
    if opaque or handled:
        opts["forward_fn"] = _ForwardWithBlackBoxes([*opaque, *handled])
    if custom:
        opts["customized_pruners"] = custom
    groups = channel_groups(model, opaque)
    if groups:
        opts["out_channel_groups"] = groups
    roots = extra_root_types(model, opaque)
    if roots:
        opts["root_module_types"] = list(DEFAULT_ROOT_MODULE_TYPES) + list(roots)
    return opts


def handled_modules(model: nn.Module, opaque=()) -> dict[str, object]:
    """{path: handler} of the modules registered with their own Torch-Pruning handler (`pruner=`), outermost
    first, none inside a black box or another handled module: each is traced as one layer and pruned by it."""
    found: dict[str, object] = {}
    for name, pruner in declared_pruners(model).items():
        if not any(name == o or name.startswith(o + ".") for o in [*opaque, *found]):
            found[name] = handler_for(pruner)
    return found


def extra_root_types(model: nn.Module, opaque=()) -> tuple[type, ...]:
    """Layer types besides convolutions and linear layers whose output groups are pruned from them: the
    deformable convs of the model and the modules with a user-written handler (GSConv). One list for the
    pruners, the guard and PAGCP."""
    modules = dict(model.named_modules())
    kinds = {type(m) for m in modules.values()}
    handled = [type(modules[n]) for n, p in handled_modules(model, opaque).items() if getattr(p, "ROOT", True)]
    return tuple(dict.fromkeys([t for t in customized_pruners() if t in kinds] + handled))


def channel_groups(model: nn.Module, opaque=()) -> dict:
    """Layers whose output channels come in equal groups pruned at the same positions at once (Torch-Pruning's
    channel groups): each attention layer with its head count, so `embed_dim % num_heads` holds
    (nn.MultiheadAttention, and the layers a registered module declares with `heads=`), and each module with
    its own handler whose `get_out_channel_groups` says so (GSConv's shuffled output: four quarters)."""
    groups = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention) and m.num_heads > 1}
    groups.update(declared_heads(model))  # and the layers users declare (`register_module(heads=...)`)
    modules = dict(model.named_modules())
    for name, pruner in handled_modules(model, opaque).items():
        count = getattr(pruner, "get_out_channel_groups", lambda _m: 1)(modules[name])
        if count > 1:
            groups[modules[name]] = count
    return groups


def build_graph(model: nn.Module, example_inputs, opaque=()) -> tp.DependencyGraph:
    """The dependency graph of `model`, with our implicit parameters and black-box layers."""
    opts = tracing_options(model, opaque)
    return FixedDependencyGraph().build_dependency(
        model, example_inputs, unwrapped_parameters=list(opts["unwrapped"].items()),
        customized_pruners=opts.get("customized_pruners"), forward_fn=opts.get("forward_fn"))


# ---- the guard --------------------------------------------------------------------------------------------
def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:160]}"


def _output_shapes(model: nn.Module, x) -> list[tuple]:
    with torch.no_grad():
        return [tuple(t.shape) for t in tp.utils.flatten_as_list(model.eval()(x))]


def _untraceable_layers(model: nn.Module, x) -> dict[str, str]:
    """Layers of `model.model` (the head excepted) whose dependency graph cannot be built alone."""
    inputs, hooks = {}, []
    layers = list(model.model)[:-1]

    def keep_input(m, args, out):
        inputs.setdefault(m, args[0])

    for layer in layers:
        hooks.append(layer.register_forward_hook(keep_input))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    found = {}
    for layer in layers:
        if layer not in inputs:
            continue
        x_in = inputs[layer]
        x_in = [t.clone().requires_grad_(True) for t in x_in] if isinstance(x_in, (list, tuple)) \
            else x_in.clone().requires_grad_(True)
        try:
            FixedDependencyGraph().build_dependency(copy.deepcopy(layer), x_in, forward_fn=lambda m, a: m(a))
        except Exception as e:  # any failure inside Torch-Pruning's tracer means: keep this layer whole
            found[f"model.{layer.i}"] = _short(e)
    return found


def _probe_idxs(n: int | None, k: int | None = None) -> list[int]:
    """`k` channels spread over the layer (3 when no --round-to: first, middle, last; an odd count breaks
    chunk(2) users), as many as one pruning step removes with --round-to k."""
    k = k or 3
    if not n or n < 2:
        return []
    if n <= k:
        return [0]
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)}) if k > 1 else [n // 2]


def _trial(model, x, roots: list[str], opaque, ref_shapes, round_to=None) -> str | None:
    """Prune a few channels of each root's group on a copy; None if the copy still runs with the same
    output shapes, else the reason."""
    m = copy.deepcopy(model)
    try:
        dg = build_graph(m, x, opaque)
    except Exception as e:
        return f"dependency graph fails on a copy: {_short(e)}"
    modules = dict(m.named_modules())
    heads = channel_groups(m, opaque)
    try:
        for name in roots:
            root = modules[name]
            n = dg.get_out_channels(root)
            idxs = _probe_idxs(n, rounding_unit(round_to, n or 0))
            group = dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, idxs[:1])
            h = group_heads(group, heads)
            if h > 1:  # one channel of every head, as the pruner removes them
                n = dg.get_out_channels(root)
                idxs = [k * (n // h) for k in range(h)] if n and n > h else []
            if idxs:
                dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, idxs).prune()
    except Exception as e:
        return f"pruning fails: {_short(e)}"
    try:
        shapes = _output_shapes(m, x)
    except Exception as e:
        return f"the forward pass fails after pruning: {_short(e)}"
    return None if shapes == ref_shapes else f"pruning changes the output shapes ({shapes} vs {ref_shapes})"


def _failing(model, x, roots, opaque, ref_shapes, round_to=None) -> dict[str, str]:
    """Roots whose groups break the model, by bisection (one copy per trial)."""
    reason = _trial(model, x, roots, opaque, ref_shapes, round_to)
    if reason is None:
        return {}
    if len(roots) == 1:
        return {roots[0]: _with_hint(reason)}
    half = len(roots) // 2
    found = {**_failing(model, x, roots[:half], opaque, ref_shapes, round_to),
             **_failing(model, x, roots[half:], opaque, ref_shapes, round_to)}
    return found or {r: f"fails together with other groups: {reason}" for r in roots}


def _with_hint(reason: str) -> str:
    """The reason, with what the user can change when we know it."""
    hint = hint_for(reason)
    return f"{reason}; the module makes {hint}" if hint else reason


def _held_layers(group, dg) -> list[str]:
    """The layers with weights a group reaches (the root first), by module path."""
    names = []
    for dep, _ in group:
        target, name = dep.target.module, dg._module2name.get(dep.target.module)
        if not (isinstance(target, nn.Module) and name):
            continue
        inner = [n for n, m in target.named_modules(prefix=name)  # a module traced as one layer: its insides
                 if any(True for _ in m.parameters(recurse=False))]
        names += [n for n in inner if n not in names]
    return names


def prediction_convs(model: nn.Module, dg) -> list[nn.Module]:
    """The head's convolutions whose outputs reach the model's outputs without passing a layer with weights:
    their channels are the predictions (Detect's `m`, or a decoupled head's cls/reg/obj convs), never pruned.
    Layers inside the head before them (stems, branches) are pruned like any other."""
    found = []
    for conv in (m for m in model.head.modules() if isinstance(m, nn.modules.conv._ConvNd)):
        node = dg.module2node.get(conv)
        if node is None:
            continue
        stack, seen, feeds = list(node.outputs), set(), False
        while stack and not feeds:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            feeds = isinstance(n.module, nn.Module) and any(True for _ in n.module.parameters(recurse=False))
            stack.extend(n.outputs)
        if not feeds:
            found.append(conv)
    return found


def offset_convs(dg) -> list[tuple[nn.Module, nn.Module]]:
    """(conv, deformable layer) for every conv that predicts the offsets or mask of a deformable conv: the
    layers with weights found walking back from its extra inputs (tp_fixes cut them from the features)."""
    found = []
    for node in dg.module2node.values():
        stack, seen = list(getattr(node, "fixed_inputs", ())), set()
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n.module, nn.Module) and any(True for _ in n.module.parameters(recurse=False)):
                found.append((n.module, node.module))
            else:
                stack.extend(n.inputs)
    return found


def _picked_channel(node) -> str | None:
    """`x[:, j]` or `x[:, j:j + 1]` (one channel picked by its position), as the graph node that does it, else None."""
    fn = node.grad_fn
    name = type(fn).__name__ if fn is not None else ""
    dim = getattr(fn, "_saved_dim", None)
    if name.startswith("SelectBackward") and dim in (1, -3):
        return f"[:, {fn._saved_index}]"
    if name.startswith("SliceBackward") and dim == 1:
        start, end = int(fn._saved_start), int(fn._saved_end)
        if end - start == 1:
            return f"[:, {start}:{end}]"
    return None


def position_read_convs(dg) -> list[tuple[nn.Module, str]]:
    """(layer, how) for each conv or linear layer whose outputs are only read one channel at a time by position,
    through element-wise ops (LSK's `sig[:, 0]`, `sig[:, 1]`; AFPN's `w[:, j:j + 1]` after a softmax): one
    channel per branch or input, a count fixed by the module's code, so its outputs stay whole by nature."""
    found = []
    for module, node in dg.module2node.items():
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        stack, seen, picks, other = list(node.outputs), set(), [], False
        while stack and not other:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            pick = _picked_channel(n)
            if pick:
                picks.append(pick)
            elif n.type == ops.OPTYPE.ELEMENTWISE and len(n.inputs) == 1:  # sigmoid, softmax, activations
                stack.extend(n.outputs)
            else:
                other = True
        if picks and not other:
            found.append((module, ", ".join(sorted(set(picks)))))
    return found


def _index_errors(groups, dg) -> dict[str, str]:
    """Groups whose index mapping points past a layer's channels (Torch-Pruning misread a chunk or a cat)."""
    errors = {}
    for group in groups:
        for dep, idxs in group:
            fn, target = dep.handler, dep.target.module
            n = dg.get_out_channels(target) if dg.is_out_channel_pruning_fn(fn) else \
                dg.get_in_channels(target) if dg.is_in_channel_pruning_fn(fn) else None
            if n is not None and idxs and max(idxs) >= n:
                owner = dg._module2name.get(target, type(target).__name__)
                errors[dg._module2name[group[0].dep.target.module]] = \
                    f"Torch-Pruning maps its channels past the {n} of {owner} (index {max(idxs)})"
                break
    return errors


def _importance_failures(method, groups, dg) -> dict[str, str]:
    """Groups the method's importance cannot score without raising (None/NaN scores are fine: TP skips them)."""
    if method is None or get_method(method).needs_grad:  # gradient scores need batches: checked when pruning
        return {}
    name = get_method(method).name
    importance = get_method(method).make_importance()
    failures = {}
    for group in groups:
        try:
            importance(group)
        except Exception as e:
            failures[dg._module2name[group[0].dep.target.module]] = f"{name} importance fails: {_short(e)}"
    return failures


def find_unprunable(model: nn.Module, example_inputs, method=None, round_to: int | str | None = None) -> Unprunable:
    """Ignored layers and the skipped groups (each `{layer, module, reason, holds}`) for pruning `model`.

    `example_inputs` is one small image batch, e.g. `torch.rand(1, 3, 64, 64)`. `method` (a method
    name) also checks that its importance can score every group. `round_to`: each group is tried with as many
    channels removed as one step removes with --round-to (3 without). The model is made trainable first
    (Torch-Pruning traces through autograd), and must run forward and backward (`check_runs`).
    """
    prepare_model_for_pruning(model)
    check_runs(model, example_inputs, "before pruning")
    was_training = model.training
    head = model.head
    ignored: list[nn.Module] = list(head.m)
    skipped: list[dict] = []
    opaque: list[str] = []
    try:
        dg = build_graph(model, example_inputs)
    except Exception as first:
        culprits = _untraceable_layers(model, example_inputs)
        if not culprits:
            raise PruningError(f"Torch-Pruning cannot trace the model ({_short(first)}) and no single layer is to "
                               "blame; report the model yaml and the modules file") from first
        kinds = {type(m) for n, m in model.named_modules() if n in culprits}
        opaque = [f"model.{m.i}" for m in model.model if type(m) in kinds]
        for name in opaque:
            layer = dict(model.named_modules())[name]
            why = culprits.get(name, f"same type as {', '.join(sorted(culprits))}")
            skipped.append({"layer": layer.i, "module": name,
                            "reason": f"Torch-Pruning cannot trace this {layer.type} ({why}); the whole layer is kept"})
            ignored.append(layer)
        try:
            dg = build_graph(model, example_inputs, opaque)
        except Exception as e:
            raise PruningError(f"Torch-Pruning cannot trace the model even with layers {', '.join(opaque)} kept "
                               f"whole ({_short(e)}); report the model yaml") from e
    ignored += [c for c in prediction_convs(model, dg) if not any(c is m for m in ignored)]
    fixed = [(conv, f"its outputs are the offsets and mask of {dg._module2name[owner]} ({type(owner).__name__}: "
                    "2*k*k + k*k channels fixed by the kernel size)") for conv, owner in offset_convs(dg)]
    fixed += [(layer, f"its {dg.get_out_channels(layer)} outputs are read one by one by position ({how}): one per "
                      "branch or input, a count fixed by the module's code") for layer, how in position_read_convs(dg)]
    for layer, why in fixed:  # outputs whole by nature: the layer is kept, its inputs still prune
        if not any(layer is m for m in ignored):
            ignored.append(layer)
            name = dg._module2name[layer]
            skipped.append({"layer": layer_index(name), "module": name, "holds": [name],
                            "reason": f"{why}; its output channels are kept whole"})
    blackboxes = {dict(model.named_modules())[n] for n in opaque}
    excluded = [m for layer in ignored for m in layer.modules()]
    groups = list(dg.get_all_groups(ignored_layers=excluded,
                                    root_module_types=_CONV + extra_root_types(model, opaque)))
    reasons: dict[str, str] = {}
    for group in groups:
        touched = [d.target.module for d, _ in group if d.target.module in blackboxes]
        if touched:
            layer = touched[0]
            reasons[dg._module2name[group[0].dep.target.module]] = \
                f"its channels reach layer {layer.i} ({layer.type}), which is kept whole"
    for check in (lambda gs: _index_errors(gs, dg), lambda gs: _importance_failures(method, gs, dg)):
        reasons.update(check([g for g in groups if dg._module2name[g[0].dep.target.module] not in reasons]))
    roots = [dg._module2name[g[0].dep.target.module] for g in groups]
    ref = _output_shapes(model, example_inputs)
    reasons.update(_failing(model, example_inputs, [r for r in roots if r not in reasons], opaque, ref, round_to))
    modules = dict(model.named_modules())
    for s in skipped:  # black-box layers hold all their layers with weights
        s["holds"] = [n for n, m in modules[s["module"]].named_modules(prefix=s["module"])
                      if any(True for _ in m.parameters(recurse=False))]
    held = {dg._module2name[g[0].dep.target.module]: _held_layers(g, dg) for g in groups}
    prunable = set()
    for name in roots:
        if name in reasons:
            ignored.append(modules[name])
            skipped.append({"layer": layer_index(name), "module": name, "reason": reasons[name],
                            "holds": held[name]})
        else:
            prunable.update(held[name])
    for s in skipped:
        LOGGER.warning(f"prune: skipping layer {s['layer']} {s['module']}: {s['reason']}; kept whole: "
                       f"{', '.join(s['holds']) or s['module']}")
    model.train(was_training)
    convs = [n for n, m in modules.items() if isinstance(m, nn.modules.conv._ConvNd)]
    return Unprunable(ignored, skipped, opaque, {n for n in prunable if n in convs}, convs)
