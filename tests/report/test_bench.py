"""`yolocompress bench` on two tiny models: the table, its files and the trade-off plots."""
import contextlib
import io
import json

import torch

from yolocompress.cli import main
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import save_checkpoint
from yolocompress.report.plots import pareto_front

from ..conftest import tiny_config


def test_pareto_front():
    # (cost, accuracy): b dominates c; a and b are on the front, d is the cheapest
    pts = [(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (0.5, 0.1)]
    assert sorted(pareto_front(pts)) == [0, 1, 3]


def test_bench_two_models(demo_data, tmp_path):
    torch.manual_seed(0)
    a = save_checkpoint(tmp_path / "a.pt", Model(tiny_config(width=0.25)))
    b = save_checkpoint(tmp_path / "b.pt", Model(tiny_config(width=0.125)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--weights", str(a), str(b), "--data", str(demo_data), "--imgsz", "64",
                     "--batch-size", "2", "--device", "cpu", "--workers", "0", "--project", str(tmp_path / "runs"),
                     "--json"])
    assert code == 0
    res = json.loads(out.getvalue().strip().splitlines()[-1])
    rows = res["rows"]
    assert [r["Model"] for r in rows] == ["a.pt", "b.pt"]
    assert rows[1]["Parameters"] < rows[0]["Parameters"] and rows[1]["GFLOPs"] < rows[0]["GFLOPs"]
    assert rows[0]["Parameters %"] == 100.0 and 0 < rows[1]["GFLOPs %"] < 100
    assert "mAP50-95 delta" in rows[1] and "Inference Time (bs 2)" in rows[1]
    d = tmp_path / "runs" / "exp"
    for f in ("bench.md", "bench.csv", "bench.json", "map_vs_gflops.png", "map_vs_latency.png"):
        assert (d / f).is_file() and (d / f).stat().st_size > 0, f
    assert "| Model | Parameters | GFLOPs | Model Size | mAP50 | mAP50-95 | Inference Time (bs 2) |" in \
        (d / "bench.md").read_text()


def test_model_size_is_comparable_across_file_formats(tmp_path):
    """An official checkpoint holds FP16 weights: its size column must be that of the same model in our format,
    or a pruned FP32 model would look barely smaller than its baseline."""
    from pathlib import Path

    from yolocompress.models.checkpoint import load
    from yolocompress.core.stats import count_params
    from yolocompress.report.stats import checkpoint_size_mb
    official = Path(__file__).parent.parent / "fixtures" / "yolov5n_official_digits.pt"
    m = load(official)
    ours = save_checkpoint(tmp_path / "ours.pt", m)
    size = checkpoint_size_mb(m)
    assert size == ours.stat().st_size / 1e6
    assert size > 1.8 * official.stat().st_size / 1e6  # FP32 vs the file's FP16
    assert abs(size - 4 * count_params(m) / 1e6) < 0.05 * size


def test_interleaved_latency_times_models_in_turn_and_keeps_medians(monkeypatch):
    """A machine that slows down over time must not make the model timed last look slow."""
    from yolocompress.core import stats
    calls, copied = [], []

    def fake(model, x, warmup=3, repeats=10):
        calls.append(model)
        return float(len(calls))  # every call is slower than the one before: a drifting machine

    monkeypatch.setattr(stats, "_timing_copy", lambda m, *a: copied.append(m) or (m, None))
    monkeypatch.setattr(stats, "_time_runs", fake)
    times = stats.interleaved_latency(["a", "b"], 64, 2, "cpu", rounds=3)
    assert copied == ["a", "b"]  # each model copied to the device once, not once per pass
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert times == [3.0, 4.0]  # medians of (1, 3, 5) and (2, 4, 6): one step apart, not three


def test_bench_refuses_zero_latency_rounds(capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        main(["bench", "--weights", "a.pt", "--data", "d.yaml", "--latency-rounds", "0"])
    assert e.value.code == 2 and "--latency-rounds: must be a positive integer" in capsys.readouterr().err


def test_bench_labels_tell_compress_runs_apart():
    from yolocompress.bench import bench_labels
    ws = ["runs/compress/lamp2x/3-finetune/weights/best.pt", "runs/compress/lamp3x/3-finetune/weights/best.pt",
          "runs/train/exp/weights/best.pt", "elsewhere/exp/weights/best.pt", "runs/train/exp2/weights/last.pt",
          "yolov5n.pt"]
    assert bench_labels(ws) == ["lamp2x/3-finetune/best.pt", "lamp3x/3-finetune/best.pt", "train/exp/best.pt",
                                "elsewhere/exp/best.pt", "exp2/last.pt", "yolov5n.pt"]


def test_tradeoff_plot_axis_has_its_unit_and_labels_stay_inside(tmp_path):
    import matplotlib
    from yolocompress.report import plots
    assert plots.axis_label("Inference Time (bs 32)") == "Inference Time (ms per batch of 32)"
    rows = [{"Model": "a-long-model-name/best.pt", "Inference Time (bs 32)": 10.0, "mAP50-95": 0.3},
            {"Model": "another-long-model-name/best.pt", "Inference Time (bs 32)": 20.0, "mAP50-95": 0.35}]
    drawn = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, *a, **kw):  # measure the labels as drawn, before the figure is closed
        out = real_savefig(fig, *a, **kw)
        renderer = fig.canvas.get_renderer()
        drawn["texts"] = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.axes[0].texts]
        drawn["width"], drawn["xlabel"] = fig.bbox.width, fig.axes[0].get_xlabel()
        return out

    import pytest
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", keep)
        plots.plot_tradeoff(rows, "Inference Time (bs 32)", "mAP50-95", tmp_path / "p.png")
    assert len(drawn["texts"]) == 2
    for text, box in drawn["texts"]:
        assert 0 <= box.x0 and box.x1 <= drawn["width"], text
    assert drawn["xlabel"] == "Inference Time (ms per batch of 32)"
