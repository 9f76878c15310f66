"""Every gallery model (examples/modules/) builds, trains a step, validates, saves and reloads bit-identically
and exports to ONNX with onnxruntime parity, at a tiny width and 64 px; the families that prune are pruned to
2x GFLOPs, a share of their own channels goes, and the pruned model does all of the above again."""
import pytest
import torch

from yolocompress.core.errors import YoloCompressError
from yolocompress.core.stats import count_gflops, uncounted_modules
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.validator import Validator
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.models.export import export_onnx, parity_or_reason

from . import gallery
from yolocompress.models.layers import input_layers, layer_channels
from .gallery import DEFORMABLE, GALLERY, IMGSZ, KNOWN_BAD, PRUNE_METHODS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
WORKING = [e for e in GALLERY if e.family not in KNOWN_BAD]
# Gallery models whose own channels do not prune yet on this code, with what happens (docs/custom-modules.md's
# table). Strict: a fix makes the test pass and fail as XPASS, so that the entry is removed here.
NOT_PRUNED_YET: dict[str, str] = {}
# (entry, method) pairs that do not prune yet, with what happens; strict like the above.
METHOD_NOT_YET: dict[tuple[str, str], str] = {}


def _prune_cases():
    """(entry, method): every working entry with each of PRUNE_METHODS, and the first entry of each family (the
    yolov5n one where there is one) with PAGCP, whose layer-by-layer scan costs more."""
    first = {}
    for e in WORKING:
        first.setdefault(e.family, e)
    for e in WORKING:
        for method in PRUNE_METHODS + (("pagcp",) if first[e.family] is e else ()):
            reason = NOT_PRUNED_YET.get(e.id) or METHOD_NOT_YET.get((e.id, method))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(e, method, id=f"{e.id}-{method}", marks=marks)


@pytest.fixture(scope="module")
def validator(demo_data):
    return Validator(load_data_config(demo_data), imgsz=IMGSZ, batch_size=8, device="cpu", workers=0)


def assert_deployable(entry, model, validator, tmp_path):
    """Validates, reloads bit-identically from our checkpoint, exports with onnxruntime parity."""
    metrics = validator.run(model)
    assert set(metrics) >= {"mAP50", "mAP50-95"}

    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded, _ = load_model(path)
    x = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = model.eval()(x), loaded.eval()(x)
    assert torch.equal(expected[0], got[0]) and all(torch.equal(a, b) for a, b in zip(expected[1], got[1]))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))

    onnx_path = export_onnx(loaded, tmp_path / "m.onnx", imgsz=IMGSZ)
    diff, reason = parity_or_reason(onnx_path, loaded, IMGSZ)
    if reason:  # only a runtime without the operator may skip the parity check, and it says so
        assert entry.family in DEFORMABLE and "DeformConv" in reason
    else:
        assert diff < 1e-3, f"{entry.id}: onnxruntime differs from PyTorch by {diff}"


def test_the_gallery_covers_every_family_and_both_bases():
    families = {e.family for e in GALLERY}
    assert {"c2f", "c2f-split", "fasternet", "ghost", "cbam", "eca", "se", "bifpn", "decoupled-head", "dcn",
            "transformer", "mhsa", "mobilenetv3", "repvit", "dbb", "lsk", "gsconv", "afpn", "dyhead", "goldyolo",
            "sppfcspc", "simsppf", "fasternet-inplace"} <= families
    on_v7 = {e.family for e in GALLERY if e.base == "yolov7-tiny"}
    assert len(on_v7) * 2 >= len(families - KNOWN_BAD)
    for e in GALLERY:  # the yamls on disk are the ones make_yamls.py writes
        variant = next(v for v in gallery.CATALOGUE.FAMILIES[e.family] if v[0] == e.base)
        assert (gallery.EXAMPLES / e.yaml).read_text() == gallery.CATALOGUE.render(*variant), e.yaml


@pytest.mark.parametrize("entry", WORKING, ids=lambda e: e.id)
def test_gallery_model_trains_validates_reloads_and_exports(entry, gallery_registry, validator, tmp_path):
    model = gallery.build(entry)
    assert count_gflops(model, IMGSZ) > 0 and uncounted_modules(model) == []
    before = [p.detach().clone() for p in model.parameters()]
    loss = gallery.train_step(model)
    assert torch.isfinite(torch.tensor(loss))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert_deployable(entry, model, validator, tmp_path)


@pytest.mark.parametrize("entry, method", list(_prune_cases()))
def test_gallery_model_prunes_and_stays_deployable(entry, method, gallery_registry, validator, tmp_path):
    model = gallery.build(entry)
    own = gallery.family_layers(model, entry)
    assert own, f"{entry.id}: no layer of the family's own file in the model"
    if not layer_channels(model, own):  # no channels of its own (ECA): its inputs must not be blocked
        own = input_layers(model, own)
    channels = layer_channels(model, own)
    # Ranked globally, an attention group's scores are averaged over its heads, so at this tiny width global
    # group_norm never ranks MHSA's group lowest (docs/custom-modules.md, "Attention heads"); per layer it goes.
    scope = False if (entry.family, method) == ("mhsa", "group_norm") else None
    out = gallery.prune(model, method, family=own, global_pruning=scope)
    model = out.model
    assert out.reached, f"{entry.id}: {out.stop_reason}"
    share = 1 - layer_channels(model, own) / channels
    assert share > 0, f"{entry.id}: none of the family's channels pruned; kept: {out.skipped}"
    gallery.train_step(model)
    assert_deployable(entry, model, validator, tmp_path)


@pytest.mark.parametrize("entry", [e for e in GALLERY if e.family in KNOWN_BAD], ids=lambda e: e.id)
def test_known_bad_module_fails_in_training(entry, gallery_registry):
    model = gallery.build(entry)
    with pytest.raises((RuntimeError, YoloCompressError), match="inplace|in-place"):
        gallery.train_step(model)


@pytest.mark.parametrize("entry_id, kept", [("yolov5n-lsk", "conv_squeeze"), ("yolov5n-afpn", "weight_levels")])
def test_one_channel_per_branch_layers_are_kept_whole_by_nature(entry_id, kept, gallery_registry):
    """LSK's selection conv (read as sig[:, 0], sig[:, 1]) and AFPN's level weights (w[:, j:j + 1]) have one
    output per branch: the guard keeps exactly those outputs whole, says why, and nothing else of the family."""
    from yolocompress.prune.guard import find_unprunable
    entry = next(e for e in GALLERY if e.id == entry_id)
    model = gallery.build(entry)
    guard = find_unprunable(model, torch.rand(1, 3, IMGSZ, IMGSZ), "lamp")
    assert guard.skipped and all(s["module"].endswith(kept) and s["holds"] == [s["module"]] for s in guard.skipped)
    assert all("read one by one by position" in s["reason"] for s in guard.skipped)
