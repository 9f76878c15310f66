"""Malicious pickles are refused before any of their code runs: CheckpointError, and no side effect."""
import os
import pickle
import subprocess
import zipfile

import pytest
import torch

from yolocompress.core.errors import CheckpointError
from yolocompress.models.checkpoint import FORMAT, VERSION, load_model

from .helpers import small_model
from .official_fakes import write_official_checkpoint


class Payload:
    """Unpickling it calls `fn(*args)`."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _system(marker):
    return Payload(os.system, f"touch '{marker}'")


def _eval(marker):
    return Payload(eval, f"open({str(marker)!r}, 'w').close()")


def _popen(marker):
    return Payload(subprocess.Popen, ["touch", str(marker)])


def _nested_in_our_format(marker):
    sd = small_model("yolov5n").state_dict()
    return {"format": FORMAT, "version": VERSION, "yaml": {"nc": 3}, "model": sd,
            "meta": {"date": "2024-01-01", "note": [1, {"x": _system(marker)}]}}


def _zip_with_pickle(path, data: bytes):
    """A torch zip archive whose data.pkl is hand-written bytes."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return path


def _raw_protocol0(marker):  # GLOBAL + REDUCE written by hand, as an attacker would
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def _raw_py2_builtin(marker):  # Python 2 module name, mapped to builtins.eval by pickle's compat table
    return f"c__builtin__\neval\n(S\"open('{marker}', 'w').close()\"\ntR.".encode()


def _raw_stack_global(marker):  # protocol 4 STACK_GLOBAL
    return pickle.dumps(Payload(os.system, f"touch '{marker}'"), protocol=4)


@pytest.mark.parametrize("make", [_system, _eval, _popen, _nested_in_our_format])
def test_torch_saved_payload_is_refused(tmp_path, make):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(make(marker), path)
    refused = r"evil.pt: refused to load: .*global '(posix|nt|builtins|subprocess)\."
    with pytest.raises(CheckpointError, match=refused) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("make", [_raw_protocol0, _raw_py2_builtin, _raw_stack_global])
def test_hand_written_pickle_in_torch_zip_is_refused(tmp_path, make):
    marker = tmp_path / "pwned"
    path = _zip_with_pickle(tmp_path / "evil.pt", make(marker))
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(path)
    assert not marker.exists()


def _in_opt(marker):
    return {"extra": {"opt": {"hyp": _eval(marker)}}}


def _in_model_tree(marker):
    return {"tamper": lambda obj: setattr(obj.model[0], "note", _popen(marker))}


@pytest.mark.parametrize("where", [_in_opt, _in_model_tree])
def test_payload_inside_official_looking_checkpoint_is_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    path = write_official_checkpoint(small_model("yolov7-tiny"), tmp_path / "evil.pt", **where(marker))
    with pytest.raises(CheckpointError, match="refused to load.*(builtins.eval|subprocess.Popen)"):
        load_model(path)
    assert not marker.exists()


def test_legacy_non_zip_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pt"
    torch.save(_system(marker), path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model(path)
    assert not marker.exists()


def test_payloads_are_live(tmp_path):
    """Control: the same files do run their code under an unrestricted load, so the tests above mean something."""
    marker = tmp_path / "pwned"
    torch.save(_system(marker), tmp_path / "a.pt")
    torch.load(tmp_path / "a.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    _zip_with_pickle(tmp_path / "b.pt", _raw_py2_builtin(marker))
    torch.load(tmp_path / "b.pt", weights_only=False)
    assert marker.exists()
