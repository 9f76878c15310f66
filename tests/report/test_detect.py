"""`detect`: run folders like the official detect.py (annotated images, labels/*.txt, crops, videos)."""
import shutil

import cv2
import numpy as np
import pytest

from yolocompress.core.errors import DataError
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.engine.detect import DetectOptions, detect

from ..models.helpers import FIXTURES, prune

OFFICIAL = str(FIXTURES / "yolov5n_official_digits.pt")


@pytest.fixture(scope="module")
def images(demo_data, tmp_path_factory):
    """The 8 demo val images in a folder of their own, next to a file detect must leave out."""
    folder = tmp_path_factory.mktemp("detect_src") / "imgs"
    shutil.copytree(demo_data.parent / "images" / "val", folder)
    (folder / "notes.txt").write_text("not an image")
    return folder


def _opts(source, project, **kw):
    return DetectOptions(**{"weights": OFFICIAL, "source": str(source), "imgsz": 128, "device": "cpu",
                            "project": str(project), **kw})


def _rows(txt):
    return [list(map(float, line.split())) for line in txt.read_text().splitlines()]


def test_a_folder_gives_one_annotated_image_and_one_txt_per_input(images, tmp_path):
    out = detect(_opts(images, tmp_path, save_txt=True, save_conf=True, conf_thres=0.05, save_crop=True))
    d = tmp_path / "exp"
    assert out["save_dir"] == str(d) and out["images"] == 8
    inputs = sorted(p.name for p in images.glob("*.jpg"))
    assert sorted(p.name for p in d.glob("*.jpg")) == inputs
    assert sorted(p.stem for p in (d / "labels").glob("*.txt")) == [n[:-4] for n in inputs]
    n_rows = 0
    for name in inputs:
        src, drawn = cv2.imread(str(images / name)), cv2.imread(str(d / name))
        assert drawn.shape == src.shape
        rows = _rows(d / "labels" / f"{name[:-4]}.txt")
        n_rows += len(rows)
        for r in rows:
            assert len(r) == 6 and r[0] == int(r[0]) and all(0 <= v <= 1 for v in r[1:])
        if rows:
            assert np.abs(drawn.astype(int) - src).max() > 50  # boxes were drawn
    assert n_rows == out["detections"] > 0
    crops = list((d / "crops").rglob("*.jpg"))
    assert len(crops) == n_rows  # one crop per txt row, named <image>_<row>.jpg under crops/<class>/
    assert {c.parent.name for c in crops} == set(out["per_class"])


def test_glob_nosave_and_the_next_run_folder(images, tmp_path):
    detect(_opts(images / "00000[0-2].jpg", tmp_path, save_txt=True, nosave=True))
    d = tmp_path / "exp"
    assert not list(d.glob("*.jpg")) and len(list((d / "labels").glob("*.txt"))) == 3
    out = detect(_opts(images / "000000.jpg", tmp_path))
    assert out["save_dir"] == str(tmp_path / "exp2") and (tmp_path / "exp2" / "000000.jpg").is_file()


def test_a_video_gives_an_annotated_video_and_a_txt_per_frame(images, tmp_path):
    clip = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for p in sorted(images.glob("*.jpg"))[:3]:
        w.write(cv2.imread(str(p)))
    w.release()
    out = detect(_opts(clip, tmp_path / "runs", save_txt=True))
    d = tmp_path / "runs" / "exp"
    assert out["frames"] == 3
    assert sorted(p.name for p in (d / "labels").glob("*.txt")) == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]
    cap = cv2.VideoCapture(str(d / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_a_pruned_model_detects(images, tmp_path):
    model = prune(load_model(OFFICIAL)[0], ratio=0.3)
    weights = save_checkpoint(tmp_path / "pruned.pt", model)
    out = detect(_opts(images, tmp_path, weights=str(weights), save_txt=True))
    assert out["images"] == 8 and len(list((tmp_path / "exp" / "labels").glob("*.txt"))) == 8


@pytest.mark.parametrize("make, words", [
    (lambda t: t / "missing", "no such file or folder"),
    (lambda t: (t / "empty").mkdir() or t / "empty", "no images or videos there"),
    (lambda t: t / "*.png", "the pattern matches no file"),
    (lambda t: (t / "a.txt").write_text("x") and t / "a.txt", "not an image or video file"),
    (lambda t: (t / "bad.jpg").write_bytes(b"junk") and t / "bad.jpg", "bad.jpg: cannot be read as an image"),
])
def test_a_bad_source_is_one_clear_error(tmp_path, make, words):
    with pytest.raises(DataError, match=words):
        detect(_opts(make(tmp_path), tmp_path / "runs"))


def test_the_detect_command_line(images, tmp_path, capsys):
    """Flags -> DetectOptions -> one run folder; --json ends stdout with the summary; a bad source is one line."""
    import json
    from yolocompress.cli import main, parse_command
    argv = ["detect", "--weights", OFFICIAL, "--source", str(images), "--img", "128", "--device", "cpu",
            "--save-txt", "--classes", "1", "3", "--conf-thres", "0.05", "--project", str(tmp_path), "--json"]
    _, kw, _ = parse_command(argv)
    assert kw["opts"].classes == [1, 3] and kw["opts"].imgsz == 128 and kw["opts"].save_txt
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 8 and set(out["per_class"]) <= {"1", "3"}
    assert len(list((tmp_path / "exp" / "labels").glob("*.txt"))) == 8
    assert main(["detect", "--weights", OFFICIAL, "--source", str(tmp_path / "nothere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --source {tmp_path / 'nothere'}: no such file or folder"]
