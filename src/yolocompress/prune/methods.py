"""The pruning methods: one row per CLI name (importance, pruner, sparse training, gradients, strategy,
ranking scope).

Adding a method is one row in METHODS plus its case in tests/prune/test_methods.py. Pruners are
always built from the repaired classes of `tp_fixes` (see docs/torch-pruning-defects.md).
The strategy column says which loop prunes: Torch-Pruning's step loop to the target (prune/speedup.py)
or PAGCP's own rounds (prune/pagcp.py); both return the same outcome to the same finetune and report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn
import torch_pruning as tp

from ..core.errors import ConfigError
from .tp_fixes import (FixedBasePruner, FixedBNScalePruner, FixedGroupHessianImportance,
                       FixedGroupNormPruner, FixedGrowingRegPruner, prepare_model_for_pruning)

SPARSE_KINDS = ("bn_l1", "group", "growing")
GRAD_KINDS = ("grad", "per_sample")
STRATEGIES = ("torch_pruning", "pagcp")


@dataclass(frozen=True)
class PruneMethod:
    """One pruning method: how to score channels, which pruner removes them, what it needs first.

    needs_sparse: the method expects sparse training (a regulariser, `sparse_kind`) before pruning.
    needs_grad: 'grad' = gradients of the loss summed over batches (Taylor);
                'per_sample' = squared gradients accumulated sample by sample (Hessian/OBD).
    strategy: 'torch_pruning' = Torch-Pruning's pruner stepped to the target (prune/speedup.py);
              'pagcp' = PAGCP's performance-aware rounds (prune/pagcp.py; no Torch-Pruning pruner class).
    global_ranking: the method's designed ranking scope: True = one ranking across all layers (each layer loses
                the share its scores decide), False = per layer (every layer loses the same share). `--global` /
                `--local` override it (see `ranking_scope`; the choice per method is argued in docs/pruning.md).
    """
    name: str
    make_importance: Callable[[], Any]
    pruner_class: type | None
    pruner_kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs_sparse: bool = False
    sparse_kind: str | None = None
    needs_grad: str | None = None
    strategy: str = "torch_pruning"
    global_ranking: bool = False

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"method {self.name}: strategy {self.strategy!r} not in {STRATEGIES}")
        if (self.pruner_class is None) != (self.strategy == "pagcp"):
            raise ValueError(f"method {self.name}: a Torch-Pruning row needs a pruner class, a PAGCP row none")
        if self.needs_sparse != (self.sparse_kind is not None):
            raise ValueError(f"method {self.name}: sparse_kind must be set exactly when needs_sparse")
        if self.sparse_kind is not None and self.sparse_kind not in SPARSE_KINDS:
            raise ValueError(f"method {self.name}: sparse_kind {self.sparse_kind!r} not in {SPARSE_KINDS}")
        if self.needs_grad is not None and self.needs_grad not in GRAD_KINDS:
            raise ValueError(f"method {self.name}: needs_grad {self.needs_grad!r} not in {GRAD_KINDS}")
        object.__setattr__(self, "pruner_kwargs", MappingProxyType(dict(self.pruner_kwargs)))


_imp = tp.importance
_ROWS = (  # global_ranking as each method's paper and Torch-Pruning's own benchmark scripts use it
    PruneMethod("l1", partial(_imp.MagnitudeImportance, p=1), FixedBasePruner),
    PruneMethod("random", _imp.RandomImportance, FixedBasePruner),
    PruneMethod("slim", _imp.BNScaleImportance, FixedBNScalePruner,
                needs_sparse=True, sparse_kind="bn_l1", global_ranking=True),
    PruneMethod("group_slim", _imp.BNScaleImportance, FixedBNScalePruner, {"group_lasso": True},
                needs_sparse=True, sparse_kind="group", global_ranking=True),
    PruneMethod("group_norm", partial(_imp.GroupMagnitudeImportance, p=2), FixedGroupNormPruner,
                global_ranking=True),
    PruneMethod("lamp", partial(_imp.LAMPImportance, p=2), FixedBasePruner, global_ranking=True),
    PruneMethod("group_sl", partial(_imp.GroupMagnitudeImportance, p=2, normalizer="max"),
                FixedGroupNormPruner, needs_sparse=True, sparse_kind="group", global_ranking=True),
    PruneMethod("group_reg", partial(_imp.GroupMagnitudeImportance, p=2), FixedGrowingRegPruner,
                needs_sparse=True, sparse_kind="growing"),
    PruneMethod("group_hessian", partial(FixedGroupHessianImportance, group_reduction="mean"),
                FixedBasePruner, needs_grad="per_sample", global_ranking=True),
    PruneMethod("group_taylor", partial(_imp.GroupTaylorImportance, group_reduction="mean"),
                FixedBasePruner, needs_grad="grad", global_ranking=True),
    # PAGCP orders the filters of a group by L1 norm and decides how many to cut from the measured loss
    PruneMethod("pagcp", partial(_imp.MagnitudeImportance, p=1), None, strategy="pagcp"),
)
METHODS: dict[str, PruneMethod] = {m.name: m for m in _ROWS}


def sparse_method_names() -> list[str]:
    """The methods sparse training prepares for (the `needs_sparse` column)."""
    return [m.name for m in _ROWS if m.needs_sparse]


def torch_pruning_method_names() -> list[str]:
    """The rows pruned by Torch-Pruning's step loop (every method but PAGCP)."""
    return [m.name for m in _ROWS if m.strategy == "torch_pruning"]


def get_method(name: str | PruneMethod) -> PruneMethod:
    """The table row for a CLI name; an unknown name is a ConfigError that lists the valid ones."""
    if isinstance(name, PruneMethod):
        return name
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown pruning method {name!r}; choose one of: {', '.join(METHODS)}") from None


def ranking_scope(method: str | PruneMethod, global_pruning: bool | None = None) -> bool:
    """True to rank channels across layers: `global_pruning` when given (`--global` / `--local`), else the
    method's designed scope (its `global_ranking` column)."""
    return get_method(method).global_ranking if global_pruning is None else bool(global_pruning)


def build_pruner(method_name: str, model: nn.Module, example_inputs, *, ignored_layers=(),
                 pruning_ratio: float = 0.5, pruning_ratio_dict: Mapping | None = None,
                 global_pruning: bool | None = None, max_pruning_ratio: float = 1.0,
                 iterative_steps: int = 1, round_to: int | str | None = None, reg: float | None = None,
                 unwrapped=None, customized_pruners: Mapping | None = None,
                 root_module_types=None, forward_fn=None, out_channel_groups: Mapping | None = None):
    """A Torch-Pruning pruner for `method_name`, built from the repaired classes.

    Frozen parameters are unfrozen first (prepare_model_for_pruning). `reg` sets the
    regularisation coefficient of the sparse methods (their pruner default when None). `global_pruning`
    None ranks in the method's designed scope (`ranking_scope`).
    `unwrapped` maps bare nn.Parameters to their pruning dim (dict or (param, dim) pairs).
    The importance object is `pruner.importance` (needed by accumulate_gradients).
    `out_channel_groups` maps a layer to a count its output channels stay a multiple of, pruned at the same
    place in every group (an attention's heads: `embed_dim % num_heads` holds).
    """
    method = get_method(method_name)
    if method.pruner_class is None:
        raise ConfigError(f"method {method.name} prunes with its own loop ({method.strategy}), not a "
                          f"Torch-Pruning pruner")
    if not 0.0 <= pruning_ratio < 1.0:
        raise ConfigError(f"pruning ratio {pruning_ratio} for method {method.name} must be in [0, 1)")
    if not 0.0 < max_pruning_ratio <= 1.0:
        raise ConfigError(f"max pruning ratio {max_pruning_ratio} must be in (0, 1]")
    if iterative_steps < 1:
        raise ConfigError(f"iterative steps must be >= 1, got {iterative_steps}")
    if reg is not None and reg < 0:
        raise ConfigError(f"regularisation coefficient {reg} for method {method.name} must be >= 0")
    prepare_model_for_pruning(model)
    kwargs = dict(method.pruner_kwargs)
    if reg is not None and method.needs_sparse:
        kwargs["reg"] = reg
    return method.pruner_class(
        model, example_inputs, method.make_importance(),
        ignored_layers=list(ignored_layers or ()), pruning_ratio=pruning_ratio,
        pruning_ratio_dict=pruning_ratio_dict, global_pruning=ranking_scope(method, global_pruning),
        max_pruning_ratio=max_pruning_ratio, iterative_steps=iterative_steps, round_to=round_to,
        unwrapped_parameters=unwrapped, customized_pruners=customized_pruners,
        root_module_types=root_module_types, forward_fn=forward_fn, out_channel_groups=out_channel_groups,
        **kwargs)


def split_detection_batch(batch) -> Iterable:
    """Yield one-image batches from `(images [B,3,H,W], targets [N,6], *rest)`.

    Target rows are `(image_index, class, xc, yc, w, h)`; each sample's rows are re-indexed to 0.
    Extra items (paths, shapes...) are split when they are sequences of length B.
    """
    images, targets, *rest = batch
    for i in range(images.shape[0]):
        rows = targets[targets[:, 0] == i].clone()
        rows[:, 0] = 0
        extra = [r[i:i + 1] if hasattr(r, "__len__") and len(r) == images.shape[0] else r for r in rest]
        yield (images[i:i + 1], rows, *extra)


def accumulate_gradients(method: str | PruneMethod, model: nn.Module,
                         loss_fn: Callable[[nn.Module, Any], torch.Tensor], batches: Iterable, *,
                         importance=None, split: Callable[[Any], Iterable] = split_detection_batch) -> int:
    """Fill the gradients a gradient-based method scores with; returns the number of backward passes.

    'grad' (Taylor): zero the gradients, then backward `loss_fn(model, batch)` for every batch,
    summing the gradients. 'per_sample' (Hessian): for every sample (`split(batch)`), zero the
    gradients, backward its loss and call `importance.accumulate_grad(model)` (pass
    `pruner.importance`). Other methods need nothing: returns 0. `loss_fn` sets the model mode.
    """
    method = get_method(method)
    if method.needs_grad is None:
        return 0
    if method.needs_grad == "per_sample" and importance is None:
        raise TypeError(f"method {method.name} accumulates per-sample gradients: pass importance=pruner.importance")
    if method.needs_grad == "per_sample":
        importance.zero_grad()
    model.zero_grad(set_to_none=True)
    passes = 0
    for batch in batches:
        samples = split(batch) if method.needs_grad == "per_sample" else (batch,)
        for sample in samples:
            if method.needs_grad == "per_sample":
                model.zero_grad(set_to_none=True)
            loss_fn(model, sample).backward()
            if method.needs_grad == "per_sample":
                importance.accumulate_grad(model)
            passes += 1
    return passes


_REGULARIZE_CTX = ("bias", "alpha", "grow")


def regularize(pruner, model: nn.Module, reg: float | None = None, **ctx) -> bool:
    """Add the sparse-training penalty of `pruner` to the gradients, one call for every pruner.

    Call after backward (AMP gradients unscaled). `reg` overrides the pruner's coefficient for this
    call (None keeps it). ctx: `bias` (also regularise biases), `alpha` (GroupNorm scaling range,
    default the pruner's), `grow=True` (GrowingReg: grow the coefficients first; call it every few
    iterations). Returns False for pruners without a regulariser.
    """
    unknown = sorted(set(ctx) - set(_REGULARIZE_CTX))
    if unknown:
        raise TypeError(f"regularize: unknown argument(s) {unknown}; known: {list(_REGULARIZE_CTX)}")
    bias = bool(ctx.get("bias", False))
    if isinstance(pruner, tp.pruner.GrowingRegPruner):
        _require_fixed(pruner, FixedGrowingRegPruner)
        if ctx.get("grow"):
            pruner.update_reg()
        pruner.regularize(model, reg=reg, bias=bias)
    elif isinstance(pruner, tp.pruner.GroupNormPruner):
        _require_fixed(pruner, FixedGroupNormPruner)
        pruner.regularize(model, alpha=ctx.get("alpha"), bias=bias, reg=reg)
    elif isinstance(pruner, tp.pruner.BNScalePruner):
        pruner.regularize(model, reg=reg, bias=bias)
    else:
        return False
    return True


def _require_fixed(pruner, fixed: type) -> None:
    if not isinstance(pruner, fixed):
        raise TypeError(f"{type(pruner).__name__}.regularize has a known defect; "
                        f"build the pruner with build_pruner (uses {fixed.__name__})")
