"""Each Torch-Pruning 1.6.1 defect shown on the upstream class, and repaired by ours (tp_fixes).

Every `test_<letter>_*` asserts the upstream behaviour is wrong AND ours is right: if a future
Torch-Pruning fixes a defect, the upstream half fails and tells us to drop the patch.
"""
import logging

import pytest
import torch
import torch_pruning as tp

from yolocompress.prune import tp_fixes as fx
from yolocompress.prune.methods import regularize

from .tiny_nets import macs, make

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
imp = tp.importance


def _zero_grads(model):
    for p in model.parameters():
        p.grad = torch.zeros_like(p)


def _bn_grads_close_to(model, coef):
    """Whether every BN scale's gradient equals coef * gamma (each BN sits in exactly one group)."""
    return all(torch.allclose(b.bn.weight.grad, coef * b.bn.weight.detach(), rtol=1e-5, atol=1e-9)
               for b in model.blocks())


# a. GroupHessianImportance.accumulate_grad keeps only the last sample
def _hessian_average_is_right(cls):
    model, _ = make()
    scorer = cls(group_reduction="mean")
    samples = torch.randn(3, 3, 32, 32)
    expected = {p: torch.zeros_like(p) for p in model.parameters()}
    for s in samples:
        model.zero_grad(set_to_none=True)
        model(s[None]).square().mean().backward()
        scorer.accumulate_grad(model)
        for p in model.parameters():
            expected[p] += p.grad.pow(2) / len(samples)
    return all(scorer._counter[p] == len(samples)
               and torch.allclose(scorer._accu_grad[p] / scorer._counter[p], expected[p], atol=1e-12)
               for p in model.parameters())


def test_a_hessian_accumulates_squared_grads_over_samples():
    assert not _hessian_average_is_right(imp.GroupHessianImportance)
    assert _hessian_average_is_right(fx.FixedGroupHessianImportance)


# b. GrowingRegPruner.regularize never regularises BN scales
def _growing_reg_grads(cls):
    model, x = make()
    pruner = cls(model, x, imp.GroupMagnitudeImportance(p=2), reg=1e-2, ignored_layers=[model.head])
    _zero_grads(model)
    pruner.regularize(model)
    return model


def test_b_growing_reg_regularizes_bn_scales():
    upstream, ours = _growing_reg_grads(tp.pruner.GrowingRegPruner), _growing_reg_grads(fx.FixedGrowingRegPruner)
    assert all(b.bn.weight.grad.abs().sum() == 0 for b in upstream.blocks())
    assert _bn_grads_close_to(ours, 1e-2)  # every coefficient starts at reg
    for a, b in zip(upstream.modules(), ours.modules()):  # convolutions: same penalty as upstream
        if isinstance(a, torch.nn.Conv2d):
            assert a.weight.grad.abs().sum() > 0
            torch.testing.assert_close(b.weight.grad, a.weight.grad)


# c. GroupNormPruner ignores alpha
@pytest.mark.parametrize("cls, fixed", [(tp.pruner.GroupNormPruner, False), (fx.FixedGroupNormPruner, True)])
def test_c_group_norm_pruner_uses_alpha(cls, fixed):
    model, x = make()
    pruner = cls(model, x, imp.GroupMagnitudeImportance(p=2), reg=1e-2, alpha=1, ignored_layers=[model.head])
    _zero_grads(model)
    pruner.regularize(model)
    assert _bn_grads_close_to(model, 1e-2) == fixed  # alpha=1 -> gamma = 1 for every channel


# d. update_regularizer() wipes the grown regularisation
def _growth_survives_pruning(cls):
    model, x = make()
    pruner = cls(model, x, imp.GroupMagnitudeImportance(p=2), reg=1e-4, delta_reg=1e-2,
                 pruning_ratio=0.5, ignored_layers=[model.head])
    for _ in range(3):
        pruner.update_reg()
    before = {g[0].dep.target.module: r.clone() for g, r in pruner.group_reg.items()}
    assert max(float(r.max()) for r in before.values()) > 1e-3  # it grew
    for b in model.blocks():  # tag channels: after pruning running_mean lists the kept ones
        b.bn.running_mean = torch.arange(b.bn.num_features, dtype=torch.float32)
    pruner.step()
    pruner.update_regularizer()
    bn_of = {b.conv: b.bn for b in model.blocks()}
    ok = []
    for g, r in pruner.group_reg.items():
        root = g[0].dep.target.module
        kept = bn_of[root].running_mean.long()
        assert len(kept) < len(before[root])  # this group was pruned
        ok.append(torch.allclose(r, before[root][kept]))
    return all(ok)


def test_d_growing_reg_survives_update_regularizer():
    assert not _growth_survives_pruning(tp.pruner.GrowingRegPruner)
    assert _growth_survives_pruning(fx.FixedGrowingRegPruner)


# e. mutable default arguments shared between pruner instances
def test_e_default_dicts_are_not_shared_between_pruners():
    m1, x = make(groups=2)  # a grouped conv: BasePruner records it in out/in_channel_groups
    m2, _ = make()
    up1 = tp.pruner.BasePruner(m1, x, imp.MagnitudeImportance(), ignored_layers=[m1.head])
    try:
        up2 = tp.pruner.BasePruner(m2, x, imp.MagnitudeImportance(), ignored_layers=[m2.head])
        assert m1.res.conv in up2.out_channel_groups  # the second pruner sees the first model
    finally:  # leave the module-level defaults as we found them
        up1.out_channel_groups.clear()
        up1.in_channel_groups.clear()
    ours1 = fx.FixedBasePruner(m1, x, imp.MagnitudeImportance(), ignored_layers=[m1.head])
    ours2 = fx.FixedBasePruner(m2, x, imp.MagnitudeImportance(), ignored_layers=[m2.head])
    assert m1.res.conv in ours1.out_channel_groups
    assert m1.res.conv not in ours2.out_channel_groups and not ours2.in_channel_groups


def test_e_caller_unwrapped_list_is_not_mutated_and_dict_is_accepted():
    model, x = make(scale=True)
    pairs = []
    tp.pruner.BasePruner(model, x, imp.MagnitudeImportance(), unwrapped_parameters=pairs,
                         ignored_layers=[model.head])
    assert len(pairs) == 1  # upstream appended the detected parameter to our list
    pairs = []
    fx.FixedBasePruner(model, x, imp.MagnitudeImportance(), unwrapped_parameters=pairs,
                       ignored_layers=[model.head])
    assert pairs == []
    pruner = fx.FixedBasePruner(model, x, imp.MagnitudeImportance(), unwrapped_parameters={model.scale: 1},
                                pruning_ratio=0.5, ignored_layers=[model.head])
    pruner.step()
    assert model.scale.shape == (1, model.fuse.conv.out_channels, 1, 1) and model.scale.shape[1] < 32
    assert model(x).shape == (1, 8, 8, 8)


# f. frozen parameters -> step() prunes nothing
def _frozen_model():
    model, x = make()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x


def test_f_frozen_parameters_prune_nothing_unless_prepared(caplog):
    model, x = _frozen_model()
    base = macs(model, x)
    tp.pruner.BasePruner(model, x, imp.MagnitudeImportance(p=1), pruning_ratio=0.5,
                         ignored_layers=[model.head]).step()
    assert macs(model, x) == base  # silently nothing

    model, x = _frozen_model()
    n = len(list(model.parameters()))
    with caplog.at_level(logging.INFO, logger=fx.__name__):
        assert fx.prepare_model_for_pruning(model) == n
    assert f"{n} of {n}" in caplog.text
    assert all(p.requires_grad for p in model.parameters())
    assert fx.prepare_model_for_pruning(model) == 0
    tp.pruner.BasePruner(model, x, imp.MagnitudeImportance(p=1), pruning_ratio=0.5,
                         ignored_layers=[model.head]).step()
    assert macs(model, x) < base / 2


# g. regularize() has a different signature on every pruner
UPSTREAM_SIGNATURES = [
    (tp.pruner.BasePruner, {}, ()),  # regularize(model, loss)
    (tp.pruner.GroupNormPruner, {}, ("reg",)),  # regularize(model, alpha, bias)
    (tp.pruner.GrowingRegPruner, {}, ("reg",)),  # regularize(model, bias)
]


@pytest.mark.parametrize("cls, kwargs, rejected", UPSTREAM_SIGNATURES)
def test_g_upstream_regularize_signatures_differ(cls, kwargs, rejected):
    model, x = make()
    pruner = cls(model, x, imp.GroupMagnitudeImportance(), ignored_layers=[model.head], **kwargs)
    _zero_grads(model)
    with pytest.raises(TypeError):
        pruner.regularize(model, **{k: 1e-3 for k in rejected})
    tp.pruner.BNScalePruner(model, x, imp.BNScaleImportance(), ignored_layers=[model.head]).regularize(
        model, reg=1e-3)  # ...while BNScalePruner takes reg


REGULARIZING = [
    (fx.FixedBNScalePruner, imp.BNScaleImportance, {}),
    (fx.FixedBNScalePruner, imp.BNScaleImportance, {"group_lasso": True}),
    (fx.FixedGroupNormPruner, imp.GroupMagnitudeImportance, {}),
    (fx.FixedGroupNormPruner, imp.GroupMagnitudeImportance, {"alpha": 2}),
    (fx.FixedGrowingRegPruner, imp.GroupMagnitudeImportance, {}),
]


@pytest.mark.parametrize("cls, imp_cls, kwargs", REGULARIZING)
def test_g_one_regularize_call_for_every_pruner(cls, imp_cls, kwargs):
    """The same call works everywhere and `reg` scales the penalty linearly."""
    model, x = make()
    pruner = cls(model, x, imp_cls(), ignored_layers=[model.head], **kwargs)
    added = []
    for reg in (1e-3, 2e-3):
        _zero_grads(model)
        assert regularize(pruner, model, reg, bias=False) is True
        added.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert added[0].abs().sum() > 0
    torch.testing.assert_close(added[1], 2 * added[0])


def test_g_regularize_refuses_unfixed_pruners_and_unknown_args():
    model, x = make()
    upstream = tp.pruner.GroupNormPruner(model, x, imp.GroupMagnitudeImportance(), ignored_layers=[model.head])
    with pytest.raises(TypeError, match="build_pruner"):
        regularize(upstream, model, 1e-3)
    plain = fx.FixedBasePruner(model, x, imp.MagnitudeImportance(), ignored_layers=[model.head])
    _zero_grads(model)
    assert regularize(plain, model, 1e-3) is False
    assert all(p.grad.abs().sum() == 0 for p in model.parameters())
    with pytest.raises(TypeError, match="unknown"):
        regularize(plain, model, 1e-3, alhpa=2)


# extra: after step() the regularisers keep groups of the unpruned model
@pytest.mark.parametrize("upstream, ours, imp_cls, kwargs", [
    (tp.pruner.BNScalePruner, fx.FixedBNScalePruner, imp.BNScaleImportance, {"group_lasso": True}),
    (tp.pruner.GroupNormPruner, fx.FixedGroupNormPruner, imp.GroupMagnitudeImportance, {}),
    (tp.pruner.GrowingRegPruner, fx.FixedGrowingRegPruner, imp.GroupMagnitudeImportance, {}),
])
def test_regularizer_groups_follow_step(upstream, ours, imp_cls, kwargs):
    for cls in (upstream, ours):
        model, x = make()
        pruner = cls(model, x, imp_cls(), pruning_ratio=0.5, ignored_layers=[model.head], **kwargs)
        pruner.step()
        model(x).square().mean().backward()
        if cls is upstream:
            with pytest.raises(IndexError):
                pruner.regularize(model)
        else:
            assert regularize(pruner, model, 1e-3) is True


# i. split/chunk: pieces mapped per consumer, offsets stale after the first step
class _C2fNet(torch.nn.Module):
    """YOLOv8's C2f pattern on tiny convs: chunk(2), the last piece feeds a residual block and the concat."""

    def __init__(self):
        super().__init__()
        conv = lambda c1, c2, k=1: torch.nn.Sequential(torch.nn.Conv2d(c1, c2, k, 1, k // 2, bias=False),
                                                        torch.nn.BatchNorm2d(c2), torch.nn.SiLU())
        self.stem, self.cv1 = conv(3, 16, 3), conv(16, 32)
        self.m1, self.m2 = conv(16, 16, 3), conv(16, 16, 3)
        self.cv2, self.head = conv(48, 32), torch.nn.Conv2d(32, 4, 1)

    def forward(self, x):
        y = list(self.cv1(self.stem(x)).chunk(2, 1))
        y.append(y[-1] + self.m2(self.m1(y[-1])))
        return self.head(self.cv2(torch.cat(y, 1)))


def _c2f_prunes_over_steps(pruner_cls, graph_cls):
    torch.manual_seed(0)
    model, x = _C2fNet().eval(), torch.randn(1, 3, 16, 16)
    dg = graph_cls().build_dependency(model, x)
    ok = True
    for _ in range(3):  # a few channels of the residual block's output, step after step
        group = dg.get_pruning_group(model.m2[0], tp.prune_conv_out_channels, [0, 1])
        for dep, idxs in group:
            n = dg.get_out_channels(dep.target.module) if dg.is_out_channel_pruning_fn(dep.handler) else \
                dg.get_in_channels(dep.target.module) if dg.is_in_channel_pruning_fn(dep.handler) else None
            ok &= n is None or max(idxs) < n
        try:
            group.prune()
            model(x)
        except Exception:
            return False
    pruner = pruner_cls(model, x, imp.MagnitudeImportance(p=2), pruning_ratio=0.5, iterative_steps=3,
                        ignored_layers=[model.head])
    try:
        for _ in range(3):
            pruner.step()
            model(x)
    except Exception:
        return False
    return ok and model.cv1[0].out_channels < 32 - 6 and model.cv1[0].out_channels % 2 == 0


def test_i_split_pieces_follow_their_consumers_and_every_step():
    assert not _c2f_prunes_over_steps(tp.pruner.BasePruner, tp.DependencyGraph)
    assert _c2f_prunes_over_steps(fx.FixedBasePruner, fx.FixedDependencyGraph)


def test_i_the_fixed_graph_is_used_only_while_a_pruner_is_built():
    model, x = make()
    pruner = fx.FixedBasePruner(model, x, imp.MagnitudeImportance(), ignored_layers=[model.head])
    assert type(pruner.DG) is fx.FixedDependencyGraph
    assert tp.dependency.DependencyGraph is tp.DependencyGraph
    assert type(tp.pruner.BasePruner(model, x, imp.MagnitudeImportance(), ignored_layers=[model.head]).DG) \
        is tp.DependencyGraph


# j. channel-free edges (broadcast maps, channel reductions, scalar weights) coupled by index
class _AttentionNet(torch.nn.Module):
    """A conv, a channel-mean spatial attention (CBAM), an ECA Conv1d and a BiFPN-style weighted add."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(3, 16, 3, padding=1)
        self.spatial = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.eca = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.w = torch.nn.Parameter(torch.ones(2))
        self.head = torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        a = self.a(x)
        a = a * self.spatial(a.mean(1, keepdim=True)).sigmoid()
        y = self.eca(a.mean((2, 3), keepdim=True).squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        a = a * y.sigmoid()
        w = self.w / (self.w.sum() + 1e-4)
        return self.head(w[0] * a + w[1] * self.b(x))


def _attention_net_prunes(graph_cls):
    torch.manual_seed(0)
    model, x = _AttentionNet().eval(), torch.randn(1, 3, 8, 8)
    dg = graph_cls().build_dependency(model, x)
    group = dg.get_pruning_group(model.a, tp.prune_conv_out_channels, [0, 7, 15])
    for dep, idxs in group:
        n = dg.get_out_channels(dep.target.module) if dg.is_out_channel_pruning_fn(dep.handler) else \
            dg.get_in_channels(dep.target.module) if dg.is_in_channel_pruning_fn(dep.handler) else None
        if n is not None and max(idxs) >= n:
            return False
    group.prune()
    return model(x).shape == (1, 4, 8, 8) and model.b.out_channels == 13 and model.w.shape == (2,)


def test_j_channel_free_edges_do_not_tie_the_feature_channels():
    assert not _attention_net_prunes(tp.DependencyGraph)
    assert _attention_net_prunes(fx.FixedDependencyGraph)
# k. global ranking passes max_pruning_ratio within one step
def _min_share_kept(cls, round_to=None):
    """Smallest share of its channels a layer keeps after one global step to 80 % with a 50 % limit, when one layer's
    weights are tiny (the global ranking wants all of them)."""
    model, x = make()
    with torch.no_grad():
        model.down.conv.weight.mul_(1e-3)
    before = {b: b.conv.out_channels for b in model.blocks()}
    cls(model, x, imp.MagnitudeImportance(p=2), global_pruning=True, pruning_ratio=0.8, max_pruning_ratio=0.5,
        ignored_layers=[model.head], round_to=round_to).step()
    return min(b.conv.out_channels / c for b, c in before.items())


def test_k_global_ranking_keeps_the_max_ratio_within_a_step():
    assert _min_share_kept(tp.pruner.BasePruner) < 0.5
    assert _min_share_kept(fx.FixedBasePruner) == 0.5
    assert _min_share_kept(fx.FixedBasePruner, round_to=8) == 0.5


def test_rounding_goes_to_the_nearest_multiple():
    """Upstream rounds the kept channels down: 16 channels at 8 % pruning keep 8; ours keeps 16 (15 is nearer)."""
    def widths(cls):
        model, x = make()
        cls(model, x, imp.MagnitudeImportance(p=2), pruning_ratio=0.08, round_to=8, ignored_layers=[model.head]).step()
        return model.stem.conv.out_channels, model.down.conv.out_channels
    assert widths(tp.pruner.BasePruner) == (8, 24)
    assert widths(fx.FixedBasePruner) == (16, 32)
