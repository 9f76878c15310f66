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

from ..data.dataset import create_dataloader, load_data_config
from ..engine.api import find_resume_checkpoint, model_for_data, train
from ..core.device import select_device
from ..core.hyp import Hyp
from ..engine.loss import build_loss
from ..engine.options import check_imgsz
from ..core.rundir import increment_path
from ..engine.trainer import TrainResult
from ..engine.validator import Validator
from ..core.errors import CheckpointError, ConfigError, YoloCompressError
from ..models.checkpoint import load_model, read_checkpoint, save_checkpoint
from ..models.registry import load_user_modules
from ..report.plots import plot_channels
from ..core.stats import DEFAULT_LATENCY_ROUNDS, count_gflops, count_params, interleaved_latency, latency_key, measure_latency
from ..report.stats import measure_row
from ..report.tables import write_report
from .methods import METHODS, accumulate_gradients, get_method
from .speedup import conv_channels, per_layer_table, prune_to_target
from .tp_fixes import prepare_model_for_pruning

LOGGER = logging.getLogger("yolocompress")
PAGCP = "pagcp"


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


def _distill_factory(args, default_teacher):
    from ..distill.api import distill_callbacks_factory
    return distill_callbacks_factory(args, default_teacher=str(default_teacher))


def finetune_epochs(args) -> int:
    """`--finetune-epochs`, else `--epochs`; 0 means prune and report without finetuning."""
    return args.epochs if args.finetune_epochs is None else args.finetune_epochs


def not_finetuned(pruned: Path) -> TrainResult:
    """The result of a finetune of 0 epochs: the pruned checkpoint as it is."""
    return TrainResult(pruned.parent, pruned, pruned, {}, 0)


def _finetune_options(args, save_dir: Path):
    from ..cli import train_options_from
    opts = train_options_from(args, "runs/prune")
    # a trained head keeps the anchors it learned with: AutoAnchor is for training from scratch or from weights
    return dataclasses.replace(opts, epochs=finetune_epochs(args), project=str(save_dir.parent),
                               name=save_dir.name, exist_ok=True, noautoanchor=True)


# ---- pruning ----------------------------------------------------------------------------------------------
def prune_model(model, args, data, hyp, device, imgsz, stride, save_dir) -> tuple[nn.Module, dict, list, list]:
    """(pruned model, summary, skipped, per-layer channels) with the method the arguments name."""
    if args.method == PAGCP:
        from .pagcp import prune_pagcp
        before, g0, p0 = conv_channels(model), count_gflops(model, imgsz), count_params(model)
        lat0 = measure_latency(model, imgsz, args.latency_batch, args.latency_device)
        model, extra = prune_pagcp(model, args, data, hyp, device, save_dir=save_dir)
        g, lat = count_gflops(model, imgsz), measure_latency(model, imgsz, args.latency_batch, args.latency_device)
        summary = {"steps": None, "reached": g0 / g >= args.speedup, "stop_reason": "pagcp rounds done",
                   "gflops_before": g0, "gflops_after": g, "speedup_gflops": g0 / g, "latency_before": lat0,
                   "latency_after": lat, "speedup_latency": lat0 / lat, "params_before": p0,
                   "params_after": count_params(model), **{k: v for k, v in extra.items() if k != "skipped"}}
        return model, summary, list(extra.get("skipped", [])), per_layer_table(before, conv_channels(model))
    method = get_method(args.method)
    grad_fn = None
    if method.needs_grad:
        batches = gradient_batches(data, imgsz, args.batch_size, stride, hyp, args.grad_batches, args.workers,
                                   args.seed)
        grad_fn = detection_grad_fn(method.name, batches, build_loss(model, hyp, imgsz), device)
    example = torch.rand(1, 3, 2 * stride, 2 * stride, device=device)
    out = prune_to_target(model, example, method.name, args.speedup, metric=args.speedup_metric, imgsz=imgsz,
                          max_steps=args.max_steps, global_pruning=args.global_pruning, max_ratio=args.max_ratio,
                          round_to=args.round_to, grad_fn=grad_fn, latency_device=args.latency_device,
                          latency_batch=args.latency_batch)
    return out.model, out.summary(), out.skipped, out.per_layer


def prune_and_save(args, data, weights, save_dir: Path, baseline_weights=None) -> tuple[nn.Module, dict, Hyp]:
    """Load `weights`, prune them as `args` say, save `save_dir/pruned.pt`; returns (model, meta, hyp).

    The report's baseline row is measured before pruning, on `baseline_weights` (default: `weights`; compress
    passes the original model when `weights` is its sparse-trained copy). Shared by `prune` and `compress`.
    """
    if args.method != PAGCP:
        get_method(args.method)  # an unknown name fails before anything is loaded
    model, ckpt = model_for_data(weights, None, data, args.modules)
    factory = _distill_factory(args, default_teacher=baseline_weights or weights)
    if factory is not None:  # a teacher that cannot teach this student fails now, not after the pruning
        factory(model, data)
    prepare_model_for_pruning(model)
    if args.method != PAGCP:
        warn_if_not_sparse(args.method, ckpt, weights)
    device = select_device(args.device)
    hyp = Hyp.load(args.hyp) if args.hyp else Hyp.default_for(model.yaml)
    stride = max(int(model.stride.max()), 32)
    imgsz = check_imgsz(args.imgsz, stride)
    LOGGER.info(f"prune: {args.method} to {args.speedup}x ({args.speedup_metric}) of {weights}; run folder {save_dir}")
    model = model.to(device)
    base_model = model if baseline_weights is None else load_model(baseline_weights, device, nc=data.nc)[0]
    validator = Validator(data, imgsz, args.batch_size, device, args.workers, stride=stride)
    baseline = measure_row(base_model, f"baseline ({Path(baseline_weights or weights).name})",
                           validator=validator, imgsz=imgsz, batch=args.report_batch, device=device)
    model, summary, skipped, per_layer = prune_model(model, args, data, hyp, device, imgsz, stride, save_dir)
    model.zero_grad(set_to_none=True)
    meta = {"pruned": True, "method": args.method, "speedup": args.speedup, "speedup_metric": args.speedup_metric,
            "source_weights": str(weights), "prune": summary, "skipped": skipped, "per_layer": per_layer,
            "baseline": baseline, "baseline_weights": str(baseline_weights or weights),
            "report_batch": args.report_batch, "imgsz": imgsz,
            "latency_setting": f"{args.latency_device}, batch {args.latency_batch}"}
    LOGGER.info(f"prune: saved {save_checkpoint(save_dir / 'pruned.pt', model, meta=meta)}")
    return model, meta, hyp


def prune_command(args) -> dict:
    """Run `yolocompress prune` (see the module docstring); returns the summary the CLI prints with --json."""
    if args.method != PAGCP:
        get_method(args.method)  # an unknown name fails before a run folder is made
    data = load_data_config(args.data)
    if args.resume:
        return _resume(args, data)
    save_dir = increment_path(Path(args.project or "runs/prune") / args.name, args.exist_ok)
    save_dir.mkdir(parents=True, exist_ok=True)
    model, meta, hyp = prune_and_save(args, data, args.weights, save_dir)
    return _finetune_and_report(args, data, save_dir, model, meta, hyp)


def _finetune_and_report(args, data, save_dir: Path, model, meta: dict, hyp: Hyp) -> dict:
    if finetune_epochs(args) == 0:
        LOGGER.info("prune: --finetune-epochs 0, reporting the pruned model without finetuning")
        return write_prune_report(not_finetuned(save_dir / "pruned.pt"), meta, save_dir, args, data)
    opts = _finetune_options(args, save_dir)
    LOGGER.info(f"prune: finetuning {opts.epochs} epochs")
    result = train(opts, model=model, hyp=hyp, meta=meta,
                   callbacks_factory=_distill_factory(args, default_teacher=meta["source_weights"]))
    return write_prune_report(result, meta, save_dir, args, data)


def _resume_folder(resume, project: str) -> Path:
    """The run folder `--resume` names (a folder or its weights/last.pt), or the newest run with a last.pt."""
    if resume not in (True, None, "", "True"):
        p = Path(resume)
        folder = p if p.is_dir() else p.parent.parent
        if not folder.is_dir():
            raise CheckpointError(f"--resume: no prune run folder at {p}")
        return folder
    return find_resume_checkpoint(resume, project).parent.parent


def _resume(args, data) -> dict:
    """Continue an interrupted prune run at its last complete step: the pruning (redone if it was interrupted:
    it is deterministic and nothing of it was kept), the finetune's first epoch, or its last complete epoch."""
    save_dir = _resume_folder(args.resume, args.project or "runs/prune")
    pruned, last = save_dir / "pruned.pt", save_dir / "weights" / "last.pt"
    if not pruned.is_file():
        LOGGER.info(f"prune: {save_dir} was interrupted while pruning; pruning again")
        shutil.rmtree(save_dir / "pagcp_rounds", ignore_errors=True)  # PAGCP's between-round finetunes
        model, meta, hyp = prune_and_save(args, data, args.weights, save_dir)
        return _finetune_and_report(args, data, save_dir, model, meta, hyp)
    meta = read_checkpoint(pruned)["meta"]
    changed = [f"--{k} {meta[k]} (now {getattr(args, k)})" for k in ("method", "speedup") if meta[k] != getattr(args, k)]
    if changed:
        raise ConfigError(f"--resume: {save_dir} was pruned with {', '.join(changed)}; repeat the original "
                          f"settings to resume it, or drop --resume to start a new run")
    load_user_modules(args.modules)
    if last.is_file() and read_checkpoint(last).get("train_state"):
        result = train(_finetune_options(args, save_dir), resume=str(last),
                       callbacks_factory=_distill_factory(args, default_teacher=meta["source_weights"]))
        return write_prune_report(result, meta, save_dir, args, data)
    LOGGER.info(f"prune: {save_dir} was interrupted before the first finetune epoch was saved; finetuning "
                f"{pruned.name}")
    model = load_model(pruned, select_device(args.device), nc=data.nc)[0]
    hyp = Hyp.load(args.hyp) if args.hyp else Hyp.default_for(model.yaml)
    return _finetune_and_report(args, data, save_dir, model, meta, hyp)


# ---- report -----------------------------------------------------------------------------------------------
def _time_side_by_side(meta: dict, model, nc: int, imgsz: int, batch: int, device) -> tuple[float, float, str]:
    """(baseline ms, pruned ms, how they were timed): both models timed together in interleaved passes, so that
    the machine's speed drift between pruning and the end of the finetune (hours, on a shared machine) does not
    enter the latency ratio. Falls back to the baseline's time from before pruning when its weights are gone."""
    try:
        base_model = load_model(meta["baseline_weights"], device, nc=nc)[0]
    except (KeyError, OSError, YoloCompressError) as e:
        why = "not recorded" if isinstance(e, KeyError) else f"not loadable: {e}"
        return (meta["baseline"][latency_key(batch)], measure_latency(model, imgsz, batch, device),
                f"baseline timed before pruning (its weights are {why})")
    base_ms, pruned_ms = interleaved_latency([base_model, model], imgsz, batch, device)
    return base_ms, pruned_ms, f"both models timed together in {DEFAULT_LATENCY_ROUNDS} interleaved passes"


def write_prune_report(result, meta: dict, save_dir: Path, args, data) -> dict:
    weights = Path(result.best) if Path(result.best).is_file() else Path(result.last)
    model, _ = load_model(weights, nc=data.nc)
    device = select_device(args.device)
    stride = max(int(model.stride.max()), 32)
    imgsz = int(meta.get("imgsz") or check_imgsz(args.imgsz, stride))
    batch = int(meta.get("report_batch") or args.report_batch)
    validator = Validator(data, imgsz, args.batch_size, device, args.workers, stride=stride)
    label = f"pruned {meta['method']} {meta['speedup']}x, " + ("finetuned" if result.epochs_done else "not finetuned")
    row = measure_row(model.to(device), label, validator=validator, imgsz=imgsz, batch=batch,
                      device=device, time_it=False)
    time_key = latency_key(batch)
    base_ms, row[time_key], timing = _time_side_by_side(meta, model, data.nc, imgsz, batch, device)
    baseline = {**meta["baseline"], time_key: base_ms}
    summary, skipped, per_layer = meta["prune"], meta["skipped"], meta["per_layer"]
    lat_setting = meta.get("latency_setting") or f"{args.latency_device}, batch {args.latency_batch}"
    steps = f" after {summary['steps']} steps" if summary.get("steps") else ""
    notes = [f"GFLOPs ratio {summary['speedup_gflops']:.3f}x; target {meta['speedup']}x by {meta['speedup_metric']}: "
             f"{summary['stop_reason']}{steps}",
             f"measured latency ratio {summary['speedup_latency']:.3f}x ({summary['latency_before']:.2f} -> "
             f"{summary['latency_after']:.2f} ms at {lat_setting}, imgsz {imgsz})",
             f"{len(skipped)} group(s) skipped (listed below)",
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
    print(paths["md"].read_text())
    print(f"results saved to {save_dir}")
    return {"save_dir": str(save_dir), "pruned": str(save_dir / "pruned.pt"), "best": str(weights),
            "method": meta["method"], "speedup_target": meta["speedup"], "reached": summary["reached"],
            "steps": summary.get("steps"), "params": row["Parameters"], "gflops": row["GFLOPs"],
            "size_mb": row["Model Size"], "latency_ms": row[time_key], "mAP50": row["mAP50"],
            "mAP50-95": row["mAP50-95"], "speedup_gflops": summary["speedup_gflops"],
            "speedup_latency": summary["speedup_latency"],
            "speedup_latency_report": baseline[time_key] / row[time_key] if row[time_key] else None,
            "skipped": skipped, "baseline": {k: baseline[k] for k in baseline if k != "Model"}}
