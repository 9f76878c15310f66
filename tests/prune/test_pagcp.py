"""PAGCP: the loss bounds hold layer by layer, thresholds and top-k behave, rounds stop, both families work."""
import copy
import json
import math

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from yolocompress.core.hyp import Hyp
from yolocompress.engine.losses import build_loss
from yolocompress.core.errors import ConfigError
from yolocompress.models.builder import Model
from yolocompress.models.heads import ImplicitA, ImplicitM
from yolocompress.prune import pagcp
from yolocompress.engine.options import TrainOptions
from yolocompress.prune.options import PagcpOptions, PruneOptions
from yolocompress.prune.pagcp import LayerRecord, pagcp_prune, pruned_counts, select_topk, solve_lambda
from yolocompress.core.stats import count_gflops

from ..conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

IMGSZ = 64
NC = 3
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
LRELU = "nn.LeakyReLU(0.1)"
# Few groups, every building block of its family: C3, SPPF, Upsample/Concat, Detect ...
MINI_V5 = {"nc": NC, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": ANCHORS,
           "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 3, "C3", [128]],
                        [-1, 1, "Conv", [256, 3, 2]], [-1, 1, "C3", [256]], [-1, 1, "Conv", [512, 3, 2]],
                        [-1, 1, "C3", [512]], [-1, 1, "Conv", [512, 3, 2]], [-1, 1, "SPPF", [512, 5]]],
           "head": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 6], 1, "Concat", [1]],
                    [-1, 1, "C3", [256, False]], [[4, 11, 8], 1, "Detect", ["nc", "anchors"]]]}
# ... and ELAN concat, MP, SP, RepConv (with its identity branch) and IDetect's implicit parameters.
MINI_V7 = {"nc": NC, "depth_multiple": 1.0, "width_multiple": 0.25, "anchors": ANCHORS,
           "backbone": [[-1, 1, "Conv", [32, 3, 2, None, 1, LRELU]], [-1, 1, "Conv", [64, 3, 2, None, 1, LRELU]],
                        [-1, 1, "Conv", [32, 1, 1, None, 1, LRELU]], [-2, 1, "Conv", [32, 1, 1, None, 1, LRELU]],
                        [-1, 1, "Conv", [32, 3, 1, None, 1, LRELU]], [[-1, -2, -3], 1, "Concat", [1]],
                        [-1, 1, "Conv", [64, 1, 1, None, 1, LRELU]], [-1, 1, "MP", []],
                        [-1, 1, "Conv", [128, 3, 1, None, 1, LRELU]], [-1, 1, "MP", []],
                        [-1, 1, "Conv", [128, 3, 1, None, 1, LRELU]], [-1, 1, "MP", []],
                        [-1, 1, "Conv", [256, 1, 1, None, 1, LRELU]]],
           "head": [[-1, 1, "SP", [5]], [[-1, -2], 1, "Concat", [1]], [-1, 1, "Conv", [128, 1, 1, None, 1, LRELU]],
                    [8, 1, "RepConv", [128, 3, 1]], [10, 1, "RepConv", [128, 3, 1]], [15, 1, "RepConv", [256, 3, 1]],
                    [[16, 17, 18], 1, "IDetect", ["nc", "anchors"]]]}


def make_batches(n=2, b=4, nc=NC, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        rows = [[i, int(torch.randint(nc, (1,), generator=g)), *(0.25 + 0.5 * torch.rand(2, generator=g)).tolist(),
                 *(0.1 + 0.4 * torch.rand(2, generator=g)).tolist()] for i in range(b) for _ in range(2)]
        out.append((torch.rand(b, 3, IMGSZ, IMGSZ, generator=g), torch.tensor(rows)))
    return out


@torch.no_grad()
def lively(cfg, batches, seed=0, head_std=0.3):
    """A random model whose losses react to pruning: BN statistics measured on the batches (features keep
    their scale through the depth) and head weights large enough for the features to matter."""
    torch.manual_seed(seed)
    model = Model(copy.deepcopy(cfg))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
        elif isinstance(m, ImplicitA):
            m.implicit.normal_(0, 0.3)
    for conv in model.head.m:
        conv.weight.normal_(0, head_std)
    model.train()
    for imgs, _ in batches:
        model(imgs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.03
    return model.eval()


def setup(cfg, n_batches=2, **kw):
    batches = make_batches(n_batches)
    model = lively(cfg, batches, **kw)
    return model, batches, build_loss(model, Hyp.default_for(model.yaml), IMGSZ)


def run(model, batches, loss_fn, **kw):
    kw = {"speedup": 100.0, "imgsz": IMGSZ, "rounds": 1, "progress": lambda s: None, **kw}
    return pagcp_prune(model, batches, loss_fn, **kw)


def full_losses(model, batches, loss_fn):
    """The three components with the plain eval forward (no cache, no views)."""
    total = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for imgs, targets in batches:
            total += loss_fn(model.eval()(imgs)[1], targets)[1].double()
    return total.tolist()


def graph(model, batches):
    implicit = [(m.implicit, 1) for m in model.modules() if isinstance(m, (ImplicitA, ImplicitM))]
    return tp.DependencyGraph().build_dependency(model.eval(), batches[0][0][:1], unwrapped_parameters=implicit)


def prune_channels(dg, name, idxs):
    root = dg.model.get_submodule(name)
    dg.get_pruning_group(root, dg.get_pruner_of_module(root).prune_out_channels, idxs).prune()


@pytest.fixture(scope="module")
def mini_runs():
    """One round on each mini family, kept with the model it started from (shared by several tests)."""
    out = {}
    for name, cfg in (("v5", MINI_V5), ("v7", MINI_V7)):
        model, batches, loss_fn = setup(cfg)
        reference = copy.deepcopy(model.state_dict())
        res = run(model, batches, loss_fn, initial_rate=0.02, stop_at_target=False)
        out[name] = (model, batches, loss_fn, res, reference)
    return out


# ---- thresholds -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d0, big_d, n", [(0.05, 5.0, 50), (0.05, 1.5, 20), (0.01, 3.0, 10), (0.2, 100.0, 5),
                                          (0.06, 6.0, 2)])
def test_lambda_solves_the_product_equation(d0, big_d, n):
    lam = solve_lambda(d0, big_d, n)
    assert math.prod(1 + d0 * lam ** i for i in range(n)) == pytest.approx(big_d, rel=1e-9)
    assert solve_lambda(d0, big_d * 1.5, n) > lam  # a looser bound never tightens a layer


def test_lambda_edge_cases():
    assert solve_lambda(0.05, 5.0, 1) == 1.0
    assert solve_lambda(0.05, 1.05 ** 30, 30) == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(ConfigError, match="initial-thres"):
        solve_lambda(0.5, 1.4, 10)


@pytest.mark.parametrize("kw", [{"topk": 0.0}, {"topk": 1.5}, {"initial_rate": 0.0}, {"initial_thres": 1.0},
                                {"rounds": 0}, {"exp": True, "initial_rate": 0.5, "initial_thres": 1.4},
                                {"thres_slope": -5.0, "rounds": 3, "speedup": 100.0}])
def test_bad_options_are_config_errors(kw):
    model, batches, loss_fn = setup(MINI_V5)
    with pytest.raises(ConfigError, match="pagcp"):
        run(model, batches, loss_fn, **{"rounds": 1, **kw})


# ---- the greedy pass --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["v5", "v7"])
def test_loss_bound_holds_for_every_accepted_layer(mini_runs, family):
    """Replay the accepted layers in visit order with plain Torch-Pruning and the plain forward pass: every
    component stays within (1 + d) of the state before it and within D of the baseline, and the losses
    match what PAGCP measured through its views and cached features."""
    model, batches, loss_fn, res, _ = mini_runs[family]
    rnd = res.rounds[0]
    visited = [r for r in rnd.layers if r.stop != "skipped"]
    accepted = [r for r in visited if r.pruned]
    assert accepted and any(r.stop in pagcp.COMPONENTS for r in visited)  # the bound both allowed and stopped
    work = copy.deepcopy(model)
    dg = graph(work, batches)
    prev = full_losses(work, batches, loss_fn)
    assert prev == pytest.approx(rnd.baseline, rel=1e-5)
    for rec in accepted:
        assert rec.losses_before == pytest.approx(prev, rel=1e-5)
        prune_channels(dg, rec.name, rec.idxs)
        now = full_losses(work, batches, loss_fn)
        assert now == pytest.approx(rec.losses_after, rel=1e-4, abs=1e-7)
        for t in range(3):
            assert now[t] <= (1 + rec.tolerance) * prev[t] * (1 + 1e-5) + 1e-9, (rec.name, pagcp.COMPONENTS[t])
            assert now[t] <= rnd.initial_thres * rnd.baseline[t] * (1 + 1e-5) + 1e-9
        prev = now
    for rec in visited:  # the first rejected ratio really broke the bound of the component it names
        if rec.stop in pagcp.COMPONENTS:
            assert rec.bound in ("layer", "global") and rec.pruned < rec.channels - 1


def test_visit_order_follows_flops_contribution(mini_runs):
    layers = [r for r in mini_runs["v5"][3].rounds[0].layers if r.stop != "skipped"]
    assert [r.position for r in layers] == list(range(len(layers)))
    probes = [r.probe_gflops for r in layers]
    assert probes == sorted(probes, reverse=True) and probes[-1] > 0


def test_input_model_is_untouched(mini_runs):
    model, _, _, res, reference = mini_runs["v7"]
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert res.model is not model and count_gflops(res.model, IMGSZ) < count_gflops(model, IMGSZ)


@pytest.mark.parametrize("exp, d0, thresholds", [(False, 0.05, (1.02, 1.1, 4.0)), (True, 0.02, (1.05, 1.3, 4.0))])
def test_larger_initial_thres_never_prunes_less(exp, d0, thresholds):
    """Without --exp, D caps the round's loss ratio; with it, D sets lambda (every tolerance grows with D)."""
    model, batches, loss_fn = setup(MINI_V5)
    kw = {"initial_rate": d0, "exp": exp, "stop_at_target": False}
    ratios = [run(model, batches, loss_fn, initial_thres=d, **kw).gflops_ratio for d in thresholds]
    assert ratios == sorted(ratios) and ratios[-1] > ratios[0]


# ---- top-k and the round's model --------------------------------------------------------------------------
def test_select_topk_keeps_the_lowest_scores():
    recs = [LayerRecord(0, i, f"l{i}", 16, pruned=p, score=s)
            for i, (p, s) in enumerate([(2, 0.5), (0, -9.0), (3, -0.1), (1, 2.0), (4, 0.1), (2, math.inf)])]
    assert [r.name for r in select_topk(recs, 1.0)] == ["l2", "l4", "l0", "l3", "l5"]
    assert [r.name for r in select_topk(recs, 0.4)] == ["l2", "l4"]
    assert [r.name for r in select_topk(recs, 0.01)] == ["l2"]
    assert select_topk([LayerRecord(0, 0, "x", 8)], 0.5) == []


def test_topk_applies_only_the_selected_layers():
    model, batches, loss_fn = setup(MINI_V5)
    res = run(model, batches, loss_fn, initial_rate=0.05, topk=0.5, stop_at_target=False)
    layers = res.rounds[0].layers
    accepted = [r for r in layers if r.pruned]
    kept = [r for r in layers if r.kept]
    assert len(accepted) >= 4 and len(kept) == int(0.5 * len(accepted) + 0.5)
    assert max(r.score for r in kept) <= min(r.score for r in accepted if not r.kept)
    assert all(r.applied == r.kept for r in layers)
    for rec in accepted:
        assert res.model.get_submodule(rec.name).out_channels == rec.channels - (rec.pruned if rec.kept else 0)


# ---- rounds -----------------------------------------------------------------------------------------------
def test_rounds_stop_at_the_target():
    model, batches, loss_fn = setup(MINI_V5)
    calls = []

    def finetune(m, r):
        calls.append(r)
        return None  # trained in place

    res = run(model, batches, loss_fn, speedup=1.25, rounds=4, initial_rate=0.02, finetune_fn=finetune)
    assert res.reached and 1.25 <= res.gflops_ratio < 1.4 and len(res.rounds) > 1
    assert calls == list(range(len(res.rounds) - 1))
    assert all(r.speedup < 1.25 for r in res.rounds[:-1])
    last = res.rounds[-1].layers
    assert not all(r.applied for r in last if r.kept)  # stopped applying once the target was met
    assert res.summary()["reached"] and res.summary()["rounds"] == len(res.rounds)


def test_round_limit_is_reported_and_slopes_apply():
    model, batches, loss_fn = setup(MINI_V7)
    calls = []
    res = run(model, batches, loss_fn, speedup=50.0, rounds=2, initial_rate=0.01, rate_slope=0.01,
              thres_slope=1.0, finetune_fn=lambda m, r: calls.append(r))
    assert not res.reached and len(res.rounds) == 2 and calls == [0]
    assert [r.initial_rate for r in res.rounds] == pytest.approx([0.01, 0.02])
    assert [r.initial_thres for r in res.rounds] == pytest.approx([5.0, 6.0])
    assert res.rounds[1].gflops_after < res.rounds[0].gflops_after


def test_a_round_that_accepts_nothing_doubles_the_tolerances():
    model, batches, _ = setup(MINI_V5)

    def touchy(raw, targets):  # any change of the outputs raises every component
        loss = 1 + sum((r - ref).abs().mean() for r, ref in zip(raw, touchy.ref)) * 1e3
        return loss, torch.stack([loss, loss, loss]).detach()

    with torch.no_grad():
        touchy.ref = model.eval()(batches[0][0])[1]
    res = run(model, batches[:1], touchy, rounds=2, initial_rate=1e-4)
    assert [r.row()["accepted"] for r in res.rounds] == [0, 0]
    assert [r.initial_rate for r in res.rounds] == pytest.approx([1e-4, 2e-4])
    assert [r.initial_thres for r in res.rounds] == pytest.approx([5.0, 9.0])
    assert res.gflops_ratio == pytest.approx(1.0)


# ---- families, skips, the command entry point -------------------------------------------------------------
@pytest.mark.parametrize("name", ["yolov5n.yaml", "yolov7-tiny.yaml"])
def test_works_on_both_families(name):
    model, batches, loss_fn = setup(tiny_config(name, width=0.125, nc=NC), n_batches=1)
    res = run(model, batches, loss_fn, speedup=1.2, initial_rate=0.2, rounds=2)
    pruned = res.model
    assert res.reached and res.gflops_ratio >= 1.2
    assert [c.out_channels for c in pruned.head.m] == [c.out_channels for c in model.head.m]
    for conv, ia in zip(pruned.head.m, getattr(pruned.head, "ia", [])):
        assert ia.implicit.shape[1] == conv.in_channels
    with torch.no_grad():
        pred, raw = pruned.eval()(batches[0][0])
        assert [r.shape for r in raw] == [r.shape for r in model.eval()(batches[0][0])[1]]
        assert [r.shape for r in pruned.train()(batches[0][0])] == [r.shape for r in raw]


def test_failing_groups_are_skipped(monkeypatch):
    model, batches, loss_fn = setup(MINI_V5)
    real = pagcp.l1_order
    victim = "model.4.cv3.conv"

    def fragile(dg, group, heads=1):
        if dg._module2name[group[0].dep.target.module] == victim:
            raise RuntimeError("cannot score this group")
        return real(dg, group)

    monkeypatch.setattr(pagcp, "l1_order", fragile)  # the name pagcp uses (imported from prune/graph.py)
    res = run(model, batches, loss_fn, initial_rate=0.05, ignored_layers=[model.model[6]])
    recs = {r.name: r for r in res.rounds[0].layers}
    assert recs[victim].stop == "skipped" and "cannot score" in recs[victim].reason
    assert not any(n.startswith("model.6.") for n in recs)
    assert res.model.get_submodule(victim).out_channels == model.get_submodule(victim).out_channels
    assert any(r.pruned for r in recs.values())


def test_prune_pagcp_on_demo_data(demo_data, tmp_path):
    """The command's entry point: calibration from the training set, the guard, a finetune between rounds."""
    from yolocompress.data.dataset import load_data_config
    data = load_data_config(demo_data)
    model = lively({**MINI_V7, "nc": data.nc}, make_batches(nc=data.nc))
    prune = PruneOptions(method="pagcp", speedup=50.0, pagcp=PagcpOptions(
        initial_rate=0.1, initial_thres=5.0, topk=1.0, exp=False, rate_slope=0.0, thres_slope=0.0, rounds=2,
        calib_batches=2, round_finetune_epochs=1))
    train = TrainOptions(data=str(demo_data), imgsz=IMGSZ, batch_size=4, workers=0, device="cpu",
                         project=str(tmp_path), name="exp")
    outcome = pagcp.pagcp_strategy(model, prune, train, data, Hyp.default_for(model.yaml), "cpu", IMGSZ,
                                   tmp_path / "exp")
    pruned, extra = outcome.model, {**outcome.summary(), "skipped": outcome.skipped}
    report = extra["pagcp"]
    assert report["calib_batches"] == 2 and report["calib_images"] == 8
    assert not report["reached"] and report["rounds"] == 2 and report["gflops_ratio"] > 1 and report["wall_s"] > 0
    assert {"name", "ratio", "stop", "loss_increase", "gflops_removed", "kept"} <= set(report["layers"][0])
    assert isinstance(extra["skipped"], list)
    assert (tmp_path / "exp" / "pagcp_rounds" / "round1" / "weights" / "last.pt").is_file()
    assert count_gflops(pruned, IMGSZ) < count_gflops(model, IMGSZ)
    json.dumps(extra, allow_nan=False)


def test_round_to_keeps_every_pruned_layer_a_multiple():
    model, batches, loss_fn = setup(MINI_V5)
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    res = run(model, batches, loss_fn, speedup=1.25, rounds=2, initial_rate=0.2, round_to=4)
    after = {n: m.out_channels for n, m in res.model.named_modules() if isinstance(m, nn.Conv2d)}
    changed = [n for n in before if after[n] != before[n]]
    assert changed and all(after[n] % 4 == 0 for n in changed)
    assert pruned_counts(20, 8) == [4, 12] and pruned_counts(8, 8) == [] and pruned_counts(20)[0] == 1
    # the default `auto`: 16s from 32 channels, 8s from 16, the plain grid below
    assert pruned_counts(64, "auto") == [16, 32, 48] and pruned_counts(40, "auto") == [8, 24]
    assert pruned_counts(24, "auto") == [8, 16] and pruned_counts(12, "auto") == pruned_counts(12)


def test_the_trial_view_puts_back_the_children_a_handler_prunes():
    """Torch-Pruning prunes nn.MultiheadAttention's out_proj (a child module) inside the attention's handler;
    PAGCP's reversible view must put it back too, or the next forward pass fails (it did on C3TR)."""
    from yolocompress.prune.graph import full_group, pruned_view, subset
    from yolocompress.prune.guard import build_graph

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.ma = torch.nn.Linear(8, 8), torch.nn.MultiheadAttention(8, 2)

        def forward(self, x):
            q = self.q(x)
            return self.ma(q, q, q)[0] + q

    net = Attn()
    x = torch.rand(5, 1, 8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    dg = build_graph(net, x)
    group = full_group(dg, net.q)
    with pruned_view(dg, subset(group, [0, 4])):
        assert net.ma.out_proj.weight.shape[0] == 6
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    net(x)
