"""The yaml -> model rules: official parameter/GFLOP counts, width/depth scaling, strides, anchors, init."""
import copy
import math

import pytest
import torch
import torch.nn as nn

from yolocompress.core.errors import ConfigError
from yolocompress.models.builder import Model, load_config, make_divisible
from yolocompress.models.heads import Detect, IDetect
from yolocompress.models.modules import Conv
from yolocompress.core.stats import count_gflops, count_params

from .helpers import IMGSZ, image, small_cfg, small_model

V5N_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


@pytest.mark.parametrize("name, params, gflops", [
    ("yolov5n", 1_872_157, 4.6),
    ("yolov5s", 7_235_389, 16.6),
    ("yolov7-tiny", 6_228_762, 13.9),
])
def test_official_counts_at_nc80_640(name, params, gflops):
    model = Model(f"{name}.yaml")
    assert count_params(model) == params
    assert round(count_gflops(model, 640), 1) == gflops


def test_fused_yolov5n_params():
    assert count_params(Model("yolov5n.yaml").eval().fuse()) == 1_867_405


@pytest.mark.parametrize("width", [0.1, 0.25, 0.3, 0.5, 0.75])
def test_width_rounds_up_to_multiple_of_8(width):
    model = Model(small_cfg("yolov5s", width=width))
    for i, c in [(0, 64), (1, 128), (3, 256), (7, 1024)]:
        assert model.model[i].conv.out_channels == math.ceil(c * width / 8) * 8
    assert model.model[0].conv.out_channels == make_divisible(64 * width)


@pytest.mark.parametrize("depth, expected", [
    (0.33, {2: 1, 4: 2, 6: 3, 8: 1}),
    (0.1, {2: 1, 4: 1, 6: 1, 8: 1}),
    (0.67, {2: 2, 4: 4, 6: 6, 8: 2}),
])
def test_repeats_are_rounded_with_minimum_one(depth, expected):
    model = Model(small_cfg("yolov5s", depth_multiple=depth))
    for i, n in expected.items():
        assert len(model.model[i].m) == n == max(round([3, 6, 9, 3][(i - 2) // 2] * depth), 1)


@pytest.mark.parametrize("depth, n", [(0.33, 1), (1.0, 3)])
def test_repeated_plain_module_is_stacked(depth, n):
    cfg = small_cfg("yolov5n", depth_multiple=depth)
    cfg["backbone"][2] = [-1, 3, "Conv", [128, 3, 1]]  # Conv takes no repeat argument: stacked n times
    layer = Model(cfg).model[2]
    assert layer.n == n
    if n > 1:
        assert isinstance(layer, nn.Sequential) and len(layer) == n
    else:
        assert isinstance(layer, Conv)


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny", "yolov7"])
def test_layers_carry_official_attributes_and_strides(name):
    model = small_model(name)
    assert [m.i for m in model.model] == list(range(len(model.model)))
    assert all(hasattr(m, a) for m in model.model for a in ("f", "type", "np"))
    assert model.model[0].np == sum(p.numel() for p in model.model[0].parameters())
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    head = model.head
    assert isinstance(head, IDetect if name.startswith("yolov7") else Detect)
    assert (head.nc, head.no, head.nl, head.na) == (3, 8, 3, 3)


def test_anchors_in_grid_units():
    model = small_model("yolov5n")
    expected = torch.tensor(V5N_ANCHORS, dtype=torch.float32).view(3, 3, 2) / torch.tensor([8.0, 16, 32]).view(3, 1, 1)
    assert torch.equal(model.head.anchors, expected)


def test_anchors_given_in_reverse_order_are_reordered():
    cfg = small_cfg("yolov5n")
    cfg["anchors"] = V5N_ANCHORS[::-1]
    assert torch.equal(Model(cfg).head.anchors, small_model("yolov5n").head.anchors)


def test_eval_pred_decodes_anchors_in_pixels():
    model = small_model("yolov5n").eval()
    pred, raw = model(image())
    assert pred.shape == (1, 3 * sum((IMGSZ // s) ** 2 for s in (8, 16, 32)), 8)
    # zero logits decode to the cell centre and exactly the anchor size (pixels)
    with torch.no_grad():
        for conv in model.head.m:
            conv.weight.zero_()
            conv.bias.zero_()
        pred, _ = model(image())
    n0 = 3 * (IMGSZ // 8) ** 2
    wh = pred[0, :n0, 2:4].view(3, -1, 2)
    assert torch.equal(wh, torch.tensor(V5N_ANCHORS[0], dtype=torch.float32).view(3, 1, 2).expand_as(wh))
    assert torch.equal(pred[0, 0, :2], torch.tensor([4.0, 4.0]))
    assert torch.all(pred[..., 4:] == 0.5)


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny"])
def test_batchnorm_eps_momentum(name):
    bns = [m for m in small_model(name).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-3 and bn.momentum == 0.03 for bn in bns)


@pytest.mark.parametrize("name, eps", [("yolov5n", 0.99999), ("yolov7-tiny", 0.99)])
def test_bias_init_official_prior(name, eps):
    nc = 80
    model = small_model(name, nc=nc)
    head = model.head
    for conv in head.m:
        bound = 1 / math.sqrt(conv.in_channels) + 1e-6  # default Conv2d bias init is U(-bound, bound)
        b = conv.bias.view(3, -1).detach()
        s = head.stride[list(head.m).index(conv)]
        assert torch.all((b[:, 4] - math.log(8 / (640 / s) ** 2)).abs() <= bound)
        assert torch.all((b[:, 5:] - math.log(0.6 / (nc - eps))).abs() <= bound)
    with torch.no_grad():
        for conv in head.m:
            conv.bias.zero_()
    head.initialize_biases()
    for conv, s in zip(head.m, (8, 16, 32)):
        b = conv.bias.view(3, -1)
        assert torch.allclose(b[:, 4], torch.tensor(math.log(8 / (640 / s) ** 2)))
        assert torch.allclose(b[:, 5:], torch.tensor(math.log(0.6 / (nc - eps))))
        assert torch.all(b[:, :4] == 0)


def test_capture_returns_requested_layers():
    model = small_model("yolov5n").train()
    raw, feats = model(image(), capture=[4, 17])
    assert len(raw) == 3 and raw[0].shape == (1, 3, IMGSZ // 8, IMGSZ // 8, 8)
    assert set(feats) == {4, 17} and feats[17].shape[-1] == IMGSZ // 8


def test_nc_override_and_names():
    model = Model("yolov5n.yaml", nc=2, names=["cat", "dog"])
    assert model.nc == 2 and model.names == ["cat", "dog"] and model.yaml["nc"] == 2


def _set_row(section, k, row):
    return lambda cfg: cfg[section].__setitem__(k, row)


@pytest.mark.parametrize("mutate, message", [
    (_set_row("backbone", 3, [-1, 1, "NoSuchBlock", [256, 3, 2]]), r"layer 3 \(NoSuchBlock\): unknown module"),
    (_set_row("head", 2, [[-1, 30], 1, "Concat", [1]]), r"layer 12 \(Concat\): 'from' index 30"),
    (_set_row("backbone", 1, ["x", 1, "Conv", [128, 3, 2]]), r"layer 1 \(Conv\): 'from' must be an integer"),
    (_set_row("backbone", 0, [-1, 1, "Conv"]), r"layer 0: expected \[from, number, module, args\]"),
    (_set_row("backbone", 1, [-1, 1, "Conv", ["wide", 3, 2]]), r"layer 1 \(Conv\): first argument"),
    (lambda cfg: cfg.pop("anchors"), r"missing key\(s\) anchors"),
    (lambda cfg: cfg.update(width_multiple=0), r"'width_multiple' must be a positive number"),
    (lambda cfg: cfg.update(activation="nn.Foo()"), r"unknown activation"),
])
def test_bad_yaml_raises_config_error_naming_the_problem(mutate, message):
    cfg = small_cfg("yolov5n")
    mutate(cfg)
    with pytest.raises(ConfigError, match=message) as e:
        Model(cfg)
    assert "\n" not in str(e.value)


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="model config not found: nope.yaml"):
        Model("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nc: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        Model(str(bad))
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        Model(str(bad))


def test_yaml_file_on_disk_matches_shipped_config(tmp_path):
    import yaml
    path = tmp_path / "mine.yaml"
    cfg = load_config("yolov5n.yaml")
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "yaml_file"}))
    a, b = Model(str(path)), Model(copy.deepcopy(cfg))
    assert count_params(a) == count_params(b) and a.yaml["yaml_file"] == "mine.yaml"


YOLOV8N_YAML = """
nc: 80
scales:
  n: [0.33, 0.25, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[1, 2, 3], 1, Detect, [nc]]
"""


def test_yolov8_yaml_says_anchor_free_is_not_supported(tmp_path):
    path = tmp_path / "yolov8n.yaml"
    path.write_text(YOLOV8N_YAML)
    with pytest.raises(ConfigError, match=r"yolov8n.yaml: a YOLOv8-style \(anchor-free\) config.*not support.*"
                                          r"yolov5n.yaml") as e:
        Model(str(path))
    assert "\n" not in str(e.value)
    import yaml
    cfg = yaml.safe_load(YOLOV8N_YAML)
    del cfg["scales"]  # the anchor-free Detect alone is recognised too
    with pytest.raises(ConfigError, match="anchor-free"):
        Model(cfg)
