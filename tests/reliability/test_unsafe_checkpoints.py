"""Checkpoints cannot run code, through the CLI: crafted pickles calling os.system, builtins.eval, subprocess.Popen
and a chained (nested) __reduce__ are refused by `val`, `info` and `train --weights` with exit 2 and one line,
before any side effect. (The library-level cases are in tests/models/test_unsafe_pickles.py.)"""
from __future__ import annotations

import operator
import os
import subprocess

import pytest
import torch

from yolocompress.data.demo import make_demo_dataset

from .helpers import FAST, IMGSZ, assert_one_line_error, run_cli


class Call:
    """Unpickling it calls `fn(*args)`."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _system(marker):
    return Call(os.system, f"touch '{marker}'")


def _eval(marker):
    return Call(eval, f"open({str(marker)!r}, 'w').close()")


def _popen(marker):
    return Call(subprocess.Popen, ["touch", str(marker)])


def _nested_reduce(marker):
    """methodcaller('system', cmd)(__import__('os')): the callable and its argument are themselves reduces."""
    return Call(operator.methodcaller("system", f"touch '{marker}'"), Call(__import__, "os"))


def _hidden_in_a_state_dict(marker):
    return {"model.0.conv.weight": torch.zeros(1), "note": [{"x": _popen(marker)}]}


PAYLOADS = {"os.system": (_system, r"'(posix|nt)\.system'"), "builtins.eval": (_eval, r"'builtins\.eval'"),
            "subprocess.Popen": (_popen, r"'subprocess\.Popen'"),
            "nested __reduce__": (_nested_reduce, r"'(_operator|operator)\.methodcaller'|'builtins\.__import__'"),
            "inside a state_dict": (_hidden_in_a_state_dict, r"'subprocess\.Popen'")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("unsafe") / "data", n_train=4, n_val=4, imgsz=IMGSZ, seed=2)


@pytest.mark.parametrize("command", ["val", "info", "train"])
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_evil_checkpoint_is_refused_through_the_cli(payload, command, data, tmp_path, capsys):
    make, named = PAYLOADS[payload]
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save(make(marker), evil)
    argv = {"val": ["val", "--weights", evil, "--data", data, *FAST],
            "info": ["info", "--weights", evil, "--imgsz", IMGSZ],
            "train": ["train", "--weights", evil, "--data", data, "--epochs", 1, "--project", tmp_path / "runs",
                      *FAST]}[command]
    rc, err = run_cli(capsys, argv)
    line = assert_one_line_error(rc, err, r"evil\.pt: refused to load: the checkpoint names the global " + named)
    assert "only load files you trust" in line
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_payloads_are_live(payload, tmp_path):
    """Control: an unrestricted torch.load does run each payload, so the refusals above are meaningful."""
    marker = tmp_path / "pwned"
    torch.save(PAYLOADS[payload][0](marker), tmp_path / "evil.pt")
    obj = torch.load(tmp_path / "evil.pt", weights_only=False)
    for p in ([obj] if not isinstance(obj, dict) else [obj["note"][0]["x"]]):
        if isinstance(p, subprocess.Popen):
            p.wait()
    assert marker.exists()
