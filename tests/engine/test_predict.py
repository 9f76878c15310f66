"""`Detector` and `Model.predict`: paths, BGR arrays and lists in; boxes in original-image pixels out."""
import cv2
import numpy as np
import pytest

import yolocompress
from yolocompress.core.errors import ConfigError, DataError
from yolocompress.engine.predict import Detections, Detector

from ..models.helpers import FIXTURES

OFFICIAL = FIXTURES / "yolov5n_official_digits.pt"  # an official YOLOv5 checkpoint trained on the digits
CONF = 0.05  # low enough that the tiny 64 px demo images give detections to compare


@pytest.fixture(scope="module")
def model():
    return yolocompress.load(OFFICIAL)


@pytest.fixture(scope="module")
def val_images(demo_data):
    return sorted((demo_data.parent / "images" / "val").glob("*.jpg"))


def test_predict_on_a_path_and_on_the_same_bgr_array(model, val_images):
    path = val_images[0]
    from_path = model.predict(path, imgsz=128, conf_thres=CONF)
    from_array = model.predict(cv2.imread(str(path)), imgsz=128, conf_thres=CONF)
    assert isinstance(from_path, Detections) and len(from_path) > 0
    assert from_path.path == str(path) and from_array.path is None
    np.testing.assert_array_equal(from_path.boxes, from_array.boxes)
    np.testing.assert_array_equal(from_path.classes, from_array.classes)
    h, w = from_path.shape
    assert (h, w) == (64, 64)
    b = from_path.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= h).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert (np.diff(from_path.scores) <= 0).all() and (from_path.scores > CONF).all()
    assert from_path.labels == [model.names[c] for c in from_path.classes]


def test_boxes_come_back_in_the_pixels_of_the_image_given(model, val_images):
    """The same picture at twice the size, letterboxed to the same input, gives boxes twice as large."""
    img = cv2.imread(str(val_images[1]))
    small = model.predict(img, imgsz=128, conf_thres=CONF)
    big = model.predict(cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR), imgsz=128, conf_thres=CONF)
    assert len(small) > 0 and big.shape == (128, 128)
    top_small, top_big = small.boxes[0], big.boxes[np.argmin(np.abs(big.boxes - 2 * small.boxes[0]).sum(1))]
    np.testing.assert_allclose(top_big, 2 * top_small, atol=3.0)


def test_non_square_image_maps_back_through_the_letterbox_padding(model, val_images):
    """A picture pasted at the left of a wider grey canvas keeps its boxes where they were."""
    img = cv2.imread(str(val_images[2]))
    wide = np.full((64, 160, 3), 114, np.uint8)
    wide[:, :64] = img
    a = model.predict(img, imgsz=128, conf_thres=CONF)
    b = model.predict(wide, imgsz=320, conf_thres=CONF)  # 160 px wide -> 320: the same x2 scale as above
    assert b.shape == (64, 160) and len(a) > 0
    best = b.boxes[np.argmin(np.abs(b.boxes - a.boxes[0]).sum(1))]
    np.testing.assert_allclose(best, a.boxes[0], atol=3.0)


def test_a_list_gives_a_list_and_a_detector_takes_a_checkpoint_path(val_images):
    det = Detector(OFFICIAL, imgsz=128, conf_thres=CONF, max_det=2)
    out = det.predict([str(p) for p in val_images[:3]])
    assert [o.path for o in out] == [str(p) for p in val_images[:3]]
    assert all(len(o) <= 2 for o in out)
    assert det.timing.images == 3


def test_predict_restores_the_training_mode(val_images):
    m = yolocompress.load(OFFICIAL).train()
    m.predict(val_images[0], imgsz=64)
    assert m.training


@pytest.mark.parametrize("bad, kind, words", [
    ("nothere.jpg", DataError, "no such image file"),
    (np.zeros((64, 64), np.uint8), ConfigError, "HxWx3 uint8"),
    (np.zeros((64, 64, 3), np.float32), ConfigError, "HxWx3 uint8"),
    (12, ConfigError, "image path"),
])
def test_bad_inputs_say_what_is_expected(model, tmp_path, bad, kind, words):
    with pytest.raises(kind, match=words):
        model.predict(str(tmp_path / bad) if isinstance(bad, str) else bad)


def test_an_unreadable_image_is_named(model, tmp_path):
    f = tmp_path / "broken.jpg"
    f.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="broken.jpg: cannot be read as an image"):
        model.predict(f)
