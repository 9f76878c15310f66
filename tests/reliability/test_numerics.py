"""A NaN/inf loss stops the run at once with the component named, and the last good checkpoint is kept.

CPU runs have no AMP scaler; how AMP overflow is told apart from divergence on CUDA is in docs/reliability.md."""
from __future__ import annotations

import csv

import pytest
import torch

from yolocompress.engine import trainer as trainer_mod
from yolocompress.engine.api import train
from yolocompress.engine.callbacks import Callback
from yolocompress.engine.options import TrainOptions
from yolocompress.core.errors import TrainingError
from yolocompress.models.checkpoint import read_checkpoint

from .helpers import FAST, IMGSZ, assert_one_line_error, make_inputs, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory, "numerics", seed=4)


@pytest.fixture
def epoch_seen(monkeypatch):
    """The epoch the trainer is in (recorded as each epoch starts)."""
    seen = {"epoch": -1}
    real = trainer_mod.Trainer._reseed_epoch

    def reseed(self, epoch):
        seen["epoch"] = epoch
        return real(self, epoch)

    monkeypatch.setattr(trainer_mod.Trainer, "_reseed_epoch", reseed)
    return seen


def _rows(run):
    with open(run / "results.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


@pytest.mark.parametrize("component, value", [(0, float("nan")), (1, float("inf")), (2, float("nan"))])
def test_nan_in_the_detection_loss_stops_naming_the_component(component, value, inputs, tmp_path, capsys,
                                                               monkeypatch, epoch_seen):
    real_build = trainer_mod.build_loss

    def build_loss(model, hyp, imgsz):
        loss_fn = real_build(model, hyp, imgsz)

        def poisoned(raw, targets):
            loss, items = loss_fn(raw, targets)
            if epoch_seen["epoch"] == 1 and model.training:
                items = items.clone()
                items[component] = value
                loss = loss + items[component]
            return loss, items
        return poisoned

    monkeypatch.setattr(trainer_mod, "build_loss", build_loss)
    run = tmp_path / "runs" / "exp"
    rc, err = run_cli(capsys, ["train", "--cfg", inputs["cfg"], "--data", inputs["data"], "--epochs", 3,
                               "--project", tmp_path / "runs", *FAST])
    name = ("box_loss", "obj_loss", "cls_loss")[component]
    assert_one_line_error(rc, err, rf"the loss became NaN/inf at epoch 2, batch 0 \(component: {name}\); "
                                   rf"the last good checkpoint is .*last\.pt; lower the learning rate")
    assert read_checkpoint(run / "weights" / "last.pt")["train_state"]["epoch"] == 0
    assert _rows(run) == [0]


class NaNTerm(Callback):
    """A regulariser / distillation term that diverges in epoch 1."""
    name = "kd_feature"

    def loss_terms(self, trainer, out):
        return {"kd_feature": torch.tensor(float("nan") if out.epoch == 1 else 0.0)}


def test_nan_in_an_extra_loss_term_names_the_term(inputs, tmp_path):
    opts = TrainOptions(data=str(inputs["data"]), epochs=3, batch_size=4, imgsz=IMGSZ, device="cpu", workers=0,
                        project=str(tmp_path / "runs"))
    with pytest.raises(TrainingError, match=r"epoch 2, batch 0 \(component: kd_feature\)") as e:
        train(opts, cfg=inputs["cfg"], callbacks_factory=lambda model, data: [NaNTerm()])
    assert "\n" not in str(e.value)
    assert read_checkpoint(tmp_path / "runs" / "exp" / "weights" / "last.pt")["train_state"]["epoch"] == 0


def test_cpu_runs_have_no_amp_scaler(inputs, tmp_path):
    """On CPU, `amp` is off: the scaler is disabled and a step is never skipped silently."""
    opts = TrainOptions(data=str(inputs["data"]), epochs=1, batch_size=4, imgsz=IMGSZ, device="cpu", workers=0,
                        project=str(tmp_path / "runs"))
    res = train(opts, cfg=inputs["cfg"])
    st = read_checkpoint(res.last)["train_state"]
    assert st["scaler"] is None
