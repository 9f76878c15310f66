"""`yolocompress compress`: sparse training (when the method needs it) -> prune to the target -> finetune
(distilled from the unpruned model with `--teacher auto`) -> report, all in one run folder.

The folder is `--project/--name` exactly (no exp2, exp3...): running the same command again, or after a crash,
resumes at the first unfinished stage and never redoes a finished one. Training stages resume mid-way from
their last complete epoch; the pruning stage is redone if it was interrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .data.dataset import load_data_config
from .engine.api import train
from .core.hyp import Hyp
from .core.rundir import atomic_write_text
from .engine.trainer import TrainResult
from .core.errors import ConfigError
from .models.checkpoint import load_model, read_checkpoint
from .prune.methods import get_method
from .stages import StageRunner

LOGGER = logging.getLogger("yolocompress")
# options that do not change what a compress run computes (may differ when the same command is run again)
_NOT_SETTINGS = {"func", "verbose", "json", "device", "workers", "exist_ok", "resume", "command", "latency_device"}


def _check_settings(save_dir: Path, args) -> None:
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SETTINGS}
    path = save_dir / "compress.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise ConfigError(f"{save_dir} holds a compress run with other settings ({', '.join(changed)}); "
                              f"give another --name to start a new one, or repeat the original command to resume it")
    else:
        atomic_write_text(path, json.dumps(settings, indent=1, default=str))


def _args(args, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def compress_command(args) -> dict:
    if args.method != "pagcp":
        get_method(args.method)  # an unknown method fails before anything is written
    save_dir = Path(args.project or "runs/compress") / args.name
    save_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(save_dir, args)
    runner = StageRunner(save_dir)
    base = str(Path(args.weights).resolve())
    current = base

    needs_sparse = args.method != "pagcp" and get_method(args.method).needs_sparse
    sparse_epochs = args.epochs if args.sparse_epochs is None else args.sparse_epochs
    if needs_sparse and sparse_epochs > 0:
        def sparse_stage(stage_dir: Path, resuming: bool) -> dict:
            from .prune.sparse import sparse_command
            last = stage_dir / "weights" / "last.pt"
            res = sparse_command(_args(args, weights=current, epochs=sparse_epochs, project=str(save_dir),
                                       name=stage_dir.name, exist_ok=True,
                                       resume=str(stage_dir) if resuming and last.is_file() else None,
                                       teacher=None, kd_logit=None, kd_feature=None))
            return {"weights": res["best"] if Path(res["best"]).is_file() else res["last"]}
        current = runner.run("1-sparse", sparse_stage, resumable=True)["weights"]
    elif needs_sparse:
        LOGGER.warning(f"compress: {args.method} works best after sparse training; --sparse-epochs 0 skips it")

    pruned = runner.run("2-prune", lambda d, r: _prune_stage(d, args, current, base))["pruned"]
    from .prune.api import finetune_epochs, not_finetuned, write_prune_report
    if finetune_epochs(args) == 0:  # prune only: the report measures pruned.pt
        res = not_finetuned(Path(pruned))
    else:
        result = runner.run("3-finetune", lambda d, r: _finetune_stage(d, r, args, pruned, base), resumable=True)
        res = TrainResult(Path(result["save_dir"]), Path(result["best"]), Path(result["last"]), {},
                          int(result["epochs_done"]))
    meta = read_checkpoint(pruned)["meta"]
    data = load_data_config(args.data)
    summary = runner.run("4-report", lambda d, r: write_prune_report(res, meta, save_dir, args, data))
    return summary


def _prune_stage(stage_dir: Path, args, weights: str, base: str) -> dict:
    """Prune `weights` to the target; the report's baseline row is measured on the original `base` model."""
    from .prune.api import prune_and_save
    _, meta, _ = prune_and_save(args, load_data_config(args.data), weights, stage_dir, baseline_weights=base)
    return {"pruned": str(stage_dir / "pruned.pt"), "speedup_gflops": meta["prune"]["speedup_gflops"],
            "reached": meta["prune"]["reached"]}


def _finetune_stage(stage_dir: Path, resuming: bool, args, pruned: str, base: str) -> dict:
    from .cli import train_options_from
    from .prune.api import finetune_epochs
    from .distill.api import distill_callbacks_factory
    opts = train_options_from(args, str(stage_dir.parent))
    opts.epochs = finetune_epochs(args)
    opts.project, opts.name, opts.exist_ok = str(stage_dir.parent), stage_dir.name, True
    opts.noautoanchor = True  # a trained head keeps the anchors it learned with (as prune's finetune)
    factory = distill_callbacks_factory(args, default_teacher=base)
    last = stage_dir / "weights" / "last.pt"
    if resuming and last.is_file() and read_checkpoint(last).get("train_state"):
        res = train(opts, resume=str(stage_dir), callbacks_factory=factory)
    else:
        data = load_data_config(args.data)
        model = load_model(pruned, nc=data.nc)[0]
        hyp = Hyp.load(args.hyp) if args.hyp else Hyp.default_for(model.yaml)
        meta = read_checkpoint(pruned)["meta"]
        res = train(opts, model=model, hyp=hyp, meta=meta, callbacks_factory=factory)
    return {"save_dir": str(res.save_dir), "best": str(res.best), "last": str(res.last),
            "epochs_done": res.epochs_done}
