"""Prune to a target: every method reaches it on small YOLOv5/YOLOv7 configs, and the result is a normal model."""
import pytest
import torch

from yolocompress.core.hyp import Hyp
from yolocompress.engine.losses import build_loss
from yolocompress.core.errors import ConfigError
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.models.export import check_onnx, export_onnx
from yolocompress.prune import speedup as speedup_mod
from yolocompress.prune.methods import METHODS, accumulate_gradients, torch_pruning_method_names
from yolocompress.prune.speedup import prune_to_target
from yolocompress.core.stats import Timing, count_gflops

from .tiny_yolos import IMGSZ, image, one_thread, outputs, tiny

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
TARGET = 1.5
STEPS = 20  # coarse steps keep the tests fast; the default 200 lands within 1 % of the target
CASES = [("v5", m) for m in torch_pruning_method_names()] + [("v7", m) for m in ("l1", "group_slim", "group_hessian", "group_taylor")]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def batches(n=2, bs=2, nc=3):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        t = torch.rand(bs * 2, 6, generator=g)
        t[:, 0] = torch.arange(bs).repeat(2)
        t[:, 1] = (t[:, 1] * nc).floor()
        t[:, 4:] = t[:, 4:] * 0.4 + 0.1
        out.append((torch.rand(bs, 3, IMGSZ, IMGSZ, generator=g), t))
    return out


def grad_fn_for(method, model):
    """Gradients of the detection loss on random batches, as prune_command gives them."""
    loss = build_loss(model, Hyp.default_for(model.yaml), IMGSZ)
    data = batches()

    def loss_of(m, b):
        m.train()
        return loss(m(b[0]), b[1])[0]
    return lambda m, pruner: accumulate_gradients(method, m, loss_of, data, importance=pruner.importance)


@pytest.mark.parametrize("family, method", CASES)
def test_every_method_reaches_its_target_and_gives_a_normal_model(family, method, tmp_path):
    model = tiny(family)
    head = model.head
    anchors, head_out = head.anchors.clone(), [c.out_channels for c in head.m]
    grad_fn = grad_fn_for(method, model) if METHODS[method].needs_grad else None
    calls = []
    out = prune_to_target(model, image(), method, TARGET, imgsz=IMGSZ, max_steps=STEPS, grad_fn=grad_fn,
                          measure=False, progress=lambda *a: calls.append(a))
    assert out.reached and out.stop_reason == "target reached"
    assert TARGET <= out.speedup_gflops <= TARGET * 1.2
    assert out.gflops_after == pytest.approx(count_gflops(model, IMGSZ))
    assert out.steps == len(calls) and calls[-1][1] == pytest.approx(out.speedup_gflops)
    assert out.params_after < out.params_before
    assert all(r["after"] <= r["before"] for r in out.per_layer)
    assert any(r["after"] < r["before"] for r in out.per_layer)
    assert torch.equal(head.anchors, anchors) and [c.out_channels for c in head.m] == head_out
    assert all(p.grad is None for p in model.parameters())

    x = image(2, seed=3)
    expected = outputs(model, x)
    loaded, _ = load_model(save_checkpoint(tmp_path / "pruned.pt", model))
    assert all(torch.equal(a, b) for a, b in zip(expected, outputs(loaded, x)))  # bit-identical after a reload
    assert check_onnx(export_onnx(loaded, tmp_path / "pruned.onnx", imgsz=IMGSZ), loaded, imgsz=IMGSZ) < 1e-3


def test_global_pruning_reaches_the_target():
    model = tiny("v5")
    out = prune_to_target(model, image(), "group_norm", TARGET, imgsz=IMGSZ, max_steps=STEPS, global_pruning=True,
                          measure=False)
    assert out.reached and out.speedup_gflops >= TARGET
    model.eval()(image())


def test_lamp_equals_group_norm_per_layer_and_differs_globally():
    """LAMP's score keeps the magnitude order inside a layer: only --global makes it a different method."""
    def pruned(method, global_pruning):
        torch.manual_seed(0)
        model = tiny("v5")
        prune_to_target(model, image(), method, TARGET, imgsz=IMGSZ, max_steps=STEPS, global_pruning=global_pruning,
                        measure=False)
        return model.state_dict()

    lamp, norm = pruned("lamp", False), pruned("group_norm", False)
    assert all(torch.equal(lamp[k], norm[k]) for k in lamp)
    lamp_g, norm_g = pruned("lamp", True), pruned("group_norm", True)
    assert any(lamp_g[k].shape != norm_g[k].shape for k in lamp_g)


def test_small_steps_stop_close_to_the_target():
    model = tiny("v7")
    out = prune_to_target(model, image(), "l1", 2.0, imgsz=IMGSZ, max_steps=200, measure=False)
    assert out.reached and 2.0 <= out.speedup_gflops <= 2.1


def _clock(model, imgsz):
    return 10.0 * count_gflops(model, imgsz) ** 0.5


def test_latency_metric_stops_on_the_measured_ratio(monkeypatch):
    """With a stand-in clock (time ~ sqrt(GFLOPs)), a 1.3x latency target needs ~1.69x fewer GFLOPs; the loop
    times the model against an unpruned copy in interleaved passes."""
    seen = []

    def fake_timings(models, imgsz, batch_size, device, rounds):
        seen.append((imgsz, batch_size, device, rounds))
        return [Timing((_clock(m, imgsz),) * rounds) for m in models]
    monkeypatch.setattr(speedup_mod, "measure_latency", lambda model, imgsz, b, d: _clock(model, imgsz))
    monkeypatch.setattr(speedup_mod, "interleaved_timings", fake_timings)
    model = tiny("v7")
    out = prune_to_target(model, image(), "l1", 1.3, metric="latency", imgsz=IMGSZ, max_steps=STEPS,
                          latency_device="cpu", latency_batch=4, latency_rounds=3)
    assert out.reached and out.speedup_latency >= 1.3
    assert out.speedup_gflops == pytest.approx(out.speedup_latency ** 2)
    assert out.speedup_gflops >= 1.69
    assert seen[0] == (IMGSZ, 4, "cpu", 3) and len(seen) == out.steps + 1  # the stopping ratio measured twice
    assert out.summary()["speedup_latency_significant"] is True  # a clock without noise: no spread


def test_one_noisy_latency_measurement_does_not_stop_the_loop(monkeypatch):
    """A ratio past the target once, and not again when confirmed, lets the loop go on."""
    calls = []

    def fake_timings(models, imgsz, batch_size, device, rounds):
        calls.append(1)
        base, cur = (_clock(m, imgsz) for m in models)
        lucky = len(calls) == 1  # the first measurement says 3x
        return [Timing((base,) * rounds), Timing(((base / 3.0) if lucky else cur,) * rounds)]
    monkeypatch.setattr(speedup_mod, "measure_latency", lambda model, imgsz, b, d: _clock(model, imgsz))
    monkeypatch.setattr(speedup_mod, "interleaved_timings", fake_timings)
    out = prune_to_target(tiny("v7"), image(), "l1", 1.3, metric="latency", imgsz=IMGSZ, max_steps=STEPS)
    assert out.reached and out.steps > 1 and out.speedup_gflops >= 1.69


def test_the_step_limit_is_reported_when_the_target_is_out_of_reach(caplog):
    model = tiny("v7")
    out = prune_to_target(model, image(), "l1", 3.0, imgsz=IMGSZ, max_steps=4, max_ratio=0.2, measure=False)
    assert not out.reached and out.grid_step == 4 and out.stop_reason.startswith("step limit reached")
    assert 1.2 < out.speedup_gflops < 3.0  # every layer at 20 % fewer channels
    assert "was not reached" in caplog.text


def test_round_to_keeps_pruned_channel_counts_multiples_of_it():
    model = tiny("v5")
    out = prune_to_target(model, image(), "l1", TARGET, imgsz=IMGSZ, max_steps=STEPS, round_to=8, measure=False)
    changed = [r for r in out.per_layer if r["after"] != r["before"]]
    assert out.reached and changed and all(r["after"] % 8 == 0 for r in changed)


def test_a_frozen_checkpoint_is_made_trainable_first():
    model = tiny("v7")
    for p in model.parameters():
        p.requires_grad_(False)
    out = prune_to_target(model, image(), "lamp", TARGET, imgsz=IMGSZ, max_steps=STEPS, measure=False)
    assert out.reached
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kw, message", [
    ({"speedup": 1.0}, "--speedup must be greater than 1.0"),
    ({"metric": "fps"}, "--speedup-metric must be one of gflops, latency"),
    ({"max_steps": 0}, "--max-steps must be at least 1"),
    ({"max_ratio": 1.0}, "--max-ratio must be between 0 and 1"),
    ({"method": "group_taylor"}, "group_taylor scores channels with gradients"),
    ({"method": "l3"}, "unknown pruning method 'l3'"),
])
def test_bad_options_are_config_errors(kw, message):
    args = {"method": "l1", "speedup": 2.0, **kw}
    with pytest.raises(ConfigError, match=message):
        prune_to_target(tiny("v7"), image(), args.pop("method"), args.pop("speedup"), **args)
