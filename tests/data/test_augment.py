"""Augmentations: letterbox geometry, mosaic shape and boxes, perspective, HSV, flips, mixup."""
import numpy as np
import pytest

from yolocompress.data.augment import (augment_hsv, box_candidates, letterbox, mixup, mosaic4, random_flip,
                                       random_perspective, xywhn2xyxy, xyxy2xywhn)
from yolocompress.core.hyp import Hyp


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw, new, auto, scaleup, out, pad", [
    ((100, 200), 640, False, True, (640, 640), (0, 160)),
    ((100, 200), 640, True, True, (320, 640), (0, 0)),
    ((100, 200), 96, True, True, (64, 96), (0, 8)),  # pad only to a multiple of 32
    ((100, 200), 640, False, False, (640, 640), (220, 270)),  # no upscaling: the 200x100 image sits in the middle
    ((150, 100), (224, 192), False, True, (224, 192), (21, 0)),  # fixed (h, w) shape of a rect batch
    ((64, 64), 64, False, True, (64, 64), (0, 0)),
])
def test_letterbox_shapes(hw, new, auto, scaleup, out, pad):
    img, ratio, (dw, dh) = letterbox(_img(*hw), new, auto=auto, scaleup=scaleup, stride=32)
    assert img.shape == (*out, 3) and img.dtype == np.uint8
    assert (round(dw - 0.1), round(dh - 0.1)) == pad  # left/top pad as the image is placed
    assert ratio[0] == ratio[1]
    if pad[1]:
        assert (img[0] == 114).all()


def test_box_conversions_roundtrip():
    x = np.array([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]], np.float32)
    xyxy = xywhn2xyxy(x, 100, 50, padw=10, padh=5)
    np.testing.assert_allclose(xyxy[0], [50, 20, 70, 40])
    np.testing.assert_allclose(xyxy2xywhn(xyxy - [10, 5, 10, 5], 100, 50), x, atol=1e-6)


def test_box_candidates_rule():
    before = np.array([[0, 0, 100, 100]] * 3, float).T  # x1 y1 x2 y2 per column
    after = np.array([[0, 0, 50, 50], [0, 0, 2, 50], [0, 0, 30, 30]], float).T  # ok, too thin, < 10 % area
    assert box_candidates(before, after).tolist() == [True, False, False]


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_shape_and_boxes_inside(seed):
    s = 64
    rng = np.random.default_rng(seed)
    images = [_img(64, 64, 1), _img(32, 64, 2), _img(64, 48, 3), _img(64, 64, 4)]
    labels = [np.array([[i, 0.5, 0.5, 0.6, 0.6], [i, 0.2, 0.3, 0.3, 0.3]], np.float32) for i in range(4)]
    img, out = mosaic4(images, labels, s, rng, Hyp(degrees=5, shear=2))
    assert img.shape == (s, s, 3) and img.dtype == np.uint8
    assert out.shape[1] == 5 and len(out) <= 8
    assert (out[:, 1:] >= 0).all() and (out[:, [1, 3]] <= s).all() and (out[:, [2, 4]] <= s).all()
    assert (out[:, 3] > out[:, 1]).all() and (out[:, 4] > out[:, 2]).all()
    assert set(out[:, 0].tolist()) <= {0, 1, 2, 3}


def test_mosaic_without_warp_places_tiles_around_centre():
    """With every warp parameter at 0 the mosaic is a plain crop of the 2s canvas: a box keeps its size."""
    s = 64
    images = [_img(64, 64, k) for k in range(4)]
    labels = [np.array([[k, 0.5, 0.5, 0.25, 0.25]], np.float32) for k in range(4)]
    hyp = Hyp(translate=0.0, scale=0.0)
    img, out = mosaic4(images, labels, s, np.random.default_rng(0), hyp)
    full = out[(out[:, 3] - out[:, 1] > 15.9) & (out[:, 4] - out[:, 2] > 15.9)]
    assert len(full) >= 1
    np.testing.assert_allclose(full[:, 3] - full[:, 1], 16, atol=1e-4)


def test_perspective_identity_and_filter():
    img = _img(32, 48)
    labels = np.array([[1, 4, 4, 20, 20]], np.float32)
    out, lb = random_perspective(img, labels, np.random.default_rng(0), degrees=0, translate=0, scale=0, shear=0)
    assert np.array_equal(out, img) and np.array_equal(lb, labels)
    out, lb = random_perspective(img, labels, np.random.default_rng(0), degrees=30, translate=0.1, scale=0.3,
                                 shear=5, perspective=0.0005, border=(-8, -8))
    assert out.shape == (16, 32, 3)
    assert (lb[:, [1, 3]] <= 32).all() and (lb[:, [2, 4]] <= 16).all()


def test_hsv_in_place():
    img = _img(16, 16)
    same = img.copy()
    augment_hsv(same, np.random.default_rng(0), 0, 0, 0)
    assert np.array_equal(same, img)
    changed = img.copy()
    augment_hsv(changed, np.random.default_rng(0), 0.015, 0.7, 0.4)
    assert changed.shape == img.shape and changed.dtype == np.uint8 and not np.array_equal(changed, img)


@pytest.mark.parametrize("lr, ud", [(1.0, 0.0), (0.0, 1.0), (0.0, 0.0)])
def test_flips(lr, ud):
    img = _img(8, 12)
    labels = np.array([[0, 0.2, 0.3, 0.1, 0.1]], np.float32)
    out, lb = random_flip(img.copy(), labels.copy(), np.random.default_rng(0), fliplr=lr, flipud=ud)
    want = img[:, ::-1] if lr else img[::-1] if ud else img
    assert np.array_equal(out, want)
    assert lb[0, 1] == pytest.approx(0.8 if lr else 0.2) and lb[0, 2] == pytest.approx(0.7 if ud else 0.3)


def test_mixup_keeps_both_label_sets():
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    img, lb = mixup(a, np.ones((2, 5), np.float32), b, np.zeros((3, 5), np.float32), np.random.default_rng(0))
    assert img.dtype == np.uint8 and lb.shape == (5, 5)
    assert 60 < img.mean() < 140  # Beta(32, 32) stays near one half
