"""The everyday training flags as the official trainers define them: --patience (0 = never stop early),
--optimizer, --rect, --multi-scale, --single-cls, --save-period, --cache, --allow-background."""
import csv
import logging
import stat
from pathlib import Path

import pytest
import torch

from yolocompress.core.errors import CheckpointError, ConfigError, DataError
from yolocompress.core.hyp import Hyp
from yolocompress.engine.api import find_resume_checkpoint, train
from yolocompress.engine.callbacks import Callback
from yolocompress.engine.options import TrainOptions
from yolocompress.engine.trainer import build_optimizer
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import read_checkpoint

from ..conftest import tiny_config


def _opts(data, project, **kw):
    base = dict(data=str(data), epochs=2, batch_size=4, imgsz=64, device="cpu", workers=0, project=str(project),
                name="exp", nbs=4, seed=3)
    return TrainOptions(**{**base, **kw})


def _epochs(save_dir):
    with open(Path(save_dir) / "results.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


class Spy(Callback):
    """Keeps the trainer and the shape of every training batch."""

    def __init__(self):
        self.trainer, self.shapes = None, []

    def on_train_start(self, trainer):
        self.trainer = trainer

    def loss_terms(self, trainer, out):
        self.shapes.append(tuple(out.imgs.shape[2:]))
        return {}


class NeverBetter(Callback):
    """After the first epoch, no validation counts as better (fitness can only tie at 0 on a tiny model)."""

    def on_epoch_end(self, trainer, epoch):
        if epoch == 0:
            trainer.meta["best_epoch"], trainer.best_fitness = 0, 1.0
        return {}


def test_patience_0_never_stops_early(demo_data, tmp_path):
    res = train(_opts(demo_data, tmp_path, epochs=3, patience=0), cfg=tiny_config())
    assert res.epochs_done == 3 and _epochs(res.save_dir) == [0, 1, 2]


def test_patience_stops_with_a_message_and_the_run_counts_as_finished(demo_data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        res = train(_opts(demo_data, tmp_path, epochs=4, patience=1), cfg=tiny_config(),
                    callbacks_factory=lambda m, d: [NeverBetter()])
    assert _epochs(res.save_dir) == [0, 1]
    assert "stopping early: no better validation in the last 1 epochs" in caplog.text
    assert read_checkpoint(res.last)["meta"]["finished"] is True
    with pytest.raises(CheckpointError, match="no interrupted train run"):  # not picked by --resume alone
        find_resume_checkpoint(True, str(tmp_path))


def test_negative_patience_is_refused():
    with pytest.raises(ConfigError, match="--patience must be >= 0"):
        TrainOptions(patience=-1).check()


@pytest.mark.parametrize("name, cls", [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam),
                                       ("AdamW", torch.optim.AdamW)])
def test_optimizer_choice_keeps_the_official_groups(name, cls):
    m = Model(tiny_config())
    opt = build_optimizer(m, Hyp(weight_decay=0.001, momentum=0.9), optimizer=name)
    assert type(opt) is cls
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 0.001, 0.0]  # decay on conv weights only
    decayed = {id(p) for p in opt.param_groups[1]["params"]}
    convs = [x.weight for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert decayed == {id(p) for p in convs}
    if name == "SGD":
        assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    else:
        assert opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_adamw_trains_and_resumes(demo_data, tmp_path):
    res = train(_opts(demo_data, tmp_path, epochs=1, optimizer="AdamW"), cfg=tiny_config())
    state = read_checkpoint(res.last)
    assert state["meta"]["opt"]["optimizer"] == "AdamW"
    assert "betas" in state["train_state"]["optimizer"]["param_groups"][0]


def test_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="--optimizer must be one of SGD, Adam, AdamW"):
        TrainOptions(optimizer="RMSProp").check()


def test_rect_training_uses_ordered_rect_batches(demo_data, tmp_path):
    spy = Spy()
    train(_opts(demo_data, tmp_path, epochs=1, rect=True), cfg=tiny_config(), callbacks_factory=lambda m, d: [spy])
    t = spy.trainer
    assert t.train_set.rect and not t.train_set.mosaic and t.train_set.batch_shapes is not None
    assert isinstance(t.train_loader.sampler, torch.utils.data.SequentialSampler)  # no shuffle, as official


def test_multi_scale_varies_the_batch_size_in_stride_multiples(demo_data, tmp_path):
    spy = Spy()
    train(_opts(demo_data, tmp_path, epochs=3, batch_size=2, nbs=2, multi_scale=True), cfg=tiny_config(),
          callbacks_factory=lambda m, d: [spy])
    sides = {s for shape in spy.shapes for s in shape}
    assert len(sides) > 1 and all(s % 32 == 0 and 32 <= s <= 96 for s in sides), sides


def test_single_cls_trains_one_class_named_item(demo_data, tmp_path):
    spy = Spy()
    res = train(_opts(demo_data, tmp_path, epochs=1, single_cls=True), cfg=tiny_config(),
                callbacks_factory=lambda m, d: [spy])
    ck = read_checkpoint(res.best)
    assert ck["names"] == ["item"] and ck["yaml"]["nc"] == 1
    labels = spy.trainer.train_set.labels
    assert sum(len(lb) for lb in labels) > 0 and all((lb[:, 0] == 0).all() for lb in labels)
    assert spy.trainer.validator.dataset.labels and all((lb[:, 0] == 0).all()
                                                       for lb in spy.trainer.validator.dataset.labels)


def test_save_period_writes_epoch_checkpoints(demo_data, tmp_path):
    res = train(_opts(demo_data, tmp_path, epochs=2, save_period=1), cfg=tiny_config())
    for n in (1, 2):
        assert read_checkpoint(res.save_dir / "weights" / f"epoch{n}.pt")["meta"]["epoch"] == n - 1
    res = train(_opts(demo_data, tmp_path, epochs=1, name="none"), cfg=tiny_config())
    assert not list((res.save_dir / "weights").glob("epoch*.pt"))


def test_weights_are_written_with_an_ordinary_file_mode(demo_data, tmp_path):
    import os
    res = train(_opts(demo_data, tmp_path, epochs=1), cfg=tiny_config())
    mask = os.umask(0)
    os.umask(mask)
    for p in (res.best, res.last):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask, oct(p.stat().st_mode)


def test_training_on_images_without_labels_is_refused_unless_asked(tmp_path, demo_data):
    import shutil
    import yaml
    root = tmp_path / "nolabels"
    shutil.copytree(Path(demo_data).parent / "images", root / "images")
    cfg = yaml.safe_load(Path(demo_data).read_text())
    data = tmp_path / "nolabels.yaml"
    data.write_text(yaml.safe_dump({**cfg, "path": str(root)}))
    with pytest.raises(DataError, match=r"train: no labels found for 12 images: .*images/train/.*; put labels in "
                                        r".*nolabels/labels/train \(YOLO format\) or pass --allow-background") as e:
        train(_opts(data, tmp_path, epochs=1), cfg=tiny_config())
    assert "\n" not in str(e.value)
    res = train(_opts(data, tmp_path, epochs=1, allow_background=True), cfg=tiny_config())
    assert res.last.is_file()
