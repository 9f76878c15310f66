"""Each method ranks in its designed scope (so the ten methods give different models), rounding keeps widths
hardware-friendly and still lands on the target, and the fast loop lands in the 1.95-2.2 window at 2.0x."""
import pytest
import torch

from yolocompress.prune.methods import METHODS, ranking_scope, torch_pruning_method_names
from yolocompress.prune.speedup import prune_to_target
from yolocompress.prune.tp_fixes import layer_floor, rounding_unit

from .test_speedup import grad_fn_for
from .tiny_yolos import IMGSZ, image, one_thread, tiny

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
WINDOW = (1.95, 2.2)
TP_METHODS = torch_pruning_method_names()  # PAGCP: tests/prune/test_pagcp.py
GLOBAL = {"slim", "group_slim", "group_norm", "lamp", "group_sl", "group_hessian", "group_taylor"}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _prune(family, method, speedup=2.0, width=None, **kw):
    model = tiny(family) if width is None else tiny(family, width=width)
    grad_fn = grad_fn_for(method, model) if METHODS[method].needs_grad else None
    out = prune_to_target(model, image(), method, speedup, imgsz=IMGSZ, grad_fn=grad_fn, measure=False, **kw)
    return model, out


def test_the_designed_scope_is_the_default_and_the_flags_override_it():
    assert {n for n, m in METHODS.items() if m.global_ranking} == GLOBAL
    assert ranking_scope("lamp") and not ranking_scope("l1")
    assert not ranking_scope("lamp", False) and ranking_scope("l1", True)


@pytest.mark.parametrize("family", ["v5", "v7"])
def test_every_method_lands_in_the_window_and_the_methods_give_different_models(family):
    widths = {}
    for method in TP_METHODS:
        _, out = _prune(family, method)
        assert out.reached and WINDOW[0] <= out.speedup_gflops <= WINDOW[1], (method, out.speedup_gflops)
        assert out.global_pruning == (method in GLOBAL)
        assert out.steps < 20  # the fast loop: long strides far from the target (the fine grid has 200 points)
        widths[method] = tuple(r["after"] for r in out.per_layer)
    if family == "v5":
        assert len(set(widths.values())) >= 6, widths
        assert widths["lamp"] != widths["group_norm"] != widths["l1"]


def test_local_overrides_a_global_design():
    _, lamp_local = _prune("v5", "lamp", global_pruning=False)
    _, l1 = _prune("v5", "l1")
    assert not lamp_local.global_pruning
    assert [r["after"] for r in lamp_local.per_layer] == [r["after"] for r in l1.per_layer]  # same share per layer


def test_global_ranking_keeps_every_layer_above_its_floor_and_reports_who_reached_it():
    _, out = _prune("v5", "lamp", speedup=1.4, max_ratio=0.5)
    assert out.reached
    assert all(r["after"] >= layer_floor(r["before"], 0.5) for r in out.per_layer)
    assert out.at_max_ratio and out.summary()["at_max_ratio"] == out.at_max_ratio
    floor = {r["name"] for r in out.per_layer if r["after"] < r["before"] and r["after"] == layer_floor(r["before"], 0.5)}
    assert set(out.at_max_ratio) == floor


@pytest.mark.parametrize("round_to, width", [(8, None), (16, None), (32, 0.25), ("auto", 0.25)])
def test_round_to_on_every_method_keeps_multiples_and_lands_in_the_window(round_to, width):
    """32 and the default `auto` on yolov5n's real widths (16-256 channels): at 1/8 width most layers are narrower
    than two multiples of 32. Under `auto` each layer's multiple follows its original width (16 or 8)."""
    for method in TP_METHODS:
        _, out = _prune("v5", method, width=width, round_to=round_to)
        changed = [r for r in out.per_layer if r["after"] != r["before"]]
        assert changed and all(r["after"] % rounding_unit(round_to, r["before"]) == 0 for r in changed), \
            (method, changed)
        assert out.reached and WINDOW[0] <= out.speedup_gflops <= WINDOW[1], (method, out.speedup_gflops)


def test_auto_rounding_units_and_narrow_layers_pruned_unrounded():
    """`auto`: 16 from 32 channels, 8 from 16; at 1/8 width (8-128 channels) per-layer `l1` still prunes the
    8-channel layers (unrounded) and lands in the window."""
    assert [rounding_unit("auto", c) for c in (8, 15, 16, 31, 32, 256)] == [None, None, 8, 8, 16, 16]
    assert rounding_unit(None, 64) is None and rounding_unit(8, 64) == 8
    _, out = _prune("v5", "l1", round_to="auto")
    changed = [r for r in out.per_layer if r["after"] != r["before"]]
    assert all(r["after"] % 16 == 0 for r in changed if r["before"] >= 32), changed
    assert all(r["after"] % 8 == 0 for r in changed if r["before"] >= 16), changed
    assert any(r["after"] % 8 for r in changed if r["before"] < 16), changed
    assert out.reached and WINDOW[0] <= out.speedup_gflops <= WINDOW[1], out.speedup_gflops


def test_auto_is_the_default_rounding_and_none_turns_it_off():
    from yolocompress.cli import parse_command
    from yolocompress.prune.options import PruneOptions
    argv = ["prune", "--weights", "x.pt", "--data", "d.yaml", "--method", "lamp"]
    assert PruneOptions().round_to == "auto"
    assert [parse_command(argv + extra)[1]["prune"].round_to for extra in
            ([], ["--round-to", "none"], ["--round-to", "16"], ["--round-to", "AUTO"])] == ["auto", None, 16, "auto"]
    with pytest.raises(SystemExit):
        parse_command(argv + ["--round-to", "sixteen"])


def test_the_cli_scope_flags_are_tri_state():
    from yolocompress.cli import parse_command
    argv = ["prune", "--weights", "x.pt", "--data", "d.yaml", "--method", "lamp"]
    assert [parse_command(argv + extra)[1]["prune"].global_pruning for extra in ([], ["--global"], ["--local"])] \
        == [None, True, False]
