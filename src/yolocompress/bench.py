"""`yolocompress bench`: every model validated on the same data and timed the same way, side by side."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.errors import ConfigError
from .core.options import (data_option, device_option, exist_ok_option, imgsz_option, modules_option, name_option,
                           option, positive_int, project_option, workers_option)
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


def _label_parts(w) -> list[str]:
    """Folder names from the file up, `weights/` left out: `runs/compress/a/3-finetune/weights/best.pt` ->
    [best.pt, 3-finetune, a, compress, runs]."""
    parts = list(reversed(Path(w).parts))
    return [parts[0]] + [p for p in parts[1:] if p != "weights"]


def bench_labels(weights: list) -> list[str]:
    """Short names that tell the models apart: a file of a run's weights/ is named by the run folder and the file
    (`exp3/best.pt`), any other file by its name (`yolov5n.pt`), with the run's own folder in front when the
    folder is a stage of a compress or demo run (`a/3-finetune/best.pt`), and more parent folders where two
    labels would still be the same."""
    parts = [_label_parts(w) for w in weights]
    in_run = [Path(w).parent.name == "weights" for w in weights]  # else the file name alone, unless it clashes
    depth = [(3 if len(p) > 2 and re.match(r"\d+-", p[1]) else 2) if run else 1 for p, run in zip(parts, in_run)]
    while True:
        labels = ["/".join(reversed(p[:d])) for p, d in zip(parts, depth)]
        clashes = {lb for lb in labels if labels.count(lb) > 1}
        grow = [i for i, lb in enumerate(labels) if lb in clashes and depth[i] < len(parts[i])]
        if not grow:
            return labels
        for i in grow:
            depth[i] += 1


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
    labels = labels or bench_labels(weights)
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
    project: str = project_option("runs/bench")
    name: str = name_option()
    exist_ok: bool = exist_ok_option()
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
