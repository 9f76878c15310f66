"""Compare every pruning method on one baseline each of yolov5n and yolov7-tiny trained on ../shared/bench/.

For each baseline: a control row (the baseline finetuned with the same recipe, so that gains from the extra epochs
are not credited to pruning), every method and PAGCP at 2.0x, with and without distillation from the unpruned model
(`--teacher auto --kd-logit l2` by default), one finetune recipe for all; then the five best at 2.0x (by mAP50-95
without distillation) again at 3.0x and 4.0x, with and without distillation; then `yolocompress bench` over the
baseline and every result (GPU batch 32 FP16 when a GPU is present, else CPU batch 32), which writes its table and
the mAP-vs-GFLOPs and mAP-vs-latency plots with the Pareto front. Rows (CPU latency at batch 1 and 32, GPU FP16
at batch 32 when present) go to --out as they finish; a rerun skips them.

Baselines: yolov5n = the official checkpoint of ../shared/fixtures/; yolov7-tiny = --v7-weights, or trained here
by our engine from --v7-cfg for --v7-epochs (cached in the project folder).

usage: python benchmarks/compare_methods.py [--models v5n v7t] [--methods l1 lamp ...] [--top 5]
       [--speedups 2.0 3.0 4.0] [--finetune-epochs 10] [--kd l2] [--device 0] [--no-bench]
       [--import-prune-bench runs/prune-bench/results.json] [--latency-only]
Sized for a GPU (the yolov7-tiny baseline and ~80 finetunes); on a 2-core CPU run subsets (--models, --methods).
"""
import argparse
import json
import time
from pathlib import Path

from common import FIXTURE, Bench, add_bench_args, add_v7_args, kd_options, run_prune, run_train, table
from yolocompress.prune.methods import METHODS
from yolocompress.bench import BenchOptions, bench_command


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", choices=["v5n", "v7t"], default=["v5n", "v7t"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS) + ["pagcp"])
    ap.add_argument("--speedups", nargs="+", type=float, default=[2.0, 3.0, 4.0])
    ap.add_argument("--top", type=int, default=5, help="methods carried on to the higher speed-ups")
    ap.add_argument("--kd", default="l2", help="logit loss of the distilled runs ('none' to skip them)")
    add_v7_args(ap, epochs=150)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--no-bench", action="store_true", help="skip the final `bench` over all models")
    ap.add_argument("--import-prune-bench", default=None, metavar="JSON",
                    help="reuse prune_bench.py's yolov5n rows (same recipe) as this script's v5n 2.0x rows")
    add_bench_args(ap, "compare-methods")
    b = Bench(ap.parse_args())
    a = b.args
    if a.import_prune_bench:
        import_prune_bench(b.results, a.import_prune_bench, a)
    if a.latency_only:
        b.remeasure_latency()
    else:
        run_all(b)
    for model in a.models:
        rows = [r for k, r in b.results.data["rows"].items() if k.startswith(model + "/")]
        print(f"\n{model}\n" + table(rows))
        if not a.no_bench and not a.latency_only:
            bench_command(BenchOptions(
                weights=[r["weights"] for r in rows], data=str(a.data), imgsz=a.imgsz, batch_size=32, device=a.device,
                half=b.validator.device.type == "cuda", workers=a.workers, latency_rounds=a.latency_rounds,
                project=str(Path(a.project) / "bench"), name=model, exist_ok=True, labels=[r["Model"] for r in rows]))


def import_prune_bench(results, path, a):
    """prune_bench.py runs the yolov5n fixture at 2.0x with the same recipe: its rows need not be run twice."""
    other = json.loads(Path(path).read_text())
    keys = ("finetune_epochs", "imgsz", "batch_size", "hyp", "data")
    same = {k: other["args"].get(k) == getattr(a, k) for k in keys}
    if not all(same.values()) or other["args"].get("speedup") != a.speedups[0]:
        raise SystemExit(f"{path}: another recipe ({', '.join(k for k, v in same.items() if not v) or 'speedup'})")
    for key, row in other["rows"].items():
        new = f"v5n/{key}" if key in ("baseline", "control") else f"v5n/{key}/{a.speedups[0]}x"
        if not results.has(new):
            results.data["rows"][new] = {**row, "Model": f"v5n {row['Model']}"}
            results.data["minutes"][new] = other["minutes"].get(key)
    results.save()


def run_all(b: Bench):
    a, results = b.args, b.results
    kd_modes = [False] + ([True] if a.kd != "none" else [])
    for model in a.models:
        common = b.common_for(model)
        key = f"{model}/baseline"
        if not results.has(key):
            t0 = time.time()
            weights = FIXTURE if model == "v5n" else a.v7_weights
            if weights is None:
                weights = run_train(**b.v7_baseline_run()).best
            b.add(key, f"{model} baseline", weights, t0)
        base = results.row(key)["weights"]
        if not results.has(f"{model}/control"):  # extra epochs alone: what pruning must not be credited with
            t0 = time.time()
            res = run_train(weights=base, epochs=a.finetune_epochs, name=f"{model}-control", noautoanchor=True,
                            **common)
            b.add(f"{model}/control", f"{model} control: baseline finetuned {a.finetune_epochs} epochs", res.best, t0)

        def prune(method, speedup, kd):
            k = f"{model}/{method}/{speedup}x" + ("/kd" if kd else "")
            if not results.has(k):
                t0 = time.time()
                res = run_prune(base, method, speedup, a.finetune_epochs, name=k.replace("/", "-"),
                                kd=kd_options(a.kd, teacher="auto") if kd else None, **common)
                b.add(k, f"{model} {method} {speedup}x" + (f" +KD {a.kd}" if kd else ""), res["best"], t0)

        for method in a.methods:
            for kd in kd_modes:
                prune(method, a.speedups[0], kd)
        ranked = sorted(a.methods, key=lambda m: -results.row(f"{model}/{m}/{a.speedups[0]}x")["mAP50-95"])
        for speedup in a.speedups[1:]:
            for method in ranked[:a.top]:
                for kd in kd_modes:
                    prune(method, speedup, kd)

if __name__ == "__main__":
    main()
