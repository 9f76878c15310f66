"""The commands: which options each takes, and the one library call it makes.

A command is a row: its flags (options classes plus a few plain flags), how parsed flags become the library
call's typed arguments (`build`), and the call itself (`run`). Nothing here computes anything.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from ..data.demo import DemoDataOptions, make_demo_dataset
from ..demo import DemoOptions, run_demo
from ..distill.api import train_command
from ..distill.options import DistillOptions
from ..engine.api import val
from ..engine.detect import DetectOptions, detect
from ..engine.options import TrainOptions, ValOptions
from ..engine.validator import format_metrics
from ..models.api import ExportOptions, InfoOptions, export, info
from ..pipeline import compress_command
from ..prune.api import prune_command
from ..prune.options import PruneOptions, SparseOptions
from ..prune.sparse import sparse_command
from ..bench import BenchOptions, bench_command
from .flags import add_options, options_from

RESUME_HELP = "continue an interrupted run: its folder or weights/last.pt (alone: the newest one of this command)"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add: Callable[[argparse.ArgumentParser], None]  # the command's flags
    build: Callable[[argparse.Namespace], dict]  # parsed flags -> keyword arguments of `run`
    run: Callable[..., dict]  # the one library call (prints what the user reads; returns the --json object)


def _resume(p, help=RESUME_HELP):
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH", help=help)


def _weights(p, help="checkpoint to start from (ours or an official .pt)", required=True):
    p.add_argument("--weights", required=required, metavar="W.pt", help=help)


def _train_flags(p, project: str, **defaults):
    add_options(p, TrainOptions, defaults={"project": project, **defaults})


def _distill_flags(p):
    add_options(p, DistillOptions)


# ---- info, export, demo-data, val, bench, demo: one options class each ----------------------------------------
def _single(cls, run, name, help, **defaults) -> Command:
    return Command(name, help, lambda p: add_options(p, cls, defaults=defaults),
                   lambda a: {"opts": options_from(a, cls)}, run)


def _run_demo_data(opts):
    path = make_demo_dataset(opts.out, n_train=opts.train, n_val=opts.val, imgsz=opts.imgsz, seed=opts.seed)
    print(f"demo dataset written: {path}")
    return {"data": str(path)}


def _run_val(opts):
    m = val(opts)
    print(format_metrics(m, per_class=opts.per_class))
    if "save_dir" in m:
        print(f"results saved to {m['save_dir']}")
    keys = ("mAP50", "mAP50-95", "precision", "recall", "images", "instances", "speed_ms", "save_dir", "files")
    return {k: m[k] for k in keys if k in m}


# ---- train, sparse, prune, compress: training options plus their own --------------------------------------
def _add_train(p):
    p.add_argument("--cfg", metavar="MODEL.yaml",
                   help="model yaml (ours or your own): from scratch, or with --weights the layout that receives "
                        "every tensor of W whose name and shape match")
    _weights(p, "checkpoint to start from (ours or an official .pt); on data with another class count, its "
                "layout gets a new head for the data's classes", required=False)
    _resume(p)
    _train_flags(p, "runs/train")
    _distill_flags(p)


def _build_train(a):
    return {"weights": a.weights, "cfg": a.cfg, "resume": a.resume, "train_opts": options_from(a, TrainOptions),
            "distill": options_from(a, DistillOptions)}


def _run_train(weights, cfg, resume, train_opts, distill):
    res = train_command(train_opts, weights=weights, cfg=cfg, resume=resume, distill=distill)
    m = res.metrics or {}
    print(f"results saved to {res.save_dir}\n  best: {res.best}\n  last: {res.last}")
    if m:
        print(f"  mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50-95']:.4f}  P {m['precision']:.3f}  R {m['recall']:.3f}")
    return {"save_dir": str(res.save_dir), "best": str(res.best), "last": str(res.last),
            **{k: m.get(k) for k in ("mAP50", "mAP50-95", "precision", "recall")}}


def _compression_command(name: str, help: str, cls, key: str, weights_help: str, resume_help: str, run) -> Command:
    """`sparse` and `prune`: --weights, --resume, their own options class, training and distillation options."""
    def add(p):
        _weights(p, weights_help + "; not needed with --resume", required=False)
        _resume(p, resume_help)
        add_options(p, cls)
        _train_flags(p, f"runs/{name}")
        _distill_flags(p)

    def build(a):
        return {"weights": a.weights, key: options_from(a, cls), "train_opts": options_from(a, TrainOptions),
                "distill": options_from(a, DistillOptions), "resume": a.resume}
    return Command(name, help, add, build, run)


def _add_compress(p):
    _weights(p, "checkpoint to compress (trained on --data; ours or an official .pt); not needed with --resume",
             required=False)
    _resume(p, "continue an interrupted compress run: its folder (alone: the newest under --project); running the "
               "same command again resumes too")
    p.add_argument("--sparse-epochs", type=int, default=None,
                   help="sparse-training epochs for the methods that need it (default: --epochs; 0 skips it)")
    add_options(p, SparseOptions, exclude=("method",))
    add_options(p, PruneOptions)
    _train_flags(p, "runs/compress")
    _distill_flags(p)


def _build_compress(a):
    return {"weights": a.weights, "prune": options_from(a, PruneOptions), "train_opts": options_from(a, TrainOptions),
            "sparse": options_from(a, SparseOptions, method=""), "distill": options_from(a, DistillOptions),
            "sparse_epochs": a.sparse_epochs, "resume": a.resume}


COMMANDS = [
    _single(InfoOptions, info, "info", "per-layer table, parameters and GFLOPs of a config or checkpoint"),
    _single(ExportOptions, export, "export", "export a checkpoint to ONNX (checked against PyTorch)"),
    _single(DemoDataOptions, _run_demo_data, "demo-data", "generate the built-in digits detection dataset"),
    Command("train", "train a model (from a yaml, from weights, or resume)", _add_train, _build_train, _run_train),
    _single(ValOptions, _run_val, "val", "validate a checkpoint (official val.py numbers; plots, COCO JSON and txt "
                                         "into runs/val/expN)"),
    _single(DetectOptions, detect, "detect", "run a model on images, folders, globs or videos: annotated copies, "
                                             "labels/*.txt and crops into runs/detect/expN"),
    _compression_command("sparse", "sparse training (regularise BN scales / groups) before pruning", SparseOptions,
                         "sparse", "checkpoint to sparse-train (ours or an official .pt)", RESUME_HELP, sparse_command),
    _compression_command("prune", "prune to a target speed-up, then finetune", PruneOptions, "prune",
                         "checkpoint to prune (trained on --data; ours or an official .pt)",
                         "continue an interrupted prune run (its folder; alone: the newest under --project)",
                         prune_command),
    Command("compress", "sparse training (if needed) -> prune -> finetune -> report, resumable", _add_compress,
            _build_compress, compress_command),
    _single(BenchOptions, bench_command, "bench", "validate and time several models the same way, side by side"),
    _single(DemoOptions, run_demo, "demo", "the end-to-end demo on the built-in dataset"),
]
