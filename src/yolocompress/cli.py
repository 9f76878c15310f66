"""Command line: parse arguments, call one library function per command, print, exit.

Every user error surfaces as one line `error: ...` and exit code 2; `--verbose` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .core.errors import YoloCompressError

LOGGER = logging.getLogger("yolocompress")


# ---- shared argument groups (defined once, used by every command that needs them) ----------------------
def _add_common(p):
    p.add_argument("--verbose", action="store_true", help="show full tracebacks and debug logs")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON object")
    p.add_argument("--modules", action="append", default=[], metavar="FILE.py",
                   help="import a file that registers custom modules (repeatable)")


def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _add_train_options(p, epochs=100):
    p.add_argument("--data", required=True, help="dataset yaml")
    p.add_argument("--epochs", type=_positive_int, default=epochs)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--imgsz", "--img", type=_positive_int, default=640)
    p.add_argument("--device", default="", help="cpu, 0, or 0,1 (default: first GPU if any, else cpu)")
    p.add_argument("--hyp", default=None, help="hyperparameter yaml (default: official values for the model)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project", default=None)
    p.add_argument("--name", default="exp")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--cos-lr", action="store_true")
    p.add_argument("--patience", type=int, default=100)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--val-every", type=_positive_int, default=1)
    p.add_argument("--noval", action="store_true", help="validate only after the last epoch")
    p.add_argument("--noautoanchor", action="store_true",
                   help="keep the model's anchors even when their best possible recall on the data is under 0.98")


def _add_distill_options(p):
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", default=None, help="teacher checkpoint (prune/compress: 'auto' = the unpruned model)")
    g.add_argument("--kd-logit", choices=["l1", "l2", "ast"], default=None)
    g.add_argument("--kd-logit-weight", type=float, default=1.0)
    g.add_argument("--kd-obj-weighted", action="store_true")
    g.add_argument("--kd-feature", choices=["mimic", "mgd", "cwd"], default=None)
    g.add_argument("--kd-feature-weight", type=float, default=1.0)
    g.add_argument("--kd-layers", type=int, nargs="+", default=None)
    g.add_argument("--kd-teacher-layers", type=int, nargs="+", default=None)
    g.add_argument("--kd-schedule", choices=["constant", "linear", "cosine"], default="constant")
    g.add_argument("--kd-final-ratio", type=float, default=0.01)
    g.add_argument("--kd-stop-epoch", type=int, default=None)


def train_options_from(args, project_default: str):
    from .engine.options import TrainOptions
    return TrainOptions(data=args.data, epochs=args.epochs, batch_size=args.batch_size, imgsz=args.imgsz,
                        device=args.device, workers=args.workers, seed=args.seed,
                        project=args.project or project_default, name=args.name, exist_ok=args.exist_ok,
                        cos_lr=args.cos_lr, patience=args.patience, sync_bn=args.sync_bn,
                        label_smoothing=args.label_smoothing, val_every=args.val_every, modules=args.modules,
                        noval=args.noval, noautoanchor=args.noautoanchor)


# ---- commands ---------------------------------------------------------------------------------------------
def cmd_info(args):
    from .models.api import info
    return info(cfg=args.cfg, weights=args.weights, nc=args.nc, imgsz=args.imgsz, modules=args.modules)


def cmd_export(args):
    from .models.api import export
    return export(args.weights, fmt=args.format, imgsz=args.imgsz, batch_size=args.batch_size, dynamic=args.dynamic,
                  half=args.half, device=args.device, modules=args.modules)


def cmd_demo_data(args):
    from .data.demo import make_demo_dataset
    path = make_demo_dataset(args.out, n_train=args.train, n_val=args.val, imgsz=args.imgsz, seed=args.seed)
    print(f"demo dataset written: {path}")
    return {"data": str(path)}


def cmd_train(args):
    from .distill.api import distill_callbacks_factory
    from .engine.api import train
    opts = train_options_from(args, "runs/train")
    res = train(opts, weights=args.weights, cfg=args.cfg, hyp=args.hyp, resume=args.resume,
                callbacks_factory=distill_callbacks_factory(args))
    return _train_summary(res)


def _train_summary(res):
    m = res.metrics or {}
    print(f"results saved to {res.save_dir}\n  best: {res.best}\n  last: {res.last}")
    if m:
        print(f"  mAP50 {m['mAP50']:.4f}  mAP50-95 {m['mAP50-95']:.4f}  P {m['precision']:.3f}  R {m['recall']:.3f}")
    return {"save_dir": str(res.save_dir), "best": str(res.best), "last": str(res.last),
            **{k: m.get(k) for k in ("mAP50", "mAP50-95", "precision", "recall")}}


def cmd_val(args):
    from .engine.api import val
    from .engine.validator import format_metrics
    m = val(args.weights, args.data, imgsz=args.imgsz, batch_size=args.batch_size, device=args.device,
            workers=args.workers, conf_thres=args.conf_thres, iou_thres=args.iou_thres, max_det=args.max_det,
            modules=args.modules)
    print(format_metrics(m, per_class=args.per_class))
    return {k: m[k] for k in ("mAP50", "mAP50-95", "precision", "recall", "images", "instances", "speed_ms")}


def cmd_sparse(args):
    from .prune.sparse import sparse_command
    return sparse_command(args)


def cmd_prune(args):
    from .prune.api import prune_command
    return prune_command(args)


def cmd_compress(args):
    from .pipeline import compress_command
    return compress_command(args)


def cmd_bench(args):
    from .report.bench import bench_command
    return bench_command(args)


def cmd_demo(args):
    from .demo import run_demo
    return run_demo(quick=args.quick, out=args.out, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="yolocompress", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="per-layer table, parameters and GFLOPs of a config or checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cfg")
    src.add_argument("--weights")
    p.add_argument("--nc", type=_positive_int, default=None)
    p.add_argument("--imgsz", type=_positive_int, default=640)
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export a checkpoint to ONNX")
    p.add_argument("--weights", required=True)
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--imgsz", type=_positive_int, default=640)
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--dynamic", action="store_true")
    p.add_argument("--half", action="store_true")
    p.add_argument("--device", default="cpu")
    _add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo-data", help="generate the built-in digits detection dataset")
    p.add_argument("out")
    p.add_argument("--train", type=_positive_int, default=600)
    p.add_argument("--val", type=_positive_int, default=120)
    p.add_argument("--imgsz", type=_positive_int, default=128)
    p.add_argument("--seed", type=int, default=0)
    _add_common(p)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("train", help="train a model (from a yaml, from weights, or resume)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--cfg")
    src.add_argument("--weights")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH")
    _add_train_options(p)
    _add_distill_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("val", help="validate a checkpoint (official val.py numbers)")
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--imgsz", "--img", type=_positive_int, default=640)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--device", default="")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--conf-thres", type=float, default=0.001)
    p.add_argument("--iou-thres", type=float, default=0.6)
    p.add_argument("--max-det", type=_positive_int, default=300)
    p.add_argument("--per-class", action="store_true")
    _add_common(p)
    p.set_defaults(func=cmd_val)

    _add_prune_commands(sub)

    p = sub.add_parser("demo", help="the end-to-end demo on the built-in dataset")
    p.add_argument("--quick", action="store_true", help="toy size, a few minutes")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--device", default="cpu")
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return ap


def _add_prune_commands(sub):
    from .prune.cli_args import add_bench_parser, add_compress_parser, add_prune_parser, add_sparse_parser
    add_sparse_parser(sub, _add_train_options, _add_distill_options, _add_common, cmd_sparse)
    add_prune_parser(sub, _add_train_options, _add_distill_options, _add_common, cmd_prune)
    add_compress_parser(sub, _add_train_options, _add_distill_options, _add_common, cmd_compress)
    add_bench_parser(sub, _add_common, cmd_bench)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        result = args.func(args)
    except YoloCompressError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result if isinstance(result, dict) else {"result": result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
