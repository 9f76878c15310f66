"""Community modules on tiny yolov5 / yolov7 bases: each family is pruned (a share of its own channels goes),
what cannot be followed is kept whole with its reason."""
import pytest
import torch

from yolocompress.core.errors import PruningError
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.prune.guard import find_unprunable
from yolocompress.prune.speedup import conv_channels, prune_to_target

from . import community
from .tiny_yolos import IMGSZ, image, one_thread, v5_cfg, v7_cfg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROW = {"v5": 4, "v7": 10}
PRUNED = ["C2fChunk", "C2fSplit", "FasterNetBlock", "CBAM", "ECA", "BiFPNAdd2", "DecoupledDetect", "MHSA", "GSConv",
          "VoVGSCSP"]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def build(family: str, module: str) -> Model:
    torch.manual_seed(0)
    cfg = {"v5": v5_cfg, "v7": v7_cfg}[family]()
    if module == "BiFPNAdd2":  # replaces the first neck concat (two inputs of equal channels)
        if family == "v7":
            cfg["head"][0][3][0] = 128
        cfg["head"][2] = [[-1, 6 if family == "v5" else 10], 1, "BiFPNAdd2", [256]]
    elif module == "DecoupledDetect":
        cfg["head"][-1][2] = "DecoupledDetect"
    else:
        community.place(cfg, family, module)
    return Model(cfg).eval()


def measured_prefix(family: str, module: str) -> str:
    """Where the family's own prunable channels are: ECA has none of its own (its Conv1d works across the
    channels), so its neighbour, the conv that feeds it, is measured."""
    if module == "BiFPNAdd2":
        return {"v5": "model.12.", "v7": "model.15."}[family]
    if module == "DecoupledDetect":
        return {"v5": "model.24.", "v7": "model.21."}[family]
    if module == "ECA":
        return {"v5": "model.3.", "v7": "model.8."}[family]
    return f"model.{ROW[family]}."


def share_pruned(before: dict, after: dict, prefix: str) -> float:
    """The share of the output channels of the convs under `prefix` that pruning removed."""
    b = sum(c for n, c in before.items() if n.startswith(prefix))
    return 1 - sum(after[n] for n in before if n.startswith(prefix)) / b


@pytest.mark.parametrize("method", ["lamp", "group_norm"])
@pytest.mark.parametrize("family", ["v5", "v7"])
@pytest.mark.parametrize("module", PRUNED)
def test_the_family_is_pruned(module, family, method):
    model = build(family, module)
    guard = find_unprunable(model, image(), method)
    prefix = measured_prefix(family, module)
    assert guard.skipped == []
    before = conv_channels(model)
    # Ranked globally, an attention group's scores are averaged over its heads (Torch-Pruning's channel groups),
    # so at this tiny size global group_norm never ranks them lowest; per layer, the heads rule is still followed.
    # A lone GSConv of 16 outputs has 4 choices (its four channel groups); LAMP's per-layer normalisation makes
    # the lowest of 4 score far above the lowest of 64, so global LAMP leaves it to 1.5x; per layer it goes.
    scope = False if (module, method) in {("MHSA", "group_norm"), ("GSConv", "lamp")} else None
    out = prune_to_target(model, image(), method, 1.5, imgsz=IMGSZ, max_steps=10, measure=False, guard=guard,
                          global_pruning=scope)
    assert out.reached
    assert share_pruned(before, conv_channels(model), prefix) > 0
    pred, _ = model.eval()(image(2))
    assert torch.isfinite(pred).all()


def test_declared_split_sizes_are_rewritten():
    model = build("v5", "C2fSplit")  # per layer, so that this block surely loses channels
    prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False, global_pruning=False)
    block = model.model[4]
    assert block.c < 16 and block.cv1.conv.out_channels == 2 * block.c
    fast = build("v5", "FasterNetBlock")
    prune_to_target(fast, image(), "group_norm", 1.5, imgsz=IMGSZ, max_steps=10, measure=False)
    pconv = fast.model[4].spatial_mixing
    assert pconv.dim_conv3 == pconv.partial_conv3.in_channels
    assert pconv.dim_conv3 + pconv.dim_untouched == fast.model[3].conv.out_channels < 32


def test_rewritten_split_sizes_survive_a_checkpoint(tmp_path):
    """The checkpoint records the declared attributes with the layer shapes: a pruned C2f(split) reloads with
    its new `c` and gives the same outputs (without it, the rebuilt block splits by the yaml's width)."""
    model = build("v5", "C2fSplit")
    prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False, global_pruning=False)
    assert model.model[4].c < 16
    loaded, _ = load_model(save_checkpoint(tmp_path / "p.pt", model))
    assert loaded.model[4].c == model.model[4].c
    x = image(2, seed=3)
    with torch.no_grad():
        assert torch.equal(model.eval()(x)[0], loaded.eval()(x)[0])


def test_a_split_size_the_module_never_exposes_is_kept_whole_and_said_so():
    model = build("v5", "C2fHiddenSplit")
    skipped = find_unprunable(model, image(), "lamp").skipped
    mine = [s for s in skipped if s["module"].startswith("model.4.")]
    assert mine and all("split" in s["reason"] and "split_sizes=" in s["reason"] for s in mine)


def test_decoupled_head_keeps_only_its_prediction_outputs_whole():
    model = build("v5", "DecoupledDetect")
    head = model.head
    preds = [*head.cls_preds, *head.reg_preds]
    outs = [c.out_channels for c in preds]
    guard = find_unprunable(model, image(), "lamp")
    assert all(any(c is m for m in guard.ignored_layers) for c in preds)
    prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False, guard=guard)
    assert [c.out_channels for c in preds] == outs
    assert all(s[-1].conv.out_channels < s[-1].conv.in_channels or s[-1].conv.out_channels < 64
               for s in head.cls_convs)
    assert sum(c.in_channels for c in preds) < sum(c.in_channels for c in [*Model(model.yaml).head.cls_preds,
                                                                           *Model(model.yaml).head.reg_preds])


def test_an_in_place_slice_write_is_one_error_line_naming_the_layer():
    model = build("v5", "FasterNetSlicingBlock")
    with pytest.raises(PruningError) as e:
        find_unprunable(model, image(), "lamp")
    text = str(e.value)
    assert "\n" not in text
    assert "layer 4 (FasterNetSlicingBlock)" in text and "backward" in text
    assert "in-place write into a slice" in text and "torch.cat instead" in text


def test_a_module_that_breaks_after_pruning_is_one_error_line(monkeypatch):
    """A channel count fixed in a module's code passes the guard's probe only by chance; after pruning the
    forward pass must fail with a line naming the layer, not a traceback."""
    model = build("v5", "C2fChunk")  # per layer, so that this block surely loses channels
    out = prune_to_target(model, image(), "lamp", 1.2, imgsz=IMGSZ, max_steps=5, measure=False, global_pruning=False)
    assert out.reached
    block = model.model[4]
    block.cv2.conv = torch.nn.Conv2d(48, block.cv2.conv.out_channels, 1, bias=False)  # 48: the unpruned count
    from yolocompress.models.runcheck import check_runs
    with pytest.raises(PruningError, match=r"after pruning: layer 4 \(C2fChunk\) fails in the forward pass"):
        check_runs(model, image(), "after pruning")


def test_the_skip_list_names_every_layer_a_kept_group_holds_and_the_coverage_line():
    model = build("v5", "C2fHiddenSplit")
    guard = find_unprunable(model, image(), "lamp")
    entry = next(s for s in guard.skipped if s["module"].startswith("model.4."))
    assert entry["holds"][0] == entry["module"] and len(entry["holds"]) > 2
    assert "model.4.cv1.conv" in entry["holds"]
    out = prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False, guard=guard)
    line = out.coverage_line()
    assert line.startswith(f"pruned {out.conv_layers_pruned} of {out.conv_layers} conv layers; ")
    # the skipped group's convs still lose input channels to the groups around them: all of it was prunable
    assert 0 < out.conv_layers_pruned <= out.conv_layers and out.prunable_gflops_share == 1.0
    assert out.summary()["coverage"] == line


@pytest.mark.parametrize("family", ["v5", "v7"])
def test_declared_heads_are_pruned_a_head_dimension_at_a_time(family):
    """Undeclared, the view to (b, heads, c // heads) breaks after pruning and the group is kept whole, said
    so; declared with `heads=`, every head loses the same dimensions and the head count stays."""
    undeclared = find_unprunable(build(family, "MHSAUndeclared"), image(), "lamp")
    held = [s for s in undeclared.skipped if f"model.{ROW[family]}.query" in s["holds"]]
    assert held and "forward pass fails" in held[0]["reason"]

    model = build(family, "MHSA")
    block = model.model[ROW[family]]
    out = prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False)
    assert out.reached and out.skipped == []
    c = block.query.out_channels
    assert c < 32 and c % block.heads == 0 and block.heads == 4
    assert block.key.out_channels == block.value.out_channels == block.query.in_channels == c
    model.eval()(image(2))


def test_a_bad_heads_declaration_is_one_line():
    from yolocompress.core.errors import ConfigError
    from yolocompress.models.registry import declared_heads, register_module
    with pytest.raises(ConfigError, match="heads must be a dict"):
        register_module("Bad", heads=["query"])
    wrong = type("WrongHeads", (community.MHSAUndeclared,), {})
    register_module("WrongHeads", heads={"qkv": "heads"})(wrong)
    with pytest.raises(ConfigError, match="WrongHeads.*qkv"):
        declared_heads(wrong(8, 8))


def test_a_declared_pruner_follows_the_gsconv_shuffle_exactly():
    """GSConv's output is a shuffle of cv1 and its depthwise conv; its handler (`register_module(pruner=...)`)
    prunes the output four channels at a time. Pruned, the block and the conv it feeds compute exactly what the
    unpruned pair computes with those four input columns of the next conv zeroed: every kept channel is where
    the next conv expects it."""
    from yolocompress.models.registry import lookup
    from yolocompress.prune.graph import out_fn
    from yolocompress.prune.guard import build_graph, channel_groups
    torch.manual_seed(0)
    gs = lookup("GSConv").cls(8, 16, 3, 1)
    net = torch.nn.Sequential(gs, torch.nn.Conv2d(16, 5, 1))
    x = torch.rand(2, 8, 12, 12)  # no grad: GSConv is the first layer, its black box still joins the graph
    assert channel_groups(net) == {gs: 4}
    dg = build_graph(net, x)
    removed = [1, 5, 9, 13]  # offset 1 of each quarter: cv1's channels 2 and 3
    reference = __import__("copy").deepcopy(net).eval()
    reference[1].weight.data[:, removed] = 0
    dg.get_pruning_group(gs, out_fn(dg, gs), removed).prune()
    assert gs.cv1.conv.out_channels == gs.cv2.conv.groups == 6 and net[1].in_channels == 12
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), reference(x), atol=1e-6)


def test_a_declared_width_follows_its_layer_through_pruning_and_a_reload(tmp_path):
    """yolov5's C3TR reshapes to `(b, self.c2, w, h)`; declared `widths={"m.c2": "m.linear"}`, the stored width
    follows the pruned linear layer (it broke the forward pass before), also in the reloaded checkpoint."""
    from yolocompress.models.registry import load_user_modules
    load_user_modules([community.EXAMPLES / "transformer.py"])
    model = build("v5", "C3TR")
    block = model.model[ROW["v5"]]
    width = block.m.c2
    out = prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False,
                          global_pruning=False)
    assert out.reached and out.skipped == []
    model.eval()(image(2))
    assert block.m.c2 == block.m.linear.out_features < width
    loaded = load_model(save_checkpoint(tmp_path / "m.pt", model))[0].eval()
    with torch.no_grad():
        assert torch.equal(loaded(image(2))[0], model(image(2))[0])


def test_a_bad_widths_declaration_is_one_line():
    from yolocompress.core.errors import ConfigError
    from yolocompress.models.registry import register_module
    with pytest.raises(ConfigError, match="widths must be a dict"):
        register_module("BadWidths", widths=["c2"])


class _SpatialSoftmaxGate(torch.nn.Module):
    """Gates each channel by its own spatial softmax: output channel c is input channel c."""

    def forward(self, x):
        b, c, h, w = x.shape
        return x * x.reshape(b * c, h * w).softmax(-1).reshape(b, c, h, w)


class _ChannelStats(torch.nn.Module):
    """The mean and the max over the channels: 2 outputs whatever the input width (CBAM's spatial input)."""

    def forward(self, x):
        return torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)


@pytest.mark.parametrize("declared", ["passes_through", "reduces"])
def test_built_in_handlers_couple_or_free_the_channels_as_declared(declared):
    """`pruner="passes_through"`: traced as one layer, its inputs and outputs are one group, so pruning the conv
    before it prunes the conv after it the same. `pruner="reduces"`: its inputs prune freely, its 2 outputs
    stay, and the conv after it keeps its inputs."""
    from yolocompress.models.registry import register_module
    from yolocompress.prune.graph import out_fn
    from yolocompress.prune.guard import build_graph
    cls = type(f"Declared{declared.title()}", (_SpatialSoftmaxGate if declared == "passes_through" else _ChannelStats,),
               {})
    register_module(cls.__name__, kind="same", pruner=declared)(cls)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), cls(), torch.nn.Conv2d(8 if declared == "passes_through" else 2,
                                                                               4, 1))
    x = torch.rand(1, 3, 12, 12)
    dg = build_graph(net, x)
    group = dg.get_pruning_group(net[0], out_fn(dg, net[0]), [1, 5])
    assert dg._module2name[group[0].dep.target.module] == "0"
    group.prune()
    assert net[0].out_channels == 6
    assert net[2].in_channels == (6 if declared == "passes_through" else 2)
    assert net(x).shape[1] == 4


def test_a_bad_pruner_declaration_is_one_line():
    from yolocompress.core.errors import ConfigError
    from yolocompress.models.registry import register_module
    with pytest.raises(ConfigError, match="'copies' is not a built-in handler; use 'passes_through' or 'reduces'"):
        register_module("BadName", pruner="copies")
    with pytest.raises(ConfigError, match="pruner must be a Torch-Pruning handler.*get_in_channels"):
        register_module("BadPruner", pruner=type("P", (), {"prune_out_channels": lambda *a: None,
                                                          "prune_in_channels": lambda *a: None,
                                                          "get_out_channels": lambda *a: 1}))


def test_the_guard_probe_removes_as_many_channels_as_round_to():
    from yolocompress.prune.guard import _probe_idxs
    assert _probe_idxs(32) == [0, 16, 31]
    assert len(_probe_idxs(32, 8)) == 8 and _probe_idxs(32, 8)[-1] == 31
    assert _probe_idxs(8, 8) == [0]


PAGCP_FAMILIES = ["C2fChunk", "C2fSplit", "FasterNetBlock", "CBAM", "ECA", "BiFPNAdd2", "DecoupledDetect", "MHSA",
                  "VoVGSCSP"]


@pytest.mark.parametrize("family", ["v5", "v7"])
@pytest.mark.parametrize("module", PAGCP_FAMILIES)
def test_pagcp_prunes_the_family(module, family):
    """PAGCP as its command entry point runs it: the guard's skips, then pagcp_prune on calibration batches.
    To keep it fast, only the family's own convolutions are candidates (every other conv is ignored)."""
    from yolocompress.core.hyp import Hyp
    from yolocompress.engine.losses import build_loss
    from yolocompress.prune import pagcp

    from .test_pagcp import make_batches
    model = build(family, module)
    batches = make_batches(n=1, b=2, nc=model.yaml["nc"])
    ignored, skipped, opaque = pagcp._guard(model, batches[0][0][:1])
    assert skipped == []
    prefix = measured_prefix(family, module)
    readers = {"v7": ["model.18."]}.get(family, []) if module == "ECA" else []  # RepConv 18 reads model.8 too
    if module == "MHSA":  # its residual ties q/k/v to its input: their group is rooted at the convs before it
        from yolocompress.prune.graph import full_group
        from yolocompress.prune.guard import build_graph
        dg = build_graph(model, image())
        group = full_group(dg, model.model[ROW[family]].query)
        readers = [dg._module2name[i.dep.target.module] for i in group if dg.is_out_channel_pruning_fn(i.dep.handler)
                   and isinstance(i.dep.target.module, torch.nn.Conv2d)]
    ignored += [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)
                and not n.startswith((prefix, *readers))]
    before = conv_channels(model)
    res = pagcp.pagcp_prune(model, batches, build_loss(model, Hyp.default_for(model.yaml), IMGSZ), speedup=1.01,
                            imgsz=IMGSZ, initial_rate=0.2, initial_thres=50.0, rounds=1, ignored_layers=ignored,
                            opaque=opaque, progress=lambda *_: None)
    assert share_pruned(before, conv_channels(res.model), prefix) > 0, [(r.name, r.pruned, r.stop, r.reason, r.kept) for r in res.rounds[0].layers]
    with torch.no_grad():
        res.model.eval()(image(2))


@pytest.mark.parametrize("family", ["v5", "v7"])
def test_deformable_conv_channels_are_pruned_and_its_offsets_kept_whole(family):
    model = build(family, "DeformConvBlock")
    block = model.model[ROW[family]]
    guard = find_unprunable(model, image(), "lamp")
    entry = [s for s in guard.skipped if s["module"] == f"model.{ROW[family]}.conv_offset"]
    assert entry and "offsets and mask" in entry[0]["reason"] and "kept whole" in entry[0]["reason"]
    assert [s for s in guard.skipped if s is not entry[0]] == []
    c_in, c_out = block.dcn.in_channels, block.dcn.out_channels
    prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False, guard=guard)
    assert block.dcn.out_channels < c_out and block.dcn.in_channels < c_in
    assert block.conv_offset.out_channels == 27 and block.conv_offset.in_channels == block.dcn.in_channels
    assert block.dcn.weight.shape[:2] == (block.dcn.out_channels, block.dcn.in_channels)
    pred, _ = model.eval()(image(2))
    assert torch.isfinite(pred).all()
