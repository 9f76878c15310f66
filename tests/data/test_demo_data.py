"""The digits demo dataset: deterministic for a seed, disjoint handwriting, valid YOLO labels."""
import numpy as np
import pytest

from yolocompress.data import check_item, load_data_config, make_demo_dataset
from yolocompress.data.demo import digit_pools, write_split
from yolocompress.core.errors import DataError

SMALL = dict(n_train=6, n_val=3, imgsz=64)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".txt", ".jpg")}


def test_same_seed_same_files(tmp_path):
    a = make_demo_dataset(tmp_path / "a", seed=5, **SMALL).parent
    b = make_demo_dataset(tmp_path / "b", seed=5, **SMALL).parent
    c = make_demo_dataset(tmp_path / "c", seed=6, **SMALL).parent
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 2 * (6 + 3) and fa == fb
    labels = [k for k in fa if k.suffix == ".txt"]
    assert any(fa[k] != fc[k] for k in labels)


def test_yaml_and_labels_are_valid(tmp_path):
    yaml_path = make_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    cfg = load_data_config(yaml_path)
    assert cfg.names == [str(i) for i in range(10)] and cfg.nc == 10
    assert cfg.root == (tmp_path / "d").resolve() and len(cfg.train) == 6 and len(cfg.val) == 3
    for img in cfg.train + cfg.val:
        labels, shape, warnings, status = check_item(img, nc=10)
        assert status == "ok" and warnings == [] and shape == (64, 64)
        assert 1 <= len(labels) <= 4
        assert (labels[:, 3:].max(1) <= 0.45 + 1e-6).all() and (labels[:, 3:].max(1) >= 0.05).all()


def test_train_and_val_handwriting_are_disjoint():
    train, val = digit_pools(seed=0)
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == 1797 and len(val) == 359
    assert not np.array_equal(digit_pools(1)[1], val)


def test_scenes_draw_only_from_their_pool(tmp_path):
    glyphs = np.zeros((2, 8, 8))
    glyphs[:, 1:7, 2:6] = 16  # a solid block "digit"
    write_split(tmp_path, "val", 4, np.random.default_rng(0), glyphs, np.array([7, 7]), 64, 0.2, 0.4, 3)
    rows = [line for p in (tmp_path / "labels" / "val").glob("*.txt") for line in p.read_text().splitlines()]
    assert rows and {line.split()[0] for line in rows} == {"7"}


def test_refuses_a_foreign_folder_but_replaces_its_own(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        make_demo_dataset(tmp_path, **SMALL)
    out = tmp_path / "demo"
    make_demo_dataset(out, **SMALL)
    make_demo_dataset(out, n_train=2, n_val=1, imgsz=64)
    assert len(list((out / "images" / "train").iterdir())) == 2


@pytest.mark.parametrize("bad", [dict(n_train=0), dict(imgsz=16), dict(obj_min=0.5, obj_max=0.2),
                                 dict(max_objects=0)])
def test_bad_arguments(tmp_path, bad):
    with pytest.raises(DataError, match="demo dataset"):
        make_demo_dataset(tmp_path / "x", **{**SMALL, **bad})
