"""Malicious pickles are refused before any of their code runs: CheckpointError, and no side effect."""
import collections
import copy
import copyreg
import operator
import os
import pickle
import re
import runpy
import shutil
import subprocess
import zipfile
from _codecs import encode as _codecs_encode

import numpy as np
import numpy.testing._private.utils as np_utils

import pytest
import torch

from yolocompress.core.errors import CheckpointError
from yolocompress.models.checkpoint import FORMAT, VERSION, load_model

from .helpers import small_model
from .official_fakes import write_official_checkpoint

try:
    from numpy._core.multiarray import _reconstruct as np_core_reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct as np_core_reconstruct


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


# ---- every way to run code that the wider rules for official checkpoints must still refuse ------------------------
def _script(tmp_path, marker):
    script = tmp_path / "evil_script.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    return script


def _rename(natural, official):
    return {"renames": {natural: official}}


# name -> (payload(marker, tmp_path) placed inside an official-shaped checkpoint, write options, refused global)
MALICIOUS = {
    "os.system": (lambda m, d: Payload(os.system, f"touch '{m}'"), {}, "posix.system"),
    "nt.system": (lambda m, d: Payload(os.system, f"touch '{m}'"), _rename("posix.system", "nt.system"), "nt.system"),
    "builtins.__import__": (lambda m, d: Payload(__import__, "os"), {}, "builtins.__import__"),
    "builtins.eval": (lambda m, d: Payload(eval, f"open({str(m)!r}, 'w').close()"), {}, "builtins.eval"),
    "builtins.exec": (lambda m, d: Payload(exec, f"open({str(m)!r}, 'w').close()"), {}, "builtins.exec"),
    "builtins.compile": (lambda m, d: Payload(compile, "1", "x", "eval"), {}, "builtins.compile"),
    "builtins.open": (lambda m, d: Payload(open, str(m), "w"), _rename("io.open", "builtins.open"), "builtins.open"),
    "io.open": (lambda m, d: Payload(open, str(m), "w"), {}, "io.open"),
    "builtins.getattr": (lambda m, d: Payload(getattr, Payload(__import__, "os"), "system"), {}, "builtins.getattr"),
    "subprocess.Popen": (lambda m, d: Payload(subprocess.Popen, ["touch", str(m)]), {}, "subprocess.Popen"),
    "subprocess.check_call": (lambda m, d: Payload(subprocess.check_call, ["touch", str(m)]), {},
                              "subprocess.check_call"),
    "runpy.run_path": (lambda m, d: Payload(runpy.run_path, str(_script(d, m))), {}, "runpy.run_path"),
    "numpy runstring": (lambda m, d: Payload(np_utils.runstring, f"open({str(m)!r}, 'w').close()", {}), {},
                        "numpy.testing._private.utils.runstring"),
    "pickle.loads (nested)": (lambda m, d: Payload(pickle.loads, pickle.dumps(Payload(os.system, f"touch '{m}'"))),
                              {}, "pickle.loads"),
    "torch.load (nested)": (lambda m, d: Payload(torch.serialization.load, str(d / "inner.pt")), {},
                            "torch.serialization.load"),
    "copy._reconstruct": (lambda m, d: Payload(copy._reconstruct, None, None, os.system, (f"touch '{m}'",)), {},
                          "copy._reconstruct"),
    "operator.methodcaller": (lambda m, d: Payload(operator.methodcaller("system", f"touch '{m}'"),
                                                   Payload(__import__, "os")), {},
                              "(_operator|operator|functools).(methodcaller|partial)"),
    "shutil.rmtree": (lambda m, d: Payload(shutil.rmtree, str(d / "keep")), {}, "shutil.rmtree"),
}


@pytest.fixture
def victim(tmp_path):
    """A marker that a payload would create, a folder one would delete, an inner evil file one would load."""
    (tmp_path / "keep").mkdir()
    torch.save(Payload(os.system, f"touch '{tmp_path / 'pwned'}'"), tmp_path / "inner.pt")
    return tmp_path


@pytest.fixture(scope="module")
def v5n():
    return small_model("yolov5n")


@pytest.mark.parametrize("name", list(MALICIOUS))
def test_code_running_global_is_refused_in_an_official_checkpoint(victim, v5n, name):
    make, options, refused = MALICIOUS[name]
    marker = victim / "pwned"
    path = write_official_checkpoint(v5n, victim / "evil.pt",
                                     extra={"opt": {"hyp": make(marker, victim)}}, **options)
    pattern = refused if "(" in refused else re.escape(refused)
    refusal = f"evil.pt: refused to load: the checkpoint names the global '{pattern}'"
    with pytest.raises(CheckpointError, match=refusal) as e:
        load_model(path)
    assert "\n" not in str(e.value)
    assert not marker.exists() and (victim / "keep").is_dir()


class _Forged:
    """Reduces through an allowed helper with a class or factory it must not build."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


ABUSED = {  # allowed globals given arguments that are not plain data
    "defaultdict factory": (lambda: _Forged(collections.defaultdict, _codecs_encode), "defaultdict names the factory"),
    "copyreg._reconstructor class": (lambda: _Forged(copyreg._reconstructor, torch._utils._rebuild_tensor_v2, object,
                                                     None),
                                     r"copyreg._reconstructor is asked to build"),
    "numpy _reconstruct subtype": (lambda: _Forged(np_core_reconstruct, np.float64, (0,), b"b"),
                                   "numpy _reconstruct is asked to build"),
}


@pytest.mark.parametrize("name", list(ABUSED))
def test_allowed_helper_with_unsafe_arguments_is_refused(tmp_path, v5n, name):
    make, message = ABUSED[name]
    path = write_official_checkpoint(v5n, tmp_path / "evil.pt", extra={"opt": make()})
    with pytest.raises(CheckpointError, match=f"evil.pt: refused to load: .*{message}"):
        load_model(path)


LIVE = ["os.system", "builtins.eval", "builtins.exec", "io.open", "subprocess.Popen", "subprocess.check_call",
        "runpy.run_path", "numpy runstring", "pickle.loads (nested)", "copy._reconstruct", "operator.methodcaller",
        "shutil.rmtree"]


@pytest.mark.parametrize("name", LIVE)
def test_malicious_payloads_are_live(victim, name):
    """Control: unpickled without restriction, each payload acts (creates the marker or deletes the folder)."""
    make, _, _ = MALICIOUS[name]
    torch.save(make(victim / "pwned", victim), victim / "evil.pt")
    obj = torch.load(victim / "evil.pt", weights_only=False)
    if isinstance(obj, subprocess.Popen):
        obj.wait()
    elif hasattr(obj, "close"):
        obj.close()
    if name == "shutil.rmtree":
        assert not (victim / "keep").exists()
    else:
        assert (victim / "pwned").exists()
