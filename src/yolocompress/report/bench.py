"""`yolocompress bench`: every model validated on the same data and timed the same way, side by side."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.dataset import load_data_config
from ..engine.options import check_imgsz
from ..core.rundir import increment_path
from ..engine.validator import Validator
from ..models.checkpoint import load_model
from ..models.registry import load_user_modules
from .plots import plot_tradeoff
from ..core.stats import DEFAULT_LATENCY_ROUNDS, interleaved_latency, latency_key
from .stats import measure_row
from .tables import markdown_table, compare_rows, write_report

LOGGER = logging.getLogger("yolocompress")


def bench_models(weights: list, data: str, imgsz: int = 640, batch_size: int = 32, device: str = "",
                 half: bool = False, workers: int = 8, labels: list | None = None,
                 latency_rounds: int = DEFAULT_LATENCY_ROUNDS) -> tuple[list[dict], str]:
    """Rows of the comparison table (first model = reference) and the device they were timed on. Accuracy first,
    model by model; then the latency of all models in `latency_rounds` interleaved passes (median per model)."""
    d = load_data_config(data)
    models = [load_model(w, nc=d.nc)[0] for w in weights]
    stride = max(max(int(m.stride.max()) for m in models), 32)
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


def bench_command(args) -> dict:
    load_user_modules(args.modules)
    rounds = args.latency_rounds
    rows, device = bench_models(args.weights, args.data, args.imgsz, args.batch_size, args.device, args.half,
                                args.workers, latency_rounds=rounds)
    save_dir = increment_path(Path(args.project) / args.name, args.exist_ok)
    lat_key = next(k for k in rows[0] if k.startswith("Inference Time"))
    notes = [f"image size {args.imgsz}, latency: median over {rounds} interleaved passes (all models timed one "
             f"after the other in each) of the median of 10 timed runs after 3 warm-up runs, at batch "
             f"{args.batch_size} on {device}" + (" (FP16)" if args.half else " (FP32)"),
             "percentages are of the first model; mAP columns show the difference from it"]
    paths = write_report(rows, save_dir, stem="bench", title="Benchmark", notes=notes)
    plots = [plot_tradeoff(rows, "GFLOPs", "mAP50-95", save_dir / "map_vs_gflops.png"),
             plot_tradeoff(rows, lat_key, "mAP50-95", save_dir / "map_vs_latency.png")]
    print(markdown_table(compare_rows(rows)))
    print(f"\nreport: {paths['md']}\nplots: {plots[0]}\n       {plots[1]}")
    return {"save_dir": str(save_dir), "rows": compare_rows(rows), "plots": [str(p) for p in plots]}
