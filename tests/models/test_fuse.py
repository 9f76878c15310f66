"""Fusing (BN into conv, RepConv re-parameterisation, IDetect implicit folding) keeps eval outputs."""
import copy

import pytest
import torch
import torch.nn as nn

from yolocompress.models.heads import ImplicitA
from yolocompress.models.modules import RepConv
from yolocompress.core.stats import count_params

from .helpers import assert_outputs_close, image, outputs, randomise, small_model


@pytest.mark.parametrize("name", ["yolov5n", "yolov7-tiny", "yolov7"])
def test_fused_matches_unfused(name):
    model = randomise(small_model(name)).eval()
    fused = copy.deepcopy(model).fuse()
    assert not any(isinstance(m, (nn.BatchNorm2d, ImplicitA)) for m in fused.modules())
    assert count_params(fused) < count_params(model)
    x = image(2)
    assert_outputs_close(outputs(fused, x), outputs(model, x))


def test_yolov7_fuse_reparameterises_repconv():
    model = randomise(small_model("yolov7")).eval()
    reps = [m for m in model.modules() if isinstance(m, RepConv)]
    assert len(reps) == 3
    model.fuse()
    assert all(hasattr(m, "rbr_reparam") and not hasattr(m, "rbr_dense") for m in reps)
    assert model.head.fused


@pytest.mark.parametrize("groups", [1, 2])
def test_repconv_with_identity_branch_fuses_exactly(groups):
    torch.manual_seed(0)
    block = randomise(RepConv(8, 8, 3, 1, g=groups, act=nn.SiLU())).eval()
    assert block.rbr_identity is not None
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=0)


def test_fuse_is_idempotent():
    model = randomise(small_model("yolov7-tiny")).eval().fuse()
    x = image()
    before = outputs(model, x)
    model.fuse()
    assert all(torch.equal(a, b) for a, b in zip(outputs(model, x), before))
