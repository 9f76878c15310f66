"""Prune benchmark: the official yolov5n trained on the benchmark data (../shared/fixtures/, imported as users
import theirs), every method at 2.0x with one finetune recipe, plus a control row (the unpruned baseline
finetuned with the same recipe, so that gains from extra epochs are not credited to pruning). Writes the table
(CPU latency at batch 1 and 32, GPU batch 32 FP16 when a GPU is present) as markdown to stdout and JSON to
--out, row by row: a rerun after an interruption skips the rows already measured.

usage: python benchmarks/prune_bench.py [--methods l1 lamp lamp+global ...] [--finetune-epochs 10] [--kd l1]
       [--device cpu]
--kd LOSS makes the recipe distil every finetune from the unpruned baseline with that logit loss (the control
too, from itself, so that the control still differs from the pruned rows only by the pruning).
On a 2-core CPU this is a long background job (about 20 s per finetune epoch per method on this data).
"""
import argparse
import time

from common import FIXTURE, Bench, add_bench_args, kd_argv, kd_flags, run_prune, run_train, table
from yolocompress.prune.methods import METHODS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(FIXTURE))
    ap.add_argument("--methods", nargs="+", default=list(METHODS) + ["pagcp"],
                    help="method names; NAME+FLAG adds --FLAG to its prune command (e.g. lamp+global)")
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--kd", default="none", choices=["none", "l1", "l2", "ast"],
                    help="logit distillation from the baseline in every finetune, control included (default none)")
    add_bench_args(ap, "prune-bench")
    b = Bench(ap.parse_args())
    a = b.args
    if a.latency_only:
        b.remeasure_latency()
    else:
        run_all(b)
    print(table([b.results.row(k) for k in ["baseline", "control", *a.methods] if b.results.has(k)]))


def run_all(b: Bench):
    a = b.args
    if not b.results.has("baseline"):
        b.add("baseline", "baseline (official yolov5n)", a.weights, time.time())
    logit = None if a.kd == "none" else a.kd
    kd_label = f" +KD {logit}" if logit else ""
    if not b.results.has("control") and a.finetune_epochs > 0:  # --finetune-epochs 0: pruned models as pruned
        t0 = time.time()
        kd = kd_flags(logit, teacher=a.weights, imgsz=a.imgsz) if logit else None
        res = run_train(weights=a.weights, epochs=a.finetune_epochs, name="control", noautoanchor=True, kd=kd,
                        **b.common)
        b.add("control", f"control: baseline finetuned {a.finetune_epochs} epochs{kd_label}", res.best, t0)
    for m in a.methods:
        if not b.results.has(m):
            t0 = time.time()
            method, *flags = m.split("+")  # e.g. lamp+global: LAMP ranking channels across layers
            kd = kd_argv(logit, None) if a.finetune_epochs else []  # kd_argv: [] without a loss
            res = run_prune(a.weights, method, a.speedup, a.finetune_epochs, name=m,
                            extra=[f"--{f}" for f in flags] + kd, **b.common)
            tuned = kd_label if a.finetune_epochs else ", not finetuned"
            b.add(m, f"{method} {a.speedup}x" + "".join(f" --{f}" for f in flags) + tuned, res["best"], t0)


if __name__ == "__main__":
    main()
