"""What the benchmark scripts share: the bench data paths, one measured table row, a results file that keeps
every finished row (so an interrupted benchmark resumes where it stopped), and runs of `prune` / `train` with
distillation flags built the way the CLI builds them."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from yolocompress.cli import build_parser
from yolocompress.distill.api import distill_callbacks_factory
from yolocompress.engine.api import train
from yolocompress.engine.hyp import Hyp
from yolocompress.engine.options import TrainOptions
from yolocompress.models.checkpoint import load_model
from yolocompress.prune.api import prune_command
from yolocompress.report.stats import checkpoint_size_mb, count_gflops, count_params, measure_latency

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BENCH_DATA = SHARED / "bench" / "data" / "data.yaml"
BENCH_HYP = SHARED / "bench" / "hyp.digits.yaml"
FIXTURE = SHARED / "fixtures" / "yolov5n_official_digits.pt"
LOGGER = logging.getLogger("yolocompress")


def measure(label: str, weights, data, imgsz: int, device: str, validator) -> dict:
    """One table row: size (MB of our FP32 checkpoint), accuracy on the validator's data, CPU latency at batch 1
    and 32 (and GPU FP16 at batch 32)."""
    m = load_model(weights, nc=data.nc)[0]
    met = validator.run(m)
    r = {"Model": label, "Parameters": count_params(m), "GFLOPs": count_gflops(m, imgsz),
         "Model Size": checkpoint_size_mb(m), "mAP50": met["mAP50"], "mAP50-95": met["mAP50-95"],
         "CPU bs1 (ms)": measure_latency(m, imgsz, 1, "cpu"), "CPU bs32 (ms)": measure_latency(m, imgsz, 32, "cpu")}
    if torch.cuda.is_available():
        r["GPU bs32 FP16 (ms)"] = measure_latency(m, imgsz, 32, "0", half=True)
    return r


class Results:
    """A JSON file of finished rows, rewritten atomically after each one; `has(key)` lets a rerun skip them."""

    def __init__(self, path, args: argparse.Namespace):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"rows": {}, "minutes": {}}
        self.data["args"] = vars(args)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def has(self, key: str) -> bool:
        return key in self.data["rows"]

    def row(self, key: str) -> dict:
        return self.data["rows"][key]

    def add(self, key: str, row: dict, t0: float, **extra) -> None:
        self.data["rows"][key] = {**row, **extra}
        self.data["minutes"][key] = (time.time() - t0) / 60
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)
        LOGGER.info(f"benchmark row {key}: {row}")


def kd_flags(logit: str | None = None, feature: str | None = None, teacher=None, imgsz: int = 640,
             logit_weight: float = 1.0, feature_weight: float = 1.0) -> argparse.Namespace:
    """The distillation flags of the CLI as a namespace (defaults for everything not given)."""
    return argparse.Namespace(teacher=teacher, kd_logit=logit, kd_logit_weight=logit_weight, kd_obj_weighted=False,
                              kd_feature=feature, kd_feature_weight=feature_weight, kd_layers=None,
                              kd_teacher_layers=None, kd_schedule="constant", kd_final_ratio=0.01,
                              kd_stop_epoch=None, imgsz=imgsz)


def kd_argv(logit: str | None, feature: str | None, teacher: str = "auto") -> list[str]:
    if not (logit or feature):
        return []
    return ["--teacher", teacher] + (["--kd-logit", logit] if logit else []) + \
        (["--kd-feature", feature] if feature else [])


def run_prune(weights, method: str, speedup: float, epochs: int, *, data, hyp, imgsz: int, batch: int, device: str,
              workers: int, project, name: str, extra: list[str] = ()) -> dict:
    """`yolocompress prune ... --exist-ok` as the CLI parses it; returns its summary (with `best`)."""
    argv = ["prune", "--weights", str(weights), "--data", str(data), "--hyp", str(hyp), "--method", method,
            "--speedup", str(speedup), "--epochs", str(epochs), "--imgsz", str(imgsz), "--batch-size", str(batch),
            "--workers", str(workers), "--project", str(project), "--name", name, "--exist-ok", *extra]
    if device:
        argv += ["--device", device]
    return prune_command(build_parser().parse_args(argv))


def run_train(*, data, hyp, epochs: int, imgsz: int, batch: int, device: str, workers: int, project, name: str,
              weights=None, cfg=None, model=None, meta=None, kd: argparse.Namespace | None = None,
              default_teacher=None, noautoanchor: bool = False):
    """One training run with the engine (optionally distilled); returns the engine's TrainResult."""
    opts = TrainOptions(data=str(data), epochs=epochs, batch_size=batch, imgsz=imgsz, device=device, workers=workers,
                        project=str(project), name=name, exist_ok=True, noautoanchor=noautoanchor)
    factory = distill_callbacks_factory(kd, default_teacher=default_teacher) if kd is not None else None
    return train(opts, weights=None if weights is None else str(weights), cfg=cfg, model=model, meta=meta,
                 hyp=Hyp.load(hyp), callbacks_factory=factory)


def setup_logging():
    import os
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")
    os.chdir(ROOT)  # the bench data.yaml's path is relative to the project checkout
