from types import SimpleNamespace

import pytest
import torch

from yolocompress.distill.logit import (LOGIT_LOSSES, AlignSoftTarget, L1Logit, L2Logit, build_logit_loss,
                                        decode_boxes, elementwise_iou)
from yolocompress.core.errors import ConfigError

NC, NA, B = 3, 2, 2
SIZES = (4, 2)
GAINS = dict(box=0.05, obj=1.0, cls=0.5)


def make_head(nc=NC, na=NA, nl=len(SIZES)):
    anchors = torch.rand(nl, na, 2) * 3 + 0.5
    return SimpleNamespace(nc=nc, nl=nl, na=na, anchors=anchors, stride=torch.tensor([8.0, 16.0][:nl]))


def make_raw(seed, requires_grad=False, sizes=SIZES, nc=NC):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, NA, s, s, 5 + nc, generator=g).requires_grad_(requires_grad) for s in sizes]


@pytest.fixture
def head():
    torch.manual_seed(0)
    return make_head()


@pytest.mark.parametrize("name", ["l1", "l2", "ast"])
@pytest.mark.parametrize("obj_weighted", [False, True])
def test_zero_when_equal_positive_when_different(head, name, obj_weighted):
    opts = {"obj_weighted": obj_weighted} if name != "ast" else {}
    loss = build_logit_loss(name, head, GAINS, **opts)
    t = make_raw(1)
    same = loss([x.clone() for x in t], t)
    diff = loss(make_raw(2), t)
    assert same.shape == () and same.item() == pytest.approx(0.0, abs=1e-6)
    assert diff.item() > 1e-4


def test_ast_identical_is_minimum(head):
    """Perturbing the student's obj or cls logits moves it off the minimum reached at the teacher; box gaps
    count only where the classes also disagree (the box term is weighted by the class-probability gap)."""
    loss = AlignSoftTarget(head, GAINS)
    t = make_raw(3)

    def perturbed(*slices):
        s = [x.clone() for x in t]
        for sl in slices:
            s[0][..., sl] += 0.3
        return loss(s, t).item()

    base = perturbed()
    assert base == pytest.approx(0.0, abs=1e-7)
    assert perturbed(slice(4, 5)) > base + 1e-6
    assert perturbed(slice(5, None)) > base + 1e-6
    assert perturbed(slice(0, 4)) == pytest.approx(base, abs=1e-7)
    assert perturbed(slice(0, 4), slice(5, None)) > perturbed(slice(5, None)) + 1e-6


@pytest.mark.parametrize("name", ["l1", "l2", "ast"])
def test_gradient_reaches_student_not_teacher(head, name):
    loss = build_logit_loss(name, head, GAINS)
    s, t = make_raw(4, requires_grad=True), make_raw(5, requires_grad=True)
    loss(s, t).backward()
    for x in s:
        assert x.grad is not None and x.grad.abs().sum() > 0
        for sl in (slice(0, 4), slice(4, 5), slice(5, None)):  # box, obj and cls all distilled
            assert x.grad[..., sl].abs().sum() > 0
    assert all(x.grad is None for x in t)


def test_l1_l2_match_hand_computation(head):
    s, t = make_raw(6), make_raw(7)
    for cls, dist in ((L1Logit, lambda a, b: (a - b).abs()), (L2Logit, lambda a, b: (a - b) ** 2)):
        expected = 0.0
        for i in range(head.nl):
            box_s, box_t = decode_boxes(s[i], head.anchors[i]), decode_boxes(t[i], head.anchors[i])
            expected += GAINS["box"] * dist(box_s, box_t).mean()
            expected += GAINS["obj"] * dist(s[i][..., 4].sigmoid(), t[i][..., 4].sigmoid()).mean()
            expected += GAINS["cls"] * dist(s[i][..., 5:].sigmoid(), t[i][..., 5:].sigmoid()).mean()
        assert cls(head, GAINS)(s, t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_obj_weighted_follows_teacher_objectness(head):
    """With obj_weighted only anchors the teacher calls objects count: a difference elsewhere costs ~nothing."""
    t = make_raw(8)
    for x in t:
        x[..., 4] = -20.0
    t[0][0, 0, 0, 0, 4] = 20.0  # a single confident anchor
    s_far = [x.clone() for x in t]
    s_far[1][..., 5:] += 2.0  # differs only where the teacher sees background
    s_near = [x.clone() for x in t]
    s_near[0][0, 0, 0, 0, 5:] += 2.0  # differs at the confident anchor
    plain, weighted = L2Logit(head, GAINS), L2Logit(head, GAINS, obj_weighted=True)
    assert plain(s_far, t) > plain(s_near, t)  # more elements differ
    assert weighted(s_far, t).item() < 1e-6 < weighted(s_near, t).item()
    assert weighted(s_near, t) > plain(s_near, t)


def test_decode_boxes_matches_yolov5():
    anchors = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    raw = torch.zeros(1, 2, 1, 1, 6)
    box = decode_boxes(raw, anchors)
    assert box.shape == (1, 2, 1, 1, 4)
    torch.testing.assert_close(box[0, :, 0, 0], torch.tensor([[0.5, 0.5, 1.0, 2.0], [0.5, 0.5, 3.0, 4.0]]))


def test_elementwise_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0]])
    torch.testing.assert_close(elementwise_iou(a, b), torch.tensor([1.0, 2.0 / 6.0]), atol=1e-6, rtol=0)


def test_ast_normalised_by_positive_anchors(head):
    """With the obj gain at 0, the teacher's objectness only sets the divisor: k positives divide by k."""
    g = dict(GAINS, obj=0.0)
    s, t = make_raw(9), make_raw(10)
    for x in t:
        x[..., 4] = -5.0
    none = AlignSoftTarget(head, g)(s, t)  # no positives -> divide by 1
    t[0][:, :, 0, 0, 4] = 5.0
    k = B * NA
    assert none.item() > 0
    assert AlignSoftTarget(head, g)(s, t).item() * k == pytest.approx(none.item(), rel=1e-5)


def test_ast_against_hand_computation(head):
    s, t = make_raw(11), make_raw(12)
    total, n_pos = 0.0, 0
    for i in range(head.nl):
        ps, pt = s[i][..., 4:].sigmoid(), t[i][..., 4:].sigmoid()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(s[i][..., 4:], pt, reduction="none")
        w = (pt - ps).abs()
        total += GAINS["obj"] * (bce * w)[..., 0].sum() + GAINS["cls"] * (bce * w)[..., 1:].sum()
        iou = elementwise_iou(decode_boxes(s[i], head.anchors[i]), decode_boxes(t[i], head.anchors[i]))
        total += GAINS["box"] * ((1 - iou) * w[..., 1:].amax(-1)).sum()
        n_pos += int((pt[..., 0] > 0.5).sum())
    assert n_pos > 0
    assert AlignSoftTarget(head, GAINS)(s, t).item() == pytest.approx((total / n_pos).item(), rel=1e-5)


@pytest.mark.parametrize("name", ["l1", "ast"])
@pytest.mark.parametrize("student_sizes,student_nc", [((4,), NC), ((4, 4), NC), (SIZES, NC + 1)])
def test_mismatched_outputs_raise(head, name, student_sizes, student_nc):
    loss = build_logit_loss(name, head, GAINS)
    with pytest.raises(ConfigError, match="same detection levels and anchors"):
        loss(make_raw(0, sizes=student_sizes, nc=student_nc), make_raw(0))


def test_outputs_not_fitting_head_raise(head):
    other = make_head(nc=NC + 2)
    with pytest.raises(ConfigError, match="do not fit the head"):
        L1Logit(other, GAINS)(make_raw(0), make_raw(1))


def test_registry_and_errors(head):
    assert set(LOGIT_LOSSES) == {"l1", "l2", "ast"}
    assert isinstance(build_logit_loss("l2", head, GAINS, obj_weighted=True), L2Logit)
    with pytest.raises(ConfigError, match="unknown logit distillation loss 'kl'"):
        build_logit_loss("kl", head, GAINS)
    with pytest.raises(ConfigError, match="bad options"):
        build_logit_loss("ast", head, GAINS, obj_weighted=True)
    with pytest.raises(ConfigError, match="keys box, obj, cls"):
        build_logit_loss("l1", head, dict(box=1.0, obj=1.0))


def test_anchors_follow_module_device_and_stay_out_of_state_dict(head):
    loss = L1Logit(head, GAINS).double()
    assert loss.anchors.dtype == torch.float64 and "anchors" not in loss.state_dict()
