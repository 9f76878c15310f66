import math

import pytest
import torch
import torch.nn.functional as F

from .loss_fakes import STRIDES, FakeModel, encode_box, zero_raw
from yolocompress.core.hyp import Hyp
from yolocompress.engine.loss import find_candidates
from yolocompress.engine.loss_ota import OTADetectionLoss, class_cost, dynamic_k_match

TARGET = [0.3, 0.6, 0.25, 0.375]  # xc, yc, w, h (normalised)


def reference_match(iou, cost):
    """The rule as loops: each target takes its k cheapest candidates, a shared one goes to its cheapest target."""
    g_count, c_count = iou.shape
    match = torch.zeros(g_count, c_count)
    ks = [max(1, int(v)) for v in iou.topk(min(10, c_count), 1).values.sum(1).tolist()]
    for g, k in enumerate(ks):
        match[g, cost[g].topk(k, largest=False).indices] = 1
    for c in range(c_count):
        if match[:, c].sum() > 1:
            match[:, c] = 0
            match[cost[:, c].argmin(), c] = 1
    fg = match.sum(0) > 0
    return fg, match[:, fg].argmax(0)


@pytest.mark.parametrize("iou, cost, picked", [
    ([0.9, 0.8, 0.5, 0.3, 0.1], [5, 1, 4, 2, 3], [1, 3]),  # k = floor(2.6) = 2, the two cheapest
    ([0.05] * 5, [5, 1, 4, 2, 3], [1]),  # k is at least 1
    ([0.5] * 12, list(range(12, 0, -1)), [7, 8, 9, 10, 11]),  # only the top-10 IoUs count: k = 5
])
def test_dynamic_k_takes_the_cheapest(iou, cost, picked):
    fg, gt = dynamic_k_match(torch.tensor([iou]), torch.tensor([cost], dtype=torch.float32))
    assert fg.nonzero().flatten().tolist() == picked
    assert (gt[fg] == 0).all()


def test_shared_candidate_goes_to_the_cheaper_target():
    iou = torch.tensor([[0.6, 0.6, 0.0], [0.6, 0.6, 0.0]])  # k = 1 for both
    fg, gt = dynamic_k_match(iou, torch.tensor([[2.0, 5.0, 9.0], [1.0, 6.0, 9.0]]))
    assert fg.tolist() == [True, False, False] and gt[0] == 1
    fg, gt = dynamic_k_match(iou, torch.tensor([[1.0, 5.0, 9.0], [6.0, 2.0, 9.0]]))  # no conflict
    assert fg.tolist() == [True, True, False] and gt[:2].tolist() == [0, 1]


@pytest.mark.parametrize("seed", range(5))
def test_dynamic_k_match_equals_loop_reference(seed):
    g = torch.Generator().manual_seed(seed)
    iou = torch.rand(4, 15, generator=g) ** 2
    cost = torch.rand(4, 15, generator=g) * 3 - torch.log(iou + 1e-8)
    fg, gt = dynamic_k_match(iou, cost)
    ref_fg, ref_gt = reference_match(iou, cost)
    assert torch.equal(fg, ref_fg) and torch.equal(gt[fg], ref_gt)


def test_class_cost_equals_summed_bce():
    g = torch.Generator().manual_seed(0)
    scores = torch.sigmoid(torch.randn(7, 4, generator=g)) * torch.sigmoid(torch.randn(7, 1, generator=g))
    scores = scores.sqrt()
    cls = torch.tensor([2, 0, 3])
    one_hot = F.one_hot(cls, 4).float()[:, None].expand(3, 7, 4)
    expected = F.binary_cross_entropy_with_logits(torch.log(scores / (1 - scores)).expand(3, 7, 4), one_hot,
                                                  reduction="none").sum(-1)
    assert torch.allclose(class_cost(scores, cls), expected, atol=1e-5)


def set_boxes(raw, loss_fn, targets, scale):
    """Encode at every candidate its target box, width and height times `scale(level, index)`."""
    grids = [tuple(r.shape[2:4]) for r in raw]
    anchors = loss_fn.head.anchors
    for i, pos in enumerate(find_candidates(targets, grids, anchors, 4.0)):
        h, w = grids[i]
        for n, (b, a, gj, gi, t) in enumerate(zip(*(x.tolist() for x in (pos.b, pos.a, pos.gj, pos.gi, pos.t)))):
            x, y, bw, bh = (targets[t, 2:6] * torch.tensor([w, h, w, h])).tolist()
            s = scale(i, n)
            raw[i][b, a, gj, gi, :4] = encode_box(torch.tensor([x - gi, y - gj, bw * s, bh * s]), anchors[i, a])


@pytest.mark.parametrize("h, w", [(64, 64), (64, 96), (96, 64)])
def test_target_gets_dynamic_k_positives(h, w):
    loss_fn = OTADetectionLoss(FakeModel(), Hyp(loss_ota=1), max(h, w))
    targets = torch.tensor([[0, 1, *TARGET]])
    raw = zero_raw(1, h, w)
    # two P3 candidates predict the box exactly (IoU 1), all others a concentric box of IoU 0.3
    set_boxes(raw, loss_fn, targets, lambda level, n: 1.0 if (level, n) in {(0, 0), (0, 1)} else math.sqrt(0.3))
    candidates = find_candidates(targets, [tuple(r.shape[2:4]) for r in raw], loss_fn.head.anchors, 4.0)
    assert sum(len(c) for c in candidates) >= 10
    pos = loss_fn.assign(raw, targets)
    assert sum(len(p) for p in pos) == 4  # floor(1 + 1 + 8 * 0.3)
    exact = candidates[0][torch.tensor([0, 1])]
    got = set(zip(pos[0].a.tolist(), pos[0].gj.tolist(), pos[0].gi.tolist()))
    assert set(zip(exact.a.tolist(), exact.gj.tolist(), exact.gi.tolist())) <= got
    assert all((p.t == 0).all() for p in pos)


def test_twin_targets_go_to_the_cheaper_class():
    torch.manual_seed(0)
    raw = [r.normal_(0, 1) for r in zero_raw(1, 64, 64)]
    for r in raw:
        r[..., 4:] = torch.tensor([0.0, -2.0, 2.0, -2.0])  # objectness, classes: the model believes class 1
    targets = torch.tensor([[0, 0, *TARGET], [0, 1, *TARGET]])
    pos = OTADetectionLoss(FakeModel(), Hyp(loss_ota=1), 64).assign(raw, targets)
    assert sum(len(p) for p in pos) >= 1
    assert all((p.t == 1).all() for p in pos)


def positive_tuples(pos, index_map=None, image=None):
    out = []
    for level, p in enumerate(pos):
        for b, a, gj, gi, t in zip(*(x.tolist() for x in (p.b, p.a, p.gj, p.gi, p.t))):
            out.append((level, b if image is None else image, a, gj, gi, t if index_map is None else index_map[t]))
    return sorted(out)


def test_images_are_assigned_independently_and_positives_are_candidates():
    torch.manual_seed(1)
    bs = 3
    targets = torch.cat((torch.randint(0, bs, (9, 1)).float(), torch.randint(0, 3, (9, 1)).float(),
                         torch.rand(9, 2) * 0.8 + 0.1, torch.rand(9, 2) * 0.4 + 0.05), 1)
    targets = torch.cat((targets, torch.tensor([[1, 0, 0.5, 0.5, 0.01, 0.01]])))  # too small for any anchor
    raw = [r.normal_(0, 1) for r in zero_raw(bs, 64, 64)]
    loss_fn = OTADetectionLoss(FakeModel(), Hyp(loss_ota=1), 64)
    pos = loss_fn.assign(raw, targets)
    together = positive_tuples(pos)
    alone = []
    for b in range(bs):
        rows = (targets[:, 0] == b).nonzero().flatten()
        single = targets[rows].clone()
        single[:, 0] = 0
        alone += positive_tuples(loss_fn.assign([r[b:b + 1] for r in raw], single), rows.tolist(), image=b)
    assert together == sorted(alone)
    for p in pos:
        assert torch.equal(p.b, targets[p.t, 0].long())  # each positive answers for a target of its own image
    grids = [tuple(r.shape[2:4]) for r in raw]
    candidates = find_candidates(targets, grids, loss_fn.head.anchors, 4.0)
    cells = {(lv, b, a, gj, gi) for lv, b, a, gj, gi, _ in positive_tuples(candidates)}
    assert {t[:5] for t in together} <= cells
    assert len(STRIDES) == len(pos)


def test_ota_loss_is_finite_with_empty_images_and_differentiable():
    raw = [r.normal_(0, 1).requires_grad_() for r in zero_raw(3, 64, 96)]
    targets = torch.tensor([[2, 1, *TARGET], [0, 2, 0.7, 0.3, 0.2, 0.1]])  # image 1 has no target
    loss, items = OTADetectionLoss(FakeModel(), Hyp(loss_ota=1), 96)(raw, targets)
    loss.backward()
    assert torch.isfinite(items).all() and (items > 0).all()
    assert all(torch.isfinite(r.grad).all() for r in raw)
