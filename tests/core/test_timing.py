"""Latency with its spread: a ratio is printed only as precisely as its interleaved passes support; GFLOPs are
counted in place without changing the model."""
import copy

import torch

from yolocompress.core.stats import Ratio, Timing, count_gflops, latency_ratio


def test_a_tight_ratio_is_significant_and_printed_with_its_range():
    r = latency_ratio(Timing((10.0, 10.4, 9.8)), Timing((5.0, 5.1, 5.0)))
    assert r.significant and r.text() == f"{r.median:.2f}x ({min(r.passes):.2f}-{max(r.passes):.2f})"


def test_a_wide_or_single_pass_ratio_is_not_significant():
    wide = Ratio((1.1, 1.4, 1.8))
    assert not wide.significant and wide.text() == "1.4x (1.1-1.8, not significant)"
    assert not Ratio((0.9, 1.0, 1.1)).significant  # the range holds 1.0: no speed-up shown
    assert not Ratio((1.5,)).significant  # one pass has no spread to judge


def test_timing_reports_median_and_spread():
    t = Timing((3.0, 1.0, 2.0))
    assert t.median == 2.0 and t.spread == (1.0, 3.0) and "1.00-3.00 over 3 passes" in t.text()


def test_gflops_in_place_leaves_modes_and_weights_as_they_were():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 4, 1))
    model.train()
    model[1].eval()
    before = copy.deepcopy(model.state_dict())
    g = count_gflops(model, 64)
    assert g == count_gflops(copy.deepcopy(model).double(), 64)  # the copy path (not float32) agrees
    assert model.training and not model[1].training and model[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
