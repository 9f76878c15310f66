"""DistillCallback and the flag handling of distill/api.py, on tiny YOLOv5 models at 64 px."""
from __future__ import annotations

import copy
import csv
import hashlib
import math
from argparse import Namespace
from types import SimpleNamespace

import pytest
import torch

from yolocompress import cli
from yolocompress.data.demo import make_demo_dataset
from yolocompress.distill import api as distill_api
from yolocompress.distill.distiller import DistillCallback, DistillOptions
from yolocompress.engine import api as engine_api
from yolocompress.engine.callbacks import StepOutputs
from yolocompress.core.hyp import Hyp
from yolocompress.engine.options import TrainOptions
from yolocompress.core.errors import CheckpointError, ConfigError, TrainingError, YoloCompressError
from yolocompress.models.builder import Model, load_config
from yolocompress.models.checkpoint import read_checkpoint, save_checkpoint

IMGSZ, NC, BATCH = 64, 10, 8
NAMES = [str(i) for i in range(NC)]
TWO_ANCHORS = [[10, 13, 16, 30], [30, 61, 62, 45], [116, 90, 156, 198]]


def tiny(name="yolov5n", width=0.125, nc=NC, seed=0, **overrides) -> Model:
    cfg = load_config(f"{name}.yaml")
    cfg.update(nc=nc, width_multiple=width, **overrides)
    torch.manual_seed(seed)
    return Model(cfg, names=NAMES[:nc] if nc <= NC else None)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and a busy shared CPU makes extra threads spin."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def student():
    return tiny()


@pytest.fixture(scope="module")
def teacher():
    return tiny("yolov5s", width=0.25, seed=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Demo data plus student and teacher checkpoints."""
    root = tmp_path_factory.mktemp("distill")
    data = make_demo_dataset(root / "data", n_train=16, n_val=8, imgsz=IMGSZ)
    save_checkpoint(root / "S.pt", tiny())
    save_checkpoint(root / "T.pt", tiny("yolov5s", width=0.25, seed=1))
    return SimpleNamespace(root=root, data=data, student=root / "S.pt", teacher=root / "T.pt")


def fake_trainer(model, epochs=2):
    return SimpleNamespace(device=torch.device("cpu"), imgsz=IMGSZ, hyp=Hyp(), model=model, rank=-1,
                           opts=SimpleNamespace(epochs=epochs, seed=0))


def started(student, teacher, **options) -> DistillCallback:
    cb = DistillCallback(student, teacher, DistillOptions(**options), imgsz=IMGSZ)
    cb.on_train_start(fake_trainer(student))
    return cb


def step(cb, model, iteration=0, total=10, epoch=0, seed=0):
    x = torch.rand(2, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(seed))
    layers = cb.capture_layers()
    raw, feats = model(x, capture=layers) if layers else (model(x), {})
    raw = raw[1] if isinstance(raw, tuple) else raw  # eval mode: (pred, raw)
    return cb.loss_terms(fake_trainer(model), StepOutputs(x, torch.zeros(0, 6), raw, feats, epoch, iteration, total))


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- the callback on its own ---------------------------------------------------------------------------
@pytest.mark.parametrize("logit,feature", [("l1", "mimic"), ("l2", "mgd"), ("ast", "cwd")])
def test_gradients_reach_student_and_adapters_never_teacher(student, teacher, logit, feature):
    s = copy.deepcopy(student).train()
    cb = started(s, teacher, logit=logit, feature=feature)
    before = snapshot(cb.teacher)
    assert not cb.teacher.training and not any(p.requires_grad for p in cb.teacher.parameters())
    adapters = cb.extra_parameters()
    assert adapters and not any(p is q for p in adapters for q in cb.teacher.parameters())
    assert not any(p is q for p in adapters for q in s.parameters())  # never part of the exported student
    opt = torch.optim.SGD(list(s.parameters()) + adapters, lr=0.1)
    terms = step(cb, s)
    assert set(terms) == {"kd_logit", "kd_feature"} and all(v.item() > 0 for v in terms.values())
    sum(terms.values()).backward()
    assert s.head.m[0].weight.grad.abs().sum() > 0 and s.model[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapters)
    assert all(p.grad is None for p in cb.teacher.parameters())
    opt.step()
    assert_same(snapshot(cb.teacher), before)  # weights and BN statistics bit-identical


def test_teacher_equal_to_student_gives_zero(student):
    """Eval-mode raw outputs of the teacher have the train-mode layout: a copy of the student scores zero."""
    s = copy.deepcopy(student).eval()
    cb = started(s, s, logit="l2", feature="mimic")
    assert cb.teacher is not s and all(p.requires_grad for p in s.parameters())  # the source model is untouched
    terms = step(cb, s)
    assert terms["kd_logit"].item() == pytest.approx(0, abs=1e-7)
    assert terms["kd_feature"].item() == pytest.approx(0, abs=1e-7)


def test_half_teacher_matches_float_teacher(student, teacher):
    """On CUDA the teacher runs in FP16: inputs follow its dtype and the losses still come out in FP32."""
    s = copy.deepcopy(student).eval()
    cb = started(s, teacher, logit="l2", feature="mimic")
    full = step(cb, s)
    cb.teacher.half()
    half = step(cb, s)
    for k in full:
        assert half[k].dtype == torch.float32 and half[k].item() == pytest.approx(full[k].item(), rel=2e-2)


def test_default_layers_are_head_inputs(student, teacher):
    cb = DistillCallback(student, teacher, DistillOptions(feature="cwd"), imgsz=IMGSZ)
    assert cb.capture_layers() == student.head_inputs() and cb.teacher_layers == teacher.head_inputs()
    cb = DistillCallback(student, teacher, DistillOptions(logit="l2"), imgsz=IMGSZ)
    assert cb.capture_layers() == [] and cb.extra_parameters() == []


def test_schedule_and_stop_epoch(student, teacher):
    s = copy.deepcopy(student).eval()
    cb = started(s, teacher, logit="l2", feature="cwd", schedule="linear", final_ratio=0.1, stop_epoch=1)
    total = 10  # 2 epochs of 5 iterations
    first, last = step(cb, s, iteration=0, total=total), step(cb, s, iteration=4, total=total)
    for k in first:
        assert last[k].item() == pytest.approx(first[k].item() * (1 - 0.9 * 4 / total), rel=1e-5)
    off = step(cb, s, iteration=5, total=total, epoch=1)  # epoch 2: after --kd-stop-epoch 1
    assert set(off) == {"kd_logit", "kd_feature"} and all(v.item() == 0 for v in off.values())


def test_state_round_trip(student, teacher):
    a = DistillCallback(student, teacher, DistillOptions(feature="mgd"), imgsz=IMGSZ)
    torch.manual_seed(5)
    b = DistillCallback(student, teacher, DistillOptions(feature="mgd"), imgsz=IMGSZ)
    b.load_state_dict(a.state_dict())
    assert_same(b.feature_loss.state_dict(), a.feature_loss.state_dict())
    c = DistillCallback(student, teacher, DistillOptions(feature="mgd", layers=[17, 20], teacher_layers=[17, 20]),
                        imgsz=IMGSZ)
    with pytest.raises(CheckpointError, match="resume with the same"):
        c.load_state_dict(a.state_dict())


def test_adapter_gradients_averaged_over_ranks(tmp_path, monkeypatch):
    """One real gloo process posing as rank 0 of 2: the all-reduce sums its own gradient, then halves it."""
    import torch.distributed as td
    td.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(td, "get_world_size", lambda *a, **k: 2)
        p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
        p.grad = torch.full((3,), 3.0)  # q has no gradient on this rank: counts as zeros (no rank may skip)
        DistillCallback.after_backward(SimpleNamespace(extra_parameters=lambda: [p, q]), None)
        assert torch.equal(p.grad, torch.full((3,), 1.5)) and torch.equal(q.grad, torch.zeros(2))
    finally:
        td.destroy_process_group()


# ---- errors before training ----------------------------------------------------------------------------
@pytest.mark.parametrize("teacher_kw,options,error,match", [
    (dict(nc=3), dict(logit="l2"), CheckpointError, "teacher .* has 3 classes, the student 10"),
    (dict(anchors=TWO_ANCHORS), dict(logit="l2"), ConfigError,
     r"logit distillation needs the same detection levels and anchors: student 3x3, teacher 3x2"),
    (dict(), dict(feature="cwd", layers=[99, 20, 23]), ConfigError, r"--kd-layers \[99\]: no such student layer"),
    (dict(), dict(feature="cwd", teacher_layers=[17, -1, 23]), ConfigError, "no such teacher layer"),
    (dict(), dict(feature="mimic", layers=[17, 20]), ConfigError, "pairs layers one to one"),
    (dict(), dict(feature="mimic", layers=[17, 20], teacher_layers=[20, 17]), ConfigError,
     "spatial sizes differ at imgsz 64 .* pair layers of the same stride"),
    (dict(), dict(logit="ast", obj_weighted=True), ConfigError, "--kd-obj-weighted applies to"),
    (dict(), dict(), ConfigError, "distillation needs a loss"),
    (dict(), dict(logit="l2", stop_epoch=0), ConfigError, "--kd-stop-epoch must be >= 1"),
])
def test_errors_before_training(student, teacher_kw, options, error, match):
    t = tiny("yolov5n", width=0.25, seed=1, **teacher_kw)
    with pytest.raises(error, match=match):
        DistillCallback(student, t, DistillOptions(**options), imgsz=IMGSZ)


def test_feature_distillation_allows_other_anchors(student):
    t = tiny("yolov5n", width=0.25, seed=1, anchors=TWO_ANCHORS)
    assert DistillCallback(student, t, DistillOptions(feature="cwd"), imgsz=IMGSZ).feature_loss is not None


# ---- flags -> callbacks (distill/api.py) ---------------------------------------------------------------
def flags(**kw):
    """DistillOptions as the CLI builds them from `--kd-*` flags (kd_logit -> logit, ...)."""
    return DistillOptions(**{k.removeprefix("kd_"): v for k, v in kw.items()})


@pytest.mark.parametrize("kw,match", [
    (dict(kd_logit="l2"), "--kd-logit needs a teacher"),
    (dict(kd_feature_weight=2.0), "--kd-feature-weight needs a teacher"),
    (dict(kd_schedule="cosine"), "--kd-schedule needs a teacher"),
    (dict(teacher="auto", kd_logit="l2"), "--teacher auto means the unpruned model"),
    (dict(teacher="missing.pt"), "--teacher missing.pt: file not found"),
])
def test_flag_errors(kw, match):
    with pytest.raises(YoloCompressError, match=match):
        distill_api.distill_callbacks_factory(flags(**kw))



def test_factory(student, teacher):
    assert distill_api.distill_callbacks_factory(flags()) is None
    assert distill_api.build_distill_callbacks(flags(), student, None) == []
    factory = distill_api.distill_callbacks_factory(flags(teacher="auto"), default_teacher=teacher)
    [cb] = factory(student, SimpleNamespace(nc=NC))
    assert cb.options.logit == "l2" and cb.options.feature is None  # a teacher alone distils with logit L2
    [cb] = distill_api.build_distill_callbacks(flags(teacher="auto", kd_feature="cwd", kd_feature_weight=0.5),
                                               student, None, default_teacher=teacher)
    assert cb.options.logit is None and cb.options.feature == "cwd" and cb.options.feature_weight == 0.5


def test_cli_flag_error_exit_code(files, capsys):
    rc = cli.main(["train", "--weights", str(files.student), "--data", str(files.data), "--kd-logit", "l2",
                   "--project", str(files.root / "never")])
    assert rc == 2 and "--kd-logit needs a teacher" in capsys.readouterr().err
    assert not (files.root / "never").exists()


# ---- whole runs ----------------------------------------------------------------------------------------
def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_train_with_teacher(files, monkeypatch):
    monkeypatch.setenv("YOLOCOMPRESS_NO_BAR", "1")
    made = []

    class Recorded(DistillCallback):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(distill_api, "DistillCallback", Recorded)
    teacher_sha = sha(files.teacher)
    rc = cli.main(["train", "--weights", str(files.student), "--data", str(files.data), "--epochs", "2",
                   "--batch-size", str(BATCH), "--imgsz", str(IMGSZ), "--workers", "0", "--device", "cpu",
                   "--project", str(files.root / "runs"), "--teacher", str(files.teacher), "--kd-logit", "l2",
                   "--kd-feature", "cwd", "--kd-schedule", "linear"])
    assert rc == 0 and sha(files.teacher) == teacher_sha
    [cb] = made
    assert_same(snapshot(cb.teacher), read_checkpoint(files.teacher)["model"])
    run = files.root / "runs" / "exp"
    rows = list(csv.DictReader(open(run / "results.csv")))
    for k in ("train/kd_logit", "train/kd_feature", "train/kd_logit_share", "train/kd_feature_share"):
        values = [float(r[k]) for r in rows]
        assert len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values), k
    ckpt = read_checkpoint(run / "weights" / "last.pt")
    saved = ckpt["extra"]["distill"]["feature_loss"]
    assert saved and all(torch.equal(saved[k], v) for k, v in cb.feature_loss.state_dict().items())
    assert ckpt["train_state"]["callbacks"]["distill"]["feature_loss"].keys() == saved.keys()
    assert ckpt["model"].keys() == read_checkpoint(files.student)["model"].keys()  # no adapter in the model
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert {"train/kd_logit", "train/kd_feature_share"} <= set(tags)


def test_nan_distillation_loss_stops_run_and_keeps_last(files, student, monkeypatch):
    monkeypatch.setenv("YOLOCOMPRESS_NO_BAR", "1")

    class NaNFromEpoch2(DistillCallback):
        def loss_terms(self, trainer, out):
            terms = super().loss_terms(trainer, out)
            if out.epoch >= 1:
                terms["kd_logit"] = terms["kd_logit"] * float("nan")
            return terms

    opts = TrainOptions(data=str(files.data), epochs=2, batch_size=BATCH, imgsz=IMGSZ, device="cpu", workers=0,
                        project=str(files.root / "runs"), name="nan", noval=True)
    def factory(model, data):
        return [NaNFromEpoch2(model, str(files.teacher), DistillOptions(logit="l2"), IMGSZ)]

    with pytest.raises(TrainingError, match=r"epoch 2, batch 0 \(component: kd_logit\)"):
        engine_api.train(opts, weights=str(files.student), callbacks_factory=factory)
    last = read_checkpoint(files.root / "runs" / "nan" / "weights" / "last.pt")
    assert last["train_state"]["epoch"] == 0
