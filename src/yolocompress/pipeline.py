"""`yolocompress compress`: sparse training (when the method needs it) -> prune to the target -> finetune
(distilled from the unpruned model with `--teacher auto`) -> report, all in one run folder.

The folder is `--project/--name` exactly (no exp2, exp3...): running the same command again, or after a crash,
resumes at the first unfinished stage and never redoes a finished one. Training stages resume mid-way from
their last complete epoch; the pruning stage is redone if it was interrupted.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from .core.errors import CheckpointError, ConfigError
from .core.hyp import Hyp
from .core.options import flat_settings
from .core.rundir import atomic_write_text
from .core.runrecord import mark_finished, newest_interrupted, options_record, read_record, restore, write_record
from .data.dataset import load_data_config
from .distill.options import DistillOptions
from .engine.api import train
from .engine.options import TrainOptions
from .engine.trainer import TrainResult
from .models.checkpoint import load_model, read_checkpoint
from .prune.api import (distill_callbacks_factory, finetune_options, not_finetuned, prune_and_save,
                        write_prune_report)
from .prune.options import PruneOptions, SparseOptions
from .prune.sparse import sparse_command
from .stages import StageRunner

LOGGER = logging.getLogger("yolocompress")
# settings that do not change what a compress run computes (may differ when the same command is run again)
_NOT_SETTINGS = {"device", "workers", "exist_ok", "latency_device"}
_RENAMED = {"global_pruning": "global"}  # compress.json of earlier versions used argparse's names


def _check_settings(save_dir: Path, settings: dict) -> None:
    settings = {k: v for k, v in sorted(settings.items()) if k not in _NOT_SETTINGS}
    path = save_dir / "compress.json"
    if path.is_file():
        old = {_RENAMED.get(k, k): v for k, v in json.loads(path.read_text()).items() if k not in _NOT_SETTINGS}
        defaults = flat_settings(TrainOptions(), PruneOptions(), SparseOptions(), DistillOptions())
        # an option added since the run was started counts as unchanged while it has its default
        changed = sorted(k for k in set(old) | set(settings) if old.get(k, defaults.get(k)) != settings.get(k))
        if changed:
            raise ConfigError(f"{save_dir} holds a compress run with other settings ({', '.join(changed)}); "
                              f"give another --name to start a new one, or repeat the original command to resume it")
    else:
        atomic_write_text(path, json.dumps(settings, indent=1, default=str))


def _resumed(resume, train_opts: TrainOptions) -> tuple:
    """(weights, prune, train_opts, sparse, distill, sparse_epochs) of the compress run `--resume` names (a folder;
    True: the newest interrupted one under the project), from its run.json."""
    if resume in (True, "True"):
        folder = newest_interrupted(train_opts.project, "compress")
        if folder is None:
            raise CheckpointError(f"--resume: no interrupted compress run under {train_opts.project} (finished runs "
                                  f"are not resumed); give the folder of the run to resume")
    else:
        folder = Path(resume)
    record = read_record(folder)
    if record is None or record.get("run") != "compress":
        what = "no compress run" if record is None else f"a {record.get('run')} run, not a compress run"
        raise CheckpointError(f"--resume {resume}: {what} in {folder} (it has no run.json of compress); running the "
                              f"original compress command again also resumes it")
    saved = record.get("options") or {}
    LOGGER.info(f"compress: resuming {folder} with its saved options")
    return (record["weights"], restore(PruneOptions, saved.get("prune")),
            restore(TrainOptions, saved.get("train"), runtime=train_opts), restore(SparseOptions, saved.get("sparse")),
            restore(DistillOptions, saved.get("distill")), record.get("sparse_epochs"))


def compress_command(weights: str | None, prune: PruneOptions, train_opts: TrainOptions,
                     sparse: SparseOptions | None = None, distill: DistillOptions | None = None,
                     sparse_epochs: int | None = None, resume=None) -> dict:
    """Run `yolocompress compress`; `resume` (a run folder, or True for the newest interrupted compress run
    under the project) takes the weights and every option from that run's run.json."""
    if resume:
        weights, prune, train_opts, sparse, distill, sparse_epochs = _resumed(resume, train_opts)
    elif not weights:
        raise ConfigError("compress: --weights W.pt is required (the trained model to compress), except with --resume")
    method = prune.row  # an unknown method fails before anything is written
    sparse = dataclasses.replace(sparse or SparseOptions(), method=prune.method)
    distill = distill or DistillOptions()
    save_dir = Path(train_opts.project) / train_opts.name
    save_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(save_dir, {"weights": weights, "sparse_epochs": sparse_epochs,
                               **flat_settings(train_opts, prune, sparse, distill)})
    if read_record(save_dir) is None:
        write_record(save_dir, "compress", weights=str(weights), sparse_epochs=sparse_epochs,
                     options=options_record(prune=prune, train=train_opts, sparse=sparse, distill=distill))
    runner = StageRunner(save_dir)
    base = str(Path(weights).resolve())
    current = base

    epochs = train_opts.epochs if sparse_epochs is None else sparse_epochs
    if method.needs_sparse and epochs > 0:
        def sparse_stage(stage_dir: Path, resuming: bool) -> dict:
            last = stage_dir / "weights" / "last.pt"
            opts = dataclasses.replace(train_opts, epochs=epochs, project=str(save_dir), name=stage_dir.name,
                                       exist_ok=True)
            res = sparse_command(current, sparse, opts, resume=str(stage_dir) if resuming and last.is_file() else None)
            return {"weights": res["best"] if Path(res["best"]).is_file() else res["last"]}
        current = runner.run("1-sparse", sparse_stage, resumable=True)["weights"]
    elif method.needs_sparse:
        LOGGER.warning(f"compress: {method.name} works best after sparse training; --sparse-epochs 0 skips it")

    data = load_data_config(train_opts.data)

    def prune_stage(stage_dir: Path, resuming: bool) -> dict:
        """Prune `current`; the report's baseline row is measured on the original `base` model."""
        _, meta, _ = prune_and_save(current, prune, train_opts, distill, data, stage_dir, baseline_weights=base)
        return {"pruned": str(stage_dir / "pruned.pt"), "speedup_gflops": meta["prune"]["speedup_gflops"],
                "reached": meta["prune"]["reached"]}
    pruned = runner.run("2-prune", prune_stage)["pruned"]
    meta = read_checkpoint(pruned)["meta"]
    if prune.finetune_epochs_for(train_opts.epochs) == 0:  # prune only: the report measures pruned.pt
        res = not_finetuned(Path(pruned))
    else:
        result = runner.run("3-finetune", lambda d, r: _finetune_stage(d, r, prune, train_opts, distill, data,
                                                                        pruned, meta, base), resumable=True)
        res = TrainResult(Path(result["save_dir"]), Path(result["best"]), Path(result["last"]), {},
                          int(result["epochs_done"]))
    summary = runner.run("4-report", lambda d, r: write_prune_report(res, meta, save_dir, prune, train_opts, data))
    mark_finished(save_dir)
    return summary


def _finetune_stage(stage_dir: Path, resuming: bool, prune: PruneOptions, train_opts: TrainOptions, distill,
                    data, pruned: str, meta: dict, base: str) -> dict:
    opts = finetune_options(train_opts, prune, stage_dir)
    factory = distill_callbacks_factory(distill, meta["imgsz"], default_teacher=base)
    last = stage_dir / "weights" / "last.pt"
    if resuming and last.is_file() and read_checkpoint(last).get("train_state"):
        res = train(opts, resume=str(stage_dir), callbacks_factory=factory)
    else:
        model = load_model(pruned, nc=data.nc)[0]
        hyp = Hyp.load(train_opts.hyp) if train_opts.hyp else Hyp.default_for(model.yaml)
        res = train(opts, model=model, hyp=hyp, meta=meta, callbacks_factory=factory)
    return {"save_dir": str(res.save_dir), "best": str(res.best), "last": str(res.last),
            "epochs_done": res.epochs_done}
