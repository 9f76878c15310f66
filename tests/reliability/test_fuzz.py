"""Property tests (hypothesis): label parsing, model yaml parsing, hyp parsing and checkpoint loading never hang and
never raise anything but our own error types, whatever the input."""
from __future__ import annotations

import contextlib
import copy
import io
import os
import signal
import zipfile

import cv2
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolocompress.data.labels import check_item, parse_labels
from yolocompress.core.hyp import Hyp
from yolocompress.core.errors import CheckpointError, ConfigError, YoloCompressError
from yolocompress.models.builder import Model, load_config
from yolocompress.models.checkpoint import load_model, read_checkpoint, save_checkpoint

from ..conftest import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# modest and derandomised for CI; FUZZ_EXAMPLES=1000 FUZZ_RANDOM=1 for a longer random search
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=os.environ.get("FUZZ_RANDOM") != "1")
NC = 4


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail an example that runs too long instead of letting it hang the suite (POSIX SIGALRM)."""
    def fire(*_):
        raise Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- label files ------------------------------------------------------------------------------------------
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-0.2, 1.2).map(lambda v: f"{v:.4f}"),
    st.integers(-3, NC + 3).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "1_0", "", "abc", "0.5.5", "1e-400", "٣"]),
)
ROW = st.lists(NUMBER_TEXT, min_size=0, max_size=9).map(" ".join)
LABEL_TEXT = st.one_of(
    st.lists(ROW, max_size=8).map("\n".join),
    st.text(max_size=200),
    st.lists(st.sampled_from(["0 0.5 0.5 0.2 0.2", "1 0.1 0.1 0.05 0.05"]), max_size=6).map("\r\n".join),
)


def _assert_clean_labels(labels):
    assert labels.dtype == np.float32 and labels.ndim == 2 and labels.shape[1] == 5
    assert np.isfinite(labels).all()
    if len(labels):
        assert (labels[:, 0] == labels[:, 0].round()).all() and (0 <= labels[:, 0]).all() and (labels[:, 0] < NC).all()
        assert (labels[:, 1:] >= 0).all() and (labels[:, 1:] <= 1).all() and (labels[:, 3:] > 0).all()
        assert len(np.unique(labels, axis=0)) == len(labels)


@FUZZ
@given(text=LABEL_TEXT)
def test_parse_labels_returns_clean_rows(text):
    with time_limit(5):
        labels, notes, repaired, dropped = parse_labels(text, NC)
    _assert_clean_labels(labels)
    assert all("\n" not in n for n in notes) and repaired >= 0 and dropped >= 0


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_labels")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.full((32, 48, 3), 90, np.uint8))
    return root / "images" / "a.png"


@FUZZ
@given(content=st.one_of(LABEL_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200)))
def test_check_item_on_any_label_file(content, image):
    (image.parent.parent / "labels" / "a.txt").write_bytes(content)
    with time_limit(5):
        item = check_item(image, NC)
    assert item.status in ("ok", "background", "skipped") and item.shape == (32, 48)
    _assert_clean_labels(item.labels)
    assert all("\n" not in w and str(image.parent.parent) in w for w in item.warnings)


# ---- model yaml -------------------------------------------------------------------------------------------
WORDS = ["nc", "anchors", "Conv", "C3", "SPPF", "Detect", "Concat", "nn.Upsample", "None", "nearest", "nn.SiLU()",
         "nn.LeakyReLU(0.1)", "nn.Foo(1)", "__import__('os').system('true')", "1e9", "[1, 2]", ""]
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from([10**9, -10**9, 2**63]),
                   st.floats(-2, 2), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e-9, 1e9]),
                   st.sampled_from(WORDS), st.text(max_size=6))
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                     max_leaves=8)
BASE_CFG = tiny_config(width=0.0625, nc=NC)


def _mutate(cfg, data):
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(["top", "layer", "arg", "drop"]))
        if where == "top":
            cfg[data.draw(st.sampled_from(["nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head",
                                           "activation"]))] = data.draw(VALUE)
        elif where == "drop":
            cfg.pop(data.draw(st.sampled_from(sorted(cfg))), None)
        else:
            rows = [r for sec in ("backbone", "head") if isinstance(cfg.get(sec), list) for r in cfg[sec]]
            rows = [r for r in rows if isinstance(r, list) and len(r) == 4]
            if not rows:
                continue
            row = data.draw(st.sampled_from(rows))
            if where == "layer":
                row[data.draw(st.integers(0, 3))] = data.draw(VALUE)
            elif isinstance(row[3], list) and row[3]:
                row[3][data.draw(st.integers(0, len(row[3]) - 1))] = data.draw(VALUE)
    return cfg


def _build(cfg):
    with time_limit(20):
        try:
            Model(cfg)
        except ConfigError as e:
            assert "\n" not in str(e)


@FUZZ
@given(data=st.data())
def test_mutated_model_config_is_built_or_a_config_error(data):
    _build(_mutate(copy.deepcopy(BASE_CFG), data))


@FUZZ
@given(cfg=st.one_of(VALUE, st.dictionaries(st.sampled_from(list(BASE_CFG)), VALUE, max_size=7)))
def test_random_model_config_is_a_config_error(cfg):
    with time_limit(10), pytest.raises(ConfigError):
        Model(cfg)


@FUZZ
@given(content=st.one_of(st.text(max_size=120).map(str.encode), st.binary(max_size=120)))
def test_model_yaml_file_with_any_content(content, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz_model.yaml"
    path.write_bytes(content)
    with time_limit(10), pytest.raises(ConfigError):
        Model(load_config(path))


# ---- hyperparameters --------------------------------------------------------------------------------------
HYP_KEYS = st.one_of(st.sampled_from(list(Hyp().to_dict())), st.text(max_size=6), st.integers(), st.none())


@FUZZ
@given(values=st.one_of(st.dictionaries(HYP_KEYS, SCALAR, max_size=6), VALUE))
def test_hyp_from_any_dict(values):
    try:
        h = Hyp.from_dict(values)
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        assert all(isinstance(v, (int, float)) for v in h.to_dict().values())


@FUZZ
@given(content=st.one_of(st.text(max_size=120).map(str.encode), st.binary(max_size=80),
                         st.dictionaries(HYP_KEYS, SCALAR, max_size=4).map(
                             lambda d: yaml.safe_dump(d).encode())))
def test_hyp_file_with_any_content(content, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz_hyp.yaml"
    path.write_bytes(content)
    with time_limit(5):
        try:
            Hyp.load(path)
        except ConfigError as e:
            assert "\n" not in str(e)


# ---- checkpoints ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path_factory.mktemp("fuzz_ckpt") / "real.pt", Model(tiny_config(width=0.0625, nc=2)),
                           train_state={"epoch": 0}, meta={"note": "x"})
    return path  # (a path, not the bytes: hypothesis prints the arguments of a failing example)


def _read(path):
    with time_limit(20):
        try:
            load_model(path)
        except CheckpointError as e:
            assert "\n" not in str(e)
        except YoloCompressError as e:  # a (damaged) yaml inside the file: a ConfigError line
            assert "\n" not in str(e)
        try:
            read_checkpoint(path)
        except CheckpointError:
            pass


def _zip_with(data_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


@FUZZ
@given(content=st.one_of(st.binary(max_size=300), st.binary(max_size=200).map(_zip_with)))
def test_random_bytes_are_a_checkpoint_error(content, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz_random.pt"
    path.write_bytes(content)
    _read(path)


@FUZZ
@given(data=st.data())
def test_damaged_real_checkpoint_loads_or_is_a_checkpoint_error(data, real_checkpoint, tmp_path_factory):
    b = bytearray(real_checkpoint.read_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "scribble"]))
    if how == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1))]
    else:
        for _ in range(1 if how == "flip" else data.draw(st.integers(2, 40))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = b[i] ^ (1 << data.draw(st.integers(0, 7))) if how == "flip" else data.draw(st.integers(0, 255))
    path = tmp_path_factory.getbasetemp() / "fuzz_damaged.pt"
    path.write_bytes(bytes(b))
    _read(path)
