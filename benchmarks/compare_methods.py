"""Compare every pruning method on one baseline each of yolov5n and yolov7-tiny trained on ../shared/bench/.

For each baseline: every method and PAGCP at 2.0x, with and without distillation from the unpruned model
(`--teacher auto --kd-logit l2` by default), one finetune recipe for all; then the five best at 2.0x (by mAP50-95
without distillation) again at 3.0x and 4.0x, with and without distillation; then `yolocompress bench` over the
baseline and every result (GPU batch 32 FP16 when a GPU is present, else CPU batch 32), which writes its table and
the mAP-vs-GFLOPs and mAP-vs-latency plots with the Pareto front. Rows (CPU latency at batch 1 and 32, GPU FP16
at batch 32 when present) go to --out as they finish; a rerun skips them.

Baselines: yolov5n = the official checkpoint of ../shared/fixtures/; yolov7-tiny = --v7-weights, or trained here
by our engine for --v7-epochs (cached in the project folder).

usage: python benchmarks/compare_methods.py [--models v5n v7t] [--methods l1 lamp ...] [--top 5]
       [--speedups 2.0 3.0 4.0] [--finetune-epochs 10] [--kd l2] [--device 0] [--no-bench]
Sized for a GPU (the yolov7-tiny baseline and ~80 finetunes); on a 2-core CPU run subsets (--models, --methods).
"""
import argparse
import time
from pathlib import Path

from common import (BENCH_DATA, BENCH_HYP, FIXTURE, Results, kd_argv, measure, run_prune, run_train,
                    setup_logging)
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.validator import Validator
from yolocompress.prune.methods import METHODS
from yolocompress.report.bench import bench_command
from yolocompress.report.tables import compare_rows, markdown_table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", choices=["v5n", "v7t"], default=["v5n", "v7t"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS) + ["pagcp"])
    ap.add_argument("--speedups", nargs="+", type=float, default=[2.0, 3.0, 4.0])
    ap.add_argument("--top", type=int, default=5, help="methods carried on to the higher speed-ups")
    ap.add_argument("--kd", default="l2", help="logit loss of the distilled runs ('none' to skip them)")
    ap.add_argument("--v7-weights", default=None)
    ap.add_argument("--v7-epochs", type=int, default=150)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--data", default=str(BENCH_DATA))
    ap.add_argument("--hyp", default=str(BENCH_HYP))
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-bench", action="store_true", help="skip the final `bench` over all models")
    ap.add_argument("--project", default="runs/compare-methods")
    ap.add_argument("--out", default="runs/compare-methods/results.json")
    a = ap.parse_args()
    setup_logging()
    data = load_data_config(a.data)
    validator = Validator(data, a.imgsz, 32, a.device, a.workers)
    results = Results(a.out, a)
    common = dict(data=a.data, hyp=a.hyp, imgsz=a.imgsz, batch=a.batch_size, device=a.device, workers=a.workers,
                  project=a.project)
    kd_modes = [False] + ([True] if a.kd != "none" else [])

    for model in a.models:
        key = f"{model}/baseline"
        if not results.has(key):
            t0 = time.time()
            weights = FIXTURE if model == "v5n" else a.v7_weights
            if weights is None:
                weights = run_train(cfg="yolov7-tiny.yaml", epochs=a.v7_epochs, name="v7t-baseline", **common).best
            results.add(key, measure(f"{model} baseline", weights, data, a.imgsz, a.device, validator), t0,
                        weights=str(weights))
        base = results.row(key)["weights"]

        def prune(method, speedup, kd):
            k = f"{model}/{method}/{speedup}x" + ("/kd" if kd else "")
            if results.has(k):
                return
            t0 = time.time()
            extra = kd_argv(a.kd, None) if kd else []
            res = run_prune(base, method, speedup, a.finetune_epochs, name=k.replace("/", "-"), extra=extra, **common)
            label = f"{model} {method} {speedup}x" + (f" +KD {a.kd}" if kd else "")
            results.add(k, measure(label, res["best"], data, a.imgsz, a.device, validator), t0, weights=res["best"])

        for method in a.methods:
            for kd in kd_modes:
                prune(method, a.speedups[0], kd)
        ranked = sorted(a.methods, key=lambda m: -results.row(f"{model}/{m}/{a.speedups[0]}x")["mAP50-95"])
        for speedup in a.speedups[1:]:
            for method in ranked[:a.top]:
                for kd in kd_modes:
                    prune(method, speedup, kd)

    for model in a.models:
        keys = [k for k in results.data["rows"] if k.startswith(model + "/")]
        rows = [results.row(k) for k in keys]
        print(f"\n{model}\n" + markdown_table(compare_rows([{k: v for k, v in r.items() if k != "weights"}
                                                            for r in rows])))
        if not a.no_bench:
            bench_command(argparse.Namespace(
                weights=[r["weights"] for r in rows], data=a.data, imgsz=a.imgsz, batch_size=32, device=a.device,
                half=validator.device.type == "cuda", workers=a.workers, project=str(Path(a.project) / "bench"),
                name=model, exist_ok=True, modules=[]))


if __name__ == "__main__":
    main()
