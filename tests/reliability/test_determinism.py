"""The same seed on CPU gives bit-identical weights after one epoch (mosaic, HSV, flips and all), with the data
loaded in the main process or by two workers. What is and is not deterministic on CUDA: docs/reliability.md."""
from __future__ import annotations

import pytest
import torch

from yolocompress.engine.api import train
from yolocompress.engine.options import TrainOptions
from yolocompress.models.checkpoint import read_checkpoint

from .helpers import IMGSZ, make_inputs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory, "determinism", seed=6)


def _one_epoch(inputs, project, workers, seed=0):
    opts = TrainOptions(data=str(inputs["data"]), epochs=1, batch_size=4, imgsz=IMGSZ, device="cpu",
                        workers=workers, seed=seed, project=str(project))
    res = train(opts, cfg=inputs["cfg"])
    return read_checkpoint(res.last)["train_state"]["model"]


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_gives_bit_identical_weights(workers, inputs, tmp_path):
    a = _one_epoch(inputs, tmp_path / "a", workers)
    b = _one_epoch(inputs, tmp_path / "b", workers)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_another_seed_gives_other_weights(inputs, tmp_path):
    a = _one_epoch(inputs, tmp_path / "a", 0, seed=0)
    b = _one_epoch(inputs, tmp_path / "b", 0, seed=1)
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
