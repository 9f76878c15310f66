"""Our checkpoint format: exact round trips (plain, pruned, fused), weights_only loading, clear errors."""
import zipfile

import pytest
import torch

from yolocompress.core.errors import CheckpointError
from yolocompress.models.checkpoint import FORMAT, load_model, save_checkpoint
from yolocompress.core.stats import count_params

from .helpers import FIXTURES, image, outputs, prune, randomise, small_model


def _assert_identical(a, b, x):
    assert all(torch.equal(u, v) for u, v in zip(outputs(a, x), outputs(b, x)))


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny"])
def test_round_trip_is_bit_identical(tmp_path, name):
    model = randomise(small_model(name))
    path = save_checkpoint(tmp_path / "w.pt", model, meta={"epoch": 3}, train_state={"epoch": 3})
    loaded, ckpt = load_model(path)
    _assert_identical(loaded, model, image(2))
    assert loaded.names == model.names and loaded.yaml == model.yaml
    assert all(p.requires_grad for p in loaded.parameters())
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["meta"]["epoch"] == 3 and ckpt["train_state"] == {"epoch": 3}
    assert not [p.name for p in tmp_path.iterdir() if p.name != "w.pt"]  # no temporary file left behind


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny"])
def test_pruned_model_round_trip(tmp_path, name):
    model = prune(randomise(small_model(name)))
    assert count_params(model) < count_params(small_model(name))
    loaded, _ = load_model(save_checkpoint(tmp_path / "pruned.pt", model))
    assert count_params(loaded) == count_params(model)
    _assert_identical(loaded, model, image(2))


@pytest.mark.parametrize("name", ["yolov5n", "yolov7"])
def test_fused_model_round_trip(tmp_path, name):
    model = randomise(small_model(name)).eval().fuse()
    loaded, ckpt = load_model(save_checkpoint(tmp_path / "fused.pt", model))
    assert ckpt["fused"] and count_params(loaded) == count_params(model)
    _assert_identical(loaded, model, image())


def test_public_load_returns_eval_model(tmp_path):
    import yolocompress
    model = small_model("yolov5n")
    loaded = yolocompress.load(save_checkpoint(tmp_path / "w.pt", model))
    assert not loaded.training
    _assert_identical(loaded, model, image())


def test_nc_mismatch_is_reported(tmp_path):
    path = save_checkpoint(tmp_path / "w.pt", small_model("yolov5n", nc=3))
    with pytest.raises(CheckpointError, match="3 classes but the data has 5"):
        load_model(path, nc=5)


def _truncated(tmp_path):
    path = save_checkpoint(tmp_path / "full.pt", small_model("yolov5n"))
    data = path.read_bytes()
    out = tmp_path / "half.pt"
    out.write_bytes(data[: len(data) // 2])
    return out


def _text(tmp_path):
    out = tmp_path / "notes.pt"
    out.write_text("these are not weights\n")
    return out


def _plain_dict(tmp_path):
    out = tmp_path / "plain.pt"
    torch.save({"a": 1}, out)
    return out


def _bad_zip_member(tmp_path):
    out = tmp_path / "zip.pt"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/notes.txt", "hello")
    return out


def _foreign_weights(tmp_path):
    out = tmp_path / "foreign.pt"
    model = small_model("yolov5n")
    save_checkpoint(out, model, state_dict={k: v for k, v in model.state_dict().items() if ".m.0." not in k})
    return out


@pytest.mark.parametrize("make, message", [
    (_truncated, "not a PyTorch checkpoint"),
    (_text, "not a PyTorch checkpoint"),
    (_plain_dict, "not a yolocompress checkpoint nor an official"),
    (_bad_zip_member, "zip.pt: cannot read it"),
    (_foreign_weights, "weights do not fit the architecture"),
    (lambda p: p / "missing.pt", "weights file not found"),
])
def test_bad_files_raise_checkpoint_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=message) as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_truncated_official_checkpoint(tmp_path):
    data = (FIXTURES / "yolov5n_official_digits.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a PyTorch checkpoint"):
        load_model(path)
