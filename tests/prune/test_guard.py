"""The guard: the head is never pruned, groups that break are skipped with a reason, pruning goes on."""
import copy

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp

from yolocompress.models.builder import Model
from yolocompress.models.heads import ImplicitA, ImplicitM
from yolocompress.models.registry import load_user_modules
from yolocompress.prune import guard as guard_module
from yolocompress.prune.guard import build_graph, find_unprunable, implicit_parameters
from yolocompress.prune.speedup import conv_channels, prune_to_target

from .tiny_yolos import IMGSZ, image, one_thread, outputs, tiny, v5_cfg, write_user_modules

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def user_modules(tmp_path_factory):
    load_user_modules([write_user_modules(tmp_path_factory.mktemp("user"))])


@pytest.mark.parametrize("family", ["v5", "v7"])
def test_plain_models_skip_nothing_and_ignore_only_the_head_convs(family):
    model = tiny(family)
    ignored, skipped = find_unprunable(model, image(), "l1")
    assert skipped == []
    assert ignored == list(model.head.m)


def test_implicit_parameters_are_declared_along_the_channel_dim():
    model = tiny("v7")
    found = implicit_parameters(model)
    expected = [m.implicit for m in model.head.modules() if isinstance(m, (ImplicitA, ImplicitM))]
    assert len(found) == 2 * model.head.nl and all(any(p is q for q in found) for p in expected)
    assert set(found.values()) == {1}


def test_a_user_module_torch_pruning_cannot_trace_is_kept_whole_and_pruning_goes_on(user_modules, monkeypatch):
    """The fallback, shown with upstream's graph (our repaired one traces ChunkTranspose: see the next test)."""
    monkeypatch.setattr(guard_module, "FixedDependencyGraph", tp.DependencyGraph)
    cfg = v5_cfg()
    cfg["backbone"][2] = [-1, 1, "ChunkTranspose", [128]]  # layer 2, the user file's module
    torch.manual_seed(0)
    model = Model(cfg).eval()
    with pytest.raises(Exception):  # what the guard works around: Torch-Pruning's own trace fails
        tp.DependencyGraph().build_dependency(copy.deepcopy(model), image())
    guard = find_unprunable(model, image(), "l1")
    assert guard.opaque == ["model.2"]
    by_module = {s["module"]: s for s in guard.skipped}
    assert by_module["model.2"]["layer"] == 2
    assert "cannot trace this ChunkTranspose" in by_module["model.2"]["reason"]
    assert "TypeError" in by_module["model.2"]["reason"]
    # the conv feeding it cannot shrink either, and says why
    assert by_module["model.1.conv"]["reason"] == "its channels reach layer 2 (ChunkTranspose), which is kept whole"
    assert model.model[2] in guard.ignored_layers

    before = conv_channels(model)
    out = prune_to_target(model, image(), "l1", 1.5, imgsz=IMGSZ, max_steps=20, measure=False, guard=guard)
    assert out.reached and out.speedup_gflops >= 1.5
    assert out.skipped == guard.skipped
    assert by_module["model.2"]["holds"] == ["model.2.cv1.conv", "model.2.cv1.bn", "model.2.cv2.conv", "model.2.cv2.bn"]
    # the black box's convs and the conv feeding it are out of reach: less than all of the GFLOPs
    assert 0.5 < out.prunable_gflops_share < 1.0 and out.conv_layers_pruned < out.conv_layers
    after = conv_channels(model)
    kept = [n for n in before if n.startswith(("model.1.", "model.2."))]
    assert kept and all(after[n] == before[n] for n in kept)
    assert sum(after.values()) < sum(before.values())
    pred, raw = model.eval()(image(2))
    assert pred.shape[0] == 2 and torch.isfinite(pred).all()


@pytest.mark.parametrize("module, row, c2", [("ChunkTranspose", 2, 128), ("ChunkAdd", 4, 256)])
def test_chunk_modules_upstream_cannot_follow_are_pruned(user_modules, module, row, c2):
    """Upstream's graph fails to trace ChunkTranspose and maps ChunkAdd's channels past its layer; the
    repaired split mapping (tp_fixes, defect i) follows both."""
    cfg = v5_cfg()
    cfg["backbone"][row] = [-1, 1, module, [c2]]
    torch.manual_seed(0)
    model = Model(cfg).eval()
    guard = find_unprunable(model, image(), "l1")
    assert guard.skipped == [] and guard.opaque == []
    c = model.model[row].cv1.conv.out_channels
    prune_to_target(model, image(), "l1", 1.5, imgsz=IMGSZ, max_steps=20, measure=False, guard=guard)
    assert model.model[row].cv1.conv.out_channels < c
    model.eval()(image())


@pytest.mark.parametrize("module, reason", [
    ("ChannelShuffle", "the forward pass fails after pruning: RuntimeError"),
])
@pytest.mark.parametrize("method", ["l1", None])
def test_a_group_that_breaks_the_model_is_skipped(user_modules, module, reason, method):
    """This user module traces, but pruning the conv in front of its view breaks it: that group
    (only) is skipped, whatever the method, and pruning reaches its target on the rest."""
    cfg = v5_cfg()
    cfg["backbone"][4] = [-1, 1, module, [256]]
    torch.manual_seed(0)
    model = Model(cfg).eval()
    ignored, skipped = find_unprunable(model, image(), method)
    assert [(s["layer"], s["module"]) for s in skipped] == [(4, "model.4.cv1.conv")]
    assert skipped[0]["reason"].startswith(reason)
    if method is not None:
        out = prune_to_target(model, image(), method, 1.5, imgsz=IMGSZ, max_steps=20, measure=False)
        assert out.reached and out.skipped == skipped
        assert model.model[4].cv1.conv.out_channels == 32
        model.eval()(image())


def test_pruning_reaches_implicit_parameters_and_repconv_branches_consistently():
    model = tiny("v7")
    head = model.head
    anchors, n_out, n_in = head.anchors.clone(), [c.out_channels for c in head.m], [c.in_channels for c in head.m]
    x = image(2)
    prune_to_target(model, image(), "l1", 1.5, imgsz=IMGSZ, max_steps=20, measure=False)
    assert torch.equal(head.anchors, anchors) and [c.out_channels for c in head.m] == n_out
    for conv, ia, im in zip(head.m, head.ia, head.im):
        assert ia.implicit.shape == (1, conv.in_channels, 1, 1)
        assert im.implicit.shape == (1, conv.out_channels, 1, 1)
    assert all(c.in_channels < n for c, n in zip(head.m, n_in))  # the head's inputs did shrink
    reps = [m for m in model.modules() if type(m).__name__ == "RepConv"]
    assert len(reps) == 3
    for rep in reps:
        dense, one = rep.rbr_dense, rep.rbr_1x1
        assert dense[0].out_channels == one[0].out_channels == dense[1].num_features == one[1].num_features
        assert dense[0].in_channels == one[0].in_channels == rep.rbr_identity.num_features == dense[0].out_channels
    fused = copy.deepcopy(model).fuse()
    for a, b in zip(outputs(model, x), outputs(fused, x)):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_the_graph_couples_the_head_inputs_with_implicit_a():
    model = tiny("v7")
    dg = build_graph(model, image())
    producer = model.model[20].rbr_dense[0]  # feeds head level 2
    group = dg.get_pruning_group(producer, tp.prune_conv_out_channels, [0])
    targets = [dep.target.module for dep, _ in group]
    assert any(t is model.head.ia[2].implicit for t in targets)
    assert any(t is model.head.m[2] for t in targets)
    assert not any(t is model.head.im[2].implicit for t in targets)
    assert isinstance(model.head.m[2], nn.Conv2d)
