import math

import pytest
import torch
from torch import nn

from yolocompress.distill.feature import (CWD, FEATURE_LOSSES, MGD, Adapter, Mimic, build_feature_loss,
                                          random_keep_mask)
from yolocompress.core.errors import ConfigError

S_CH, T_CH, SIZES = [4, 6], [8, 6], [(6, 6), (3, 3)]  # first pair needs an adapter, second does not


def feats(channels, seed, requires_grad=False, sizes=SIZES, b=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, *hw, generator=g).requires_grad_(requires_grad) for c, hw in zip(channels, sizes)]


def seeded(name, s_ch=S_CH, t_ch=T_CH, **options):
    torch.manual_seed(0)
    if name == "mgd":
        options.setdefault("generator", torch.Generator().manual_seed(0))
    return build_feature_loss(name, s_ch, t_ch, **options)


def test_adapter():
    assert isinstance(Adapter(5, 5).proj, nn.Identity)
    a = Adapter(4, 8)
    assert isinstance(a.proj, nn.Conv2d) and a.proj.kernel_size == (1, 1)
    assert a(torch.zeros(1, 4, 3, 3)).shape == (1, 8, 3, 3)


@pytest.mark.parametrize("name", ["mimic", "mgd", "cwd"])
def test_owns_adapters_only_where_channels_differ(name):
    loss = seeded(name)
    assert isinstance(loss.adapters[0].proj, nn.Conv2d) and isinstance(loss.adapters[1].proj, nn.Identity)
    assert any(p is loss.adapters[0].proj.weight for p in loss.parameters())


@pytest.mark.parametrize("name", ["mimic", "cwd"])
def test_zero_when_equal_positive_when_different(name):
    loss = seeded(name, T_CH, T_CH)  # identity adapters: the student can equal the teacher
    t = feats(T_CH, 1)
    assert loss([x.clone() for x in t], t).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(feats(T_CH, 2), t).item() > 1e-3


def test_mgd_is_positive_and_reproducible():
    s, t = feats(S_CH, 1), feats(T_CH, 2)
    a, b = seeded("mgd")(s, t), seeded("mgd")(s, t)
    assert a.item() > 0 and a.item() == b.item()


@pytest.mark.parametrize("name", ["mimic", "mgd", "cwd"])
def test_gradient_reaches_student_and_adapters_not_teacher(name):
    loss = seeded(name)
    s, t = feats(S_CH, 3, requires_grad=True), feats(T_CH, 4, requires_grad=True)
    loss(s, t).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    assert loss.adapters[0].proj.weight.grad.abs().sum() > 0
    if name == "mgd":
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.generators.parameters())


def test_mimic_is_mse_summed_over_layers():
    s, t = feats(T_CH, 5), feats(T_CH, 6)
    expected = sum(((a - b) ** 2).mean() for a, b in zip(s, t))
    assert seeded("mimic", T_CH, T_CH)(s, t).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mgd_mask_ratio():
    mask = random_keep_mask(8, 64, 64, 0.65, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (8, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert 1 - mask.mean().item() == pytest.approx(0.65, abs=0.01)
    assert random_keep_mask(2, 4, 4, 0.0).min() == 1.0


def test_mgd_matches_hand_computation():
    s, t = feats([6], 7, sizes=[(5, 5)]), feats([6], 8, sizes=[(5, 5)])
    loss = MGD([6], [6], alpha=1.0, generator=torch.Generator().manual_seed(3))
    mask = random_keep_mask(2, 5, 5, 0.65, generator=torch.Generator().manual_seed(3))
    expected = ((loss.generators[0](s[0] * mask) - t[0]) ** 2).sum() / 2
    assert loss(s, t).item() == pytest.approx(expected.item(), rel=1e-5)
    default = MGD([6], [6])
    assert (default.mask_ratio, default.alpha) == (0.65, 2e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_cwd_matches_hand_computed_kl(tau):
    s = torch.tensor([[[[0.0, 1.0]], [[2.0, 0.0]]]])  # 1x2x1x2
    t = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])

    def softmax(row):
        e = [math.exp(v / tau) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    for c in range(2):
        ps, pt = softmax(s[0, c, 0].tolist()), softmax(t[0, c, 0].tolist())
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    expected = kl * tau ** 2 / (1 * 2)
    assert CWD([2], [2], tau=tau)([s], [t]).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["mimic", "mgd", "cwd"])
def test_spatial_mismatch_names_the_pair(name):
    loss = seeded(name, names=["student 17 / teacher 24", "student 20 / teacher 27"])
    t = feats(T_CH, 1, sizes=[(6, 6), (6, 6)])
    with pytest.raises(ConfigError, match="student 20 / teacher 27.*spatial"):
        loss(feats(S_CH, 1), t)
    with pytest.raises(ConfigError, match="pair 1"):
        seeded(name)(feats(S_CH, 1), t)


def test_channel_and_count_mismatch_raise():
    loss = seeded("mimic")
    with pytest.raises(ConfigError, match="channels"):
        loss(feats([5, 6], 1), feats(T_CH, 1))
    with pytest.raises(ConfigError, match="expects 2 layer pairs"):
        loss(feats(S_CH[:1], 1, sizes=SIZES[:1]), feats(T_CH[:1], 1, sizes=SIZES[:1]))
    with pytest.raises(ConfigError, match="one teacher layer per student layer"):
        build_feature_loss("mimic", [4, 6], [8])


def test_registry_and_errors():
    assert FEATURE_LOSSES == {"mimic": Mimic, "mgd": MGD, "cwd": CWD}
    assert build_feature_loss("cwd", [4], [4], tau=4.0).tau == 4.0
    with pytest.raises(ConfigError, match="unknown feature distillation loss 'fitnet'"):
        build_feature_loss("fitnet", [4], [4])
    with pytest.raises(ConfigError, match="bad options"):
        build_feature_loss("mimic", [4], [4], tau=2.0)
    with pytest.raises(ConfigError, match="mask_ratio"):
        MGD([4], [4], mask_ratio=1.0)
    with pytest.raises(ConfigError, match="tau"):
        CWD([4], [4], tau=0.0)
