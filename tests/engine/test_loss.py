import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import complete_box_iou

from .loss_fakes import FakeHead, FakeModel, encode_box, zero_raw
from yolocompress.engine.boxes import bbox_ciou, box_iou, xywh2xyxy
from yolocompress.core.hyp import Hyp
from yolocompress.engine.loss import DetectionLoss, find_candidates
from yolocompress.engine.losses import build_loss
from yolocompress.engine.loss_ota import OTADetectionLoss
from yolocompress.core.errors import ConfigError, DataError

IMG = 64
GRIDS = [(IMG // s, IMG // s) for s in (8, 16, 32)]
# One 16x24 px box centred at (19.2, 38.4) px: on P3 it sits left/low in its cell, on P4 left/high.
ONE_TARGET = torch.tensor([[0, 1, 0.3, 0.6, 16 / IMG, 24 / IMG]])


def reference_candidates(targets, grids, anchors, anchor_t):
    """Loop version of the candidate rule, as sorted (b, a, gj, gi, t) tuples per level."""
    out = []
    for (h, w), level_anchors in zip(grids, anchors.tolist()):
        found = []
        for ti, (b, _, x, y, bw, bh) in enumerate(targets.tolist()):
            gx, gy, gw, gh = x * w, y * h, bw * w, bh * h
            for a, (aw, ah) in enumerate(level_anchors):
                if max(gw / aw, aw / gw, gh / ah, ah / gh) >= anchor_t:
                    continue
                cells = [(gx, gy)]
                cells += [(gx - 0.5, gy)] if gx % 1 < 0.5 and gx > 1 else []
                cells += [(gx, gy - 0.5)] if gy % 1 < 0.5 and gy > 1 else []
                cells += [(gx + 0.5, gy)] if (w - gx) % 1 < 0.5 and w - gx > 1 else []
                cells += [(gx, gy + 0.5)] if (h - gy) % 1 < 0.5 and h - gy > 1 else []
                found += [(int(b), a, min(int(cy), h - 1), min(int(cx), w - 1), ti) for cx, cy in cells]
        out.append(sorted(found))
    return out


def as_tuples(pos):
    return sorted(zip(pos.b.tolist(), pos.a.tolist(), pos.gj.tolist(), pos.gi.tolist(), pos.t.tolist()))


def random_targets(n, bs, nc, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=g) * 0.5 + 0.05
    img = torch.randint(0, bs, (n, 1), generator=g).float()
    cls = torch.randint(0, nc, (n, 1), generator=g).float()
    return torch.cat((img, cls, xy, wh), 1)


@pytest.mark.parametrize("anchor_t, p4_anchors", [(4.0, [0, 1]), (5.0, [0, 1, 2])])
def test_candidates_hand_case(anchor_t, p4_anchors):
    pos = find_candidates(ONE_TARGET, GRIDS, FakeHead().anchors, anchor_t)
    cells = [{(a, gj, gi) for _, a, gj, gi, _ in as_tuples(p)} for p in pos]
    # P3: centre cell (gi 2, gj 4), left neighbour (x frac 0.4) and lower neighbour (y frac 0.8), all anchors.
    assert cells[0] == {(a, gj, gi) for a in range(3) for gi, gj in [(2, 4), (1, 4), (2, 5)]}
    # P4: centre (1, 2), left and upper neighbours; anchor 2 (w ratio 4.96) only passes a looser anchor_t.
    assert cells[1] == {(a, gj, gi) for a in p4_anchors for gi, gj in [(1, 2), (0, 2), (1, 1)]}
    assert cells[2] == set()  # every P5 anchor is over 4x larger than the box


@pytest.mark.parametrize("seed, anchor_t, grids",
                         [(0, 4.0, GRIDS), (1, 2.9, GRIDS), (2, 4.0, [(10, 6), (5, 3), (3, 2)])])
def test_candidates_match_loop_reference(seed, anchor_t, grids):
    targets = random_targets(12, 2, 3, seed).double()
    targets[0, 2:4] = torch.tensor([1.0, 0.0])  # on the image border: cells are clamped into the grid
    anchors = FakeHead().anchors.double()
    got = find_candidates(targets, grids, anchors, anchor_t)
    assert [as_tuples(p) for p in got] == reference_candidates(targets, grids, anchors, anchor_t)


def test_no_targets_gives_no_candidates():
    pos = find_candidates(torch.zeros(0, 6), GRIDS, FakeHead().anchors, 4.0)
    assert [len(p) for p in pos] == [0, 0, 0]


def test_boxes_match_torchvision():
    g = torch.Generator().manual_seed(0)
    a = torch.cat((torch.rand(20, 2, generator=g) * 10, torch.rand(20, 2, generator=g) * 5 + 0.1), 1)
    b = torch.cat((torch.rand(20, 2, generator=g) * 10, torch.rand(20, 2, generator=g) * 5 + 0.1), 1)
    assert torch.allclose(xywh2xyxy(torch.tensor([[2.0, 3.0, 4.0, 2.0]])), torch.tensor([[0.0, 2.0, 4.0, 4.0]]))
    assert torch.allclose(box_iou(xywh2xyxy(a), xywh2xyxy(b)), tv_box_iou(xywh2xyxy(a), xywh2xyxy(b)), atol=1e-5)
    expected = complete_box_iou(xywh2xyxy(a), xywh2xyxy(b)).diagonal()
    assert torch.allclose(bbox_ciou(a, b), expected, atol=1e-5)
    assert torch.allclose(bbox_ciou(a, a), torch.ones(20), atol=1e-5)


def exact_raw(loss_fn, targets, bs=1, nc=3):
    """Raw outputs whose every positive decodes to exactly its target box."""
    raw = zero_raw(bs, IMG, IMG, nc)
    anchors = loss_fn.head.anchors
    for i, pos in enumerate(loss_fn.assign(raw, targets)):
        h, w = raw[i].shape[2:4]
        for b, a, gj, gi, t in as_tuples(pos):
            x, y, bw, bh = (targets[t, 2:6] * torch.tensor([w, h, w, h])).tolist()
            box = torch.tensor([x - gi, y - gj, bw, bh])
            raw[i][b, a, gj, gi, :4] = encode_box(box, anchors[i, a])
    return raw


def test_box_loss_vanishes_when_logits_encode_the_target():
    loss_fn = DetectionLoss(FakeModel(), Hyp(), IMG)
    raw = exact_raw(loss_fn, ONE_TARGET)
    _, items = loss_fn(raw, ONE_TARGET)
    assert items[0].item() < 1e-5
    # every positive then has objectness target IoU = 1, all other cells 0
    obj = 0.0
    for i, pos in enumerate(loss_fn.assign(raw, ONE_TARGET)):
        tobj = torch.zeros(raw[i].shape[:4])
        tobj[pos.b, pos.a, pos.gj, pos.gi] = 1.0
        obj += F.binary_cross_entropy_with_logits(raw[i][..., 4], tobj) * [4.0, 1.0, 0.4][i]
    assert items[1].item() == pytest.approx(obj.item() * Hyp().obj * (IMG / 640) ** 2, rel=1e-4)


def expected_items(loss_fn, raw, targets, hyp):
    """The three loss items recomputed from the official formulas, with torchvision's CIoU."""
    cp, cn = 1 - 0.5 * hyp.label_smoothing, 0.5 * hyp.label_smoothing

    def bce(x, t, pw):
        loss = F.binary_cross_entropy_with_logits(x, t, pos_weight=torch.tensor([pw]), reduction="none")
        if hyp.fl_gamma:
            p = x.sigmoid()
            p_t = t * p + (1 - t) * (1 - p)
            loss = loss * (t * 0.25 + (1 - t) * 0.75) * (1 - p_t) ** hyp.fl_gamma
        return loss.mean()

    lbox = lobj = lcls = 0.0
    for i, pos in enumerate(find_candidates(targets, GRIDS, loss_fn.head.anchors, hyp.anchor_t)):
        pi, (h, w) = raw[i], raw[i].shape[2:4]
        if not len(pos):
            lobj += bce(pi[..., 4], torch.zeros(pi.shape[:4]), hyp.obj_pw) * [4.0, 1.0, 0.4][i]
            continue
        ps = pi[pos.b, pos.a, pos.gj, pos.gi]
        pxy = ps[:, :2].sigmoid() * 2 - 0.5
        pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * loss_fn.head.anchors[i][pos.a]
        t = targets[pos.t]
        txy = t[:, 2:4] * torch.tensor([w, h]) - torch.stack((pos.gi, pos.gj), 1)
        twh = t[:, 4:6] * torch.tensor([w, h])
        pbox, tbox = xywh2xyxy(torch.cat((pxy, pwh), 1)), xywh2xyxy(torch.cat((txy, twh), 1))
        ciou = complete_box_iou(pbox, tbox).diagonal()
        lbox += (1 - ciou).mean()
        tobj = torch.zeros(pi.shape[:4])
        tobj[pos.b, pos.a, pos.gj, pos.gi] = ciou.clamp(min=0)
        lobj += bce(pi[..., 4], tobj, hyp.obj_pw) * [4.0, 1.0, 0.4][i]
        tcls = torch.full_like(ps[:, 5:], cn)
        tcls[torch.arange(len(pos)), t[:, 1].long()] = cp
        lcls += bce(ps[:, 5:], tcls, hyp.cls_pw)
    gain = 3 / 3
    return torch.tensor([lbox * hyp.box * gain, lobj * hyp.obj * (IMG / 640) ** 2 * gain,
                         lcls * hyp.cls * 3 / 80 * gain])


@pytest.mark.parametrize("hyp", [Hyp(), Hyp(label_smoothing=0.1), Hyp(cls_pw=2.0, obj_pw=0.5),
                                 Hyp(fl_gamma=1.5), Hyp(anchor_t=2.9, box=0.1, cls=0.3, obj=0.7)])
def test_items_equal_official_formulas(hyp):
    torch.manual_seed(0)
    targets = torch.tensor([[0, 1, 0.3, 0.6, 0.25, 0.375], [1, 2, 0.7, 0.2, 0.5, 0.3],
                            [1, 0, 0.2, 0.8, 0.1, 0.1]])
    raw = [r.normal_(0, 1) for r in zero_raw(2, IMG, IMG)]
    loss_fn = DetectionLoss(FakeModel(), hyp, IMG)
    loss, items = loss_fn(raw, targets)
    assert items.shape == (3,) and not items.requires_grad
    assert torch.allclose(items, expected_items(loss_fn, raw, targets, hyp), rtol=1e-4, atol=1e-6)
    assert loss.item() == pytest.approx(items.sum().item() * 2, rel=1e-5)


@pytest.mark.parametrize("bs", [1, 3])
@pytest.mark.parametrize("loss_ota", [0, 1])
def test_loss_is_items_times_batch_size(bs, loss_ota):
    torch.manual_seed(bs)
    targets = random_targets(5, bs, 3, seed=bs)
    raw = [r.normal_(0, 1) for r in zero_raw(bs, IMG, IMG)]
    loss, items = build_loss(FakeModel(), Hyp(loss_ota=loss_ota), IMG)(raw, targets)
    assert loss.ndim == 0 and torch.isfinite(items).all()
    assert loss.item() == pytest.approx(items.sum().item() * bs, rel=1e-5)


@pytest.mark.parametrize("loss_ota", [0, 1])
def test_gradients_reach_every_output(loss_ota):
    raw = [r.normal_(0, 1).requires_grad_() for r in zero_raw(2, IMG, IMG)]
    loss, _ = build_loss(FakeModel(), Hyp(loss_ota=loss_ota), IMG)(raw, random_targets(4, 2, 3, seed=3))
    loss.backward()
    for r in raw:
        assert torch.isfinite(r.grad).all()
        assert r.grad[..., 4].abs().sum() > 0  # objectness everywhere
    assert sum(r.grad[..., :4].abs().sum() for r in raw) > 0  # box terms at positives
    assert sum(r.grad[..., 5:].abs().sum() for r in raw) > 0  # class terms at positives


@pytest.mark.parametrize("nc", [1, 3])
@pytest.mark.parametrize("loss_ota", [0, 1])
def test_without_targets_or_classes(nc, loss_ota):
    loss_fn = build_loss(FakeModel(nc), Hyp(loss_ota=loss_ota), IMG)
    loss, items = loss_fn(zero_raw(2, IMG, IMG, nc), torch.zeros(0, 6))
    assert items[0] == 0 and items[2] == 0 and items[1] > 0
    _, items = loss_fn(zero_raw(1, IMG, IMG, nc), ONE_TARGET[:, :] * torch.tensor([1, 0, 1, 1, 1, 1]))
    assert (items[2] == 0) == (nc == 1) and torch.isfinite(items).all()


def test_gains_follow_levels_classes_and_image_size():
    a = DetectionLoss(FakeModel(nc=3), Hyp(), 640)
    b = DetectionLoss(FakeModel(nc=80), Hyp(), 1280)
    assert (a.box_gain, a.obj_gain, a.cls_gain) == pytest.approx((0.05, 1.0, 0.5 * 3 / 80))
    assert (b.box_gain, b.obj_gain, b.cls_gain) == pytest.approx((0.05, 4.0, 0.5))


def test_build_loss_picks_by_loss_ota_and_unwraps_wrappers():
    model = FakeModel()
    assert type(build_loss(model, Hyp(loss_ota=0), IMG)) is DetectionLoss
    assert type(build_loss(model, Hyp(loss_ota=1), IMG)) is OTADetectionLoss
    assert build_loss(torch.nn.DataParallel(model), Hyp(), IMG).head is model.head


def call_with(raw=None, targets=ONE_TARGET):
    return lambda: DetectionLoss(FakeModel(), Hyp(), IMG)(zero_raw(1, IMG, IMG) if raw is None else raw, targets)


@pytest.mark.parametrize("make, error", [
    (lambda: DetectionLoss(torch.nn.Linear(2, 2), Hyp(), IMG), ConfigError),
    (lambda: DetectionLoss(FakeModel(), Hyp(anchor_t=1.0), IMG), ConfigError),
    (call_with(raw=zero_raw(1, IMG, IMG)[:2]), ConfigError),  # a level missing
    (call_with(targets=ONE_TARGET[:, 1:]), DataError),  # no image column
    (call_with(targets=ONE_TARGET + torch.tensor([0, 5, 0, 0, 0, 0])), DataError),  # class 6 of 3
    (call_with(targets=ONE_TARGET + torch.tensor([1, 0, 0, 0, 0, 0])), DataError),  # image 1 of a batch of 1
])
def test_user_errors_are_one_line(make, error):
    with pytest.raises(error) as e:
        make()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("loss_ota", [0, 1])
def test_training_on_a_fixed_target_lowers_the_loss(loss_ota):
    torch.manual_seed(0)
    model = FakeModel()
    loss_fn = build_loss(model, Hyp(loss_ota=loss_ota), IMG)
    x = torch.rand(2, 3, IMG, IMG)
    targets = torch.tensor([[0, 1, 0.3, 0.6, 0.25, 0.375], [1, 2, 0.6, 0.4, 0.5, 0.3],
                            [1, 0, 0.2, 0.2, 0.1, 0.15]])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        loss, _ = loss_fn(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0]  # a linear per-patch model cannot fit much better in 30 steps
