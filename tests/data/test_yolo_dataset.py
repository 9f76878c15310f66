"""YoloDataset items (letterbox, mosaic, rect shapes), collate, and seeded DataLoader reproducibility."""
import numpy as np
import pytest
import torch

from yolocompress.data import YoloDataset, create_dataloader
from yolocompress.data.dataset import rect_batch_shapes
from yolocompress.core.hyp import Hyp
from yolocompress.core.errors import DataError

NO_AUG = Hyp(hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0, mosaic=0, translate=0, scale=0)


def test_item_is_rgb_chw_uint8_with_normalised_targets(tmp_path, write_image, write_label):
    p = write_image(tmp_path / "images" / "a.png", 64, 64, color=(10, 20, 250))  # BGR: red
    write_label(p, "2 0.25 0.5 0.2 0.4\n")
    ds = YoloDataset([p], img_size=64, batch_size=1, nc=3)
    img, targets, path, shapes = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
    assert img[0].float().mean() > 240 and img[2].float().mean() < 20  # channel 0 is red
    assert targets.shape == (1, 6) and path == str(p)
    torch.testing.assert_close(targets[0], torch.tensor([0, 2, 0.25, 0.5, 0.2, 0.4]))
    assert shapes == ((64, 64), ((1.0, 1.0), (0.0, 0.0)))


def test_letterbox_item_maps_boxes_and_returns_shapes(tmp_path, write_image, write_label):
    p = write_image(tmp_path / "images" / "wide.png", 48, 96)  # h=48, w=96
    write_label(p, "0 0.5 0.5 0.5 1.0\n")
    ds = YoloDataset([p], img_size=64, batch_size=1, nc=1)
    img, targets, _, shapes = ds[0]
    assert img.shape == (3, 64, 64)
    assert shapes == ((48, 96), ((32 / 48, 64 / 96), (0.0, 16.0)))
    torch.testing.assert_close(targets[0, 2:], torch.tensor([0.5, 0.5, 0.5, 0.5]))
    assert (img[:, :16] == 114).all() and (img[:, -16:] == 114).all()  # grey bands top and bottom


@pytest.mark.parametrize("hw, want", [
    ((192, 192), [224, 224]),  # 192/32 + 0.5 -> 7 strides
    ((96, 192), [128, 224]),  # wide batch: h = ceil(0.5 * 6 + 0.5) * 32
    ((192, 96), [224, 128]),
])
def test_rect_batch_shapes(hw, want):
    _, _, shapes = rect_batch_shapes(np.array([hw] * 4, float), batch_size=2, img_size=192, stride=32, pad=0.5)
    assert shapes.tolist() == [want, want]


def test_rect_dataset_sorts_by_aspect_and_pads(tmp_path, write_image, write_label):
    files = []
    for i, (h, w) in enumerate([(96, 192), (192, 192), (192, 96), (100, 190)]):
        files.append(write_image(tmp_path / "images" / f"{i}.jpg", h, w, seed=i))
        write_label(files[-1], "0 0.5 0.5 0.5 0.5\n")
    ds = YoloDataset(files, img_size=192, batch_size=2, rect=True, stride=32, pad=0.5, nc=1)
    ar = ds.shapes[:, 0] / ds.shapes[:, 1]
    assert (np.diff(ar) >= 0).all()
    assert ds.batch_shapes.tolist() == [[128, 224], [224, 224]]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=YoloDataset.collate_fn)
    assert [tuple(b[0].shape[2:]) for b in loader] == [(128, 224), (224, 224)]


def test_collate_sets_image_index(tmp_path, make_split):
    ds = YoloDataset(make_split(tmp_path, n=3), img_size=64, batch_size=3, nc=3)
    imgs, targets, paths, shapes = YoloDataset.collate_fn([ds[i] for i in range(3)])
    assert imgs.shape == (3, 3, 64, 64) and targets.shape == (3, 6)
    assert targets[:, 0].tolist() == [0, 1, 2] and targets[:, 1].tolist() == [0, 1, 2]
    assert len(paths) == len(shapes) == 3


def test_mosaic_items_keep_boxes_inside(tmp_path, make_split):
    ds = YoloDataset(make_split(tmp_path, n=6), img_size=64, batch_size=2, augment=True,
                     hyp=Hyp(mixup=0.5, degrees=10, flipud=0.5), nc=3, seed=1)
    for i in range(len(ds)):
        img, targets, _, shapes = ds[i]
        assert img.shape == (3, 64, 64) and shapes is None
        assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
        assert ((targets[:, 2:4] - targets[:, 4:] / 2) >= -1e-6).all()
        assert ((targets[:, 2:4] + targets[:, 4:] / 2) <= 1 + 1e-6).all()


def test_augment_with_every_gain_off_equals_plain_letterbox(tmp_path, make_split):
    files = make_split(tmp_path, n=2)
    plain = YoloDataset(files, img_size=64, batch_size=2, nc=3)[1]
    aug = YoloDataset(files, img_size=64, batch_size=2, augment=True, hyp=NO_AUG, nc=3)[1]
    assert torch.equal(plain[0], aug[0]) and torch.allclose(plain[1], aug[1])


def test_all_images_unusable_is_an_error(tmp_path):
    bad = tmp_path / "images" / "a.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 images is usable"):
        YoloDataset([bad], img_size=64, nc=1, prefix="val")


def _batches(files, seed, workers):
    loader, ds = create_dataloader(files, 64, 2, 32, Hyp(), augment=True, workers=workers, shuffle=True,
                                   seed=seed, nc=3, prefix="train")
    out = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        out += [(b[0].clone(), b[1].clone(), b[2]) for b in loader]
    return out


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) and x[2] == y[2] for x, y in zip(a, b))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_is_reproducible(tmp_path, make_split, workers):
    files = make_split(tmp_path, n=6)
    first = _batches(files, 3, workers)
    assert len(first) == 6
    assert _same(first, _batches(files, 3, workers))
    assert not _same(first, _batches(files, 4, workers))
    assert not _same(first[:3], first[3:])  # the second epoch is augmented differently


def test_rect_turns_shuffle_off(tmp_path, make_split):
    loader, ds = create_dataloader(make_split(tmp_path, n=3), 64, 4, 32, None, rect=True, pad=0.5, workers=0,
                                   shuffle=True, nc=3)
    assert isinstance(loader.sampler, torch.utils.data.SequentialSampler)
    assert loader.batch_size == 3 and ds.batch_shapes.tolist() == [[96, 96]]


def test_distributed_uses_a_distributed_sampler(tmp_path, make_split):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader, _ = create_dataloader(make_split(tmp_path, n=4), 64, 2, 32, None, workers=0, shuffle=True, seed=1,
                                      nc=3, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert sum(len(b[0]) for b in loader) == 4
    finally:
        dist.destroy_process_group()


def test_batches_do_not_depend_on_the_worker_count(tmp_path, make_split):
    """Workers follow the machine's cores (min(cpus, batch, --workers)): a run must not change with them."""
    files = make_split(tmp_path, n=6)
    assert _same(_batches(files, 3, 0), _batches(files, 3, 2))
