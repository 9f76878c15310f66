"""`val` run folders as official val.py writes them: COCO JSON, txt predictions, plots, --task test/speed."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from yolocompress.core.errors import DataError
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.api import val
from yolocompress.engine.options import ValOptions
from yolocompress.engine.val_outputs import image_id
from yolocompress.engine.validator import Validator
from yolocompress.models.checkpoint import load_model

from ..models.helpers import FIXTURES

OFFICIAL = str(FIXTURES / "yolov5n_official_digits.pt")
FAST = dict(weights=OFFICIAL, imgsz=64, batch_size=4, device="cpu", workers=0)
PLOTS = ("PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png")


@pytest.fixture(scope="module")
def run(demo_data, tmp_path_factory):
    project = tmp_path_factory.mktemp("val_runs")
    m = val(ValOptions(data=str(demo_data), **FAST, save_json=True, save_txt=True, save_conf=True,
                       project=str(project)))
    return m, Path(m["save_dir"])


def _reference_predictions(demo_data):
    """The same validation done directly: what the JSON must hold, per image stem."""
    v = Validator(load_data_config(demo_data), 64, 4, "cpu", 0)
    v.run(load_model(OFFICIAL)[0], record=True)
    return {Path(im.path).stem: im for im in v.record.images}


def test_save_json_is_coco_results_whose_boxes_round_trip(run, demo_data):
    m, d = run
    results = json.loads((d / "yolov5n_official_digits_predictions.json").read_text())
    ref = _reference_predictions(demo_data)
    assert len(results) == sum(len(im.pred) for im in ref.values()) > 0
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score"}
        assert isinstance(r["image_id"], int) and 0 <= r["category_id"] < 10 and 0 < r["score"] <= 1
    for stem, im in ref.items():
        mine = [r for r in results if r["image_id"] == int(stem)]
        x, y, w, h = np.array([r["bbox"] for r in mine]).reshape(-1, 4).T
        back = np.stack((x, y, x + w, y + h), 1)  # COCO [x_min, y_min, width, height] -> xyxy
        np.testing.assert_allclose(back, im.pred[:, :4].numpy(), atol=2e-3)
        np.testing.assert_allclose([r["score"] for r in mine], im.pred[:, 4].numpy(), atol=1e-5)
        assert [r["category_id"] for r in mine] == im.pred[:, 5].int().tolist()


def test_save_txt_rows_are_the_predictions_normalised(run, demo_data):
    _, d = run
    ref = _reference_predictions(demo_data)
    assert sorted(p.stem for p in (d / "labels").glob("*.txt")) == sorted(ref)
    for stem, im in ref.items():
        rows = np.array([list(map(float, s.split())) for s in (d / "labels" / f"{stem}.txt").read_text().splitlines()])
        rows = rows.reshape(-1, 6)
        h, w = im.shape
        xc, yc, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        back = np.stack((xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2), 1)
        np.testing.assert_allclose(back, im.pred[:, :4].numpy(), atol=1e-3)
        np.testing.assert_allclose(rows[:, 5], im.pred[:, 4].numpy(), rtol=1e-5)


def test_plots_and_the_per_class_table_are_written(run):
    m, d = run
    for name in PLOTS:
        img = cv2.imread(str(d / name))
        assert img is not None and min(img.shape[:2]) > 400, name
        assert img.std() > 10 and (d / name).stat().st_size > 20_000, name  # a drawing, not a blank page
    for name in ("val_batch0_labels.jpg", "val_batch0_pred.jpg", "val_batch1_labels.jpg", "val_batch1_pred.jpg"):
        assert cv2.imread(str(d / name)).shape[0] >= 320, name
    labels, preds = (cv2.imread(str(d / f"val_batch0_{k}.jpg")).astype(int) for k in ("labels", "pred"))
    assert np.abs(labels - preds).mean() > 1  # different boxes on the same images
    table = (d / "results.txt").read_text()
    lines = table.splitlines()
    assert lines[1].split()[0] == "all" and len(lines) == 3 + len(m["per_class"]) and lines[-1].startswith("Speed")


def test_confusion_matrix_counts_every_label_once(demo_data):
    v = Validator(load_data_config(demo_data), 64, 4, "cpu", 0)
    m = v.run(load_model(OFFICIAL)[0], record=True)
    cm = v.record.confusion.matrix
    assert cm[:, :-1].sum() == m["instances"]  # each label is matched to one class or missed (background row)
    np.testing.assert_allclose(v.record.confusion.normalized()[:, :-1].sum(0)[cm[:, :-1].sum(0) > 0], 1.0)


def test_no_plots_no_files_and_speed_writes_nothing(demo_data, tmp_path):
    m = val(ValOptions(data=str(demo_data), **FAST, plots=False, project=str(tmp_path)))
    assert sorted(p.name for p in Path(m["save_dir"]).iterdir()) == ["results.txt"]
    m = val(ValOptions(data=str(demo_data), **FAST, task="speed", project=str(tmp_path / "s")))
    assert "save_dir" not in m and not (tmp_path / "s").exists() and m["speed_ms"]["inference"] > 0


def test_task_test_uses_the_test_split(demo_data, tmp_path):
    d = yaml.safe_load(demo_data.read_text())
    (tmp_path / "few").mkdir()
    for p in sorted((demo_data.parent / "images" / "val").glob("*.jpg"))[:3]:
        (tmp_path / "few" / p.name).write_bytes(p.read_bytes())
    d["test"] = str(tmp_path / "few")
    with_test = tmp_path / "with_test.yaml"
    with_test.write_text(yaml.safe_dump(d))
    m = val(ValOptions(data=str(with_test), **FAST, task="test", plots=False, project=str(tmp_path / "runs")))
    assert m["images"] == 3 and m["instances"] == 0  # labels live under labels/val, not next to few/
    with pytest.raises(DataError, match="--task test needs a 'test:' split"):
        val(ValOptions(data=str(demo_data), **FAST, task="test"))


def test_image_ids_follow_val_py():
    assert image_id("/a/000012.jpg") == 12 and image_id("cat_1.png") == "cat_1"


def test_the_val_command_line(demo_data, tmp_path, capsys):
    """`val --save-json --no-plots` through the CLI: one run folder with the JSON, its path in --json."""
    from yolocompress.cli import main
    argv = ["val", "--weights", OFFICIAL, "--data", str(demo_data), "--imgsz", "64", "--batch-size", "4",
            "--device", "cpu", "--workers", "0", "--save-json", "--no-plots", "--project", str(tmp_path), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    d = Path(out["save_dir"])
    assert d == tmp_path / "exp" and (d / "yolov5n_official_digits_predictions.json").is_file()
    assert not (d / "PR_curve.png").exists()
    assert main(argv[:-1] + ["--task", "test"]) == 2
    assert "needs a 'test:' split" in capsys.readouterr().err
