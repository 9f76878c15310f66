"""Prune benchmark: the official yolov5n trained on the benchmark data (../shared/fixtures/, imported as users
import theirs), every method at 2.0x with one finetune recipe, plus a control row (the unpruned baseline
finetuned with the same recipe, so that gains from extra epochs are not credited to pruning). With `--models v5n
v7t` the same rows again on a yolov7-tiny baseline trained here by our engine (or --v7-weights). Writes the table
(CPU latency at batch 1 and 32, GPU batch 32 FP16 when a GPU is present) as markdown to stdout and JSON to
--out, row by row: a rerun after an interruption skips the rows already measured.

usage: python benchmarks/prune_bench.py [--models v5n v7t] [--methods l1 lamp lamp+global ...]
       [--finetune-epochs 10] [--kd l1] [--device 0] [--jobs N]
--kd LOSS makes the recipe distil every finetune from the unpruned baseline with that logit loss (the control
too, from itself, so that the control still differs from the pruned rows only by the pruning).
--jobs N runs N rows at once in their own processes: on a GPU, `--device 0 --jobs 6 --workers 2 --models v5n v7t`
is the whole table in one command (the yolov7-tiny baseline trains while the yolov5n rows run).
On a 2-core CPU this is a long background job (about 20 s per finetune epoch per method on this data).
"""
import argparse
import time
from functools import partial
from pathlib import Path

from common import (FIXTURE, Bench, Job, add_bench_args, add_v7_args, kd_options, prune_best, table,
                    train_best)
from yolocompress.prune.methods import METHODS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", choices=["v5n", "v7t"], default=["v5n"],
                    help="baselines: v5n (--weights) and v7t (yolov7-tiny, --v7-weights or trained here)")
    ap.add_argument("--weights", default=str(FIXTURE), help="the v5n baseline")
    add_v7_args(ap, epochs=40)
    ap.add_argument("--methods", nargs="+", default=list(METHODS) + ["pagcp"],
                    help="method names; NAME+FLAG adds --FLAG to its prune command (e.g. lamp+global)")
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--kd", default="none", choices=["none", "l1", "l2", "ast"],
                    help="logit distillation from the baseline in every finetune, control included (default none)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="rows trained at once, each in its own process (a GPU fits several small finetunes); "
                         "with more than one, latency (CPU, and GPU when present) is timed again in one pass over "
                         "all rows at the end")
    add_bench_args(ap, "prune-bench")
    b = Bench(ap.parse_args())
    a = b.args
    try:
        if a.latency_only:
            b.remeasure_latency()
        else:
            jobs = [job for model in a.models for job in baseline_jobs(b, model)]
            b.run_jobs(sorted(jobs, key=lambda job: job.then is None))  # baselines to train first: rows wait on them
    finally:  # the rows made so far, also when some failed
        for model in a.models:
            keys = [row_key(model, k) for k in ["baseline", "control", *a.methods]]
            rows = [b.results.row(k) for k in keys if b.results.has(k)]
            print(f"\n{model}\n" + (table(rows) if rows else "no rows yet"))


def row_key(model: str, name: str) -> str:
    """yolov5n rows keep their plain names (the key of results files written before v7t was added)."""
    return name if model == "v5n" else f"{model}/{name}"


def baseline_jobs(b: Bench, model: str) -> list[Job]:
    """The jobs of one baseline: training it here first when it is a v7t without --v7-weights, then its rows."""
    a = b.args
    key = row_key(model, "baseline")
    if b.results.has(key):
        return row_jobs(b, model, b.results.row(key)["weights"])
    weights = a.weights if model == "v5n" else a.v7_weights
    label = "baseline (official yolov5n)" if model == "v5n" else f"baseline ({Path(a.v7_cfg).stem})"
    if weights is not None:
        b.add(key, label, weights, time.time())
        return row_jobs(b, model, str(weights))
    label += f", trained here {a.v7_epochs} epochs"
    return [Job(key, label, train_best, b.v7_baseline_run(), then=partial(row_jobs, b, model))]


def row_jobs(b: Bench, model: str, base: str) -> list[Job]:
    """The control and every method's row on `base`, each skipped when its results file already has it."""
    a = b.args
    common = b.common_for(model)
    name = "" if model == "v5n" else f"{model}-"  # run folders, as the rows' keys
    logit = None if a.kd == "none" else a.kd
    kd_label = f" +KD {logit}" if logit else ""
    jobs = []
    if not b.results.has(row_key(model, "control")) and a.finetune_epochs > 0:  # 0: pruned models as pruned
        kd = kd_options(logit, teacher=base)
        jobs.append(Job(row_key(model, "control"), f"control: baseline finetuned {a.finetune_epochs} epochs{kd_label}",
                        train_best, dict(common, weights=base, epochs=a.finetune_epochs, name=f"{name}control",
                                         noautoanchor=True, kd=kd)))
    for m in a.methods:
        if not b.results.has(row_key(model, m)):
            method, *flags = m.split("+")  # e.g. lamp+global: LAMP ranking channels across layers
            kd = kd_options(logit, teacher="auto") if a.finetune_epochs else None
            tuned = kd_label if a.finetune_epochs else ", not finetuned"
            label = f"{method} {a.speedup}x" + "".join(f" --{f}" for f in flags) + tuned
            jobs.append(Job(row_key(model, m), label, prune_best,
                            dict(common, weights=base, method=method, speedup=a.speedup, epochs=a.finetune_epochs,
                                 name=f"{name}{m}", switches=flags, kd=kd)))
    return jobs


if __name__ == "__main__":
    main()
