"""The training loop of the official recipes (SGD with three parameter groups, warmup, linear/cosine LR,
gradient accumulation to a nominal batch, EMA, AMP on CUDA), with callbacks for everything else.

The trainer knows nothing of pruning or distillation: those plug in as `Callback`s (see callbacks.py).
"""
from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from tqdm import tqdm

from ..data.dataset import DataConfig, create_dataloader
from ..core.errors import CheckpointError, ConfigError, TrainingError
from ..models.checkpoint import save_checkpoint
from . import distributed as dist
from .callbacks import Callback, StepOutputs
from ..core.device import select_device
from .autoanchor import check_anchors
from .ema import ModelEMA, unwrap
from ..core.hyp import Hyp
from .losses import build_loss
from .metrics import fitness
from .options import OPTIMIZERS, TrainOptions, check_imgsz, model_stride
from ..core.rundir import ResultsCSV, atomic_write_text
from . import run_plots
from .validator import Validator, format_metrics

LOGGER = logging.getLogger("yolocompress")
LOSS_NAMES = ("box_loss", "obj_loss", "cls_loss")
METRIC_COLUMNS = ("metrics/precision", "metrics/recall", "metrics/mAP50", "metrics/mAP50-95")


def _ranges(ix: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, start = [], ix[0]
    for a, b in zip(ix, ix[1:] + [None]):
        if b != a + 1:
            out.append(f"{start}-{a}" if a > start else f"{a}")
            start = b
    return ", ".join(out)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def build_optimizer(model: nn.Module, hyp: Hyp, extra_params=(), lr: float | None = None,
                    optimizer: str = "SGD") -> torch.optim.Optimizer:
    """The official optimizers and groups: group 0 biases (warmup bias lr), group 1 weights (conv and the other
    non-norm weights) with decay, group 2 norm weights without. SGD is Nesterov with the hyp momentum; Adam and
    AdamW take the hyp momentum as beta1 (and their decay from the groups, none on the first)."""
    decay, no_decay, biases = [], [], []
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                biases.append(p)
            elif name == "weight" and isinstance(module, norm_types):
                no_decay.append(p)
            else:
                decay.append(p)
    decay += [p for p in extra_params if p.requires_grad]
    lr = lr or hyp.lr0
    if optimizer == "SGD":
        opt = torch.optim.SGD(biases, lr=lr, momentum=hyp.momentum, nesterov=True)
    elif optimizer == "Adam":
        opt = torch.optim.Adam(biases, lr=lr, betas=(hyp.momentum, 0.999))
    elif optimizer == "AdamW":
        opt = torch.optim.AdamW(biases, lr=lr, betas=(hyp.momentum, 0.999), weight_decay=0.0)
    else:
        raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    opt.add_param_group({"params": decay, "weight_decay": hyp.weight_decay})
    opt.add_param_group({"params": no_decay, "weight_decay": 0.0})
    return opt


def lr_lambda(opts: TrainOptions, hyp: Hyp):
    if opts.cos_lr:
        return lambda x: ((1 - math.cos(x * math.pi / opts.epochs)) / 2) * (hyp.lrf - 1) + 1
    return lambda x: (1 - x / opts.epochs) * (1.0 - hyp.lrf) + hyp.lrf


def lagged(lf):
    """The official trainers' schedule: epoch e (after warmup) trains at lf(e - 1), not lf(e).

    YOLOv5 and YOLOv7 build LambdaLR (which applies lf(0) at once) and then set `last_epoch = start_epoch - 1`,
    so every later epoch runs one step behind the formula; the warmup still aims at lf(epoch). Kept, so that a
    run here gets the same learning rates as the same run there.
    """
    return lambda x: lf(max(x - 1, 0))


@dataclass
class TrainResult:
    save_dir: Path
    best: Path
    last: Path
    metrics: dict
    epochs_done: int


class Trainer:
    """Train `model` on `data` with `hyp` and `opts`, writing everything to `save_dir`.

    `resume_state` (the `train_state` of a last.pt) continues an interrupted run at its next epoch.
    `meta` goes into every checkpoint (e.g. which sparse method produced it).
    """

    def __init__(self, model: nn.Module, data: DataConfig, hyp: Hyp, opts: TrainOptions, save_dir: Path,
                 callbacks: list[Callback] | None = None, resume_state: dict | None = None, meta: dict | None = None):
        self.opts, self.hyp, self.data = opts.check(), hyp, data
        self.save_dir = Path(save_dir)
        self.callbacks = list(callbacks or [])
        names = [cb.name for cb in self.callbacks]
        if len(set(names)) != len(names):  # their states are saved and restored by name
            raise ValueError(f"callbacks need distinct names, got {names}")
        self.resume_state = resume_state
        self.meta = dict(meta or {})
        self.rank, self.world = dist.rank(), dist.world_size()
        self.device = dist.device_for_rank(select_device(opts.device))
        self.model = model.to(self.device)
        self.stride = model_stride(unwrap(model))
        self.imgsz = check_imgsz(opts.imgsz, self.stride)
        self.wdir = self.save_dir / "weights"
        self.best_fitness, self.start_epoch, self.epoch = 0.0, 0, 0
        self.metrics: dict = {}
        self.best_record = None  # the best validation's detections, for the plots at the end
        self.stopping = False  # set at an epoch's end when early stopping ends the run

    @property
    def main(self) -> bool:
        return self.rank in (-1, 0)

    # ---- set-up -------------------------------------------------------------------------------------
    def _setup(self):
        opts, hyp = self.opts, self.hyp
        frozen = self._freeze(unwrap(self.model))  # first: a bad --freeze stops before the run folder is written
        seed_everything(opts.seed + max(self.rank, 0))
        if self.main:
            self.wdir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.save_dir / "hyp.yaml", yaml.safe_dump(hyp.to_dict(), sort_keys=False))
            atomic_write_text(self.save_dir / "opt.yaml", yaml.safe_dump(opts.to_dict(), sort_keys=False))
        m = unwrap(self.model)
        hyp.label_smoothing = opts.label_smoothing or hyp.label_smoothing
        batch = opts.batch_size // max(self.world, 1)
        self.accumulate = max(round(opts.nbs / opts.batch_size), 1)
        self.hyp_wd = hyp.weight_decay * opts.batch_size * self.accumulate / opts.nbs
        self.train_loader, self.train_set = create_dataloader(
            self.data.train, self.imgsz, batch, self.stride, hyp, augment=True, rect=opts.rect, workers=opts.workers,
            shuffle=not opts.rect, seed=opts.seed, nc=self.data.labels_nc, prefix="train",
            distributed=self.world > 1, single_cls=self.data.single_cls, cache_images=opts.cache,
            require_labels=not opts.allow_background)
        fixed_by = [cb.name for cb in self.callbacks if cb.fixes_anchors]
        if fixed_by and not opts.noautoanchor and self.main:
            LOGGER.info(f"AutoAnchor skipped: {', '.join(fixed_by)} compares raw head outputs under the current anchors")
        if not self.resume_state and not opts.noautoanchor and not fixed_by:  # before the EMA copy: same anchors
            check_anchors(m.head, self.train_set.shapes, self.train_set.labels, self.imgsz, thr=hyp.anchor_t,
                          seed=opts.seed, log=self.main)
        for cb in self.callbacks:
            cb.on_train_start(self)
            if any(p.requires_grad for p in frozen):
                raise ConfigError(f"--freeze {' '.join(map(str, opts.freeze))} cannot be combined with {cb.name}: it "
                                  "needs the gradients of every layer; drop --freeze")
        extra = [p for cb in self.callbacks for p in cb.extra_parameters()]
        self.optimizer = build_optimizer(m, Hyp(**{**hyp.to_dict(), "weight_decay": self.hyp_wd}), extra,
                                         optimizer=opts.optimizer)
        self.lf = lr_lambda(opts, hyp)
        self.ema = ModelEMA(m) if self.main else None
        self.amp = opts.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.resume_state:
            self._load_resume_state(self.resume_state)
        # created after a resumed optimizer state is loaded, so the schedule continues at start_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda=lagged(self.lf),
                                                           last_epoch=self.start_epoch - 1)
        if self.world > 1:
            if opts.sync_bn:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.model = dist.wrap_ddp(self.model, self.device)
        self.validator = Validator(self.data, self.imgsz, batch_size=batch * 2, device=self.device,
                                   workers=opts.workers) if self.main else None
        self.loss_fn = build_loss(m, hyp, self.imgsz)
        self.capture = sorted({i for cb in self.callbacks for i in cb.capture_layers()})
        self.results = ResultsCSV(self.save_dir / "results.csv") if self.main else None
        if self.results is not None:
            self.results.truncate(self.start_epoch)
        self.tb = self._tensorboard() if self.main else None

    def _freeze(self, m: nn.Module) -> list:
        """`--freeze`: parameters of the named layers get requires_grad False (so the optimizer leaves them out),
        by the official rule of the parameter-name prefix `model.{i}.`."""
        layers = self.opts.frozen_layers()
        if not layers:
            return []
        n_layers, flag = len(m.model), " ".join(map(str, self.opts.freeze))
        if layers[-1] >= n_layers:
            raise ConfigError(f"--freeze {flag}: the model has {n_layers} layers (0-{n_layers - 1}); freeze fewer")
        prefixes = tuple(f"model.{i}." for i in layers)
        params = list(m.named_parameters())
        frozen = [p for name, p in params if name.startswith(prefixes)]
        if len(frozen) == len(params):
            raise ConfigError(f"--freeze {flag} freezes every parameter; nothing would train")
        for p in frozen:
            p.requires_grad_(False)
        if self.main:
            LOGGER.info(f"freezing layers {_ranges(layers)}: {len(frozen)} of {len(params)} parameter tensors "
                        "keep their values")
        return frozen

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter(str(self.save_dir))
        except Exception as e:  # TensorBoard is optional at run time: training must not die for a log
            LOGGER.warning(f"TensorBoard logging disabled: {e}")
            return None

    def _load_resume_state(self, st: dict):
        m = unwrap(self.model)
        m.load_state_dict(st["model"])
        saved = st.get("callbacks") or {}
        if isinstance(saved, list):  # checkpoints of earlier versions kept the states in callback order
            saved = {cb.name: cst for cb, cst in zip(self.callbacks, saved)}
        for cb in self.callbacks:  # first: a callback's own check names a mismatch better than the optimizer
            cb.load_state_dict(saved.get(cb.name, {}))
        try:
            self.optimizer.load_state_dict(st["optimizer"])
        except ValueError as e:
            raise CheckpointError(f"cannot resume: the optimizer state does not match this run ({e}); resume with the "
                                  "same distillation/sparsity options as the interrupted run") from None
        if self.ema is not None and st.get("ema") is not None:
            self.ema.ema.load_state_dict(st["ema"])
            self.ema.updates = int(st.get("ema_updates", 0))
        if st.get("scaler") and self.amp:
            self.scaler.load_state_dict(st["scaler"])
        self.start_epoch = int(st["epoch"]) + 1
        self.best_fitness = float(st.get("best_fitness", 0.0))
        if self.start_epoch >= self.opts.epochs:
            raise TrainingError(f"nothing to resume: all {self.opts.epochs} epochs are done "
                                f"(use --weights {self.wdir / 'last.pt'} to train further)")

    # ---- the loop -----------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self._setup()
        opts, hyp = self.opts, self.hyp
        nb = len(self.train_loader)
        nw = max(round(hyp.warmup_epochs * nb), 100) if hyp.warmup_epochs > 0 else -1
        last_opt_step = self.resume_state.get("last_opt_step", -1) if self.resume_state else -1
        total_iters = opts.epochs * nb
        if self.main:
            LOGGER.info(f"training {opts.epochs - self.start_epoch} epochs, {len(self.train_set)} images, "
                        f"batch {opts.batch_size}, imgsz {self.imgsz}, device {self.device}; results in {self.save_dir}")
        t_start = time.time()
        for epoch in range(self.start_epoch, opts.epochs):
            self.epoch = epoch
            self.model.train()
            self._reseed_epoch(epoch)
            mloss = torch.zeros(3, device=self.device)
            extra_sums: dict[str, float] = {}
            pbar = enumerate(self.train_loader)
            if self.main:
                pbar = tqdm(pbar, total=nb, desc=f"{epoch + 1}/{opts.epochs}", leave=True,
                            bar_format="{l_bar}{bar:10}{r_bar}", disable=os.environ.get("YOLOCOMPRESS_NO_BAR") == "1")
            self.optimizer.zero_grad()
            n_imgs, t_epoch = 0, time.time()
            for i, (imgs, targets, _paths, _shapes) in pbar:
                ni = i + nb * epoch
                if ni < 3 and self.main and not opts.noplots:
                    run_plots.plot_train_batch(self.save_dir, ni, imgs, targets, _paths, self.data.names)
                imgs = imgs.to(self.device, non_blocking=True).float() / 255
                if opts.multi_scale:
                    imgs = self._rescale(imgs)
                n_imgs += imgs.shape[0]
                if ni <= nw:
                    self._warmup(ni, nw, epoch)
                    self.accumulate = max(1, int(np.interp(ni, [0, nw], [1, opts.nbs / opts.batch_size]).round()))
                try:
                    with torch.autocast(self.device.type, enabled=self.amp):
                        out = self.model(imgs, capture=self.capture) if self.capture else self.model(imgs)
                        raw, feats = (out if self.capture else (out, {}))
                        loss, items = self.loss_fn(raw, targets.to(self.device))
                        step = StepOutputs(imgs, targets, raw, feats, epoch, ni, total_iters)
                        terms = {}
                        for cb in self.callbacks:
                            terms.update(cb.loss_terms(self, step))
                    self._check_finite(loss, items, terms, epoch, i)
                    for v in terms.values():
                        loss = loss + v.float() * imgs.shape[0]
                    if self.world > 1:
                        loss = loss * self.world
                    self.scaler.scale(loss).backward()
                except RuntimeError as e:
                    if i or epoch != self.start_epoch:  # the model ran before: not its structure
                        raise
                    self._explain_first_step(imgs, e)
                if ni - last_opt_step >= self.accumulate:
                    self._optimizer_step()
                    last_opt_step = self.last_opt_step = ni
                mloss = (mloss * i + items.to(self.device)) / (i + 1)
                for k, v in terms.items():
                    extra_sums[k] = (extra_sums.get(k, 0.0) * i + float(v.detach())) / (i + 1)
                if self.main and hasattr(pbar, "set_postfix"):
                    pbar.set_postfix(self._postfix(mloss, extra_sums), refresh=False)
            lrs = [g["lr"] for g in self.optimizer.param_groups]
            self.scheduler.step()
            train_time = time.time() - t_epoch
            if self.main:
                self._end_epoch(epoch, mloss, extra_sums, lrs, n_imgs, train_time)
            if self.world > 1:
                self.stopping = dist.broadcast_flag(self.stopping, self.device)
            if self.stopping:
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        if self.main:
            LOGGER.info(f"{opts.epochs - self.start_epoch} epochs done in {(time.time() - t_start) / 3600:.3f} h")
            if self.tb is not None:
                self.tb.close()
            self._plot_results()
            if self.best_record is not None:
                LOGGER.info(f"best.pt (epoch {int(self.meta['best_epoch']) + 1}):\n"
                            f"{format_metrics(self.best_metrics, per_class=True, speed=False)}")
                if not opts.noplots:
                    run_plots.plot_validation(self.save_dir, self.best_record)
            if not opts.noplots:  # at the end with the other matplotlib plots: no delay before the first epoch
                run_plots.plot_labels(self.save_dir, self.train_set.labels, self.data.names)
        if self.world > 1:  # every rank waits for rank 0's plots, then the group is closed before exit
            dist.barrier()  # (a rank exiting with its gloo threads still open aborts: "terminate called ...")
            dist.cleanup()
        return TrainResult(self.save_dir, self.wdir / "best.pt", self.wdir / "last.pt", self.metrics, self.epoch + 1)

    @staticmethod
    def _postfix(mloss, extra_sums) -> dict:
        """Loss components for the progress bar; extra terms also show their share of the total loss."""
        out = {n.split("_")[0]: f"{v:.4f}" for n, v in zip(LOSS_NAMES, mloss.tolist())}
        total = float(mloss.sum()) + sum(extra_sums.values())
        for k, v in extra_sums.items():
            out[k] = f"{v:.4f} ({100 * v / total:.0f}%)" if total else f"{v:.4f}"
        return out

    def _reseed_epoch(self, epoch: int):
        """Each epoch's data order and augmentation follow from (seed, epoch), so a resumed run sees the same data."""
        seed = self.opts.seed + epoch * 1000 + max(self.rank, 0)
        gen = getattr(self.train_loader, "generator", None)
        if gen is not None:
            gen.manual_seed(seed)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch, self.opts.seed + max(self.rank, 0))
        random.seed(seed)
        np.random.seed(seed % 2**32)

    def _rescale(self, imgs: torch.Tensor) -> torch.Tensor:
        """--multi-scale: this batch at a random size in imgsz x 0.5-1.5, a multiple of the stride (targets are
        normalised, so they stay valid). Drawn from `random`, which `_reseed_epoch` seeds: resume-exact."""
        gs = self.stride
        size = random.randrange(int(self.imgsz * 0.5), int(self.imgsz * 1.5) + gs) // gs * gs
        size = max(size, gs)
        sf = size / max(imgs.shape[2:])
        if sf == 1:
            return imgs
        shape = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]
        return nn.functional.interpolate(imgs, size=shape, mode="bilinear", align_corners=False)

    def _warmup(self, ni: int, nw: int, epoch: int):
        for j, g in enumerate(self.optimizer.param_groups):
            start = self.hyp.warmup_bias_lr if j == 0 else 0.0
            g["lr"] = float(np.interp(ni, [0, nw], [start, g["initial_lr"] * self.lf(epoch)]))
            if "momentum" in g:
                g["momentum"] = float(np.interp(ni, [0, nw], [self.hyp.warmup_momentum, self.hyp.momentum]))

    def _optimizer_step(self):
        self.scaler.unscale_(self.optimizer)
        for cb in self.callbacks:
            cb.after_backward(self)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=self.opts.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

    def _explain_first_step(self, imgs, error: RuntimeError):
        """The first step failed inside a module (an in-place write autograd refuses, a hard-coded channel
        count): one error line naming the layer and what to change, not a traceback from deep in autograd."""
        from ..models.runcheck import check_runs
        check_runs(unwrap(self.model), imgs[:1].float(), "training", TrainingError)
        raise TrainingError(f"training: the first step fails ({type(error).__name__}: "
                            f"{str(error).strip().splitlines()[0][:200]})") from error

    def _check_finite(self, loss, items, terms, epoch, i):
        if torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values()):
            return
        bad = [n for n, v in zip(LOSS_NAMES, items.tolist()) if not math.isfinite(v)]
        bad += [k for k, v in terms.items() if not torch.isfinite(v)]
        last = self.wdir / "last.pt"
        kept = f"; the last good checkpoint is {last}" if last.exists() else ""
        raise TrainingError(f"the loss became NaN/inf at epoch {epoch + 1}, batch {i} (component: "
                            f"{', '.join(bad) or 'total'}){kept}; lower the learning rate or the loss weights")

    def _stop_early(self, epoch: int) -> bool:
        """Official semantics: stop after `patience` epochs without a better fitness; patience 0 never stops."""
        patience = self.opts.patience
        if not patience or "best_epoch" not in self.meta:
            return False
        best_epoch = int(self.meta["best_epoch"])
        stop = epoch - best_epoch >= patience and epoch + 1 < self.opts.epochs
        if stop and self.main:
            LOGGER.info(f"stopping early: no better validation in the last {patience} epochs (--patience "
                        f"{patience}); the best was epoch {best_epoch + 1}, saved as {self.wdir / 'best.pt'}; "
                        f"pass --patience 0 to never stop early")
        return stop

    def _end_epoch(self, epoch, mloss, extra_sums, lrs, n_imgs, train_time):
        opts = self.opts
        final = epoch + 1 == opts.epochs
        validated = self.validator is not None and (
            final or (not opts.noval and (epoch + 1) % max(opts.val_every, 1) == 0))
        if validated:
            self.metrics = self.validator.run(self.ema.ema, loss_fn=self.loss_fn, record=True)
            LOGGER.info(format_metrics(self.metrics, speed=False))
        row = {"epoch": epoch, **{f"train/{n}": float(v) for n, v in zip(LOSS_NAMES, mloss.tolist())}}
        row.update({f"train/{k}": v for k, v in extra_sums.items()})
        total = float(mloss.sum()) + sum(extra_sums.values())
        for k, v in extra_sums.items():
            row[f"train/{k}_share"] = v / total if total else 0.0
        if validated:
            m = self.metrics
            row.update(zip(METRIC_COLUMNS, (m["precision"], m["recall"], m["mAP50"], m["mAP50-95"])))
            row.update({f"val/{n}": float(v) for n, v in zip(LOSS_NAMES, m.get("loss", [0, 0, 0]))})
        else:  # not measured this epoch: empty cells, never the last validation repeated
            row.update({k: "" for k in (*METRIC_COLUMNS, *(f"val/{n}" for n in LOSS_NAMES))})
        row.update({f"x/lr{j}": lr for j, lr in enumerate(lrs)})
        row["train/images_per_s"] = n_imgs * max(self.world, 1) / max(train_time, 1e-9)
        for cb in self.callbacks:
            row.update(cb.on_epoch_end(self, epoch) or {})
        fit = fitness(self.metrics) if self.metrics else 0.0
        # best.pt follows validations only (an unvalidated epoch has no score of its own)
        is_best = validated and fit >= self.best_fitness
        if is_best:
            self.best_fitness = fit
            self.meta["best_epoch"] = epoch
            self.best_record, self.best_metrics = self.validator.record, self.metrics
        # results.csv first, then the checkpoints: a kill between them leaves a row the resumed run rewrites
        # (it redoes that epoch), never a saved epoch without its row
        self.results.append(row)
        self.stopping = self._stop_early(epoch)
        self._save(epoch, is_best, final or self.stopping)
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, epoch)

    def _save(self, epoch: int, is_best: bool, finished: bool):
        """best.pt, epochN.pt (--save-period) and last.pt; `finished` (the last epoch, or an early stop) marks a
        run that `--resume` must not pick as interrupted."""
        m = unwrap(self.model)
        meta = {**self.meta, "epoch": epoch, "finished": finished, "best_fitness": self.best_fitness,
                "hyp": self.hyp.to_dict(),
                "opt": self.opts.to_dict(), "metrics": {k: v for k, v in self.metrics.items() if k != "per_class"}}
        state = {"epoch": epoch, "model": m.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "ema": self.ema.ema.state_dict(), "ema_updates": self.ema.updates,
                 "scaler": self.scaler.state_dict() if self.amp else None, "best_fitness": self.best_fitness,
                 "last_opt_step": getattr(self, "last_opt_step", -1),
                 "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks}}
        extra = {name: cst for name, cst in state["callbacks"].items() if cst}
        if is_best:  # before last.pt: a resumed run never skips past an epoch whose best.pt was not written
            save_checkpoint(self.wdir / "best.pt", self.ema.ema, meta=meta)
        if self.opts.save_period > 0 and (epoch + 1) % self.opts.save_period == 0:
            save_checkpoint(self.wdir / f"epoch{epoch + 1}.pt", self.ema.ema, meta=meta)
        save_checkpoint(self.wdir / "last.pt", self.ema.ema, train_state=state, meta=meta, extra=extra)

    def _plot_results(self):
        try:
            from ..report.plots import plot_results
            plot_results(self.save_dir / "results.csv", self.save_dir / "results.png")
        except Exception as e:  # a plot must never cost the user their run
            LOGGER.warning(f"results.png not written: {e}")
