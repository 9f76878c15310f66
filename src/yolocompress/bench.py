"""`yolocompress bench`: every model validated on the same data and timed the same way, side by side."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.errors import ConfigError
from .core.options import (data_option, device_option, imgsz_option, modules_option, option, positive_int,
                            workers_option)
from .core.rundir import increment_path
from .core.stats import DEFAULT_LATENCY_ROUNDS, interleaved_latency, latency_key
from .data.dataset import load_data_config
from .engine.options import check_imgsz, model_stride
from .engine.validator import Validator
from .models.checkpoint import load_model
from .models.registry import load_user_modules
from .report.plots import plot_tradeoff
from .report.stats import measure_row
from .report.tables import compare_rows, markdown_table, write_report

LOGGER = logging.getLogger("yolocompress")


def bench_models(weights: list, data: str, imgsz: int = 640, batch_size: int = 32, device: str = "",
                 half: bool = False, workers: int = 8, labels: list | None = None,
                 latency_rounds: int = DEFAULT_LATENCY_ROUNDS) -> tuple[list[dict], str]:
    """Rows of the comparison table (first model = reference) and the device they were timed on. Accuracy first,
    model by model; then the latency of all models in `latency_rounds` interleaved passes (median per model)."""
    d = load_data_config(data)
    models = [load_model(w, nc=d.nc)[0] for w in weights]
    stride = max(model_stride(m) for m in models)
    imgsz = check_imgsz(imgsz, stride)
    validator = Validator(d, imgsz, batch_size, device, workers, stride=stride)
    labels = labels or [Path(w).parent.parent.name + "/" + Path(w).name if Path(w).parent.name == "weights"
                        else Path(w).name for w in weights]
    rows = []
    for label, m in zip(labels, models):
        LOGGER.info(f"bench: {label}")
        rows.append(measure_row(m, label, validator=validator, imgsz=imgsz, batch=batch_size,
                                device=validator.device, half=half, time_it=False))
    LOGGER.info(f"bench: timing {len(models)} models, {latency_rounds} interleaved passes")
    times = interleaved_latency(models, imgsz, batch_size, validator.device, half=half, rounds=latency_rounds)
    for row, t in zip(rows, times):
        row[latency_key(batch_size)] = t
    if validator.device.type == "cuda":
        torch.cuda.empty_cache()
    return rows, str(validator.device)


@dataclass
class BenchOptions:
    """Benchmark"""

    weights: list[str] = option(help="checkpoints to compare (the first is the reference)", required=True,
                                default_factory=list, metavar="W.pt")
    data: str = data_option()
    imgsz: int = imgsz_option()
    batch_size: int = option(32, "batch size of validation and of the inference time", type=positive_int)
    device: str = device_option()
    half: bool = option(False, "FP16 latency (CUDA only)")
    latency_rounds: int = option(DEFAULT_LATENCY_ROUNDS, "interleaved timing passes over all models; each model "
                                                         "keeps its median", type=positive_int)
    workers: int = workers_option()
    project: str = option("runs/bench", "folder of the run folders")
    name: str = option("exp", "run folder name (exp, exp2, ... unless --exist-ok)")
    exist_ok: bool = option(False, "reuse the run folder --project/--name")
    labels: list[str] | None = option(None, "row labels, one per checkpoint (default: run folder and file name)")
    modules: list = modules_option()


def bench_command(opts: BenchOptions) -> dict:
    load_user_modules(opts.modules)
    rounds = opts.latency_rounds
    if opts.labels is not None and len(opts.labels) != len(opts.weights):
        raise ConfigError(f"--labels: {len(opts.labels)} labels for {len(opts.weights)} checkpoints; give one each")
    rows, device = bench_models(opts.weights, opts.data, opts.imgsz, opts.batch_size, opts.device, opts.half,
                                opts.workers, labels=opts.labels, latency_rounds=rounds)
    save_dir = increment_path(Path(opts.project) / opts.name, opts.exist_ok)
    lat_key = next(k for k in rows[0] if k.startswith("Inference Time"))
    notes = [f"image size {opts.imgsz}, latency: median over {rounds} interleaved passes (all models timed one "
             f"after the other in each) of the median of 10 timed runs after 3 warm-up runs, at batch "
             f"{opts.batch_size} on {device}" + (" (FP16)" if opts.half else " (FP32)"),
             "percentages are of the first model; mAP columns show the difference from it"]
    paths = write_report(rows, save_dir, stem="bench", title="Benchmark", notes=notes)
    plots = [plot_tradeoff(rows, "GFLOPs", "mAP50-95", save_dir / "map_vs_gflops.png"),
             plot_tradeoff(rows, lat_key, "mAP50-95", save_dir / "map_vs_latency.png")]
    print(markdown_table(compare_rows(rows)))
    print(f"\nreport: {paths['md']}\nplots: {plots[0]}\n       {plots[1]}")
    return {"save_dir": str(save_dir), "rows": compare_rows(rows), "plots": [str(p) for p in plots]}
