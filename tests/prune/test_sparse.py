"""Sparse training: the schedule, the callback's penalty on a real YOLO model, the records it writes,
and a real tiny `yolocompress sparse` run that is interrupted and resumed."""
import csv
from types import SimpleNamespace

import pytest
import torch

from yolocompress.cli import parse_command
from yolocompress.data.demo import make_demo_dataset
from yolocompress.core.hyp import Hyp
from yolocompress.engine.losses import build_loss
from yolocompress.core.errors import CheckpointError, ConfigError, PruningError
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import read_checkpoint, save_checkpoint
from yolocompress.prune import sparse
from yolocompress.prune.sparse import RegSchedule, SparseCallback, bn_scales

from ..conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SPARSE_METHODS = ["slim", "group_slim", "group_sl", "group_reg"]
IMGSZ = 64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tensors here are tiny: OpenMP hand-offs between threads cost more than the work (10x on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- schedule ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, reg_end, epoch, expected", [
    ("linear", None, 0, 1e-3), ("linear", None, 5, 5.5e-4), ("linear", None, 10, 1e-4),  # default end reg/10
    ("linear", 0.0, 5, 5e-4), ("linear", 3e-3, 10, 3e-3), ("linear", None, 99, 1e-4),  # clamped past the end
    ("constant", None, 0, 1e-3), ("constant", None, 7, 1e-3), ("constant", 0.0, 10, 1e-3),
])
def test_schedule_values(kind, reg_end, epoch, expected):
    assert RegSchedule(1e-3, reg_end, kind).value(epoch, epochs=11) == pytest.approx(expected)


def test_single_epoch_uses_the_start_value():
    assert RegSchedule(1e-3, 0.0).value(0, epochs=1) == 1e-3


@pytest.mark.parametrize("kw", [{"reg": -1e-3}, {"reg": 1e-3, "reg_end": -1.0}, {"reg": float("nan")},
                                {"reg": 1e-3, "kind": "cosine"}])
def test_bad_schedule_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        RegSchedule(**kw)


@pytest.mark.parametrize("method", ["l1", "group_taylor", "nope"])
def test_only_sparse_methods_are_accepted(method):
    with pytest.raises(ConfigError, match="slim|unknown"):
        SparseCallback(method)


# ---- the callback on a real YOLO model -----------------------------------------------------------
def _model(seed=0):
    torch.manual_seed(seed)
    return Model(tiny_config(nc=3))


def _trainer(model, tmp_path, epochs=2, **kw):
    opts = SimpleNamespace(epochs=epochs, sync_bn=kw.pop("sync_bn", False))
    return SimpleNamespace(model=model, epoch=0, opts=opts, world=1, imgsz=IMGSZ, tb=None, save_dir=tmp_path, **kw)


def _train(model, callback, tmp_path, steps=3, epochs=2):
    """`steps` SGD steps per epoch on a fixed batch with the detection loss; returns the fake trainer."""
    trainer = _trainer(model, tmp_path, epochs)
    if callback is not None:
        callback.on_train_start(trainer)
    loss_fn = build_loss(model, Hyp.default_for(model.yaml), IMGSZ)
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(2, 3, IMGSZ, IMGSZ, generator=g)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.4]])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for epoch in range(epochs):
        trainer.epoch = epoch
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(model(imgs), targets)[0].backward()
            if callback is not None:
                callback.after_backward(trainer)
            opt.step()
    return trainer


@pytest.fixture(scope="module")
def plain_mean_gamma(tmp_path_factory):
    """Mean |gamma| after the same training without the callback."""
    model = _model()
    _train(model, None, tmp_path_factory.mktemp("plain"))
    return float(bn_scales(model).mean())


@pytest.mark.parametrize("method", SPARSE_METHODS)
def test_callback_moves_bn_scales_toward_zero(method, plain_mean_gamma, tmp_path):
    model = _model()
    cb = SparseCallback(method, model, reg=0.1, reg_end=0.05)
    trainer = _train(model, cb, tmp_path)
    with_cb = float(bn_scales(model).mean())
    assert with_cb < 0.985 * plain_mean_gamma, (method, with_cb, plain_mean_gamma)

    row = cb.on_epoch_end(trainer, 1)
    assert row["sparse/reg"] == pytest.approx(0.05)
    assert row["sparse/bn_lt_1e-2"] == pytest.approx(float((bn_scales(model) < 1e-2).float().mean()))
    assert ("sparse/group_norm_lt_1e-2" in row) == (method != "slim")
    assert (tmp_path / "bn_gamma.png").stat().st_size > 0
    assert [h["epoch"] for h in cb.state_dict()["hists"]] == [1]


def test_group_bn_norms_see_a_dead_channel(tmp_path):
    model = _model()
    cb = SparseCallback("group_sl", model, reg=1e-3)
    cb.on_train_start(_trainer(model, tmp_path))
    base = float((sparse.group_bn_norms(cb.pruner) < 1e-2).float().sum())
    with torch.no_grad():
        model.model[0].bn.weight[0] = 0.0  # the stem's BN: its channel is coupled to no other BN
    assert float((sparse.group_bn_norms(cb.pruner) < 1e-2).float().sum()) == base + 1


def test_group_reg_grows_once_per_epoch_and_its_state_round_trips(tmp_path):
    model = _model()
    cb = SparseCallback("group_reg", model, reg=1e-3)
    trainer = _train(model, cb, tmp_path, steps=2, epochs=3)
    regs = torch.cat(list(cb.pruner.group_reg.values()))
    # two growths (epochs 1 and 2) of at most delta_reg (= reg) each; the weakest channels grow fully
    assert cb.state_dict()["grown_epoch"] == 2
    assert regs.min() >= 1e-3 - 1e-9 and regs.max() == pytest.approx(3e-3, rel=1e-4)
    cb.on_epoch_end(trainer, 0)
    cb.on_epoch_end(trainer, 1)
    state = cb.state_dict()

    resumed = SparseCallback("group_reg", model, reg=1e-3)
    resumed.load_state_dict(state)  # before train start, as a resumed trainer may do
    resumed.on_train_start(_trainer(model, tmp_path))
    got = {tuple(g[0].idxs): r for g, r in resumed.pruner.group_reg.items()}
    want = {tuple(g[0].idxs): r for g, r in cb.pruner.group_reg.items()}
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(got.values(), want.values()))
    assert sorted(resumed.hists) == [0, 1] and resumed.state_dict()["grown_epoch"] == 2


def test_slim_refuses_sync_bn_on_several_gpus(tmp_path):
    model = _model()
    trainer = _trainer(model, tmp_path, sync_bn=True)
    trainer.world = 2
    with pytest.raises(ConfigError, match="sync-bn"):
        SparseCallback("slim", model).on_train_start(trainer)


def test_untraceable_model_is_a_pruning_error(tmp_path):
    model = _model()  # 40 px is no multiple of the stride: the trace's concat fails
    with pytest.raises(PruningError, match="cannot build the channel groups"):
        SparseCallback("group_sl", model, example_inputs=torch.zeros(1, 3, 40, 40)).on_train_start(
            _trainer(model, tmp_path))


def test_ridge_plot_draws_many_epochs(tmp_path):
    hists = {e: [e % 7 + i % 5 for i in range(len(sparse.HIST_EDGES) - 1)] for e in range(60)}
    out = sparse.plot_bn_ridge(hists, tmp_path / "ridge.png", "slim")
    assert out.stat().st_size > 0 and not list(tmp_path.glob(".*tmp*"))


# ---- a real tiny run, interrupted and resumed ---------------------------------------------------
class Interrupted(Exception):
    pass


def _args(tmp_path, data, weights, *extra) -> dict:
    """The keyword arguments of `sparse_command` that these flags give."""
    return parse_command([
        "sparse", "--weights", str(weights), "--data", str(data), "--method", "group_reg", "--reg", "1e-3",
        "--epochs", "2", "--batch-size", "8", "--imgsz", str(IMGSZ), "--device", "cpu", "--workers", "0",
        "--project", str(tmp_path / "runs"), *extra])[1]


def test_resuming_a_run_that_is_not_sparse_training_is_refused(tmp_path):
    last = save_checkpoint(tmp_path / "run" / "weights" / "last.pt", _model(), train_state={"epoch": 0}, meta={})
    with pytest.raises(CheckpointError, match="a train run, not a sparse run; resume it with `yolocompress train --resume"):
        sparse.sparse_command(**_args(tmp_path, "data.yaml", last, "--resume", str(last)))


def test_sparse_command_writes_records_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCOMPRESS_NO_BAR", "1")
    data = make_demo_dataset(tmp_path / "demo", n_train=16, n_val=8, imgsz=IMGSZ)
    torch.manual_seed(0)
    weights = save_checkpoint(tmp_path / "start.pt", Model(tiny_config()))

    real_end = SparseCallback.on_epoch_end

    def crash_in_second_epoch(self, trainer, epoch):
        if epoch == 1:
            raise Interrupted
        return real_end(self, trainer, epoch)

    monkeypatch.setattr(SparseCallback, "on_epoch_end", crash_in_second_epoch)
    with pytest.raises(Interrupted):
        sparse.sparse_command(**_args(tmp_path, data, weights))
    monkeypatch.setattr(SparseCallback, "on_epoch_end", real_end)
    run = tmp_path / "runs" / "exp"
    assert read_checkpoint(run / "weights" / "last.pt")["train_state"]["epoch"] == 0

    # resume: the saved settings win over the command line's (--method slim is ignored)
    kw = _args(tmp_path, data, weights, "--resume", str(run))
    kw["sparse"].method = "slim"
    out = sparse.sparse_command(**kw)

    assert out["save_dir"] == str(run) and out["method"] == "group_reg"
    assert 0.0 <= out["bn_lt_1e-2"] <= 1.0 and out["mAP50"] is not None
    with open(run / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for col in ("sparse/reg", "sparse/bn_lt_1e-2", "sparse/group_norm_lt_1e-2"):
        assert all(r[col] != "" for r in rows), col
    assert [float(r["sparse/reg"]) for r in rows] == pytest.approx([1e-3, 1e-4])
    assert (run / "bn_gamma.png").stat().st_size > 0
    last = read_checkpoint(run / "weights" / "last.pt")
    assert last["meta"]["sparse_method"] == "group_reg" and last["meta"]["sparse_reg"] == 1e-3
    assert last["meta"]["sparse_reg_end"] == pytest.approx(1e-4)
    state = last["extra"]["sparse"]
    assert [h["epoch"] for h in state["hists"]] == [0, 1]  # epoch 0's histogram survived the resume
    assert state["grown_epoch"] == 1 and state["group_reg"]
    assert read_checkpoint(run / "weights" / "best.pt")["meta"]["sparse_method"] == "group_reg"
