"""The method table: every row builds a pruner that really shrinks a tiny detector-like net."""
import dataclasses

import pytest
import torch
import torch_pruning as tp

from yolocompress.core.errors import ConfigError
from yolocompress.prune import tp_fixes as fx
from yolocompress.prune.methods import (METHODS, PruneMethod, accumulate_gradients, build_pruner,
                                        get_method, regularize, split_detection_batch)

from .tiny_nets import OUTPUT_SHAPE, macs, make

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
imp = tp.importance

# name: importance class, its attributes, pruner class, pruner kwargs, sparse_kind, needs_grad
EXPECTED = {
    "l1": (imp.MagnitudeImportance, {"p": 1}, fx.FixedBasePruner, {}, None, None),
    "random": (imp.RandomImportance, {}, fx.FixedBasePruner, {}, None, None),
    "slim": (imp.BNScaleImportance, {"p": 1}, fx.FixedBNScalePruner, {}, "bn_l1", None),
    "group_slim": (imp.BNScaleImportance, {"p": 1}, fx.FixedBNScalePruner, {"group_lasso": True}, "group", None),
    "group_norm": (imp.GroupMagnitudeImportance, {"p": 2}, fx.FixedGroupNormPruner, {}, None, None),
    "lamp": (imp.LAMPImportance, {"p": 2, "normalizer": "lamp"}, fx.FixedBasePruner, {}, None, None),
    "group_sl": (imp.GroupMagnitudeImportance, {"p": 2, "normalizer": "max"}, fx.FixedGroupNormPruner, {},
                 "group", None),
    "group_reg": (imp.GroupMagnitudeImportance, {"p": 2}, fx.FixedGrowingRegPruner, {}, "growing", None),
    "group_hessian": (fx.FixedGroupHessianImportance, {"group_reduction": "mean"}, fx.FixedBasePruner, {},
                      None, "per_sample"),
    "group_taylor": (imp.GroupTaylorImportance, {"group_reduction": "mean"}, fx.FixedBasePruner, {},
                     None, "grad"),
    "pagcp": (imp.MagnitudeImportance, {"p": 1}, None, {}, None, None),
}


def test_table_has_exactly_the_cli_names():
    assert list(METHODS) == list(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_row(name):
    imp_cls, attrs, pruner_cls, kwargs, sparse_kind, needs_grad = EXPECTED[name]
    m = METHODS[name]
    scorer = m.make_importance()
    assert type(scorer) is imp_cls and m.make_importance() is not scorer
    assert {k: getattr(scorer, k) for k in attrs} == attrs
    assert (m.pruner_class, dict(m.pruner_kwargs)) == (pruner_cls, kwargs)
    assert (m.needs_sparse, m.sparse_kind, m.needs_grad) == (sparse_kind is not None, sparse_kind, needs_grad)
    assert m.strategy == ("pagcp" if name == "pagcp" else "torch_pruning")


def test_pagcp_is_a_row_and_cli_lists_come_from_the_table():
    from yolocompress.prune.methods import get_method, sparse_method_names, torch_pruning_method_names
    assert get_method("pagcp").strategy == "pagcp"
    assert sparse_method_names() == ["slim", "group_slim", "group_sl", "group_reg"]
    assert torch_pruning_method_names() == [n for n in EXPECTED if n != "pagcp"]
    with pytest.raises(ValueError):  # a Torch-Pruning row without a pruner class, a PAGCP row with one
        PruneMethod("x", imp.RandomImportance, None)
    with pytest.raises(ValueError):
        PruneMethod("x", imp.RandomImportance, fx.FixedBasePruner, strategy="pagcp")


def test_method_row_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["l1"].name = "x"
    with pytest.raises(TypeError):
        METHODS["group_slim"].pruner_kwargs["group_lasso"] = False
    for bad in ({"needs_sparse": True}, {"sparse_kind": "bn_l1"}, {"needs_sparse": True, "sparse_kind": "l0"},
                {"needs_grad": "hvp"}):
        with pytest.raises(ValueError):
            PruneMethod("x", imp.RandomImportance, fx.FixedBasePruner, **bad)


def test_unknown_method_lists_the_valid_names():
    model, x = make()
    with pytest.raises(ConfigError, match="unknown pruning method 'l3'.*l1, random, slim.*group_taylor"):
        build_pruner("l3", model, x)
    with pytest.raises(ConfigError):
        get_method(None)


@pytest.mark.parametrize("kw", [{"pruning_ratio": 1.0}, {"pruning_ratio": -0.1}, {"iterative_steps": 0},
                                {"max_pruning_ratio": 0.0}, {"reg": -1.0}])
def test_bad_options_are_config_errors(kw):
    model, x = make()
    with pytest.raises(ConfigError):
        build_pruner("slim", model, x, **kw)


def _loss(model, batch):
    return model(batch[0]).square().mean()


def _batches(n_batches=2, b=2):
    torch.manual_seed(1)
    out = []
    for _ in range(n_batches):
        targets = torch.tensor([[i, 0, 0.5, 0.5, 0.2, 0.2] for i in range(b)])
        out.append((torch.randn(b, 3, 32, 32), targets))
    return out


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "pagcp"])  # PAGCP: tests/prune/test_pagcp.py
def test_method_prunes_tiny_net(name):
    """Sparse step / gradients as the method needs, then step until MACs drop >= 1.5x."""
    model, x = make()
    base = macs(model, x)
    steps = 4
    pruner = build_pruner(name, model, x, ignored_layers=[model.head], pruning_ratio=0.6,
                          iterative_steps=steps, reg=1e-4)
    method = METHODS[name]
    for _ in range(steps):
        if method.needs_sparse or isinstance(pruner, tp.pruner.GroupNormPruner):
            model.zero_grad(set_to_none=True)
            _loss(model, _batches(1)[0]).backward()
            assert regularize(pruner, model, 1e-4, grow=True) is True  # groups follow earlier steps
        passes = accumulate_gradients(method, model, _loss, _batches(), importance=pruner.importance)
        assert passes == {None: 0, "grad": 2, "per_sample": 4}[method.needs_grad]
        pruner.step()
        if macs(model, x) * 1.5 <= base:
            break
    assert macs(model, x) * 1.5 <= base
    model.eval()
    assert model(x).shape == OUTPUT_SHAPE
    assert model.head.out_channels == OUTPUT_SHAPE[1]


def test_build_pruner_unfreezes_checkpoint_parameters():
    model, x = make()
    for p in model.parameters():
        p.requires_grad_(False)
    base = macs(model, x)
    build_pruner("l1", model, x, ignored_layers=[model.head], pruning_ratio=0.5).step()
    assert macs(model, x) * 2 < base


def test_round_to_and_layer_ratios():
    model, x = make()
    ratios = {model.branch: 0.5}
    build_pruner("l1", model, x, ignored_layers=[model.head], pruning_ratio=0.0,
                 pruning_ratio_dict=ratios, round_to=4).step()
    assert ratios == {model.branch: 0.5}
    assert [b.conv.out_channels for b in model.blocks()] == [16, 32, 32, 8, 32]
    assert model.fuse.conv.in_channels == 40


def test_taylor_gradients_are_summed_over_batches():
    model, x = make()
    batches = _batches()
    expected = {}
    for batch in batches:
        model.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        for n, p in model.named_parameters():
            expected[n] = expected.get(n, 0) + p.grad
    assert accumulate_gradients("group_taylor", model, _loss, batches) == 2
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[n])


def test_hessian_gradients_are_per_sample():
    model, x = make()
    pruner = build_pruner("group_hessian", model, x, ignored_layers=[model.head])
    with pytest.raises(TypeError, match="importance"):
        accumulate_gradients("group_hessian", model, _loss, _batches())
    assert accumulate_gradients("group_hessian", model, _loss, _batches(), importance=pruner.importance) == 4
    assert set(pruner.importance._counter.values()) == {4}
    assert accumulate_gradients("l1", model, _loss, _batches()) == 0


def test_split_detection_batch():
    images = torch.randn(3, 3, 8, 8)
    targets = torch.tensor([[0, 1, .5, .5, .1, .1], [2, 3, .2, .2, .1, .1], [2, 4, .3, .3, .1, .1]])
    samples = list(split_detection_batch((images, targets, ["a", "b", "c"])))
    assert [s[0].shape for s in samples] == [(1, 3, 8, 8)] * 3
    assert [len(s[1]) for s in samples] == [1, 0, 2]
    assert samples[2][1][:, :2].tolist() == [[0, 3], [0, 4]]
    assert [s[2] for s in samples] == [["a"], ["b"], ["c"]]
    assert torch.equal(samples[1][0], images[1:2])
