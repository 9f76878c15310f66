"""benchmarks/prune_bench.py end to end on tiny models: both baselines (one given, one trained by the script), rows
run in parallel worker processes, a failing method that costs only its own rows, and a rerun that skips the
finished rows."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import save_checkpoint

from ..conftest import tiny_config, write_yaml

ROOT = Path(__file__).resolve().parents[2]
HYPS = ROOT / "src" / "yolocompress" / "core" / "hyps"


def _bench(demo_data, tmp, *extra):
    argv = [sys.executable, str(ROOT / "benchmarks" / "prune_bench.py"), "--data", str(demo_data),
            "--hyp", str(HYPS / "scratch-low.yaml"), "--v7-hyp", str(HYPS / "yolov7-tiny.yaml"),
            "--weights", str(tmp / "v5.pt"), "--v7-cfg", str(tmp / "v7.yaml"), "--v7-epochs", "1",
            "--finetune-epochs", "1", "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--device", "cpu",
            "--latency-rounds", "1", "--project", str(tmp / "bench"), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_prune_bench_parallel_rows_failed_row_and_resume(demo_data, tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "v5.pt", Model(tiny_config()))
    write_yaml(tmp_path / "v7.yaml", tiny_config("yolov7-tiny.yaml", width=0.25))

    # a method that fails costs only its own rows, reported in one line
    run = _bench(demo_data, tmp_path, "--models", "v5n", "v7t", "--methods", "l1", "nosuch", "random", "--jobs", "2")
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert "benchmark rows failed" in last and "nosuch" in last and "v7t/nosuch" in last, last
    assert "\nv5n\n| Model" in run.stdout and "\nv7t\n| Model" in run.stdout  # the rows made: printed all the same
    data = json.loads((tmp_path / "bench" / "results.json").read_text())
    rows = data["rows"]
    expected = {"baseline", "control", "l1", "random", "v7t/baseline", "v7t/control", "v7t/l1", "v7t/random"}
    assert set(rows) == expected
    for model in ("", "v7t/"):
        base = rows[model + "baseline"]
        assert rows[model + "control"]["GFLOPs"] == pytest.approx(base["GFLOPs"])  # finetuned, not pruned
        for m in ("l1", "random"):
            ratio = base["GFLOPs"] / rows[model + m]["GFLOPs"]
            assert 1.99 <= ratio <= 2.4, (model, m, ratio)  # --speedup 2.0 reached, not overshot far
            assert 0 <= rows[model + m]["mAP50-95"] <= 1 and rows[model + m]["CPU bs32 (ms)"] > 0
    # the v7t baseline was trained by the script, from the given yaml, and its rows start from it
    assert Path(rows["v7t/baseline"]["weights"]).parent.parent.name == "v7t-baseline"
    assert rows["v7t/baseline"]["Parameters"] < rows["baseline"]["Parameters"] * 20
    assert (tmp_path / "bench" / "v7t-l1" / "pruned.pt").is_file() and (tmp_path / "bench" / "l1").is_dir()
    assert data["latency_rounds"] == 1  # --jobs > 1: latency re-timed in one pass at the end

    # rerun, one row at a time: the finished rows are skipped, nothing is trained again
    before = {k: dict(v) for k, v in rows.items()}
    run = _bench(demo_data, tmp_path, "--models", "v5n", "v7t", "--methods", "l1", "random")
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["rows"] == before
    assert "training" not in run.stderr + run.stdout
    assert "\nv5n\n| Model" in run.stdout and "\nv7t\n| Model" in run.stdout

    # and with --jobs: nothing to make, so no worker starts and no latency pass re-times the rows
    run = _bench(demo_data, tmp_path, "--models", "v5n", "v7t", "--methods", "l1", "random", "--jobs", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "latency baseline" not in run.stderr and "training" not in run.stderr + run.stdout
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["rows"] == before
