"""--cache ram|disk: every item is the same as without a cache; disk writes <image>.npy atomically with an
ordinary file mode and refuses a read-only folder; --single-cls merges classes after checking them."""
import os
import stat

import numpy as np
import pytest
import torch

from yolocompress.core.errors import DataError
from yolocompress.core.hyp import Hyp
from yolocompress.data import YoloDataset
from yolocompress.data.image_cache import npy_path

AUG = Hyp(mosaic=0.5)


def _items(ds, n):
    return [ds[i] for i in range(n)]


@pytest.mark.parametrize("mode", ["ram", "disk"])
def test_cached_items_equal_uncached_ones(tmp_path, make_split, mode):
    files = make_split(tmp_path, "train", 4, h=48, w=80)
    plain = YoloDataset(files, img_size=64, batch_size=2, augment=True, hyp=AUG, nc=3, seed=5)
    cached = YoloDataset(files, img_size=64, batch_size=2, augment=True, hyp=AUG, nc=3, seed=5, cache_images=mode)
    for (a, ta, _, sa), (b, tb, _, sb) in zip(_items(plain, 4), _items(cached, 4)):
        assert torch.equal(a, b) and torch.equal(ta, tb) and sa == sb
    npys = [npy_path(f) for f in files]
    assert all(p.is_file() for p in npys) == (mode == "disk")
    if mode == "disk":
        mask = os.umask(0)
        os.umask(mask)
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask for p in npys)
        assert not list(files[0].parent.glob(".*.tmp"))  # written atomically: no leftovers
        assert np.load(npys[0]).shape == (48, 80, 3)


def test_disk_cache_decodes_only_new_or_changed_images(tmp_path, make_split, caplog):
    files = make_split(tmp_path, "train", 3)
    YoloDataset(files, img_size=64, nc=3, cache_images="disk")
    with caplog.at_level("INFO", logger="yolocompress.data"):
        YoloDataset(files, img_size=64, nc=3, cache_images="disk")
    assert "(0 written, 3 up to date)" in caplog.text


def test_disk_cache_refuses_a_read_only_folder_in_one_line(tmp_path, make_split):
    files = make_split(tmp_path, "train", 2)
    folder = files[0].parent
    folder.chmod(0o555)
    try:
        with pytest.raises(DataError, match=r"--cache disk writes <image>.npy beside each image, but .*images/train "
                                            r"is read-only; use --cache ram") as e:
            YoloDataset(files, img_size=64, nc=3, cache_images="disk")
        assert "\n" not in str(e.value)
    finally:
        folder.chmod(0o755)


def test_single_cls_checks_classes_then_merges_them(tmp_path, make_split):
    files = make_split(tmp_path, "train", 4)  # classes 0, 1, 2, 0
    ds = YoloDataset(files, img_size=64, nc=3, single_cls=True)
    assert sum(len(lb) for lb in ds.labels) == 4 and all((lb[:, 0] == 0).all() for lb in ds.labels)
