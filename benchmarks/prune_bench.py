"""Prune benchmark: the official yolov5n trained on the benchmark data (../shared/fixtures/, imported as users
import theirs), every method at 2.0x with one finetune recipe, plus a control row (the unpruned baseline
finetuned with the same recipe, so that gains from extra epochs are not credited to pruning). Writes the table
(CPU latency at batch 1 and 32, GPU batch 32 FP16 when a GPU is present) as markdown to stdout and JSON to
--out.

usage: python benchmarks/prune_bench.py [--methods l1 lamp ...] [--finetune-epochs 10] [--device cpu]
On a 2-core CPU this is a long background job (about 20 s per finetune epoch per method on this data).
"""
import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

from yolocompress.cli import build_parser
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.api import train
from yolocompress.engine.hyp import Hyp
from yolocompress.engine.options import TrainOptions
from yolocompress.engine.validator import Validator
from yolocompress.models.checkpoint import load_model
from yolocompress.prune.api import prune_command
from yolocompress.prune.methods import METHODS
from yolocompress.report.stats import count_gflops, count_params, measure_latency
from yolocompress.report.tables import compare_rows, markdown_table

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def row(label, weights, data, imgsz, device, validator):
    m = load_model(weights, nc=data.nc)[0]
    met = validator.run(m)
    r = {"Model": label, "Parameters": count_params(m), "GFLOPs": count_gflops(m, imgsz),
         "Model Size": Path(weights).stat().st_size / 1e6, "mAP50": met["mAP50"], "mAP50-95": met["mAP50-95"],
         "CPU bs1 (ms)": measure_latency(m, imgsz, 1, "cpu"), "CPU bs32 (ms)": measure_latency(m, imgsz, 32, "cpu")}
    if torch.cuda.is_available():
        r["GPU bs32 FP16 (ms)"] = measure_latency(m, imgsz, 32, "0", half=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(SHARED / "fixtures" / "yolov5n_official_digits.pt"))
    ap.add_argument("--data", default=str(SHARED / "bench" / "data" / "data.yaml"))
    ap.add_argument("--hyp", default=str(SHARED / "bench" / "hyp.digits.yaml"))
    ap.add_argument("--methods", nargs="+", default=list(METHODS) + ["pagcp"])
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--project", default="runs/prune-bench")
    ap.add_argument("--out", default="runs/prune-bench/results.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")
    os.chdir(ROOT)  # the bench data.yaml's path is relative to the project checkout
    data = load_data_config(a.data)
    t0 = time.time()
    control = train(TrainOptions(data=a.data, epochs=a.finetune_epochs, batch_size=a.batch_size, imgsz=a.imgsz,
                                 device=a.device, workers=a.workers, project=a.project, name="control",
                                 exist_ok=True), weights=a.weights, hyp=Hyp.load(a.hyp))
    results = {"baseline": a.weights, "control": str(control.best)}
    for m in a.methods:
        argv = ["prune", "--weights", a.weights, "--data", a.data, "--hyp", a.hyp, "--method", m, "--speedup",
                str(a.speedup), "--epochs", str(a.finetune_epochs), "--imgsz", str(a.imgsz), "--batch-size",
                str(a.batch_size), "--workers", str(a.workers), "--project", a.project, "--name", m, "--exist-ok"]
        if a.device:
            argv += ["--device", a.device]
        res = prune_command(build_parser().parse_args(argv))
        results[m] = res["best"]
    validator = Validator(data, a.imgsz, 32, a.device, a.workers)
    rows = [row(k if k != "baseline" else "baseline (official yolov5n)", w, data, a.imgsz, a.device, validator)
            for k, w in results.items()]
    table = markdown_table(compare_rows(rows))
    print(table)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"rows": rows, "wall_min": (time.time() - t0) / 60, "args": vars(a)}, indent=1))


if __name__ == "__main__":
    main()
