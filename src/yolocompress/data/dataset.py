"""Dataset yaml parsing, the YOLO detection Dataset (mosaic / letterbox / rect batches) and its seeded DataLoader.

The yaml is the one users already write for YOLOv5/YOLOv7 (`path`, `train`, `val`, `test`, `names`, `nc`).
Items follow the official `LoadImagesAndLabels`: same resize, mosaic, letterbox and rect batch shapes, so
that mAP measured here compares with the official figures.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..core.hyp import Hyp
from ..core.errors import DataError
from .augment import (augment_hsv, letterbox, mixup, mosaic4, random_flip, random_perspective, xywhn2xyxy,
                      xyxy2xywhn)
from .image_cache import ImageCache
from .labels import IMG_FORMATS, LOGGER, img2label_path, load_labels, read_image, refuse_unlabelled


@dataclass
class DataConfig:
    """A parsed dataset yaml: absolute root, image files per split, class names."""
    root: Path
    train: list[Path]
    val: list[Path]
    test: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    nc: int = 0
    yaml_path: Path | None = None
    label_nc: int = 0  # the label files' class count when their classes are merged into one (--single-cls)

    @property
    def single_cls(self) -> bool:
        return self.label_nc > 0

    @property
    def labels_nc(self) -> int:
        """The class count label files are checked against."""
        return self.label_nc or self.nc

    def single_class(self) -> "DataConfig":
        """The same images with every class as one, 'item' (the official --single-cls)."""
        return dataclasses.replace(self, names=["item"], nc=1, label_nc=self.labels_nc)


def _resolve_root(yaml_path: Path, value) -> Path:
    """`path` relative to the yaml's folder, else to the current directory (as YOLOv5 accepts `../datasets/x`)."""
    if value is None or str(value).strip() == "":
        return yaml_path.parent.resolve()
    p = Path(str(value)).expanduser()
    if p.is_absolute():
        return p
    for base in (yaml_path.parent, Path.cwd()):
        if (base / p).exists():
            return (base / p).resolve()
    return (yaml_path.parent / p).resolve()


def _is_image(p: Path) -> bool:
    return p.suffix[1:].lower() in IMG_FORMATS


def _read_list(txt: Path, root: Path) -> list[Path]:
    """Image paths listed one per line; relative ones against `path`, else against the list's folder."""
    out = []
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry).expanduser()
        if not p.is_absolute():
            p = next((b / p for b in (root, txt.parent) if (b / p).exists()), root / p)
        out.append(p)
    return out


def _download_hint(key: str, p: Path, download) -> str:
    if not download:
        return f"fix '{key}' or 'path' in the dataset yaml"
    return (f"the yaml has a 'download:' entry, but yolocompress downloads nothing: get the dataset yourself and "
            f"place its {key} images in {p} with their YOLO label files in {img2label_path(p / 'x.jpg').parent}")


def _split_files(key: str, value, root: Path, source: Path, download=None) -> list[Path]:
    entries = value if isinstance(value, list) else [value]
    files = []
    for e in entries:
        if not isinstance(e, (str, Path)) or not str(e).strip():
            raise DataError(f"{source}: '{key}' must be a folder, a .txt list of images or a list of those, "
                            f"got {e!r}")
        p = Path(str(e)).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if _is_image(q) and q.is_file())
        elif p.is_file():
            files += [p] if _is_image(p) else _read_list(p, root)
        else:
            raise DataError(f"{source}: {key} path '{e}' not found (looked at {p}); {_download_hint(key, p, download)}")
    if not files:
        raise DataError(f"{source}: {key} has no images in {', '.join(map(str, entries))} under {root}; "
                        f"expected files ending in {', '.join('.' + x for x in IMG_FORMATS[:5])}, ...")
    return files


def _names(data: dict, source: Path) -> list[str]:
    names = data.get("names")
    if names is None:
        raise DataError(f"{source}: missing 'names'; add the class names, e.g. names: [cat, dog] "
                        f"or names: {{0: cat, 1: dog}}")
    if isinstance(names, dict):
        try:
            by_id = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            by_id = {}
        if sorted(by_id) != list(range(len(names))):
            raise DataError(f"{source}: 'names' keys must be the class ids 0..{len(names) - 1}, "
                            f"got {list(names)}")
        names = [by_id[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: 'names' must be a non-empty list or an {{id: name}} mapping")
    nc = data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc != len(names)):
        raise DataError(f"{source}: nc is {nc!r} but 'names' has {len(names)} entries; make them agree "
                        f"(or drop nc)")
    return [str(n) for n in names]


def load_data_config(path: str | Path) -> DataConfig:
    """Read a YOLOv5/YOLOv7 dataset yaml and resolve every split to its list of image files."""
    if not str(path or "").strip():
        raise DataError("--data DATA.yaml is required: a dataset yaml with path/train/val/names "
                        "(`yolocompress demo-data OUT` writes an example)")
    src = Path(path).expanduser()
    if not src.is_file():
        raise DataError(f"dataset yaml not found: {src}; pass a data.yaml with path/train/val/names "
                        f"(`yolocompress demo-data OUT` writes an example)")
    try:
        data = yaml.safe_load(src.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{src}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{src}: expected a mapping with path/train/val/names")
    names = _names(data, src)
    root = _resolve_root(src, data.get("path"))
    splits = {}
    for key in ("train", "val", "test"):
        if data.get(key) in (None, "", []):
            if key != "test":
                raise DataError(f"{src}: missing '{key}'; give a folder of images or a .txt list of them")
            splits[key] = []
        else:
            splits[key] = _split_files(key, data[key], root, src, data.get("download"))
    return DataConfig(root, splits["train"], splits["val"], splits["test"], names, len(names), src.resolve())


def rect_batch_shapes(shapes_hw: np.ndarray, batch_size: int, img_size: int, stride: int, pad: float):
    """Order images by aspect ratio and give each batch the smallest (h, w) multiple of `stride` that fits it.

    Returns (order, batch index per sorted image, batch shapes `[nb, 2]` (h, w)), as YOLOv5's rect training.
    """
    ar = shapes_hw[:, 0] / shapes_hw[:, 1]  # h / w
    order = ar.argsort(kind="stable")
    ar = ar[order]
    bi = np.arange(len(ar)) // batch_size
    nb = int(bi[-1]) + 1
    shapes = np.ones((nb, 2))
    for i in range(nb):
        lo, hi = ar[bi == i].min(), ar[bi == i].max()
        if hi < 1:
            shapes[i] = hi, 1
        elif lo > 1:
            shapes[i] = 1, 1 / lo
    return order, bi, np.ceil(shapes * img_size / stride + pad).astype(int) * stride


class YoloDataset(Dataset):
    """YOLO-format images + labels -> (image uint8 `[3, H, W]` RGB, targets `[n, 6]`, path, shapes).

    Targets are `(0, class, xc, yc, w, h)` normalised to the output image (column 0 is set by `collate_fn`);
    `shapes` is `((h0, w0), ((h / h0, w / w0), (padw, padh)))` to map predictions back to the original
    image, or None for a mosaic.
    """

    def __init__(self, files, img_size: int = 640, batch_size: int = 16, augment: bool = False, hyp: Hyp | None = None,
                 rect: bool = False, stride: int = 32, pad: float = 0.0, nc: int = 80, prefix: str = "",
                 *, cache: bool = True, seed: int = 0, single_cls: bool = False, cache_images: str | None = None,
                 require_labels: bool = False):
        if not files:
            raise DataError(f"{prefix or 'dataset'}: no image files given")
        self.img_size, self.augment, self.hyp = img_size, augment, hyp or Hyp()
        self.rect, self.stride, self.prefix = rect, stride, prefix
        self.mosaic = augment and not rect  # a mosaic would break the rect batch shapes
        index = load_labels(files, nc, prefix, cache=cache)
        if not index.files:
            raise DataError(f"{prefix or 'dataset'}: none of the {len(files)} images is usable (see the warnings "
                            f"above); fix or replace the image files")
        if require_labels:
            refuse_unlabelled(index, prefix)
        self.summary = index.summary
        self.files = [str(f) for f in index.files]
        self.labels = index.labels
        if single_cls:  # checked against the data's own classes above, then merged into class 0
            self.labels = [np.concatenate((np.zeros_like(lb[:, :1]), lb[:, 1:]), 1) for lb in self.labels]
        self.shapes = np.array(index.shapes, dtype=np.float64).reshape(-1, 2)  # original (h, w)
        n = len(self.files)
        self.batch = np.arange(n) // batch_size
        self.batch_shapes = None
        if rect:
            order, self.batch, self.batch_shapes = rect_batch_shapes(self.shapes, batch_size, img_size, stride, pad)
            self.files = [self.files[i] for i in order]
            self.labels = [self.labels[i] for i in order]
            self.shapes = self.shapes[order]
        self.seed = self.stream_seed = seed  # items draw from (stream_seed, index); see set_epoch
        self.rng = np.random.default_rng(seed)
        self.image_cache = None  # set after it is filled: filling it calls load_image
        if cache_images:
            self.image_cache = ImageCache(self.files, cache_images, self.load_image, prefix)

    def set_epoch(self, epoch: int, seed: int | None = None) -> None:
        """Draw this epoch's augmentation (as `DistributedSampler.set_epoch` draws its order): call it before each
        pass over the loader; without it, every pass augments each image the same way."""
        self.stream_seed = int(np.random.SeedSequence([self.seed if seed is None else seed, epoch]).generate_state(1)[0])

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, i: int):
        """BGR image resized so its long side is `img_size`; returns (img, (h0, w0), (h, w))."""
        cached = self.image_cache.resized(i) if self.image_cache is not None else None
        if cached is not None:
            return cached
        img = self.image_cache.decoded(i) if self.image_cache is not None else None
        img = read_image(self.files[i]) if img is None else img
        if img is None:
            raise DataError(f"{self.files[i]}: image can no longer be read (it passed the check when the dataset "
                            f"was loaded); restore the file")
        h0, w0 = img.shape[:2]
        r = self.img_size / max(h0, w0)
        if r != 1:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            size = (math.ceil(w0 * r - 1e-6), math.ceil(h0 * r - 1e-6))
            img = cv2.resize(img, size, interpolation=interp)
        return img, (h0, w0), img.shape[:2]

    def load_mosaic(self, index: int):
        """Mosaic of this image and three random others; labels come back as xyxy pixels."""
        idx = [index] + [int(i) for i in self.rng.integers(0, len(self), 3)]
        self.rng.shuffle(idx)
        images = [self.load_image(i)[0] for i in idx]
        return mosaic4(images, [self.labels[i] for i in idx], self.img_size, self.rng, self.hyp)

    def __getitem__(self, index: int):
        # each item's augmentation follows from (stream seed, index) alone: the same in any worker process, so
        # the number of loader workers (which follows the machine's core count) never changes a run
        self.rng = np.random.default_rng([self.stream_seed, index])
        hyp, rng = self.hyp, self.rng
        shapes = None
        if self.mosaic and rng.random() < hyp.mosaic:
            img, labels = self.load_mosaic(index)
            if rng.random() < hyp.mixup:
                img, labels = mixup(img, labels, *self.load_mosaic(int(rng.integers(len(self)))), rng)
        else:
            img, (h0, w0), (h, w) = self.load_image(index)
            shape = tuple(self.batch_shapes[self.batch[index]]) if self.rect else self.img_size
            img, ratio, pad = letterbox(img, shape, auto=False, scaleup=self.augment)
            shapes = (h0, w0), ((h / h0, w / w0), pad)
            labels = self.labels[index].copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, pad[0], pad[1])
            if self.augment:
                img, labels = random_perspective(img, labels, rng, degrees=hyp.degrees, translate=hyp.translate,
                                                 scale=hyp.scale, shear=hyp.shear, perspective=hyp.perspective)
        labels = np.asarray(labels, np.float32).reshape(-1, 5)
        if len(labels):
            labels[:, 1:] = xyxy2xywhn(labels[:, 1:], w=img.shape[1], h=img.shape[0], clip=True, eps=1e-3)
        if self.augment:
            augment_hsv(img, rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
            img, labels = random_flip(img, labels, rng, fliplr=hyp.fliplr, flipud=hyp.flipud)
        targets = torch.zeros((len(labels), 6))
        targets[:, 1:] = torch.from_numpy(labels)
        img = np.ascontiguousarray(img.transpose(2, 0, 1)[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(img), targets, self.files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """Stack images and concatenate targets, writing each target's image index into column 0."""
        imgs, targets, paths, shapes = zip(*batch)
        for i, t in enumerate(targets):
            t[:, 0] = i
        return torch.stack(imgs, 0), torch.cat(targets, 0), paths, shapes


def seed_worker(worker_id: int) -> None:
    """Seed each loader worker's global streams from the loader's seeded generator (the dataset itself draws
    from per-item streams, see `YoloDataset.__getitem__`; this covers code that uses the global ones)."""
    seed = torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)


def create_dataloader(files, img_size: int, batch_size: int, stride: int, hyp: Hyp | None = None,
                      augment: bool = False, rect: bool = False, pad: float = 0.0, workers: int = 8,
                      shuffle: bool = False, seed: int = 0, nc: int = 80, prefix: str = "",
                      distributed: bool = False, cache: bool = True, single_cls: bool = False,
                      cache_images: str | None = None, require_labels: bool = False):
    """A YoloDataset and its DataLoader; the same seed gives the same batches (order and augmentation).

    `cache=False` never writes the label cache (for data on shared or read-only storage); `cache_images`
    ('ram' or 'disk') decodes each image once; `require_labels` refuses a split without any label file.
    """
    if rect and shuffle:
        LOGGER.warning(f"{prefix or 'dataset'}: rect batches cannot be shuffled; shuffle turned off")
        shuffle = False
    rank = torch.distributed.get_rank() if distributed and torch.distributed.is_initialized() else 0
    dataset = YoloDataset(files, img_size, batch_size, augment, hyp, rect, stride, pad, nc, prefix,
                          cache=cache, seed=seed + rank, single_cls=single_cls, cache_images=cache_images,
                          require_labels=require_labels)
    batch_size = min(batch_size, len(dataset))
    nw = max(0, min(os.cpu_count() or 1, batch_size if batch_size > 1 else 0, workers))
    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if distributed else None
    generator = torch.Generator()
    generator.manual_seed(seed + rank)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                        num_workers=nw, pin_memory=torch.cuda.is_available(), collate_fn=YoloDataset.collate_fn,
                        worker_init_fn=seed_worker, generator=generator)  # workers restart each epoch: per-epoch seeding makes resume exact
    return loader, dataset
