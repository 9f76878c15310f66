"""`yolocompress prune`: load, guard, prune to a target speed-up, save `pruned.pt`, finetune, report.

Everything lands in one run folder (`runs/prune/expN/`): `pruned.pt` (before finetuning), `weights/best.pt`
and `last.pt` (the finetune, an ordinary training run on the pruned model, optionally distilled from the
unpruned one), `report.md/csv/json` and `channels.png`. `--resume` continues an interrupted finetune: the
baseline numbers and the pruning summary are read back from `pruned.pt`.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from ..core.device import select_device
from ..core.errors import CheckpointError, ConfigError, YoloCompressError
from ..core.hyp import Hyp
from ..core.rundir import increment_path
from ..core.runlog import log_file
from ..core.stats import (DEFAULT_LATENCY_ROUNDS, interleaved_timings, latency_key, latency_ratio, measure_latency,
                          uncounted_modules)
from ..data.dataset import create_dataloader, load_data_config
from ..distill.api import distill_callbacks_factory
from ..distill.options import DistillOptions
from ..core.runrecord import mark_finished, newest_interrupted, options_record, read_record, restore, write_record
from ..engine.api import model_for_data, train
from ..engine.losses import build_loss
from ..engine.options import TrainOptions, check_imgsz, model_stride
from ..engine.trainer import TrainResult
from ..engine.validator import Validator
from ..models.checkpoint import load_model, read_checkpoint, save_checkpoint
from ..models.registry import load_user_modules
from ..report.plots import plot_channels
from ..report.stats import measure_row
from ..report.tables import write_report
from .methods import METHODS, accumulate_gradients, get_method
from .options import PruneOptions
from .pagcp import pagcp_strategy
from .speedup import PruneOutcome, prune_to_target
from .tp_fixes import AUTO_UNITS, ROUND_AUTO, prepare_model_for_pruning

LOGGER = logging.getLogger("yolocompress")


# ---- pieces ------------------------------------------------------------------------------------------------
def warn_if_not_sparse(method_name: str, ckpt: dict | None, weights) -> bool:
    """Warn (and return True) when `method_name` expects sparse training the checkpoint did not get."""
    method = get_method(method_name)
    if not method.needs_sparse:
        return False
    done = ((ckpt or {}).get("meta") or {}).get("sparse_method")
    if done in METHODS and METHODS[done].sparse_kind == method.sparse_kind:
        return False
    LOGGER.warning(f"prune: {method.name} ranks channels by what sparse training ({method.sparse_kind}) makes small, "
                   f"but {weights} was {'sparse-trained with ' + done if done else 'not sparse-trained'}; run "
                   f"`yolocompress sparse --method {method.name}` first for a better ranking")
    return True


def gradient_batches(data, imgsz: int, batch_size: int, stride: int, hyp: Hyp, n: int, workers: int,
                     seed: int = 0) -> list:
    """The first `n` training batches (no augmentation), kept in memory as (uint8 images, targets)."""
    if n < 1:
        raise ConfigError(f"--grad-batches must be at least 1 for gradient-based methods, got {n}")
    loader, _ = create_dataloader(data.train, imgsz, batch_size, stride, hyp, augment=False, workers=workers,
                                  shuffle=True, seed=seed, nc=data.nc, prefix="grad")
    batches = []
    for imgs, targets, *_ in loader:
        batches.append((imgs, targets))
        if len(batches) >= n:
            break
    return batches


def detection_grad_fn(method_name: str, batches: list, loss_fn, device):
    """`grad_fn(model, pruner)` for `prune_to_target`: gradients of the detection loss on `batches`.

    BatchNorm layers stay in eval mode, so scoring does not move their running statistics.
    """
    def loss_of(model, batch):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        imgs = batch[0].to(device).float() / 255
        return loss_fn(model(imgs), batch[1].to(device))[0]

    def grad_fn(model, pruner):
        accumulate_gradients(method_name, model, loss_of, batches, importance=pruner.importance)
    return grad_fn


def _distill_factory(distill: DistillOptions | None, imgsz: int, default_teacher):
    return distill_callbacks_factory(distill, imgsz, default_teacher=str(default_teacher))


def not_finetuned(pruned: Path) -> TrainResult:
    """The result of a finetune of 0 epochs: the pruned checkpoint as it is."""
    return TrainResult(pruned.parent, pruned, pruned, {}, 0)


def finetune_options(train_opts: TrainOptions, prune: PruneOptions, save_dir: Path) -> TrainOptions:
    """The finetune after pruning: an ordinary training run into the prune run's folder."""
    # a trained head keeps the anchors it learned with: AutoAnchor is for training from scratch or from weights
    return dataclasses.replace(train_opts, epochs=prune.finetune_epochs_for(train_opts.epochs),
                               project=str(save_dir.parent), name=save_dir.name, exist_ok=True, noautoanchor=True)


# ---- pruning: one strategy per value of the method table's `strategy` column ---------------------------------
def _torch_pruning_strategy(model, prune: PruneOptions, train: TrainOptions, data, hyp, device, imgsz: int,
                            save_dir: Path) -> PruneOutcome:
    method = prune.row
    stride = model_stride(model)
    grad_fn = None
    if method.needs_grad:
        batches = gradient_batches(data, imgsz, train.batch_size, stride, hyp, prune.grad_batches, train.workers,
                                   train.seed)
        grad_fn = detection_grad_fn(method.name, batches, build_loss(model, hyp, imgsz), device)
    example = torch.rand(1, 3, 2 * stride, 2 * stride, device=device)
    return prune_to_target(model, example, method.name, prune.speedup, metric=prune.speedup_metric, imgsz=imgsz,
                           max_steps=prune.max_steps, global_pruning=prune.global_pruning, max_ratio=prune.max_ratio,
                           round_to=prune.round_to, grad_fn=grad_fn, latency_device=prune.latency_device,
                           latency_batch=prune.latency_batch)


STRATEGIES = {"torch_pruning": _torch_pruning_strategy, "pagcp": pagcp_strategy}


def prune_model(model, prune: PruneOptions, train: TrainOptions, data, hyp, device, imgsz: int,
                save_dir: Path) -> PruneOutcome:
    """Prune `model` with the method the options name, by its row's strategy."""
    return STRATEGIES[prune.row.strategy](model, prune, train, data, hyp, device, imgsz, save_dir)


def prune_and_save(weights, prune: PruneOptions, train: TrainOptions, distill: DistillOptions | None, data,
                   save_dir: Path, baseline_weights=None) -> tuple[nn.Module, dict, Hyp]:
    """Load `weights`, prune them as the options say, save `save_dir/pruned.pt`; returns (model, meta, hyp).

    The report's baseline row is measured before pruning, on `baseline_weights` (default: `weights`; compress
    passes the original model when `weights` is its sparse-trained copy). Shared by `prune` and `compress`.
    """
    prune.check()  # an unknown method fails before anything is loaded
    model, ckpt = model_for_data(weights, None, data, train.modules)
    device = select_device(train.device)
    stride = model_stride(model)
    imgsz = check_imgsz(train.imgsz, stride)
    factory = _distill_factory(distill, imgsz, default_teacher=baseline_weights or weights)
    if factory is not None:  # a teacher that cannot teach this student fails now, not after the pruning
        factory(model, data)
    prepare_model_for_pruning(model)
    warn_if_not_sparse(prune.method, ckpt, weights)
    hyp = Hyp.load(train.hyp) if train.hyp else Hyp.default_for(model.yaml)
    LOGGER.info(f"prune: {prune.method} to {prune.speedup}x ({prune.speedup_metric}) of {weights}; "
                f"run folder {save_dir}")
    model = model.to(device)
    base_model = model if baseline_weights is None else load_model(baseline_weights, device, nc=data.nc)[0]
    validator = Validator(data, imgsz, train.batch_size, device, train.workers, stride=stride)
    baseline = measure_row(base_model, f"baseline ({Path(baseline_weights or weights).name})",
                           validator=validator, imgsz=imgsz, batch=prune.report_batch, device=device)
    with log_file(save_dir / "prune.log"):  # every step's line goes there; the console shows a progress bar
        outcome = prune_model(model, prune, train, data, hyp, device, imgsz, save_dir)
    model = outcome.model
    model.zero_grad(set_to_none=True)
    meta = {"pruned": True, "method": prune.method, "speedup": prune.speedup, "speedup_metric": prune.speedup_metric,
            "source_weights": str(weights), "prune": outcome.summary(), "skipped": outcome.skipped,
            "per_layer": outcome.per_layer, "baseline": baseline, "baseline_weights": str(baseline_weights or weights),
            "report_batch": prune.report_batch, "imgsz": imgsz,
            "latency_setting": f"{prune.latency_device}, batch {prune.latency_batch}",
            "prune_options": dataclasses.asdict(prune)}
    LOGGER.info(f"prune: saved {save_checkpoint(save_dir / 'pruned.pt', model, meta=meta)}")
    return model, meta, hyp


def prune_command(weights: str | None, prune: PruneOptions, train_opts: TrainOptions,
                  distill: DistillOptions | None = None, resume=None) -> dict:
    """Run `yolocompress prune` (see the module docstring); returns the summary the CLI prints with --json.

    `resume` (True: the newest interrupted prune run under the project; or a run folder) restores the weights and
    every option of that run from its run.json; only device and workers may be given anew."""
    if resume:
        return _resume(resume, weights, prune, train_opts, distill)
    if not weights:
        raise ConfigError("prune: --weights W.pt is required (the trained model to prune), except with --resume")
    prune.check()  # an unknown name fails before a run folder is made
    data = load_data_config(train_opts.data)
    save_dir = increment_path(Path(train_opts.project) / train_opts.name, train_opts.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    write_record(save_dir, "prune", weights=str(weights), options=options_record(prune=prune, train=train_opts,
                                                                                 distill=distill))
    model, meta, hyp = prune_and_save(weights, prune, train_opts, distill, data, save_dir)
    return _finished(save_dir, _finetune_and_report(prune, train_opts, distill, data, save_dir, model, meta, hyp))


def _finished(save_dir: Path, summary: dict) -> dict:
    mark_finished(save_dir)  # after the report: `--resume` alone never picks this run again
    return summary


def _finetune_and_report(prune: PruneOptions, train_opts: TrainOptions, distill, data, save_dir: Path, model,
                         meta: dict, hyp: Hyp) -> dict:
    opts = finetune_options(train_opts, prune, save_dir)
    if prune.finetune_epochs_for(train_opts.epochs) == 0:
        LOGGER.info("prune: --finetune-epochs 0, reporting the pruned model without finetuning")
        return write_prune_report(not_finetuned(save_dir / "pruned.pt"), meta, save_dir, prune, train_opts, data)
    LOGGER.info(f"prune: finetuning {opts.epochs} epochs")
    result = train(opts, model=model, hyp=hyp, meta=meta,
                   callbacks_factory=_distill_factory(distill, meta["imgsz"], default_teacher=meta["source_weights"]))
    return write_prune_report(result, meta, save_dir, prune, train_opts, data)


def _resume_folder(resume, project: str) -> Path:
    """The run folder `--resume` names (a folder or its weights/last.pt), or the newest interrupted prune run."""
    if resume not in (True, None, "", "True"):
        p = Path(resume)
        folder = p if p.is_dir() else p.parent.parent
        if not folder.is_dir():
            raise CheckpointError(f"--resume: no prune run folder at {p}")
        return folder
    folder = newest_interrupted(project, "prune")
    if folder is None:
        raise CheckpointError(f"--resume: no interrupted prune run under {project} (finished runs are not resumed); "
                              f"give the folder of the run to resume")
    return folder


def _resume(resume, weights, prune: PruneOptions, train_opts: TrainOptions, distill) -> dict:
    """Continue an interrupted prune run at its last complete step: the pruning (redone if it was interrupted:
    it is deterministic and nothing of it was kept), the finetune's first epoch, or its last complete epoch."""
    save_dir = _resume_folder(resume, train_opts.project)
    record = read_record(save_dir)
    if record is not None:
        if record.get("run") != "prune":
            raise CheckpointError(f"--resume {resume}: a {record.get('run')} run, not a prune run; resume it with "
                                  f"`yolocompress {record.get('run')} --resume {save_dir}`")
        saved = record.get("options") or {}
        weights = record.get("weights")
        given, prune = prune, restore(PruneOptions, saved.get("prune"))
        # `--resume` alone restores the run; the command repeated with `--resume` (it names a --method) must
        # match it: a contradicting setting is refused, never silently replaced by the saved one
        changed = [f"--{k} {getattr(prune, k)} (now {getattr(given, k)})" for k in ("method", "speedup")
                   if given.method and getattr(given, k) != getattr(prune, k)]
        if changed:
            raise ConfigError(f"--resume: {save_dir} was pruned with {', '.join(changed)}; repeat the original "
                              f"settings (or none) to resume it, or drop --resume to start a new run")
        train_opts = restore(TrainOptions, saved.get("train"), runtime=train_opts)
        distill = restore(DistillOptions, saved.get("distill"))
        LOGGER.info(f"prune: resuming {save_dir} with its saved options ({prune.method} {prune.speedup}x of {weights})")
    prune.check()
    data = load_data_config(train_opts.data)
    pruned, last = save_dir / "pruned.pt", save_dir / "weights" / "last.pt"
    if not pruned.is_file():
        LOGGER.info(f"prune: {save_dir} was interrupted while pruning; pruning again")
        shutil.rmtree(save_dir / "pagcp_rounds", ignore_errors=True)  # PAGCP's between-round finetunes
        model, meta, hyp = prune_and_save(weights, prune, train_opts, distill, data, save_dir)
        return _finished(save_dir, _finetune_and_report(prune, train_opts, distill, data, save_dir, model, meta, hyp))
    meta = read_checkpoint(pruned)["meta"]
    changed = [f"--{k} {meta[k]} (now {getattr(prune, k)})" for k in ("method", "speedup")
               if meta[k] != getattr(prune, k)]
    if changed:
        raise ConfigError(f"--resume: {save_dir} was pruned with {', '.join(changed)}; repeat the original "
                          f"settings to resume it, or drop --resume to start a new run")
    load_user_modules(train_opts.modules)
    factory = _distill_factory(distill, meta["imgsz"], default_teacher=meta["source_weights"])
    if last.is_file() and read_checkpoint(last).get("train_state"):
        result = train(finetune_options(train_opts, prune, save_dir), resume=str(last), callbacks_factory=factory)
        return _finished(save_dir, write_prune_report(result, meta, save_dir, prune, train_opts, data))
    LOGGER.info(f"prune: {save_dir} was interrupted before the first finetune epoch was saved; finetuning "
                f"{pruned.name}")
    model = load_model(pruned, select_device(train_opts.device), nc=data.nc)[0]
    hyp = Hyp.load(train_opts.hyp) if train_opts.hyp else Hyp.default_for(model.yaml)
    return _finished(save_dir, _finetune_and_report(prune, train_opts, distill, data, save_dir, model, meta, hyp))


# ---- report -----------------------------------------------------------------------------------------------
def _time_side_by_side(meta: dict, model, nc: int, imgsz: int, batch: int, device):
    """(baseline ms, pruned ms, how they were timed, Ratio or None): both models timed together in interleaved
    passes, so that the machine's speed drift between pruning and the end of the finetune (hours, on a shared
    machine) does not enter the latency ratio, and the per-pass ratios say how far it can be trusted. Falls back to
    the baseline's time from before pruning when its weights are gone (no spread then)."""
    try:
        base_model = load_model(meta["baseline_weights"], device, nc=nc)[0]
    except (KeyError, OSError, YoloCompressError) as e:
        why = "not recorded" if isinstance(e, KeyError) else f"not loadable: {e}"
        return (meta["baseline"][latency_key(batch)], measure_latency(model, imgsz, batch, device),
                f"baseline timed before pruning (its weights are {why})", None)
    base_t, pruned_t = interleaved_timings([base_model, model], imgsz, batch, device)
    return (base_t.median, pruned_t.median, f"both models timed together in {DEFAULT_LATENCY_ROUNDS} interleaved "
            f"passes (baseline {base_t.text()}, pruned {pruned_t.text()})", latency_ratio(base_t, pruned_t))


def _ratio_notes(summary: dict, ratio, batch: int, device) -> list[str]:
    """GFLOPs and latency ratios side by side, the latency with the range its passes support; a warning when that
    range cannot rank; the layers the ranking cut to their --max-ratio floor."""
    lat = f"{ratio.text()} over interleaved passes" if ratio is not None else "not measured side by side"
    notes = [f"speed-up: GFLOPs {summary['speedup_gflops']:.3f}x | latency {lat} (batch {batch}, {device})"]
    if ratio is not None and not ratio.significant:
        notes.append("warning: the latency passes spread too widely to rank this model against the baseline "
                     "(time again on an idle machine: `yolocompress bench --latency-rounds 10`)")
    if summary.get("global_pruning") is not None:
        notes.append(f"ranking: {'across layers' if summary['global_pruning'] else 'per layer'}")
    floor = summary.get("at_max_ratio") or []
    if floor:
        notes.append(f"{len(floor)} layer(s) cut to their --max-ratio floor (the ranking wanted more of them): "
                     + ", ".join(floor))
    return notes


def _widths_note(prune_options: dict) -> str:
    """How the kept channel counts were rounded (a run recorded before `--round-to` existed: not rounded)."""
    round_to = prune_options.get("round_to")
    if round_to == ROUND_AUTO:  # worded from the rule itself (tp_fixes.AUTO_UNITS), so the two cannot drift
        (least, unit), *narrower = AUTO_UNITS
        parts = [f"multiples of {unit} in layers of {least} channels or more"]
        for (upper, _), (least, unit) in zip(AUTO_UNITS, narrower):
            parts.append(f"of {unit} in layers of {least}-{upper - 1}")
        return f"widths: --round-to auto ({', '.join(parts)})"
    return f"widths: --round-to {round_to}" if round_to else "widths: not rounded (--round-to none)"


def write_prune_report(result, meta: dict, save_dir: Path, prune: PruneOptions, train_opts: TrainOptions,
                       data) -> dict:
    weights = Path(result.best) if Path(result.best).is_file() else Path(result.last)
    model, _ = load_model(weights, nc=data.nc)
    device = select_device(train_opts.device)
    stride = model_stride(model)
    imgsz = int(meta.get("imgsz") or check_imgsz(train_opts.imgsz, stride))
    batch = int(meta.get("report_batch") or prune.report_batch)
    validator = Validator(data, imgsz, train_opts.batch_size, device, train_opts.workers, stride=stride)
    label = f"pruned {meta['method']} {meta['speedup']}x, " + ("finetuned" if result.epochs_done else "not finetuned")
    row = measure_row(model.to(device), label, validator=validator, imgsz=imgsz, batch=batch,
                      device=device, time_it=False)
    time_key = latency_key(batch)
    base_ms, row[time_key], timing, ratio = _time_side_by_side(meta, model, data.nc, imgsz, batch, device)
    baseline = {**meta["baseline"], time_key: base_ms}
    summary, skipped, per_layer = meta["prune"], meta["skipped"], meta["per_layer"]
    lat_setting = meta.get("latency_setting") or f"{prune.latency_device}, batch {prune.latency_batch}"
    steps = f" after {summary['steps']} steps" if summary.get("steps") else ""
    notes = [f"GFLOPs ratio {summary['speedup_gflops']:.3f}x; target {meta['speedup']}x by {meta['speedup_metric']}: "
             f"{summary['stop_reason']}{steps}",
             *_ratio_notes(summary, ratio, batch, device), _widths_note((meta.get("prune_options") or {})),
             f"the pruning loop's own timing (one measurement each, indicative only): "
             f"{summary['latency_before']:.2f} -> {summary['latency_after']:.2f} ms at {lat_setting}, imgsz {imgsz}",
             f"{len(skipped)} group(s) skipped (listed below, each with every layer it keeps whole)",
             *([summary["coverage"]] if summary.get("coverage") and summary.get("conv_layers") else []),
             *([f"GFLOPs not counted for module(s) with weights no counting rule reads: {', '.join(uncounted)}"]
               if (uncounted := uncounted_modules(model)) else []),
             f"finetuned {result.epochs_done} epoch(s); mAP of {weights.name} on the val split; Model Size = "
             f"checkpoint file (weights in our format); Inference Time = median ms per batch of {batch} on {device}, "
             f"{timing}"]
    paths = write_report([baseline, row], save_dir, title=f"Pruning report: {meta['method']} {meta['speedup']}x",
                         notes=notes, sections=[("Skipped", skipped), ("Channels per layer", per_layer)],
                         extra={"prune": summary})
    try:
        plot_channels(per_layer, save_dir / "channels.png")
    except Exception as e:  # a plot must never cost the user their run
        LOGGER.warning(f"channels.png not written: {e}")
    shown = paths["md"].read_text().split("\n## Channels per layer")[0].rstrip()  # 60+ lines: in the files only
    print(f"{shown}\n\nchannels per layer: {paths['md']}, {save_dir / 'channels.png'}\nresults saved to {save_dir}")
    return {"save_dir": str(save_dir), "pruned": str(save_dir / "pruned.pt"), "best": str(weights),
            "method": meta["method"], "speedup_target": meta["speedup"], "reached": summary["reached"],
            "steps": summary.get("steps"), "params": row["Parameters"], "gflops": row["GFLOPs"],
            "size_mb": row["Model Size"], "latency_ms": row[time_key], "mAP50": row["mAP50"],
            "mAP50-95": row["mAP50-95"], "speedup_gflops": summary["speedup_gflops"],
            "speedup_latency": summary["speedup_latency"],
            "speedup_latency_report": baseline[time_key] / row[time_key] if row[time_key] else None,
            "speedup_latency_report_spread": list(ratio.spread) if ratio is not None else None,
            "speedup_latency_report_significant": ratio.significant if ratio is not None else None,
            "at_max_ratio": summary.get("at_max_ratio", []),
            "skipped": skipped, "baseline": {k: baseline[k] for k in baseline if k != "Model"}}
