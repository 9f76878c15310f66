"""Distillation benchmark on the benchmark data of ../shared/bench/, each loss against the same run without it.

(a) a yolov5s teacher (trained here by our engine, or --teacher-a T.pt) -> a yolov5n student from scratch;
(b) the official yolov5n of ../shared/fixtures/ as teacher -> its LAMP 2.0x pruned copy during the finetune.
Every logit loss (l1, l2, ast), every feature loss (mimic, mgd, cwd) and one pair (l2+cwd), each with the
default weight 1, against `none` (the same recipe without a teacher); `NAME*W` runs a feature loss at weight W
(the losses have very different scales: read their share of the total loss in results.csv, docs/distillation.md). Rows go to --out as they finish
(a rerun skips them); the tables print as markdown with the delta of each row against `none`.

usage: python benchmarks/distill_bench.py [--settings a b] [--epochs-a 40] [--epochs-b 10] [--teacher-epochs 60]
       [--configs none l2 cwd ...] [--device cpu|0] [--batch-size 16]
On a 2-core CPU, setting (b) takes about 5 min per config; setting (a) needs hours (a GPU: minutes).
"""
import argparse
import time

from common import FIXTURE, Bench, add_bench_args, kd_options, run_prune, run_train, table
from yolocompress.models.checkpoint import load_model, read_checkpoint

CONFIGS = {"none": (None, None), "l1": ("l1", None), "l2": ("l2", None), "ast": ("ast", None),
           "mimic": (None, "mimic"), "mgd": (None, "mgd"), "cwd": (None, "cwd"), "l2+cwd": ("l2", "cwd"),
           "l1+cwd": ("l1", "cwd")}


def config(name: str) -> tuple:
    """`NAME` or `NAME*W` (W: the feature loss weight; logit losses keep weight 1) -> (logit, feature, weight)."""
    base, _, w = name.partition("*")
    if base not in CONFIGS:
        raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}, optionally *WEIGHT")
    return (*CONFIGS[base], float(w) if w else 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", nargs="+", choices=["a", "b"], default=["a", "b"])
    ap.add_argument("--configs", nargs="+", default=[c for c in CONFIGS if c != "l1+cwd"],
                    help="NAME or NAME*W (feature weight W), e.g. cwd*0.05; names: " + ", ".join(CONFIGS))
    ap.add_argument("--epochs-a", type=int, default=40, help="student epochs from scratch in setting (a)")
    ap.add_argument("--epochs-b", type=int, default=10, help="finetune epochs after pruning in setting (b)")
    ap.add_argument("--teacher-a", default=None, help="yolov5s teacher for (a); default: train one here")
    ap.add_argument("--teacher-epochs", type=int, default=60)
    add_bench_args(ap, "distill-bench")
    b = Bench(ap.parse_args())
    a = b.args
    if a.latency_only:
        b.remeasure_latency()
    else:
        if "a" in a.settings:
            setting_a(b)
        if "b" in a.settings:
            setting_b(b)
    for s in ["a", "b"]:
        keys = [f"{s}/none"] + [f"{s}/{c}" for c in a.configs if c != "none"]  # `none` first: the deltas' base
        rows = [b.results.row(k) for k in keys if b.results.has(k)]
        if rows:
            print(f"\nsetting ({s})\n" + table(rows))


def setting_a(b: Bench):
    """yolov5s teacher -> yolov5n student trained from scratch."""
    a, results = b.args, b.results
    teacher = a.teacher_a
    if teacher is None:
        if not results.has("a/teacher"):
            t0 = time.time()
            res = run_train(cfg="yolov5s.yaml", epochs=a.teacher_epochs, name="a-teacher", **b.common)
            b.add("a/teacher", f"teacher yolov5s ({a.teacher_epochs} epochs)", res.best, t0)
        teacher = results.row("a/teacher")["weights"]
    for c in a.configs:
        if not results.has(f"a/{c}"):
            t0 = time.time()
            logit, feature, w = config(c)
            kd = kd_options(logit, feature, teacher=teacher, feature_weight=w)
            res = run_train(cfg="yolov5n.yaml", epochs=a.epochs_a, name=f"a-{c}", kd=kd, **b.common)
            b.add(f"a/{c}", f"yolov5n {c}", res.best, t0)


def setting_b(b: Bench):
    """The official yolov5n teaches its own LAMP 2.0x pruned copy during the finetune."""
    a, results = b.args, b.results
    pruned = f"{a.project}/b-none/pruned.pt"
    for c in ["none"] + [c for c in a.configs if c != "none"]:
        if results.has(f"b/{c}"):
            continue
        t0 = time.time()
        if c == "none":  # prune once; this run's finetune is the no-distillation row
            res = run_prune(FIXTURE, "lamp", 2.0, a.epochs_b, name="b-none", **b.common)
            b.add("b/none", "LAMP 2.0x, no KD", res["best"], t0)
            continue
        logit, feature, w = config(c)
        model = load_model(pruned, nc=b.data.nc)[0]
        res = run_train(model=model, meta=read_checkpoint(pruned)["meta"], epochs=a.epochs_b,
                        name=f"b-{c.replace('*', '-w')}", noautoanchor=True, **b.common,
                        kd=kd_options(logit, feature, teacher=str(FIXTURE), feature_weight=w))
        b.add(f"b/{c}", f"LAMP 2.0x, KD {c}", res.best, t0)

if __name__ == "__main__":
    main()
