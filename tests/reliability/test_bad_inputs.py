"""The bad-input matrix (docs/reliability.md): every case through `yolocompress.cli.main`, asserting the exit code,
one `error:` line that names what and where (no traceback), or, for a bad item in a dataset, a warning naming the
file, a count in the split summary, and a run that completes."""
from __future__ import annotations

import logging
import re

import cv2
import numpy as np
import pytest
import torch
import yaml

from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import save_checkpoint

from ..conftest import tiny_config
from .helpers import FAST, IMGSZ, assert_one_line_error, copy_dataset, make_inputs, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
NAMES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_inputs(tmp_path_factory, "rel", seed=3)


def _yaml(path, obj):
    path.write_text(yaml.safe_dump(obj))
    return path


# ---- data: what cannot go on is one error line ------------------------------------------------------------
def _missing_yaml(tmp_path, base):
    return tmp_path / "nope.yaml", r"dataset yaml not found: .*nope\.yaml"


def _missing_path(tmp_path, base):
    d = {"path": str(base["data"].parent), "train": "images/nothere", "val": "images/val", "names": NAMES}
    return _yaml(tmp_path / "d.yaml", d), r"d\.yaml: train path 'images/nothere' not found"


def _empty_split(tmp_path, base):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    d = {"path": str(tmp_path / "empty"), "train": str(base["data"].parent / "images/train"), "val": "images",
         "names": NAMES}
    return _yaml(tmp_path / "d.yaml", d), r"d\.yaml: val has no images in images"


def _names_vs_nc(tmp_path, base):
    d = {"path": str(base["data"].parent), "train": "images/train", "val": "images/val", "nc": 3, "names": NAMES}
    return _yaml(tmp_path / "d.yaml", d), r"d\.yaml: nc is 3 but 'names' has 10 entries"


def _no_names(tmp_path, base):
    d = {"path": str(base["data"].parent), "train": "images/train", "val": "images/val"}
    return _yaml(tmp_path / "d.yaml", d), r"d\.yaml: missing 'names'"


def _not_yaml(tmp_path, base):
    (tmp_path / "d.yaml").write_text("train: [unclosed\n")
    return tmp_path / "d.yaml", r"d\.yaml: not valid YAML"


def _all_images_corrupt(tmp_path, base):
    y = copy_dataset(base["data"], tmp_path / "ds")
    for p in (y.parent / "images" / "val").iterdir():
        p.write_bytes(b"\0" * 100)
    return y, r"val: none of the 4 images is usable"


@pytest.mark.parametrize("command", ["train", "val"])
@pytest.mark.parametrize("case", [_missing_yaml, _missing_path, _empty_split, _names_vs_nc, _no_names, _not_yaml,
                                  _all_images_corrupt])
def test_unusable_dataset_is_one_error_line(case, command, base, tmp_path, capsys):
    data, pattern = case(tmp_path, base)
    src = ["--cfg", base["cfg"], "--epochs", 1, "--project", tmp_path / "runs"] if command == "train" else \
        ["--weights", base["weights"]]
    rc, err = run_cli(capsys, [command, "--data", data, *src, *FAST])
    assert_one_line_error(rc, err, pattern)


# ---- data: a bad item is a warning and a count, the run goes on --------------------------------------------
def _first(ds, split, sub="images"):
    return sorted((ds / sub / split).iterdir())[0]


def _label_row(row):
    def make(ds, split):
        lb = _first(ds, split, "labels")
        lb.write_text(lb.read_text() + row + "\n")
        return lb
    return make


def _corrupt_image(ds, split):
    img = _first(ds, split)
    img.write_bytes(b"\xff\xd8 garbage" * 10 + b"\xff\xd9")  # JPEG markers, no image
    return img


def _truncated_jpeg(ds, split):
    img = _first(ds, split)
    img.write_bytes(img.read_bytes()[:200])
    return img


def _non_image(ds, split):
    p = ds / "images" / split / "notes.txt"
    p.write_text("not an image")
    return None  # not even looked at: only image extensions are listed


def _text_named_png(ds, split):
    p = ds / "images" / split / "zz_notes.png"
    p.write_text("not an image")
    return p


def _one_pixel(ds, split):
    img = _first(ds, split)
    cv2.imwrite(str(img), np.zeros((1, 1, 3), np.uint8))
    return img


def _duplicates(ds, split):
    lb = _first(ds, split, "labels")
    lb.write_text(lb.read_text() * 2)
    return lb


def _extreme_aspect(ds, split):
    img = _first(ds, split)
    cv2.imwrite(str(img), np.full((12, 1500, 3), 127, np.uint8))
    return img


ITEM_CASES = {  # case -> (corruption, warning regex or None, summary regex)
    "corrupt image": (_corrupt_image, r"corrupt image \(cannot be decoded\), skipped", r"1 corrupt skipped"),
    "truncated jpeg": (_truncated_jpeg, r"truncated JPEG \(no end marker\), skipped", r"1 corrupt skipped"),
    "non-image file": (_non_image, None, r": \d+ images$"),
    "text named .png": (_text_named_png, r"corrupt image \(cannot be decoded\), skipped", r"1 corrupt skipped"),
    "1x1 image": (_one_pixel, r"image is 1x1 px, under 10 px, skipped", r"1 corrupt skipped"),
    "wrong field count": (_label_row("1 0.5 0.5"), r"line \d+: 3 fields, expected 5", r"1 rows dropped"),
    "non-numeric field": (_label_row("1 0.5 abc 0.1 0.1"), r"line \d+: non-numeric field", r"1 rows dropped"),
    "nan field": (_label_row("1 0.5 nan 0.1 0.1"), r"line \d+: non-numeric field", r"1 rows dropped"),
    "class out of range": (_label_row("12 0.5 0.5 0.1 0.1"), r"line \d+: class 12 not in 0\.\.9", r"1 rows dropped"),
    "negative class": (_label_row("-1 0.5 0.5 0.1 0.1"), r"line \d+: class -1 not in 0\.\.9", r"1 rows dropped"),
    "coords outside": (_label_row("1 1.5 0.5 0.1 0.1"), r"line \d+: box outside the image", r"1 rows dropped"),
    "coords a hair outside": (_label_row("1 0.96 0.5 0.1 0.1"), r"1 row\(s\) clipped to the image",
                              r"1 rows repaired"),
    "zero size": (_label_row("1 0.5 0.5 0 0.1"), r"line \d+: zero or negative box size", r"1 rows dropped"),
    "negative size": (_label_row("1 0.5 0.5 0.1 -0.2"), r"line \d+: zero or negative box size", r"1 rows dropped"),
    "duplicate rows": (_duplicates, r"\d+ duplicate row\(s\) removed", r"rows dropped"),
    "extreme aspect ratio": (_extreme_aspect, None, r": \d+ images$"),
}


def _check_item_warning(caplog, where, warning, split, summary):
    text = caplog.text
    assert "Traceback" not in text
    if warning:
        hits = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(where) in r.getMessage()]
        assert hits and all(len(h.splitlines()) == 1 for h in hits), text
        assert any(re.search(warning, h) for h in hits), hits
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{split}: ")]
    assert summaries and re.search(summary, summaries[0]), summaries


@pytest.mark.parametrize("case", list(ITEM_CASES))
def test_bad_item_in_val_is_a_warning_and_val_completes(case, base, tmp_path, capsys, caplog):
    corrupt, warning, summary = ITEM_CASES[case]
    y = copy_dataset(base["data"], tmp_path / "ds")
    where = corrupt(y.parent, "val")
    caplog.set_level(logging.INFO, logger="yolocompress")
    rc, err = run_cli(capsys, ["val", "--weights", base["weights"], "--data", y, *FAST, "--project", tmp_path / "runs",
                               "--no-plots"])
    assert rc == 0, err
    assert "Traceback" not in err
    _check_item_warning(caplog, where, warning, "val", summary)


@pytest.mark.parametrize("case", ["corrupt image", "wrong field count", "1x1 image", "extreme aspect ratio"])
def test_bad_item_in_train_is_a_warning_and_training_completes(case, base, tmp_path, capsys, caplog):
    corrupt, warning, summary = ITEM_CASES[case]
    y = copy_dataset(base["data"], tmp_path / "ds")
    where = corrupt(y.parent, "train")
    caplog.set_level(logging.INFO, logger="yolocompress")
    rc, err = run_cli(capsys, ["train", "--cfg", base["cfg"], "--data", y, "--epochs", 1,
                               "--project", tmp_path / "runs", *FAST])
    assert rc == 0, err
    assert (tmp_path / "runs" / "exp" / "weights" / "last.pt").is_file()
    _check_item_warning(caplog, where, warning, "train", summary)


# ---- model configs and hyperparameters ---------------------------------------------------------------------
def _layer(i, col, value):
    cfg = tiny_config(nc=10)
    rows = cfg["backbone"] + cfg["head"]
    rows[i][col] = value
    return cfg


CONFIG_CASES = {
    "unknown module": (_layer(1, 2, "Nope"), r"layer 1 \(Nope\): unknown module 'Nope'.*--modules"),
    "bad from index": (_layer(1, 0, 5), r"layer 1 \(Conv\): 'from' index 5 does not name an earlier layer"),
    "from not an int": (_layer(2, 0, "x"), r"layer 2 \(C3\): 'from' must be an integer"),
    "missing key": ({k: v for k, v in tiny_config().items() if k != "anchors"}, r"missing key\(s\) anchors"),
    "nc: ten": ({**tiny_config(), "nc": "ten"}, r"'nc' must be an integer in 1\.\.\d+, got 'ten'"),
    "width_multiple: x": ({**tiny_config(), "width_multiple": "x"}, r"'width_multiple' must be a positive number"),
    "width_multiple typo (1000)": ({**tiny_config(), "width_multiple": 1000}, r"output channels .* outside 1\.\.8192"),
    "anchors: abc": ({**tiny_config(), "anchors": "abc"}, r"'anchors' must be one list of \(w, h\) pixel pairs"),
    "args not a list": (_layer(0, 3, 64), r"layer 0: expected \[from, number, module, args\]"),
    "channel arg a string": (_layer(0, 3, ["x"]), r"layer 0 \(Conv\): first argument must be the output channel"),
    "layers do not fit": (_layer(12, 0, [-1, 4]), r"layer 12 \(Concat\) fails on a 256x256 input: RuntimeError"),
    "not a mapping": ([1, 2, 3], r"a model config must be a mapping"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_model_config_is_one_error_line(case, tmp_path, capsys):
    cfg, pattern = CONFIG_CASES[case]
    path = _yaml(tmp_path / "bad.yaml", cfg)
    rc, err = run_cli(capsys, ["info", "--cfg", path, "--imgsz", IMGSZ])
    assert_one_line_error(rc, err, pattern)


HYP_CASES = {
    "unknown key": ({"lr0": 0.01, "bogus": 1}, r"h\.yaml: unknown hyperparameter\(s\) bogus; known: lr0"),
    "non-numeric value": ({"lr0": "fast"}, r"h\.yaml: 'lr0' must be a number, got 'fast'"),
    "not a mapping": ([1, 2], r"h\.yaml: expected a mapping"),
    "missing file": (None, r"hyp file not found: .*h\.yaml"),
}


@pytest.mark.parametrize("case", list(HYP_CASES))
def test_bad_hyp_file_is_one_error_line(case, base, tmp_path, capsys):
    values, pattern = HYP_CASES[case]
    hyp = tmp_path / "h.yaml"
    if values is not None:
        _yaml(hyp, values)
    rc, err = run_cli(capsys, ["train", "--cfg", base["cfg"], "--data", base["data"], "--hyp", hyp, "--epochs", 1,
                               "--project", tmp_path / "runs", *FAST])
    assert_one_line_error(rc, err, pattern)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("last.pt"))


def test_hyp_with_missing_keys_takes_the_defaults():
    from yolocompress.core.hyp import Hyp
    h = Hyp.from_dict({"lr0": 0.02})
    assert h.lr0 == 0.02 and h.momentum == Hyp().momentum


# ---- checkpoints ---------------------------------------------------------------------------------------------
def _truncated(tmp_path, base):
    b = base["weights"].read_bytes()
    (tmp_path / "w.pt").write_bytes(b[: len(b) // 2])
    return r"w\.pt: not a PyTorch checkpoint \(truncated"


def _text_file(tmp_path, base):
    (tmp_path / "w.pt").write_text("hello")
    return r"w\.pt: not a PyTorch checkpoint"


def _empty_file(tmp_path, base):
    (tmp_path / "w.pt").write_bytes(b"")
    return r"w\.pt: not a PyTorch checkpoint"


def _plain_state_dict(tmp_path, base):
    torch.save(Model(tiny_config(nc=10)).state_dict(), tmp_path / "w.pt")
    return r"w\.pt: not a yolocompress checkpoint nor an official YOLOv5/YOLOv7 one"


def _torchvision_state_dict(tmp_path, base):
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "w.pt")
    return r"w\.pt: not a yolocompress checkpoint nor an official"


def _torchvision_model(tmp_path, base):
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.mobilenet_v3_small(), tmp_path / "w.pt")
    return r"w\.pt: refused to load: the checkpoint names the global 'torchvision\.models"


def _missing(tmp_path, base):
    return r"weights file not found: .*w\.pt"


def _wrong_class_count(tmp_path, base):
    save_checkpoint(tmp_path / "w.pt", Model(tiny_config(nc=3)))
    return r"w\.pt: the model has 3 classes but the data has 10"


CKPT_CASES = [_truncated, _text_file, _empty_file, _plain_state_dict, _torchvision_state_dict, _torchvision_model,
              _missing, _wrong_class_count]


@pytest.mark.parametrize("command", ["val", "train"])
@pytest.mark.parametrize("case", CKPT_CASES)
def test_bad_checkpoint_is_one_error_line(case, command, base, tmp_path, capsys):
    if case is _wrong_class_count and command == "train":
        pytest.skip("train transfers weights of another class count (tests/engine/test_transfer.py)")
    pattern = case(tmp_path, base)
    extra = ["--epochs", 1, "--project", tmp_path / "runs"] if command == "train" else []
    rc, err = run_cli(capsys, [command, "--weights", tmp_path / "w.pt", "--data", base["data"], *extra, *FAST])
    assert_one_line_error(rc, err, pattern)


@pytest.mark.parametrize("command", ["info", "export"])
@pytest.mark.parametrize("case", [_truncated, _plain_state_dict, _missing])
def test_bad_checkpoint_in_info_and_export(case, command, base, tmp_path, capsys):
    pattern = case(tmp_path, base)
    rc, err = run_cli(capsys, [command, "--weights", tmp_path / "w.pt", "--imgsz", IMGSZ])
    assert_one_line_error(rc, err, pattern)


@pytest.mark.parametrize("command", ["prune", "compress"])
@pytest.mark.parametrize("case", [_truncated, _plain_state_dict, _wrong_class_count])
def test_bad_checkpoint_in_prune_and_compress(case, command, base, tmp_path, capsys):
    pattern = case(tmp_path, base)
    rc, err = run_cli(capsys, [command, "--weights", tmp_path / "w.pt", "--data", base["data"], "--method", "l1",
                               "--epochs", 1, "--project", tmp_path / "runs", *FAST])
    assert_one_line_error(rc, err, pattern)
    assert not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize("command", ["sparse", "compress"])
def test_weights_of_other_classes_are_refused_by_sparse_training(command, base, tmp_path, capsys):
    """Sparse training (alone or as compress's first stage) needs a model trained on the data: no transfer."""
    pattern = _wrong_class_count(tmp_path, base) + r"; this needs a model trained on this data: fine-tune it first"
    rc, err = run_cli(capsys, [command, "--weights", tmp_path / "w.pt", "--data", base["data"], "--method", "slim",
                               "--epochs", 1, "--project", tmp_path / "runs", *FAST])
    assert_one_line_error(rc, err, pattern)
    assert not list((tmp_path / "runs").rglob("*.pt"))


# ---- a teacher that does not fit the student: one line before training, nothing written ---------------------
def _teacher(tmp_path, **changes):
    torch.manual_seed(1)
    return save_checkpoint(tmp_path / "teacher.pt", Model({**tiny_config(nc=10), **changes}))


TEACHER_CASES = {
    "other classes": (dict(nc=3), ["--kd-logit", "l2"], r"teacher .*teacher\.pt has 3 classes, the student 10"),
    "other anchors per level": (dict(anchors=[[10, 13, 16, 30]] * 3), ["--kd-logit", "l2"],
                                r"logit distillation needs the same detection levels and anchors: student 3x3, "
                                r"teacher 3x2"),
    "no such layer": (dict(), ["--kd-feature", "cwd", "--kd-layers", "99", "20", "23"],
                      r"--kd-layers \[99\]: no such student layer"),
    "layers of other strides": (dict(), ["--kd-feature", "mimic", "--kd-layers", "17", "20",
                                         "--kd-teacher-layers", "20", "17"], r"spatial sizes differ"),
    "truncated teacher": (None, ["--kd-logit", "l2"], r"teacher\.pt: not a PyTorch checkpoint \(truncated"),
}


@pytest.mark.parametrize("command", ["train", "prune"])
@pytest.mark.parametrize("case", list(TEACHER_CASES))
def test_teacher_that_does_not_fit_is_one_error_line(case, command, base, tmp_path, capsys):
    changes, kd, pattern = TEACHER_CASES[case]
    if changes is None:
        good = _teacher(tmp_path).read_bytes()
        (tmp_path / "teacher.pt").write_bytes(good[: len(good) // 2])
    else:
        _teacher(tmp_path, **changes)
    extra = ["--method", "l1"] if command == "prune" else []
    rc, err = run_cli(capsys, [command, "--weights", base["weights"], "--data", base["data"], *extra,
                               "--teacher", tmp_path / "teacher.pt", *kd, "--epochs", 1,
                               "--project", tmp_path / "runs", *FAST])
    assert_one_line_error(rc, err, pattern)
    assert not list((tmp_path / "runs").rglob("*.pt"))  # checked before any pruning or training


def test_resume_without_a_run_is_one_error_line(base, tmp_path, capsys):
    rc, err = run_cli(capsys, ["train", "--resume", tmp_path / "norun", "--data", base["data"], *FAST])
    assert_one_line_error(rc, err, r"--resume: no checkpoint at .*norun")


# ---- arguments -----------------------------------------------------------------------------------------------
ARG_CASES = {  # argv after the command's own required arguments -> pattern of the one error line
    "batch size 0": (["--batch-size", "0"], r"argument --batch-size: must be a positive integer, got 0"),
    "epochs 0": (["--epochs", "0"], r"argument --epochs: must be a positive integer, got 0"),
    "workers -1": (["--workers", "-1"], r"--workers must be >= 0, got -1"),
    "device 7": (["--device", "7"], r"--device '7': CUDA device 7 not found .*use --device cpu"),
    "device cuda:3": (["--device", "cuda:3"], r"--device 'cuda:3': CUDA device 3 not found"),
    "device tpu": (["--device", "tpu"], r"--device 'tpu': expected 'cpu', a CUDA index"),
}


@pytest.mark.parametrize("case", list(ARG_CASES))
def test_bad_train_argument_is_one_error_line(case, base, tmp_path, capsys):
    if case.startswith("device") and torch.cuda.device_count() > 3:
        pytest.skip("the device exists here")
    extra, pattern = ARG_CASES[case]
    rc, err = run_cli(capsys, ["train", "--cfg", base["cfg"], "--data", base["data"], "--project", tmp_path / "runs",
                               "--epochs", "1", *FAST, *extra])
    assert_one_line_error(rc, err, pattern)


@pytest.mark.parametrize("extra, pattern", [
    (["--method", "l1", "--speedup", "1.0"], r"--speedup must be greater than 1\.0"),
    (["--method", "l1", "--speedup", "0.5"], r"--speedup must be greater than 1\.0"),
    (["--method", "nope"], r"argument --method: invalid choice: 'nope' \(choose from 'l1', 'random', "),
])
def test_bad_prune_argument_is_rejected_before_any_work(extra, pattern, base, tmp_path, capsys):
    rc, err = run_cli(capsys, ["prune", "--weights", base["weights"], "--data", base["data"],
                               "--project", tmp_path / "runs", *FAST, *extra])
    assert_one_line_error(rc, err, pattern)
    assert not list((tmp_path / "runs").rglob("*.pt"))


def test_sparse_with_a_non_sparse_method_is_rejected(base, tmp_path, capsys):
    rc, err = run_cli(capsys, ["sparse", "--weights", base["weights"], "--data", base["data"], "--method", "l1",
                               *FAST])
    assert_one_line_error(rc, err, r"argument --method: invalid choice: 'l1'")


def test_imgsz_not_a_multiple_of_the_stride_is_rounded_and_said(base, capsys, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="yolocompress")
    rc, err = run_cli(capsys, ["val", "--weights", base["weights"], "--data", base["data"], *FAST, "--imgsz", "100",
                               "--project", tmp_path / "runs", "--no-plots"])
    assert rc == 0, err
    assert "--imgsz 100 is not a multiple of the model stride 32; using 128" in caplog.text


def test_verbose_shows_the_traceback(base, tmp_path, capsys):
    from yolocompress.core.errors import DataError
    with pytest.raises(DataError, match="dataset yaml not found"):
        run_cli(capsys, ["val", "--weights", base["weights"], "--data", tmp_path / "nope.yaml", "--verbose"])
