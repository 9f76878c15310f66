"""Dataset yaml parsing: names forms, split forms, path resolution and one-line errors."""
import pytest

from yolocompress.data import load_data_config
from yolocompress.core.errors import DataError, YoloCompressError


def _yaml(tmp_path, text, name="data.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("names", ["[a, b, c]", "{0: a, 1: b, 2: c}", "\n  0: a\n  1: b\n  2: c", "['a','b','c']\nnc: 3"])
def test_names_list_or_dict(tmp_path, make_split, names):
    make_split(tmp_path, "train", 2)
    make_split(tmp_path, "val", 1)
    cfg = load_data_config(_yaml(tmp_path, f"train: images/train\nval: images/val\nnames: {names}\n"))
    assert cfg.names == ["a", "b", "c"] and cfg.nc == 3
    assert cfg.root == tmp_path.resolve()
    assert len(cfg.train) == 2 and len(cfg.val) == 1 and cfg.test == []


def test_folder_is_searched_recursively(tmp_path, make_split):
    make_split(tmp_path / "d", "train/sub", 3, ext="png")
    make_split(tmp_path / "d", "train", 2)
    (tmp_path / "d" / "images" / "train" / "notes.md").write_text("not an image")
    cfg = load_data_config(_yaml(tmp_path, "path: d\ntrain: images/train\nval: images/train\nnames: [x]\n"))
    assert len(cfg.train) == 5
    assert all(p.suffix in (".jpg", ".png") and p.is_absolute() for p in cfg.train)


def test_txt_list_and_list_of_splits(tmp_path, make_split):
    files = make_split(tmp_path, "train", 3)
    make_split(tmp_path, "extra", 2)
    lines = [str(files[0]), "images/train/001.jpg", "./images/train/002.jpg", "", "# a comment"]
    (tmp_path / "train.txt").write_text("\n".join(lines))
    cfg = load_data_config(_yaml(tmp_path, "train: [train.txt, images/extra]\nval: train.txt\ntest: images/extra\n"
                                           "names: [a, b, c]\n"))
    assert [p.name for p in cfg.train] == ["000.jpg", "001.jpg", "002.jpg", "000.jpg", "001.jpg"]
    assert all(p.exists() for p in cfg.train)
    assert len(cfg.val) == 3 and len(cfg.test) == 2


def test_relative_path_falls_back_to_cwd(tmp_path, make_split, monkeypatch):
    """`path: ../shared/x` in a yaml kept elsewhere means: relative to where the user runs (as YOLOv5)."""
    make_split(tmp_path / "shared" / "x", "train", 1)
    make_split(tmp_path / "shared" / "x", "val", 1)
    cfg_dir = tmp_path / "shared" / "x"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_data_config(_yaml(cfg_dir, "path: ../shared/x\ntrain: images/train\nval: images/val\nnames: [a]\n"))
    assert cfg.root == cfg_dir.resolve()
    assert len(cfg.train) == 1


@pytest.mark.parametrize("text, needle", [
    ("train: images/train\nval: images/nope\nnames: [a]\n", "val path 'images/nope' not found"),
    ("train: images/train\nval: images/empty\nnames: [a]\n", "val has no images"),
    ("train: images/train\nval: images/train\nnames: [a, b]\nnc: 3\n", "nc is 3 but 'names' has 2"),
    ("train: images/train\nval: images/train\nnc: 1\n", "missing 'names'"),
    ("train: images/train\nnames: [a]\n", "missing 'val'"),
    ("train: images/train\nval: images/train\nnames: {1: a, 2: b}\n", "keys must be the class ids"),
    ("train: [images/train\n", "not valid YAML"),
    ("- just a list\n", "expected a mapping"),
])
def test_errors_are_one_line(tmp_path, make_split, text, needle):
    make_split(tmp_path, "train", 1)
    (tmp_path / "images" / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_data_config(_yaml(tmp_path, text))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and str(tmp_path) in msg


def test_missing_yaml(tmp_path):
    with pytest.raises(YoloCompressError, match="dataset yaml not found"):
        load_data_config(tmp_path / "nope.yaml")


def test_download_key_says_nothing_is_downloaded_and_where_to_put_the_data(tmp_path):
    text = "path: ../datasets/coco128\ntrain: images/train2017\nval: images/train2017\nnames: [a]\n" \
           "download: https://example.invalid/coco128.zip\n"
    with pytest.raises(DataError, match=r"train path 'images/train2017' not found .*'download:' entry, but "
                                        r"yolocompress downloads nothing: .*place its train images in "
                                        r".*coco128/images/train2017 with their YOLO label files in "
                                        r".*coco128/labels/train2017") as e:
        load_data_config(_yaml(tmp_path, text))
    assert "\n" not in str(e.value)
