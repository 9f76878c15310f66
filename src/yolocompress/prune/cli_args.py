"""Arguments of `sparse`, `prune`, `compress` and `bench` (kept out of cli.py so each stays short)."""
from __future__ import annotations

import argparse


def _speedup(s):
    v = float(s)
    if v <= 1.0:
        raise argparse.ArgumentTypeError(f"--speedup must be greater than 1.0 (e.g. 2.0 for twice as fast), got {s}")
    return v


def _ratio(s):
    v = float(s)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {s}")
    return v


def _epochs(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (prune only, no finetune) or more, got {s}")
    return v


SPARSE_METHODS = ["slim", "group_slim", "group_sl", "group_reg"]


def _add_sparse_options(p):
    p.add_argument("--reg", type=float, default=5e-4, help="regularisation coefficient at the start")
    p.add_argument("--reg-end", type=float, default=None, help="coefficient at the end (default: --reg / 10 for linear)")
    p.add_argument("--reg-schedule", choices=["linear", "constant"], default="linear")


def _add_pruning_options(p):
    p.add_argument("--method", required=True, help="l1, random, slim, group_slim, group_norm, lamp, group_sl, "
                   "group_reg, group_hessian, group_taylor, or pagcp")
    p.add_argument("--speedup", type=_speedup, default=2.0, help="target GFLOPs (or latency) ratio, > 1")
    p.add_argument("--speedup-metric", choices=["gflops", "latency"], default="gflops")
    p.add_argument("--latency-device", default="cpu")
    p.add_argument("--latency-batch", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--global", dest="global_pruning", action="store_true", help="rank channels across layers")
    p.add_argument("--max-ratio", type=_ratio, default=0.9, help="largest share of one layer's channels to remove")
    p.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of N (e.g. 8)")
    p.add_argument("--finetune-epochs", type=_epochs, default=None,
                   help="default: --epochs; 0 prunes and reports without finetuning")
    p.add_argument("--grad-batches", type=int, default=10, help="training batches for gradient-based importance")
    p.add_argument("--report-batch", type=int, default=32, help="batch size of the report's inference time")
    g = p.add_argument_group("PAGCP")
    g.add_argument("--initial-rate", type=float, default=0.05)
    g.add_argument("--initial-thres", type=float, default=5.0)
    g.add_argument("--topk", type=float, default=1.0)
    g.add_argument("--exp", action="store_true")
    g.add_argument("--rate-slope", type=float, default=0.0)
    g.add_argument("--thres-slope", type=float, default=0.0)
    g.add_argument("--rounds", type=int, default=3)
    g.add_argument("--calib-batches", type=int, default=8)
    g.add_argument("--round-finetune-epochs", type=int, default=0)


def add_sparse_parser(sub, add_train, add_distill, add_common, func):
    p = sub.add_parser("sparse", help="sparse training (regularise BN scales / groups) before pruning")
    p.add_argument("--weights", required=True)
    p.add_argument("--method", required=True, choices=SPARSE_METHODS)
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH")
    _add_sparse_options(p)
    add_train(p)
    add_distill(p)
    add_common(p)
    p.set_defaults(func=func)


def add_prune_parser(sub, add_train, add_distill, add_common, func):
    p = sub.add_parser("prune", help="prune to a target speed-up, then finetune")
    p.add_argument("--weights", required=True)
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                   help="continue an interrupted finetune")
    _add_pruning_options(p)
    add_train(p)
    add_distill(p)
    add_common(p)
    p.set_defaults(func=func)


def add_compress_parser(sub, add_train, add_distill, add_common, func):
    p = sub.add_parser("compress", help="sparse training (if needed) -> prune -> finetune -> report, resumable")
    p.add_argument("--weights", required=True)
    p.add_argument("--sparse-epochs", type=int, default=None)
    _add_sparse_options(p)
    _add_pruning_options(p)
    add_train(p)
    add_distill(p)
    add_common(p)
    p.set_defaults(func=func)


def add_bench_parser(sub, add_common, func):
    from ..cli import _positive_int
    p = sub.add_parser("bench", help="validate and time several models the same way, side by side")
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="")
    p.add_argument("--half", action="store_true", help="FP16 latency (CUDA only)")
    from ..core.stats import DEFAULT_LATENCY_ROUNDS
    p.add_argument("--latency-rounds", type=_positive_int, default=DEFAULT_LATENCY_ROUNDS,
                   help="interleaved timing passes over all models; each model keeps its median")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--project", default="runs/bench")
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true")
    add_common(p)
    p.set_defaults(func=func)
