"""Training from an official checkpoint on other classes (`--weights`, `--cfg --weights`) and `--freeze`.

The source is an official-shaped yolov5n checkpoint for 3 classes; the demo data has 10.
"""
import copy
import logging

import pytest
import torch

from yolocompress.core.errors import CheckpointError, ConfigError
from yolocompress.engine.api import ClassCountError, model_for_data, train
from yolocompress.engine.callbacks import Callback
from yolocompress.engine.ema import unwrap
from yolocompress.engine.options import TrainOptions
from yolocompress.data.dataset import load_data_config
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import read_checkpoint

from ..conftest import tiny_config, write_yaml
from ..models.official_fakes import write_official_checkpoint


class Snapshots(Callback):
    """The trainer's model parameters before the first step and after the last."""

    def on_train_start(self, trainer):
        self.model = unwrap(trainer.model)
        self.before = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.frozen = {k for k, p in self.model.named_parameters() if not p.requires_grad}

    def on_train_end(self, trainer):
        self.after = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        self.optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        self.param_ids = {k: id(p) for k, p in self.model.named_parameters()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An official (models.yolo.DetectionModel, FP16) checkpoint of a 3-class yolov5n, and its weights as FP32."""
    torch.manual_seed(7)
    model = Model(tiny_config(nc=3))
    path = write_official_checkpoint(model, tmp_path_factory.mktemp("src") / "official3.pt",
                                     model_class="DetectionModel")
    return path, {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def _train(data, tmp_path, **kw):
    snap = Snapshots()
    opts = TrainOptions(data=str(data), epochs=1, batch_size=4, imgsz=64, device="cpu", workers=0,
                        project=str(tmp_path), name="exp", seed=0, noval=True, freeze=kw.pop("freeze", [0]),
                        noautoanchor=True)
    res = train(opts, callbacks_factory=lambda m, d: [snap], **kw)
    return res, snap


def _head(sd, index=24):
    return {k for k in sd if k.startswith(f"model.{index}.")}


def _assert_transferred(snap, src_sd, exclude=()):
    body = [k for k in src_sd if k not in _head(src_sd) and not k.endswith(exclude)]
    assert body and all(torch.equal(snap.before[k], src_sd[k]) for k in body)
    assert snap.before["model.24.m.0.weight"].shape[0] == 3 * (5 + 10)  # the head follows the data's nc


def _assert_frozen(snap, layers):
    frozen = {k for k in snap.after if k.startswith(tuple(f"model.{i}." for i in layers))}
    assert frozen and snap.frozen == frozen
    assert all(torch.equal(snap.after[k], snap.before[k]) for k in frozen)
    assert not any(snap.param_ids[k] in snap.optimized for k in frozen)  # out of every optimizer group
    trained = [k for k in snap.after if k not in frozen]
    changed = [k for k in trained if not torch.equal(snap.after[k], snap.before[k])]
    assert len(changed) > 0.9 * len(trained)


def test_weights_alone_transfer_to_the_data_classes_and_freeze_the_first_layers(demo_data, tmp_path, source, caplog):
    path, src_sd = source
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        res, snap = _train(demo_data, tmp_path, weights=str(path), freeze=[3])
    assert f"transferred 343/349 items from {path}" in caplog.text  # all but the 3 head convs' weight and bias
    assert "freezing layers 0-2" in caplog.text
    _assert_transferred(snap, src_sd)
    assert torch.equal(snap.before["model.24.anchors"], src_sd["model.24.anchors"])  # W's anchors
    _assert_frozen(snap, [0, 1, 2])
    saved = read_checkpoint(res.last)
    assert saved["yaml"]["nc"] == 10 and len(saved["names"]) == 10


def test_cfg_and_weights_build_the_cfg_and_freeze_layer_indices(demo_data, tmp_path, source, caplog):
    path, src_sd = source
    cfg = tiny_config(nc=80)
    cfg["anchors"] = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
    cfg_path = write_yaml(tmp_path / "c.yaml", cfg)
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        _, snap = _train(demo_data, tmp_path, weights=str(path), cfg=cfg_path, freeze=[0, 4, 9])
    assert f"transferred 342/349 items from {path}" in caplog.text  # and the anchors are C's own
    _assert_transferred(snap, src_sd, exclude=(".anchors",))
    assert torch.equal(snap.before["model.24.anchors"], Model(cfg).head.anchors)
    _assert_frozen(snap, [0, 4, 9])


def test_prune_and_sparse_refuse_weights_of_other_classes(demo_data, source, tmp_path):
    path, _ = source
    data = load_data_config(demo_data)
    with pytest.raises(ClassCountError, match=r"official3\.pt: the model has 3 classes but the data has 10; this "
                                              r"needs a model trained on this data: fine-tune it first") as e:
        model_for_data(str(path), None, data)  # what prune and compress load through
    assert "\n" not in str(e.value)
    opts = TrainOptions(data=str(demo_data), epochs=1, imgsz=64, device="cpu", workers=0, project=str(tmp_path))
    with pytest.raises(ClassCountError):
        train(opts, weights=str(path), transfer=False)  # what sparse training trains through
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("freeze, layers", [([0], []), ([10], list(range(10))), ([1, 5, 5], [1, 5]), ([3], [0, 1, 2])])
def test_freeze_names_layers_as_official(freeze, layers):
    assert TrainOptions(freeze=freeze).check().frozen_layers() == layers


@pytest.mark.parametrize("freeze, message", [([-1], "--freeze takes layer counts"), ([], "--freeze takes"),
                                             ([30], "the model has 25 layers"), ([25], "freezes every parameter")])
def test_bad_freeze_is_one_clear_error(demo_data, tmp_path, freeze, message):
    with pytest.raises(ConfigError, match=message):
        _train(demo_data, tmp_path, cfg=tiny_config(), freeze=freeze)
    assert not (tmp_path / "exp").exists()


def test_cli_train_cfg_and_weights_with_freeze(demo_data, tmp_path, source, capsys, caplog):
    """End to end through the CLI: `train --cfg C --weights W --freeze 0 1 2` on data with another class count."""
    from yolocompress.cli import main
    path, src_sd = source
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(nc=80))
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        rc = main(["train", "--cfg", cfg, "--weights", str(path), "--data", str(demo_data), "--freeze", "0", "1", "2",
                   "--epochs", "1", "--imgsz", "64", "--batch-size", "4", "--device", "cpu", "--workers", "0",
                   "--noval", "--noautoanchor", "--project", str(tmp_path / "runs")])
    assert rc == 0, capsys.readouterr().err
    assert f"transferred 342/349 items from {path}" in caplog.text and "freezing layers 0-2" in caplog.text
    saved = read_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt")
    assert saved["yaml"]["nc"] == 10 and saved["model"]["model.24.m.0.weight"].shape[0] == 45
    # last.pt holds the EMA, which averages a frozen tensor with itself: equal up to float rounding
    frozen = [k for k in src_sd if k.startswith(("model.0.", "model.1.", "model.2.")) and k.endswith(".weight")]
    trained = [k for k in src_sd if k.startswith(("model.5.", "model.6.")) and k.endswith("conv.weight")]
    for k in frozen:
        torch.testing.assert_close(saved["model"][k], src_sd[k], rtol=1e-6, atol=1e-7)
    assert all(float((saved["model"][k] - src_sd[k]).abs().max()) > 1e-6 for k in trained)  # measured ~1e-5


def test_freeze_with_a_callback_that_needs_every_gradient_is_one_error(demo_data, tmp_path):
    """Sparse training re-enables gradients on every layer (Torch-Pruning's regulariser): --freeze would be undone."""
    class Thaws(Callback):
        name = "thaws"

        def on_train_start(self, trainer):
            for p in trainer.model.parameters():
                p.requires_grad_(True)

    opts = TrainOptions(data=str(demo_data), epochs=1, batch_size=4, imgsz=64, device="cpu", workers=0,
                        project=str(tmp_path), noval=True, freeze=[2])
    with pytest.raises(ConfigError, match="--freeze 2 cannot be combined with thaws: it needs the gradients"):
        train(opts, cfg=tiny_config(), callbacks_factory=lambda m, d: [Thaws()])
