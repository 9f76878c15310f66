"""`--kd-auto-weight SHARE` and each loss's default weight, measured on real (tiny) training runs at 64 px."""
from __future__ import annotations

import csv

import pytest
import torch

from yolocompress.core.errors import ConfigError
from yolocompress.data.demo import make_demo_dataset
from yolocompress.distill.auto_weight import AutoWeight
from yolocompress.distill.distiller import DistillCallback
from yolocompress.distill.feature import CWD, MGD, Mimic
from yolocompress.distill.logit import AlignSoftTarget, L1Logit, L2Logit
from yolocompress.distill.options import DistillOptions
from yolocompress.engine import api as engine_api
from yolocompress.engine.options import TrainOptions
from yolocompress.models.builder import Model, load_config
from yolocompress.models.checkpoint import read_checkpoint, save_checkpoint

IMGSZ, NC = 64, 10


def tiny(name, width, seed):
    cfg = load_config(f"{name}.yaml")
    cfg.update(nc=NC, width_multiple=width)
    torch.manual_seed(seed)
    return Model(cfg, names=[str(i) for i in range(NC)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("autow")
    data = make_demo_dataset(root / "data", n_train=32, n_val=8, imgsz=IMGSZ, seed=2)
    save_checkpoint(root / "T.pt", tiny("yolov5s", 0.25, 1))
    yield root, data, root / "T.pt"
    torch.set_num_threads(n)


def run(setup, name, options: DistillOptions, epochs=2):
    """Train a tiny yolov5n from scratch with `options`; returns results.csv rows and the callback."""
    root, data, teacher = setup
    made = []

    def factory(model, _data):
        made.append(DistillCallback(model, str(teacher), options, imgsz=IMGSZ))
        return made

    opts = TrainOptions(data=str(data), epochs=epochs, batch_size=8, imgsz=IMGSZ, device="cpu", workers=0,
                        project=str(root / "runs"), name=name, exist_ok=True, noval=True, seed=0)
    res = engine_api.train(opts, cfg="yolov5n.yaml", callbacks_factory=factory)
    with open(res.save_dir / "results.csv") as f:
        rows = [{k.strip(): float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    return rows, made[0], res


def detection(row) -> float:
    return row["train/box_loss"] + row["train/obj_loss"] + row["train/cls_loss"]


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_auto_weight_lands_the_share_each_epoch(setup, share):
    """Measured from the logged terms: each distillation term is SHARE of the detection loss (within 10%),
    in every epoch since the weight is measured again per epoch (4 batches of 8 images each)."""
    rows, cb, res = run(setup, f"share{share}", DistillOptions(
        logit="ast", feature="mgd", auto_weight=share, auto_weight_per_epoch=True, auto_weight_batches=4))
    assert len(rows) == 2
    for row in rows:
        for term in ("kd_logit", "kd_feature"):
            assert row[f"train/{term}"] / detection(row) == pytest.approx(share, rel=0.1), (term, row)
            assert row[f"train/{term}_weight"] > 0
    # the chosen weights are logged per epoch and differ from the fixed defaults (the measurement moved them)
    assert rows[0]["train/kd_feature_weight"] != pytest.approx(MGD.DEFAULT_WEIGHT)
    saved = read_checkpoint(res.last)["train_state"]["callbacks"]["distill"]["auto_weight"]
    assert saved["weights"] == pytest.approx({"kd_logit": rows[-1]["train/kd_logit_weight"],
                                              "kd_feature": rows[-1]["train/kd_feature_weight"]}, rel=1e-4)


def test_auto_weight_measured_once_keeps_its_weight(setup, caplog):
    """Without the per-epoch option the weight of the first batches stays for the whole run; it is logged."""
    with caplog.at_level("INFO", logger="yolocompress"):
        rows, cb, _ = run(setup, "once", DistillOptions(logit="l2", auto_weight=0.3, auto_weight_batches=2))
    assert "--kd-auto-weight 0.3 (epoch 1, 2 batches): kd_logit weight" in caplog.text
    assert rows[0]["train/kd_logit_weight"] == rows[1]["train/kd_logit_weight"] > 0
    assert cb.auto.epoch == 0  # measured in epoch 1 only


def test_auto_weight_resumes_with_its_weights():
    a = AutoWeight(0.25, 2, False, ["kd_logit"])
    assert a.measuring(0)
    a.update(4.0, {"kd_logit": 2.0})
    assert a.weight("kd_logit", 1.0) == pytest.approx(0.5)  # running estimate from the first batch on
    a.update(2.0, {"kd_logit": 2.0})
    assert a.weight("kd_logit", 1.0) == pytest.approx(0.25 * 6 / 4) and not a.measuring(0)
    b = AutoWeight(0.25, 2, False, ["kd_logit"])
    b.load_state_dict(a.state_dict())
    assert not b.measuring(3) and b.weight("kd_logit", 1.0) == a.weight("kd_logit", 1.0)
    c = AutoWeight(0.25, 2, True, ["kd_logit"])
    c.load_state_dict(a.state_dict())
    assert c.measuring(3)  # per epoch: a resumed run measures again at its next epoch


def test_default_weights_per_loss(setup):
    """Each loss class carries its default weight (docs/distillation.md); a given weight wins."""
    assert (Mimic.DEFAULT_WEIGHT, MGD.DEFAULT_WEIGHT, CWD.DEFAULT_WEIGHT) == (0.02, 0.1, 0.02)
    assert (L1Logit.DEFAULT_WEIGHT, L2Logit.DEFAULT_WEIGHT, AlignSoftTarget.DEFAULT_WEIGHT) == (1.0, 0.2, 0.01)
    assert DistillOptions(logit="l1", feature="mgd").weights() == {"kd_logit": 1.0, "kd_feature": 0.1}
    assert DistillOptions(feature="cwd").weights() == {"kd_feature": 0.02}
    assert DistillOptions(logit="ast", feature="cwd", feature_weight=0.5, logit_weight=2).weights() == \
        {"kd_logit": 2.0, "kd_feature": 0.5}
    rows, _, _ = run(setup, "default", DistillOptions(feature="cwd"), epochs=1)
    assert rows[0]["train/kd_feature_weight"] == pytest.approx(0.02)  # the default is what training used


@pytest.mark.parametrize("options,match", [
    (dict(logit="l1", auto_weight=0.0), "--kd-auto-weight is the distillation term's share"),
    (dict(logit="l1", auto_weight_per_epoch=True), "--kd-auto-weight-per-epoch needs --kd-auto-weight"),
    (dict(logit="l1", auto_weight=0.2, auto_weight_batches=0), "--kd-auto-weight-batches must be >= 1"),
    (dict(feature="mgd", feature_weight=-1.0), "--kd-feature-weight must be >= 0"),
])
def test_auto_weight_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        DistillOptions(**options).check()
