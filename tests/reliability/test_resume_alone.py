"""`--resume` alone, as the official trainers: each command resumes the newest *interrupted* run of its own kind
under its project folder (a finished run is skipped), with every option of that run restored, so that no
--data, --weights, --method or distillation flag needs repeating."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from yolocompress.engine.trainer import Trainer
from yolocompress.models.checkpoint import read_checkpoint

from .helpers import FAST, assert_one_line_error, make_inputs, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EPOCHS = 2
PRUNE = ["--method", "l1", "--speedup", "1.5", "--max-steps", "2", "--report-batch", "2"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory, "resume_alone", seed=7)


@pytest.fixture
def interrupt_at_epoch_1(monkeypatch):
    """Interrupt (Ctrl-C) every run at the start of its second epoch: epoch 1 is saved, the run is unfinished."""
    real = Trainer._reseed_epoch

    def reseed(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "_reseed_epoch", reseed)
    return lambda: monkeypatch.setattr(Trainer, "_reseed_epoch", real)


def _epochs(run: Path) -> list[int]:
    with open(run / "results.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def _columns(run: Path) -> list[str]:
    return (run / "results.csv").read_text().splitlines()[0].split(",")


def _train_args(inputs, project, epochs=EPOCHS):
    return ["--data", inputs["data"], "--epochs", epochs, "--project", project, *FAST]


def test_train_resume_alone_picks_the_interrupted_run_and_restores_its_distillation(inputs, tmp_path, capsys,
                                                                                   interrupt_at_epoch_1):
    project = tmp_path / "runs"
    teacher = ["--teacher", inputs["weights"], "--kd-logit", "l1"]
    rc, err = run_cli(capsys, ["train", "--cfg", inputs["cfg"], *teacher, *_train_args(inputs, project)])
    assert rc == 130, err
    stop_patch = interrupt_at_epoch_1
    stop_patch()
    rc, err = run_cli(capsys, ["train", "--cfg", inputs["cfg"], *_train_args(inputs, project, epochs=1)])
    assert rc == 0, err  # exp2: newer, but finished
    rc, err = run_cli(capsys, ["train", "--resume", "--project", project, *FAST])  # no --data, no --teacher
    assert rc == 0, err
    run = project / "exp"
    assert _epochs(run) == [0, 1] and "train/kd_logit" in _columns(run)
    assert read_checkpoint(run / "weights" / "last.pt")["meta"]["options"]["distill"]["logit"] == "l1"
    assert_one_line_error(*run_cli(capsys, ["train", "--resume", "--project", project, *FAST]),
                          r"no interrupted train run under .*finished runs are not resumed")


def test_train_resume_of_a_sparse_run_names_the_command_that_resumes_it(inputs, tmp_path, capsys,
                                                                        interrupt_at_epoch_1):
    project = tmp_path / "runs"
    rc, _ = run_cli(capsys, ["sparse", "--weights", inputs["weights"], "--method", "slim",
                             *_train_args(inputs, project)])
    assert rc == 130
    assert_one_line_error(*run_cli(capsys, ["train", "--resume", project / "exp", *FAST]),
                          r"a sparse run, not a train run; resume it with `yolocompress sparse --resume")


def test_sparse_resume_alone_needs_no_weights_method_or_data(inputs, tmp_path, capsys, interrupt_at_epoch_1):
    project = tmp_path / "runs"
    rc, _ = run_cli(capsys, ["sparse", "--weights", inputs["weights"], "--method", "slim", "--reg", "1e-3",
                             *_train_args(inputs, project)])
    assert rc == 130
    interrupt_at_epoch_1()
    rc, err = run_cli(capsys, ["sparse", "--resume", "--project", project, *FAST])
    assert rc == 0, err
    run = project / "exp"
    meta = read_checkpoint(run / "weights" / "last.pt")["meta"]
    assert _epochs(run) == [0, 1] and meta["sparse_method"] == "slim" and meta["options"]["sparse"]["reg"] == 1e-3


def test_prune_resume_alone_needs_no_weights_or_method(inputs, tmp_path, capsys, interrupt_at_epoch_1):
    project = tmp_path / "runs"
    rc, _ = run_cli(capsys, ["prune", "--weights", inputs["weights"], *PRUNE, *_train_args(inputs, project)])
    assert rc == 130
    interrupt_at_epoch_1()
    rc, err = run_cli(capsys, ["prune", "--resume", "--project", project, *FAST])
    assert rc == 0, err
    run = project / "exp"
    assert _epochs(run) == [0, 1] and (run / "report.json").is_file()
    assert_one_line_error(*run_cli(capsys, ["prune", "--resume", "--project", project, *FAST]),
                          r"no interrupted prune run under")


def test_compress_resume_alone_needs_no_weights_or_method(inputs, tmp_path, capsys, interrupt_at_epoch_1):
    project = tmp_path / "runs"
    rc, _ = run_cli(capsys, ["compress", "--weights", inputs["weights"], *PRUNE, "--name", "c",
                             *_train_args(inputs, project)])
    assert rc == 130
    interrupt_at_epoch_1()
    rc, err = run_cli(capsys, ["compress", "--resume", "--project", project, *FAST])
    assert rc == 0, err
    assert _epochs(project / "c" / "3-finetune") == [0, 1]
    assert (project / "c" / "4-report" / "DONE.json").is_file()
    assert_one_line_error(*run_cli(capsys, ["compress", "--resume", "--project", project, *FAST]),
                          r"no interrupted compress run under")
