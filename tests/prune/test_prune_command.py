"""`yolocompress prune` end to end on the demo data: pruned.pt, finetuned weights, report files, JSON."""
import contextlib
import io
import json
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch

from yolocompress.cli import main, parse_command
from yolocompress.data.dataset import load_data_config
from yolocompress.data.demo import make_demo_dataset
from yolocompress.engine.api import val
from yolocompress.engine.options import ValOptions
from yolocompress.core.hyp import Hyp
from yolocompress.core.errors import TrainingError
from yolocompress.core.stats import Timing
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import load_model, save_checkpoint
from yolocompress.models.export import check_onnx, export_onnx
from yolocompress.prune import api
from yolocompress.prune.speedup import prune_to_target

from .tiny_yolos import IMGSZ, image, one_thread, v5_cfg

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
JSON_KEYS = {"params", "gflops", "speedup_gflops", "speedup_latency", "mAP50", "mAP50-95", "skipped"}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("YOLOCOMPRESS_NO_BAR", "1")
    with one_thread():
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_cmd")
    data = make_demo_dataset(root / "data", n_train=16, n_val=8, imgsz=IMGSZ, seed=0)
    torch.manual_seed(0)
    weights = save_checkpoint(root / "w.pt", Model(v5_cfg(nc=10)))
    return SimpleNamespace(root=root, data=str(data), weights=str(weights))


def prune_argv(demo, *extra):
    return ["prune", "--weights", demo.weights, "--data", demo.data, "--speedup", "1.5", "--max-steps", "20",
            "--epochs", "1", "--imgsz", str(IMGSZ), "--batch-size", "8", "--workers", "0", "--device", "cpu",
            "--project", str(demo.root / "runs"), "--report-batch", "2", *extra]


@pytest.fixture(scope="module")
def run(demo):
    """One prune run through the CLI (`--json`), shared by the checks below."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLOCOMPRESS_NO_BAR", "1")
        code = main(prune_argv(demo, "--method", "l1", "--json"))
    assert code == 0
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return SimpleNamespace(result=result, stdout=out.getvalue(), save_dir=demo.root / "runs" / "exp")


def test_prune_writes_the_run_folder_and_the_json_row(run):
    res, d = run.result, run.save_dir
    assert JSON_KEYS <= set(res) and res["save_dir"] == str(d)
    for name in ("pruned.pt", "weights/best.pt", "weights/last.pt", "report.md", "report.csv", "report.json",
                 "channels.png", "results.csv"):
        assert (d / name).is_file(), name
    assert res["reached"] and res["speedup_gflops"] >= 1.5 and res["skipped"] == []
    assert res["gflops"] < res["baseline"]["GFLOPs"] and res["params"] < res["baseline"]["Parameters"]
    assert res["speedup_latency"] > 0
    md = (d / "report.md").read_text()
    assert "| Model | Parameters | GFLOPs | Model Size | mAP50 | mAP50-95 | Inference Time (bs 2) |" in md
    assert "GFLOPs ratio" in md and "speed-up: GFLOPs" in md and "| latency" in md and "## Channels per layer" in md
    assert "widths: --round-to auto (multiples of 16" in md  # the default rounding, said where the widths are read
    report = json.loads((d / "report.json").read_text())
    assert [r["Model"] for r in report["rows"]][0].startswith("baseline")
    assert report["rows"][1]["GFLOPs %"] == pytest.approx(100 * res["gflops"] / res["baseline"]["GFLOPs"])
    assert "| Model |" in run.stdout


def test_the_pruned_checkpoints_load_validate_export_and_prune_again(run, demo, tmp_path):
    d = run.save_dir
    pruned, ckpt = load_model(d / "pruned.pt")
    meta = ckpt["meta"]
    assert meta["pruned"] and meta["method"] == "l1" and meta["speedup"] == 1.5
    assert meta["prune"]["speedup_gflops"] == pytest.approx(run.result["speedup_gflops"])
    best, best_ckpt = load_model(d / "weights" / "best.pt")
    assert best_ckpt["meta"]["pruned"] and best.model[1].conv.out_channels == pruned.model[1].conv.out_channels
    assert best.model[1].conv.out_channels < Model(v5_cfg(nc=10)).model[1].conv.out_channels
    metrics = val(ValOptions(weights=str(d / "weights" / "best.pt"), data=demo.data, imgsz=IMGSZ, batch_size=8,
                             device="cpu", workers=0, plots=False, project=str(tmp_path / "val")))
    assert metrics["mAP50"] == pytest.approx(run.result["mAP50"])
    assert check_onnx(export_onnx(best, tmp_path / "best.onnx", imgsz=IMGSZ), best, imgsz=IMGSZ) < 1e-3
    again = prune_to_target(best, image(), "l1", 1.3, imgsz=IMGSZ, max_steps=20, measure=False)
    assert again.reached and again.skipped == []


def test_resume_continues_an_interrupted_finetune(run, demo, tmp_path):
    d = shutil.copytree(run.save_dir, tmp_path / "exp")
    _, kw, _ = parse_command(prune_argv(demo, "--method", "l1", "--resume", str(d)))
    with pytest.raises(TrainingError, match="nothing to resume"):  # the one finetune epoch is done
        api.prune_command(**kw)
    last = d / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["meta"]["opt"]["epochs"] = 2  # as if stopped after epoch 1 of 2
    torch.save(ckpt, last)
    res = api.prune_command(**kw)
    assert res["save_dir"] == str(d) and JSON_KEYS <= set(res)
    assert res["speedup_gflops"] == pytest.approx(run.result["speedup_gflops"])
    timed = "Inference Time (bs 2)"  # re-timed beside the pruned model in every report
    assert {k: v for k, v in res["baseline"].items() if k != timed} == \
        {k: v for k, v in run.result["baseline"].items() if k != timed}
    assert len((d / "results.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs
    assert (d / "report.md").is_file()


def test_sparse_methods_warn_without_matching_sparse_training(caplog):
    with caplog.at_level(logging.WARNING, logger="yolocompress"):
        assert api.warn_if_not_sparse("slim", {"meta": {}}, "w.pt")
        assert "w.pt was not sparse-trained" in caplog.text
        assert api.warn_if_not_sparse("group_sl", {"meta": {"sparse_method": "slim"}}, "w.pt")
        assert not api.warn_if_not_sparse("group_sl", {"meta": {"sparse_method": "group_slim"}}, "w.pt")
        assert not api.warn_if_not_sparse("slim", {"meta": {"sparse_method": "slim"}}, "w.pt")
        assert not api.warn_if_not_sparse("l1", None, "w.pt")


def test_gradient_batches_score_with_the_detection_loss_and_keep_bn_statistics(demo):
    data = load_data_config(demo.data)
    torch.manual_seed(0)
    model = Model(v5_cfg(nc=10))
    hyp = Hyp.default_for(model.yaml)
    batches = api.gradient_batches(data, IMGSZ, 4, 32, hyp, 2, workers=0)
    assert len(batches) == 2 and batches[0][0].dtype == torch.uint8 and batches[0][1].shape[1] == 6
    from yolocompress.engine.losses import build_loss
    grad_fn = api.detection_grad_fn("group_taylor", batches, build_loss(model, hyp, IMGSZ), torch.device("cpu"))
    bn = model.model[0].bn
    mean = bn.running_mean.clone()
    grad_fn(model, SimpleNamespace(importance=None))
    assert model.model[0].conv.weight.grad is not None and model.model[0].conv.weight.grad.abs().sum() > 0
    assert torch.equal(bn.running_mean, mean)


def test_pagcp_is_dispatched_to_its_own_loop(demo, monkeypatch):
    seen = {}

    def fake_pagcp(model, prune, train, data, hyp, device, imgsz, save_dir):
        seen.update(prune=prune, data=data, hyp=hyp, device=device)
        out = prune_to_target(model, image(), "l1", 1.5, imgsz=IMGSZ, max_steps=20, measure=False)
        out.skipped = [{"layer": 1, "module": "model.1.conv", "reason": "x"}]
        out.extra = {"pagcp": {"rounds": 1}}
        return out
    monkeypatch.setitem(api.STRATEGIES, "pagcp", fake_pagcp)
    _, kw, _ = parse_command(prune_argv(demo, "--method", "pagcp"))
    data = load_data_config(demo.data)
    torch.manual_seed(0)
    model = Model(v5_cfg(nc=10))
    hyp = Hyp.default_for(model.yaml)
    outcome = api.prune_model(model, kw["prune"], kw["train_opts"], data, hyp, torch.device("cpu"), IMGSZ,
                              demo.root / "pagcp_run")
    summary, skipped, per_layer = outcome.summary(), outcome.skipped, outcome.per_layer
    assert seen["prune"] is kw["prune"] and seen["hyp"] is hyp and seen["data"] is data
    assert summary["speedup_gflops"] >= 1.5 and summary["pagcp"] == {"rounds": 1}
    assert skipped[0]["module"] == "model.1.conv" and any(r["after"] < r["before"] for r in per_layer)


def test_finetune_epochs_0_prunes_and_reports_without_finetuning(demo, run):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(prune_argv(demo, "--method", "l1", "--finetune-epochs", "0", "--name", "nofinetune", "--json"))
    assert code == 0
    res, d = json.loads(out.getvalue().strip().splitlines()[-1]), demo.root / "runs" / "nofinetune"
    assert res["best"] == str(d / "pruned.pt") and not (d / "weights").exists()
    assert res["params"] == run.result["params"]  # the same pruning as the finetuned run
    md = (d / "report.md").read_text()
    assert "not finetuned" in md and "finetuned 0 epoch(s)" in md
    assert "conv layers; " in md and "% of the model's GFLOPs was prunable" in md  # the coverage line


def test_negative_finetune_epochs_is_refused_in_one_line(demo, capsys):
    with pytest.raises(SystemExit) as e:
        main(prune_argv(demo, "--method", "l1", "--finetune-epochs", "-1"))
    assert e.value.code == 2 and "--finetune-epochs: must be 0 (prune only, no finetune) or more" in capsys.readouterr().err


def test_report_times_baseline_and_pruned_model_together(run, demo, monkeypatch):
    assert "both models timed together in 3 interleaved passes" in (run.save_dir / "report.md").read_text()
    pruned, ckpt = load_model(run.save_dir / "pruned.pt")
    meta, key = ckpt["meta"], "Inference Time (bs 2)"
    calls = []
    passes = [Timing((2.0, 2.2, 1.9)), Timing((1.0, 1.0, 1.0))]
    monkeypatch.setattr(api, "interleaved_timings", lambda models, *a, **k: calls.append(models) or passes)
    monkeypatch.setattr(api, "measure_latency", lambda *a, **k: 7.0)
    base_ms, pruned_ms, how, ratio = api._time_side_by_side(meta, pruned, 10, IMGSZ, 2, "cpu")
    assert base_ms == 2.0 and pruned_ms == 1.0 and len(calls[0]) == 2 and calls[0][1] is pruned
    assert calls[0][0] is not pruned and "3 interleaved passes" in how
    assert ratio.spread == (1.9, 2.2) and ratio.text() == "2.00x (1.90-2.20)"
    base_ms, pruned_ms, how, ratio = api._time_side_by_side(
        {**meta, "baseline_weights": str(demo.root / "gone.pt")}, pruned, 10, IMGSZ, 2, "cpu")
    assert base_ms == meta["baseline"][key] and pruned_ms == 7.0 and "baseline timed before pruning" in how
    assert ratio is None
    report = (run.save_dir / "report.md").read_text()
    assert "speed-up: GFLOPs" in report and "| latency" in report  # both ratios, side by side


def test_console_shows_the_summary_and_the_files_keep_every_step_and_channel(run):
    """The 60-line channel table and the per-step lines stay in report.md and prune.log, off the console."""
    assert "## Channels per layer" in (run.save_dir / "report.md").read_text()
    assert "## Channels per layer" not in run.stdout and "channels per layer: " in run.stdout
    steps = [ln for ln in (run.save_dir / "prune.log").read_text().splitlines() if "prune step " in ln]
    assert len(steps) == run.result["steps"] >= 1
