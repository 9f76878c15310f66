"""`compress` and `demo` stages: finished stages are never redone, an interrupted one is redone or resumed."""
import contextlib
import io
import json

import pytest
import torch

from yolocompress import pipeline
from yolocompress.cli import main
from yolocompress.core.errors import ConfigError
from yolocompress.models.builder import Model
from yolocompress.models.checkpoint import save_checkpoint
from yolocompress.stages import StageRunner

from .conftest import tiny_config

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]


def test_stage_runner_skips_finished_and_redoes_interrupted(tmp_path):
    calls = []

    def work(d, resuming):
        calls.append((d.name, resuming))
        (d / "out.txt").write_text("x")
        return {"n": len(calls)}

    r = StageRunner(tmp_path)
    assert r.run("a", work) == {"n": 1}
    assert r.run("a", work) == {"n": 1} and len(calls) == 1  # finished: not run again
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "partial.tmp").write_text("half")
    r.run("b", work)
    assert calls[-1] == ("b", False) and not (tmp_path / "b" / "partial.tmp").exists()  # redone from scratch
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "weights").mkdir()
    r.run("c", work, resumable=True)
    assert calls[-1] == ("c", True)  # a resumable stage continues from what its folder holds


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    torch.manual_seed(0)
    return str(save_checkpoint(tmp_path_factory.mktemp("w") / "base.pt", Model(tiny_config())))


def _argv(demo_data, base, root, *extra):
    return ["compress", "--weights", base, "--data", str(demo_data), "--method", "l1", "--speedup", "1.5",
            "--max-steps", "30", "--epochs", "1", "--imgsz", "64", "--batch-size", "4", "--workers", "0",
            "--device", "cpu", "--report-batch", "2", "--project", str(root), "--name", "c", *extra]


def _run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv + ["--json"])
    return code, (json.loads(out.getvalue().strip().splitlines()[-1]) if code == 0 else None)


def test_compress_resumes_at_the_first_unfinished_stage(demo_data, base, tmp_path, monkeypatch):
    real_finetune = pipeline._finetune_stage

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_finetune_stage", crash)
    code, _ = _run(_argv(demo_data, base, tmp_path))
    assert code == 130  # interrupted in the finetune stage
    root = tmp_path / "c"
    pruned = root / "2-prune" / "pruned.pt"
    assert (root / "2-prune" / "DONE.json").is_file() and pruned.is_file()
    assert not (root / "3-finetune" / "DONE.json").exists()
    mtime = pruned.stat().st_mtime_ns

    monkeypatch.setattr(pipeline, "_finetune_stage", real_finetune)
    code, result = _run(_argv(demo_data, base, tmp_path))
    assert code == 0
    assert pruned.stat().st_mtime_ns == mtime  # the finished prune stage was not redone
    for f in ("report.md", "report.csv", "report.json", "channels.png", "3-finetune/weights/best.pt"):
        assert (root / f).is_file(), f
    assert result["speedup_gflops"] >= 1.5 and "mAP50-95" in result
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/DONE.json")}
    code, again = _run(_argv(demo_data, base, tmp_path))  # everything finished: nothing is redone
    assert code == 0 and again["mAP50-95"] == result["mAP50-95"]
    assert stamps == {p: p.stat().st_mtime_ns for p in root.glob("*/DONE.json")}


def test_compress_refuses_other_settings_in_the_same_folder(demo_data, base, tmp_path):
    from yolocompress.cli import parse_command
    from yolocompress.core.options import flat_settings
    _, kw, _ = parse_command(_argv(demo_data, base, tmp_path))
    settings = flat_settings(kw["train_opts"], kw["prune"], kw["sparse"], kw["distill"])
    (tmp_path / "c").mkdir()
    pipeline._check_settings(tmp_path / "c", settings)
    settings["speedup"] = 3.0
    with pytest.raises(ConfigError, match="speedup"):
        pipeline._check_settings(tmp_path / "c", settings)


def test_compress_folder_of_an_earlier_version_still_resumes(demo_data, base, tmp_path):
    """compress.json written before the typed options (argparse names, no --kd-option) is the same run."""
    import json
    from yolocompress.cli import parse_command
    from yolocompress.core.options import flat_settings
    _, kw, _ = parse_command(_argv(demo_data, base, tmp_path))
    settings = flat_settings(kw["train_opts"], kw["prune"], kw["sparse"], kw["distill"])
    old = {("global_pruning" if k == "global" else k): v for k, v in settings.items()
           if k not in ("kd_option", "device", "workers", "exist_ok", "latency_device")}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "compress.json").write_text(json.dumps(old))
    pipeline._check_settings(tmp_path / "c", settings)  # accepted
    with pytest.raises(ConfigError, match="global"):
        pipeline._check_settings(tmp_path / "c", {**settings, "global": True})


def test_compress_with_finetune_epochs_0_reports_the_pruned_model(demo_data, base, tmp_path):
    code, result = _run(_argv(demo_data, base, tmp_path, "--finetune-epochs", "0"))
    assert code == 0
    root = tmp_path / "c"
    assert result["best"] == str(root / "2-prune" / "pruned.pt") and not (root / "3-finetune").exists()
    assert "not finetuned" in (root / "report.md").read_text()
