"""A distilled grid row finetunes the pruning its undistilled twin already made (benchmarks/common.run_prune's
`pruned_as`): pruning is deterministic, and PAGCP on yolov7-tiny takes about 20 CPU-minutes, so making it twice per
row pair doubled the grid's cost. The twin's finetune must be the one a fresh prune run would make."""
import sys
from pathlib import Path

import pytest
import torch

from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import read_checkpoint, save_checkpoint

from ..conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import run_prune  # noqa: E402


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_row_finetuned_from_its_twins_pruning_equals_a_fresh_prune_run(demo_data, tmp_path, monkeypatch):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "base.pt", Model(tiny_config()))
    common = dict(data=demo_data, hyp=ROOT / "src/yolocompress/core/hyps/scratch-low.yaml", imgsz=64, batch=4,
                  device="cpu", workers=0, project=tmp_path / "runs")
    fresh = run_prune(tmp_path / "base.pt", "l1", 2.0, 1, name="fresh", **common)

    import yolocompress.prune.api as api

    def no_pruning(*args, **kwargs):
        raise AssertionError("pruned again")
    monkeypatch.setattr(api, "prune_model", no_pruning)
    twin = run_prune(tmp_path / "base.pt", "l1", 2.0, 1, name="twin", pruned_as=tmp_path / "runs/fresh/pruned.pt",
                     **common)
    a, b = (read_checkpoint(r["best"])["model"] for r in (fresh, twin))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same finetune, bit for bit
    assert (tmp_path / "runs/twin/report.md").is_file()
    with pytest.raises(AssertionError, match="pruned again"):  # and without a twin, it would have pruned
        run_prune(tmp_path / "base.pt", "l1", 2.0, 1, name="alone", pruned_as=tmp_path / "missing.pt", **common)
    with pytest.raises(AssertionError, match="pruned again"):  # a finished run is made again whole, not "resumed"
        run_prune(tmp_path / "base.pt", "l1", 2.0, 1, name="twin", pruned_as=tmp_path / "runs/fresh/pruned.pt",
                  **common)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_pruning_is_reused_only_when_its_record_shows_the_same_pruning(demo_data, tmp_path, monkeypatch):
    """`compare_methods.py --pruned-from`: the grid again with a longer finetune reuses the earlier grid's prunings,
    but never one made from other options, weights or data (it would be another architecture under the same row)."""
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "base.pt", Model(tiny_config()))
    common = dict(data=demo_data, hyp=ROOT / "src/yolocompress/core/hyps/scratch-low.yaml", imgsz=64, batch=4,
                  device="cpu", workers=0)
    run_prune(tmp_path / "base.pt", "l1", 2.0, 0, name="short", project=tmp_path / "grid1", **common)
    earlier = tmp_path / "grid1/short/pruned.pt"

    import yolocompress.prune.api as api
    real = api.prune_model
    pruned = []

    def counting(*args, **kwargs):
        pruned.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "prune_model", counting)
    longer = dict(project=tmp_path / "grid2", pruned_as=earlier, **common)
    run_prune(tmp_path / "base.pt", "l1", 2.0, 2, name="long", **longer)  # finetune length aside: the same pruning
    assert pruned == []
    assert (tmp_path / "grid2/long/weights/best.pt").is_file()
    run_prune(tmp_path / "base.pt", "l1", 3.0, 1, name="faster", **longer)  # another speed-up
    run_prune(tmp_path / "base.pt", "random", 2.0, 1, name="other", **longer)  # another method
    run_prune(tmp_path / "base.pt", "l1", 2.0, 1, name="seed", **{**longer, "seed": 1})  # another recipe
    assert len(pruned) == 3
