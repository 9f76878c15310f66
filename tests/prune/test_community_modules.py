"""Community modules on tiny yolov5 / yolov7 bases: each family is pruned (a share of its own channels goes),
what cannot be followed is kept whole with its reason."""
import pytest
import torch

from yolocompress.models.builder import Model
from yolocompress.prune.guard import find_unprunable
from yolocompress.prune.speedup import conv_channels, prune_to_target

from . import community
from .tiny_yolos import IMGSZ, image, one_thread, v5_cfg, v7_cfg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROW = {"v5": 4, "v7": 10}
PRUNED = ["C2fChunk", "C2fSplit", "FasterNetBlock", "CBAM"]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def build(family: str, module: str) -> Model:
    torch.manual_seed(0)
    cfg = {"v5": v5_cfg, "v7": v7_cfg}[family]()
    return Model(community.place(cfg, family, module)).eval()


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
    prefix = f"model.{ROW[family]}."
    assert not [s for s in guard.skipped if s["module"].startswith(prefix) or s["module"] == prefix[:-1]]
    before = conv_channels(model)
    out = prune_to_target(model, image(), method, 1.5, imgsz=IMGSZ, max_steps=10, measure=False, guard=guard)
    assert out.reached
    assert share_pruned(before, conv_channels(model), prefix) > 0
    pred, _ = model.eval()(image(2))
    assert torch.isfinite(pred).all()


def test_declared_split_sizes_are_rewritten():
    model = build("v5", "C2fSplit")
    prune_to_target(model, image(), "lamp", 1.5, imgsz=IMGSZ, max_steps=10, measure=False)
    block = model.model[4]
    assert block.c < 16 and block.cv1.conv.out_channels == 2 * block.c
    fast = build("v5", "FasterNetBlock")
    prune_to_target(fast, image(), "group_norm", 1.5, imgsz=IMGSZ, max_steps=10, measure=False)
    pconv = fast.model[4].spatial_mixing
    assert pconv.dim_conv3 == pconv.partial_conv3.in_channels
    assert pconv.dim_conv3 + pconv.dim_untouched == fast.model[3].conv.out_channels < 32


def test_a_split_size_the_module_never_exposes_is_kept_whole_and_said_so():
    model = build("v5", "C2fHiddenSplit")
    skipped = find_unprunable(model, image(), "lamp").skipped
    mine = [s for s in skipped if s["module"].startswith("model.4.")]
    assert mine and all("split" in s["reason"] and "split_sizes=" in s["reason"] for s in mine)
