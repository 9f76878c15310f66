"""Prune benchmark: the official yolov5n trained on the benchmark data (../shared/fixtures/, imported as users
import theirs), every method at 2.0x with one finetune recipe, plus a control row (the unpruned baseline
finetuned with the same recipe, so that gains from extra epochs are not credited to pruning). Writes the table
(CPU latency at batch 1 and 32, GPU batch 32 FP16 when a GPU is present) as markdown to stdout and JSON to
--out, row by row: a rerun after an interruption skips the rows already measured.

usage: python benchmarks/prune_bench.py [--methods l1 lamp ...] [--finetune-epochs 10] [--device cpu]
On a 2-core CPU this is a long background job (about 20 s per finetune epoch per method on this data).
"""
import argparse
import time

from common import BENCH_DATA, BENCH_HYP, FIXTURE, Results, measure, run_prune, run_train, setup_logging
from yolocompress.data.dataset import load_data_config
from yolocompress.engine.validator import Validator
from yolocompress.prune.methods import METHODS
from yolocompress.report.tables import compare_rows, markdown_table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(FIXTURE))
    ap.add_argument("--data", default=str(BENCH_DATA))
    ap.add_argument("--hyp", default=str(BENCH_HYP))
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
    setup_logging()
    data = load_data_config(a.data)
    validator = Validator(data, a.imgsz, 32, a.device, a.workers)
    results = Results(a.out, a)
    common = dict(data=a.data, hyp=a.hyp, imgsz=a.imgsz, batch=a.batch_size, device=a.device, workers=a.workers,
                  project=a.project)

    def done(key, label, weights, t0):
        results.add(key, measure(label, weights, data, a.imgsz, a.device, validator), t0)

    if not results.has("baseline"):
        done("baseline", "baseline (official yolov5n)", a.weights, time.time())
    if not results.has("control"):
        t0 = time.time()
        res = run_train(weights=a.weights, epochs=a.finetune_epochs, name="control", noautoanchor=True, **common)
        done("control", f"control: baseline finetuned {a.finetune_epochs} epochs", res.best, t0)
    for m in a.methods:
        if not results.has(m):
            t0 = time.time()
            done(m, f"{m} {a.speedup}x", run_prune(a.weights, m, a.speedup, a.finetune_epochs, name=m, **common)["best"],
                 t0)
    rows = [results.row(k) for k in ["baseline", "control", *a.methods] if results.has(k)]
    print(markdown_table(compare_rows(rows)))

if __name__ == "__main__":
    main()
