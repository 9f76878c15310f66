"""Nothing is lost on interruption: a real `yolocompress train` / `sparse` process is killed with SIGKILL
mid-run, `--resume` finishes it, and the run folder holds every epoch exactly once and whole checkpoints only.
Also every crash point of an epoch's end (between results.csv and the checkpoints), deterministically."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from yolocompress.data.demo import make_demo_dataset
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import read_checkpoint, save_checkpoint

from ..conftest import tiny_config
from .helpers import FAST, IMGSZ, run_cli, write_cfg

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EPOCHS = 6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    data = make_demo_dataset(root / "data", n_train=8, n_val=4, imgsz=IMGSZ, seed=5)
    torch.manual_seed(0)
    weights = save_checkpoint(root / "start.pt", Model(tiny_config(nc=10)))
    return {"data": data, "cfg": write_cfg(root / "tiny.yaml"), "weights": weights}


def _epochs(run: Path) -> list[int]:
    try:
        with open(run / "results.csv", newline="") as f:
            return [int(float(r["epoch"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return []


def _kill_after_epoch(argv, run: Path, epoch: int = 1, timeout: float = 60.0):
    """Start `python -m yolocompress ARGV`, SIGKILL it once results.csv shows `epoch` (the next one is running)."""
    env = {**os.environ, "YOLOCOMPRESS_NO_BAR": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "yolocompress", *map(str, argv)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while max(_epochs(run), default=-1) < epoch:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            if time.time() - t0 > timeout:
                pytest.fail("the run did not reach the kill point in time")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _assert_complete(run: Path):
    assert _epochs(run) == list(range(EPOCHS))
    last = read_checkpoint(run / "weights" / "last.pt")
    assert last["train_state"]["epoch"] == EPOCHS - 1
    read_checkpoint(run / "weights" / "best.pt")
    assert not [p.name for p in (run / "weights").iterdir() if p.name.endswith(".tmp")]
    assert not list(run.glob(".*.tmp"))


def _train_args(inputs, project):
    return ["--data", inputs["data"], "--epochs", EPOCHS, "--project", project, *FAST]


def test_killed_train_resumes_without_loss(inputs, tmp_path, capsys):
    project = tmp_path / "runs"
    run = project / "exp"
    _kill_after_epoch(["train", "--cfg", inputs["cfg"], *_train_args(inputs, project)], run)
    done = _epochs(run)
    saved = read_checkpoint(run / "weights" / "last.pt")["train_state"]["epoch"]
    assert saved in (done[-1] - 1, done[-1]), (done, saved)  # a row is written before its checkpoint
    rc, err = run_cli(capsys, ["train", "--resume", run, *_train_args(inputs, project)])
    assert rc == 0, err
    _assert_complete(run)


def test_killed_sparse_resumes_without_loss(inputs, tmp_path, capsys):
    project = tmp_path / "runs"
    run = project / "exp"
    args = ["sparse", "--weights", inputs["weights"], "--method", "slim", "--reg", "1e-3",
            *_train_args(inputs, project)]
    _kill_after_epoch(args, run)
    rc, err = run_cli(capsys, [*args, "--resume", run])
    assert rc == 0, err
    _assert_complete(run)
    assert [h["epoch"] for h in read_checkpoint(run / "weights" / "last.pt")["extra"]["sparse"]["hists"]] \
        == list(range(EPOCHS))


class Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["results.csv", "best.pt", "last.pt"])
def test_crash_at_each_write_of_an_epoch_end(where, inputs, tmp_path, capsys, monkeypatch):
    """Kill the writer just before results.csv, best.pt or last.pt of epoch 1: the resume still has no gap."""
    from yolocompress.engine import rundir, trainer
    project = tmp_path / "runs"
    run = project / "exp"
    real_append, real_save = rundir.ResultsCSV.append, trainer.save_checkpoint

    def append(self, row):
        if where == "results.csv" and row["epoch"] == 1:
            raise Crash
        return real_append(self, row)

    def save(path, *a, **kw):
        if Path(path).name == where and kw["meta"]["epoch"] == 1:
            raise Crash
        return real_save(path, *a, **kw)

    monkeypatch.setattr(rundir.ResultsCSV, "append", append)
    monkeypatch.setattr(trainer, "save_checkpoint", save)
    argv = ["train", "--cfg", inputs["cfg"], *_train_args(inputs, project), "--epochs", 3]
    with pytest.raises(Crash):
        run_cli(capsys, argv)
    monkeypatch.undo()
    rc, err = run_cli(capsys, ["train", "--resume", run, *_train_args(inputs, project)])
    assert rc == 0, err
    assert _epochs(run) == [0, 1, 2]
    assert read_checkpoint(run / "weights" / "last.pt")["train_state"]["epoch"] == 2
