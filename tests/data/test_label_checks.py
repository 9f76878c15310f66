"""Label checks (one warning per bad item, counted), the images->labels rule and the label cache."""
import json
import logging
import os

import numpy as np
import pytest

from yolocompress.data import labels as L
from yolocompress.data.labels import check_item, img2label_path, load_labels


def test_img2label_path_uses_last_images_folder(tmp_path):
    p = tmp_path / "images" / "set" / "images" / "a.b.jpg"
    assert img2label_path(p) == tmp_path / "images" / "set" / "labels" / "a.b.txt"
    assert img2label_path(tmp_path / "x.png") == tmp_path / "x.txt"


# (label text, status, n boxes kept, rows repaired, rows dropped, words in the warning or None)
ROW_CASES = {
    "good": ("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n", "ok", 2, 0, 0, None),
    "field_count": ("0 0.5 0.5 0.2\n1 0.5 0.5 0.2 0.2\n", "ok", 1, 0, 1, "4 fields"),
    "non_numeric": ("0 0.5 abc 0.2 0.2\n0 0.5 nan 0.2 0.2\n1 0.5 0.5 0.2 0.2\n", "ok", 1, 0, 2, "non-numeric"),
    "class_range": ("3 0.5 0.5 0.2 0.2\n-1 0.5 0.5 0.2 0.2\n0.5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n",
                    "ok", 1, 0, 3, "class 3 not in 0..2"),
    "clip_small": ("0 0.9 0.5 0.21 0.2\n", "ok", 1, 1, 0, "clipped"),
    "drop_far": ("0 1.2 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n", "ok", 1, 0, 1, "outside the image"),
    "zero_size": ("0 0.5 0.5 0 0.2\n0 0.5 0.5 0.2 -0.1\n", "background", 0, 0, 2, "zero or negative"),
    "duplicates": ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n", "ok", 2, 0, 1, "duplicate"),
    "rounding_ok": ("0 0.9 0.5 0.2000004 0.2\n", "ok", 1, 0, 0, None),
    "polygon": ("1 0.1 0.1 0.5 0.1 0.5 0.4\n", "ok", 1, 0, 0, None),
    "empty": ("\n\n", "background", 0, 0, 0, None),
}


@pytest.mark.parametrize("case", ROW_CASES)
def test_label_rows(tmp_path, case, write_image, write_label):
    text, status, n, repaired, dropped, words = ROW_CASES[case]
    img = write_image(tmp_path / "images" / "a.jpg")
    lb = write_label(img, text)
    item = check_item(img, nc=3)
    labels, shape, warnings, st = item
    assert (st, len(labels), item.repaired, item.dropped) == (status, n, repaired, dropped)
    assert shape == (64, 64) and labels.dtype == np.float32 and labels.shape == (n, 5)
    if words is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"{lb}: ") and words in warnings[0]
    assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1 + 1e-5)).all()


def test_clipped_box_stays_inside():
    labels, *_ = L.parse_labels("0 0.9 0.5 0.21 0.2\n", nc=1)
    x2 = labels[0, 1] + labels[0, 3] / 2
    assert x2 == pytest.approx(1.0) and labels[0, 3] == pytest.approx(0.205)


def test_polygon_becomes_its_box():
    labels, *_ = L.parse_labels("1 0.1 0.1 0.5 0.1 0.5 0.4\n", nc=3)
    np.testing.assert_allclose(labels[0], [1, 0.3, 0.25, 0.4, 0.3], rtol=1e-6)


def _truncated_jpeg(path, write_image):
    write_image(path, 32, 32)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make, words", [
    (lambda p, w: p.write_bytes(b"this is not a jpeg at all\xff\xd9"), "cannot be decoded"),
    (_truncated_jpeg, "truncated JPEG"),
    (lambda p, w: p.write_bytes(b""), "empty image file"),
    (lambda p, w: w(p, 5, 40), "40x5 px"),
    (lambda p, w: w(p, 1, 1), "1x1 px"),
])
def test_bad_images_are_skipped(tmp_path, make, words, write_image):
    img = tmp_path / "images" / "bad.jpg"
    img.parent.mkdir(parents=True)
    make(img, write_image)
    labels, _, warnings, status = check_item(img, nc=1)
    assert status == "skipped" and len(labels) == 0
    assert len(warnings) == 1 and warnings[0].startswith(f"{img}: ") and words in warnings[0]


def test_non_image_file_is_skipped(tmp_path):
    p = tmp_path / "images" / "clip.mp4"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\x00" * 100)
    _, _, warnings, status = check_item(p, nc=1)
    assert status == "skipped" and "not an image file" in warnings[0]


def test_missing_label_is_background_without_warning(tmp_path, write_image):
    labels, shape, warnings, status = check_item(write_image(tmp_path / "images" / "a.png", 20, 30), nc=1)
    assert status == "background" and warnings == [] and labels.shape == (0, 5) and shape == (20, 30)


def _bad_split(tmp_path, write_image, write_label):
    files = [write_image(tmp_path / "images" / "train" / f"{i}.jpg", seed=i) for i in range(6)]
    write_label(files[0], "0 0.5 0.5 0.2 0.2\n")
    write_label(files[1], "0 0.995 0.5 0.02 0.2\n0 0.2 0.2 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")  # 1 clipped, 1 dup
    write_label(files[2], "7 0.5 0.5 0.2 0.2\n")  # every row dropped -> background
    write_label(files[3], "")  # background
    files[4].write_bytes(b"garbage")  # corrupt
    return files  # files[5] has no label file: background


def test_summary_counts_and_warnings(tmp_path, caplog, write_image, write_label):
    files = _bad_split(tmp_path, write_image, write_label)
    with caplog.at_level(logging.INFO, logger="yolocompress.data"):
        index = load_labels(files, nc=2, prefix="train")
    s = index.summary
    assert (s.images, s.backgrounds, s.skipped, s.repaired, s.dropped) == (5, 3, 1, 1, 2)
    assert files[4] not in index.files and len(index.labels) == len(index.shapes) == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert "train: 5 images, 3 backgrounds, 1 corrupt skipped, 1 rows repaired, 2 rows dropped" in caplog.text


def test_cache_reused_then_invalidated(tmp_path, monkeypatch, write_image, write_label):
    files = _bad_split(tmp_path, write_image, write_label)
    first = load_labels(files, nc=2)
    cache = tmp_path / "labels" / "train.cache"
    data = json.loads(cache.read_text())  # plain JSON, no pickle
    assert data["nc"] == 2 and set(data["items"]) == {str(f) for f in files}

    calls = []
    real = L.check_item
    monkeypatch.setattr(L, "check_item", lambda p, nc: calls.append(p) or real(p, nc))
    second = load_labels(files, nc=2)
    assert calls == [] and second.from_cache == len(files)
    assert all(np.array_equal(a, b) for a, b in zip(first.labels, second.labels))
    assert second.summary == first.summary

    write_label(files[0], "1 0.25 0.25 0.1 0.1\n0 0.5 0.5 0.3 0.3\n")  # size changes with the content
    write_label(files[5], "1 0.5 0.5 0.5 0.5\n")  # a label file appears
    third = load_labels(files, nc=2)
    assert sorted(calls) == sorted([files[0], files[5]]) and third.from_cache == len(files) - 2
    assert len(third.labels[0]) == 2 and third.summary.backgrounds == 2

    calls.clear()
    load_labels(files, nc=3)  # another class count changes which rows are valid
    assert len(calls) == len(files)


def test_cache_write_failure_is_not_fatal(tmp_path, monkeypatch, caplog, write_image, write_label):
    files = _bad_split(tmp_path, write_image, write_label)

    def deny(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(L.os, "replace", deny)
    with caplog.at_level(logging.WARNING, logger="yolocompress.data"):
        index = load_labels(files, nc=2)
    assert index.summary.images == 5
    assert "label cache not written" in caplog.text
    assert not (tmp_path / "labels" / "train.cache").exists()
    assert [p for p in os.listdir(tmp_path / "labels") if p.endswith(".tmp")] == []


def test_read_only_label_folder_gets_no_cache(tmp_path, write_image, write_label):
    files = _bad_split(tmp_path, write_image, write_label)
    labels_dir = tmp_path / "labels"
    labels_dir.chmod(0o555)
    try:
        assert load_labels(files, nc=2).summary.images == 5
        assert not (labels_dir / "train.cache").exists()
    finally:
        labels_dir.chmod(0o755)


def test_cache_disabled_and_corrupt_cache(tmp_path, write_image, write_label):
    files = _bad_split(tmp_path, write_image, write_label)
    load_labels(files, nc=2, cache=False)
    cache = tmp_path / "labels" / "train.cache"
    assert not cache.exists()
    cache.write_text("{not json")
    assert load_labels(files, nc=2).from_cache == 0
    assert json.loads(cache.read_text())["version"] == L.CACHE_VERSION
