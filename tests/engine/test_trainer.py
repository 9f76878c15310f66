"""The training loop: run-folder contents, callbacks, exact resume, NaN stop, DDP."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolocompress.engine.api import train
from yolocompress.engine.callbacks import Callback
from yolocompress.core.hyp import Hyp
from yolocompress.engine.options import TrainOptions
from yolocompress.core.errors import TrainingError
from yolocompress.models.checkpoint import read_checkpoint

from ..conftest import tiny_config, write_yaml


def _opts(data, project, **kw):
    base = dict(data=str(data), epochs=2, batch_size=4, imgsz=64, device="cpu", workers=0, project=str(project),
                name="exp", nbs=4, seed=3)
    return TrainOptions(**{**base, **kw})


def _rows(save_dir):
    with open(Path(save_dir) / "results.csv") as f:
        return list(csv.DictReader(f))


class Interrupt(Callback):
    """Simulates a crash at the first batch of `epoch` (after the previous epoch was saved)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def loss_terms(self, trainer, out):
        if out.epoch == self.epoch:
            raise KeyboardInterrupt
        return {}


def test_run_folder_contents(demo_data, tmp_path, training_plots):
    res = train(_opts(demo_data, tmp_path), cfg=tiny_config())
    d = res.save_dir
    for f in ("weights/best.pt", "weights/last.pt", "results.csv", "results.png", "hyp.yaml", "opt.yaml",
              "labels.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg", "PR_curve.png",
              "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png", "val_batch0_labels.jpg",
              "val_batch0_pred.jpg"):
        assert (d / f).is_file(), f
        assert f.endswith(("yaml", "pt", "csv")) or (d / f).stat().st_size > 5000, f  # pictures, not blanks
    assert list(d.glob("events.out.tfevents*"))
    rows = _rows(d)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for col in ("train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/mAP50", "metrics/mAP50-95",
                "x/lr0", "train/images_per_s"):
        assert col in rows[0]
    ck = torch.load(d / "weights/last.pt", weights_only=True)  # our format: plain data only
    assert ck["train_state"]["epoch"] == 1
    assert read_checkpoint(d / "weights/best.pt")["train_state"] is None


def test_optimizer_groups_and_accumulation(demo_data, tmp_path):
    from yolocompress.engine.trainer import build_optimizer
    from yolocompress.models.builder import Model
    m = Model(tiny_config())
    opt = build_optimizer(m, Hyp(weight_decay=0.001))
    biases, decay, no_decay = (g["params"] for g in opt.param_groups)
    assert opt.param_groups[1]["weight_decay"] == 0.001 and opt.param_groups[2]["weight_decay"] == 0.0
    assert opt.param_groups[0]["nesterov"]
    n_bn = sum(1 for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    assert len(no_decay) == n_bn
    assert len(biases) == n_bn + m.head.nl  # BN biases + head conv biases
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in m.parameters())


def test_resume_continues_exactly(demo_data, tmp_path):
    """An interrupted run resumed with --resume ends with the same weights as an uninterrupted one."""
    full = train(_opts(demo_data, tmp_path / "a"), cfg=tiny_config())
    with pytest.raises(KeyboardInterrupt):
        train(_opts(demo_data, tmp_path / "b"), cfg=tiny_config(), callbacks_factory=lambda m, d: [Interrupt(1)])
    broken = tmp_path / "b" / "exp"
    assert [int(r["epoch"]) for r in _rows(broken)] == [0]
    resumed = train(_opts(demo_data, tmp_path / "b", device="cpu"), resume=str(broken))
    assert resumed.save_dir == broken
    assert [int(r["epoch"]) for r in _rows(broken)] == [0, 1]  # no duplicated, no missing epoch
    a = read_checkpoint(full.last)["model"]
    b = read_checkpoint(resumed.last)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_of_finished_run_is_refused(demo_data, tmp_path):
    res = train(_opts(demo_data, tmp_path, epochs=1), cfg=tiny_config())
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(_opts(demo_data, tmp_path), resume=str(res.save_dir))


class NaNTerm(Callback):
    def loss_terms(self, trainer, out):
        return {"kd_logit": torch.tensor(float("nan") if out.epoch == 1 else 0.0)}


def test_nan_loss_stops_cleanly_naming_the_component(demo_data, tmp_path):
    with pytest.raises(TrainingError, match="kd_logit") as e:
        train(_opts(demo_data, tmp_path), cfg=tiny_config(), callbacks_factory=lambda m, d: [NaNTerm()])
    assert "last good checkpoint" in str(e.value)
    last = tmp_path / "exp" / "weights" / "last.pt"
    assert read_checkpoint(last)["train_state"]["epoch"] == 0


def test_a_module_autograd_refuses_is_one_error_line_naming_the_layer(demo_data, tmp_path):
    """FasterNet's in-place slice write fails in the first backward pass; training stops with one line that
    names the layer and what to write instead, not autograd's traceback."""
    from ..prune import community
    cfg = community.place(tiny_config(), "v5", "FasterNetSlicingBlock")
    with pytest.raises(TrainingError) as e:
        train(_opts(demo_data, tmp_path, epochs=1), cfg=cfg)
    text = str(e.value)
    assert "\n" not in text and text.startswith("training: layer 4 (FasterNetSlicingBlock) fails in the backward")
    assert "in-place write into a slice" in text and "torch.cat instead" in text


def test_loss_terms_are_logged_with_their_share(demo_data, tmp_path):
    class Const(Callback):
        def loss_terms(self, trainer, out):
            return {"kd_feature": torch.tensor(0.5)}
    res = train(_opts(demo_data, tmp_path, epochs=1), cfg=tiny_config(), callbacks_factory=lambda m, d: [Const()])
    row = _rows(res.save_dir)[0]
    assert float(row["train/kd_feature"]) == pytest.approx(0.5)
    assert 0 < float(row["train/kd_feature_share"]) < 1


def test_ddp_two_processes_gloo(demo_data, tmp_path):
    cfg = write_yaml(tmp_path / "tiny.yaml", tiny_config())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "yolocompress", "train", "--cfg", cfg, "--data", str(demo_data), "--epochs", "1", "--batch-size", "4",
           "--imgsz", "64", "--device", "cpu", "--workers", "0", "--project", str(tmp_path / "runs")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "runs").glob("exp*"))
    assert len(runs) == 1, runs  # only rank 0 writes
    assert (runs[0] / "weights" / "last.pt").is_file()


def test_overfits_a_handful_of_images(tmp_path):
    """Four demo images, no augmentation: the loss falls and mAP50 on those images passes 0.5."""
    import yaml
    from yolocompress.data.demo import make_demo_dataset
    data = make_demo_dataset(tmp_path / "d", n_train=4, n_val=4, imgsz=64, seed=3, max_objects=2, obj_min=0.3,
                             obj_max=0.5)
    d = yaml.safe_load(data.read_text())
    d["val"] = d["train"]
    data.write_text(yaml.safe_dump(d))
    cfg = tiny_config(width=0.25)
    # at 64 px the official gains scale objectness by (64/640)^2: raise obj/cls so 200 steps suffice
    hyp = Hyp(mosaic=0, hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, warmup_epochs=0, obj=50.0,
              cls=4.0, lr0=0.05)
    res = train(_opts(data, tmp_path, epochs=200, val_every=1000), cfg=cfg, hyp=hyp)
    rows = _rows(res.save_dir)
    assert float(rows[-1]["train/box_loss"]) < 0.5 * float(rows[0]["train/box_loss"])
    assert res.metrics["mAP50"] > 0.5, res.metrics


def test_lr_schedule_runs_one_epoch_behind_like_the_official_trainers():
    """YOLOv5/YOLOv7 set `scheduler.last_epoch = start_epoch - 1` after building LambdaLR: epoch e trains at
    lf(e - 1). Figures: 40 epochs, lr0 0.01, lrf 0.01, linear (what official train.py gives on this schedule)."""
    from yolocompress.engine.trainer import lagged, lr_lambda
    lf = lr_lambda(TrainOptions(epochs=40), Hyp())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lagged(lf), last_epoch=-1)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[1] == pytest.approx(0.01)
    assert lrs[4:6] == pytest.approx([0.009258, 0.00901], abs=1e-6)
    assert lrs[-1] == pytest.approx(0.000595, abs=1e-6)


def test_unvalidated_epochs_leave_their_metrics_empty(demo_data, tmp_path, caplog):
    """--val-every 2 over 3 epochs validates epochs 2 and 3: epoch 1's metric cells stay empty (no repeated
    values), each validation logs its 'all' line, and --noplots writes no plot but results.png."""
    import logging
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        res = train(_opts(demo_data, tmp_path, epochs=3, val_every=2, noplots=True), cfg=tiny_config())
    rows = _rows(res.save_dir)
    metric_cols = ("metrics/precision", "metrics/recall", "metrics/mAP50", "metrics/mAP50-95", "val/box_loss")
    assert [rows[0][c] for c in metric_cols] == [""] * len(metric_cols)
    for r in rows[1:]:
        assert all(r[c] != "" for c in metric_cols)
    assert float(rows[1]["val/box_loss"]) != float(rows[2]["val/box_loss"])  # each epoch measured anew
    epoch_lines = [m for m in (r.getMessage() for r in caplog.records)
                   if m.lstrip().startswith("Class") and m.splitlines()[1].split()[0] == "all"]
    assert len(epoch_lines) == 2  # one per validation (the best.pt table at the end starts with its name)
    assert any(r.getMessage().startswith("best.pt (epoch 3):") for r in caplog.records)
    assert {p.name for p in res.save_dir.iterdir() if p.suffix in (".png", ".jpg")} == {"results.png"}
