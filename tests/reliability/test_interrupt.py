"""Nothing is lost on interruption: a real `yolocompress train` / `sparse` process is killed with SIGKILL
mid-run, `--resume` finishes it, and the run folder holds every epoch exactly once and whole checkpoints only.
Also every crash point of an epoch's end (between results.csv and the checkpoints), deterministically."""
from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yolocompress.models.checkpoint import read_checkpoint

from .helpers import FAST, make_inputs, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EPOCHS = 6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory, "interrupt", seed=5)


def _epochs(run: Path) -> list[int]:
    try:
        with open(run / "results.csv", newline="") as f:
            return [int(float(r["epoch"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return []


def _kill_when(argv, ready, log: Path, timeout: float = 90.0) -> str:
    """Start `python -m yolocompress ARGV` (stderr to `log`), SIGKILL it as soon as `ready(stderr_text)` holds;
    returns what it had logged."""
    env = {**os.environ, "YOLOCOMPRESS_NO_BAR": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "yolocompress", *map(str, argv)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        t0 = time.time()
        try:
            while not ready(log.read_text(errors="replace")):
                if proc.poll() is not None:
                    pytest.fail(f"the run ended before it could be killed: {log.read_text()[-2000:]}")
                if time.time() - t0 > timeout:
                    pytest.fail("the run did not reach the kill point in time")
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return log.read_text(errors="replace")


def _kill_after_epoch(argv, run: Path, epoch: int = 1):
    """SIGKILL a run once its results.csv shows `epoch` (the next one is running)."""
    run.parent.mkdir(parents=True, exist_ok=True)
    _kill_when(argv, lambda _: max(_epochs(run), default=-1) >= epoch, run.parent / "killed.log")


def _kill_while_pruning(argv, log: Path, run: Path) -> str:
    """SIGKILL a prune/compress run right after its first pruning step (dozens of steps remain), which its
    prune.log records (the console shows a progress bar instead)."""
    prune_log = run / "prune.log"
    return _kill_when(argv, lambda _: prune_log.is_file() and "prune step 1 (" in prune_log.read_text(), log)


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
    from yolocompress.core import rundir
    from yolocompress.engine import trainer
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


# ---- prune and compress: killed while pruning and while finetuning ---------------------------------------------
# group_taylor to 3x takes dozens of steps, each with gradients from the training batches: a kill after step 1
# lands in the pruning loop, before pruned.pt exists
PRUNE = ["--method", "group_taylor", "--speedup", "3.0", "--grad-batches", "2", "--report-batch", "2"]


def _assert_prune_run_complete(run: Path):
    _assert_complete(run)
    assert (run / "report.json").is_file()
    assert read_checkpoint(run / "pruned.pt")["meta"]["prune"]["speedup_gflops"] >= 3.0


def test_prune_killed_in_pruning_loop_resumes(inputs, tmp_path, capsys, caplog):
    project = tmp_path / "runs"
    run = project / "exp"
    args = ["prune", "--weights", inputs["weights"], *PRUNE, *_train_args(inputs, project)]
    _kill_while_pruning(args, tmp_path / "killed.log", run)
    assert run.is_dir() and not (run / "pruned.pt").exists()
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        rc, err = run_cli(capsys, [*args, "--resume", run])
    assert rc == 0, err
    assert "interrupted while pruning" in caplog.text
    _assert_prune_run_complete(run)


def test_prune_killed_in_finetune_resumes_from_last_epoch(inputs, tmp_path, capsys, caplog):
    project = tmp_path / "runs"
    run = project / "exp"
    args = ["prune", "--weights", inputs["weights"], *PRUNE, *_train_args(inputs, project)]
    _kill_after_epoch(args, run)
    pruned_before = (run / "pruned.pt").read_bytes()
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        rc, err = run_cli(capsys, [*args, "--resume", run])
    assert rc == 0, err
    assert "resuming" in caplog.text
    assert (run / "pruned.pt").read_bytes() == pruned_before  # the pruning was not redone
    _assert_prune_run_complete(run)


def test_prune_resume_refuses_other_settings(inputs, tmp_path, capsys):
    project = tmp_path / "runs"
    run = project / "exp"
    args = ["prune", "--weights", inputs["weights"], *PRUNE, *_train_args(inputs, project)]
    _kill_after_epoch(args, run)
    other = [a if a != "3.0" else "2.0" for a in args]
    from .helpers import assert_one_line_error
    assert_one_line_error(*run_cli(capsys, [*other, "--resume", run]), r"--speedup 3.0 \(now 2.0\)")


def _compress_args(inputs, project):
    return ["compress", "--weights", inputs["weights"], *PRUNE, "--data", inputs["data"], "--epochs", EPOCHS,
            "--project", project, "--name", "c", *FAST]


def test_compress_killed_while_pruning_redoes_only_that_stage(inputs, tmp_path, capsys, caplog):
    project = tmp_path / "runs"
    args = _compress_args(inputs, project)
    stage = project / "c" / "2-prune"
    _kill_while_pruning(args, tmp_path / "killed.log", stage)
    assert stage.is_dir() and not (stage / "DONE.json").exists()
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        rc, err = run_cli(capsys, args)
    assert rc == 0, err
    assert "stage 2-prune: starting" in caplog.text
    _assert_complete(project / "c" / "3-finetune")
    assert (project / "c" / "4-report" / "DONE.json").is_file()


def test_compress_killed_in_finetune_resumes_from_last_epoch(inputs, tmp_path, capsys, caplog):
    project = tmp_path / "runs"
    args = _compress_args(inputs, project)
    run = project / "c" / "3-finetune"
    _kill_after_epoch(args, run)
    pruned_marker = (project / "c" / "2-prune" / "DONE.json").read_bytes()
    with caplog.at_level(logging.INFO, logger="yolocompress"):
        rc, err = run_cli(capsys, args)
    assert rc == 0, err
    assert "stage 2-prune: already complete" in caplog.text and "stage 3-finetune: resuming" in caplog.text
    assert (project / "c" / "2-prune" / "DONE.json").read_bytes() == pruned_marker
    _assert_complete(run)
