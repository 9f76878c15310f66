"""Library entry points of the engine: what `yolocompress train` and `yolocompress val` run."""
from __future__ import annotations

import logging
from pathlib import Path

from ..data.dataset import load_data_config
from ..core.errors import CheckpointError, ConfigError
from ..models.builder import Model
from ..models.checkpoint import ClassCountError, architecture_for, load_model, read_checkpoint, transfer_weights
from ..models.registry import load_user_modules
from .callbacks import Callback
from ..core.hyp import Hyp
from .options import TrainOptions, ValOptions, check_imgsz, model_stride
from ..core.rundir import atomic_write_text, increment_path
from .trainer import Trainer, TrainResult, seed_everything
from .val_outputs import write_val_outputs
from .validator import Validator, format_metrics, split_files

LOGGER = logging.getLogger("yolocompress")


def model_for_data(weights: str | None, cfg: str | None, data, modules=()):
    """Load `weights` (ours or official) or build `cfg` for the dataset's classes, as they are.

    What prune, sparse training, compress and val start from: a model trained on this data, so `weights` with
    another class count is an error here (`train` transfers such weights instead, see `model_to_train`).
    """
    load_user_modules(modules)
    if weights:
        model, ckpt = load_model(weights, nc=data.nc)
        model.names = list(data.names)
        return model, ckpt
    if not cfg:
        raise ConfigError("give --weights W.pt (to start from a checkpoint) or --cfg MODEL.yaml (to start from scratch)")
    return Model(cfg, nc=data.nc, names=data.names), None


def model_to_train(weights: str | None, cfg: str | None, data, modules=()):
    """What `train` starts from: `cfg` from scratch, `weights` as they are, or a transfer (as the official trainers).

    `--weights W` on data with another class count builds W's architecture (pruned widths included) with the
    data's classes; `--cfg C --weights W` builds C. Both copy every tensor of W whose name and shape match, and
    log how many: the backbone and neck come over, the head's class rows are new. With `--cfg` the anchors are
    C's own (official rule); with `--weights` alone they are W's, and AutoAnchor may still re-fit them.
    """
    if not weights:
        return model_for_data(None, cfg, data, modules)
    if not cfg:
        try:
            return model_for_data(weights, None, data, modules)
        except ClassCountError:
            pass
    load_user_modules(modules)
    ckpt = read_checkpoint(weights)
    source = ckpt["state_dict"] if ckpt["format"] == "official" else ckpt["model"]
    if cfg:
        model = Model(cfg, nc=data.nc, names=data.names)
    else:
        model = architecture_for(ckpt, source, nc=data.nc, names=data.names)
    n, total = transfer_weights(model, source, exclude=(".anchors",) if cfg else ())
    LOGGER.info(f"transferred {n}/{total} items from {weights}")
    return model, None


def run_kind(meta: dict | None) -> str:
    """Which command wrote a checkpoint: its meta's `run`, else what older checkpoints record (sparse settings,
    the pruned flag)."""
    meta = meta or {}
    if meta.get("run"):
        return str(meta["run"])
    if "sparse_method" in meta:
        return "sparse"
    return "prune" if meta.get("pruned") else "train"


def interrupted(ckpt: dict) -> bool:
    """A last.pt whose run stopped before its end (a finished or early-stopped run is not interrupted)."""
    meta = ckpt.get("meta") or {}
    if not ckpt.get("train_state"):
        return False
    if "finished" in meta:
        return not meta["finished"]
    return int(meta.get("epoch", 0)) + 1 < int((meta.get("opt") or {}).get("epochs", 0))


def _resume_candidates(project: str, kind: str):
    """(last.pt, checkpoint) of the runs of `kind` under `project` that can be resumed, newest first."""
    found = sorted(Path(project).glob("*/weights/last.pt"), key=lambda q: q.stat().st_mtime, reverse=True)
    for last in found:
        try:
            ckpt = read_checkpoint(last)
        except CheckpointError:  # a damaged run folder is not a candidate; naming it happens with --resume PATH
            continue
        if run_kind(ckpt.get("meta")) == kind and interrupted(ckpt):
            yield last, ckpt


def find_resume_checkpoint(resume, project: str = "runs/train", kind: str | None = None) -> Path:
    """--resume PATH (a last.pt or its run folder) or, with --resume alone, the newest *interrupted* run of this
    command (`kind`, default train) under the project folder, as the official trainers do.

    With a PATH and a `kind`, a run of another kind is refused with the command that resumes it.
    """
    if resume not in (True, None, "", "True"):
        p = Path(resume)
        p = p / "weights" / "last.pt" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {p}")
        other = run_kind(read_checkpoint(p).get("meta"))
        if kind is not None and other != kind:
            raise CheckpointError(f"--resume {resume}: a {other} run, not a {kind} run; resume it with "
                                  f"`yolocompress {other} --resume {resume}`")
        return p
    kind = kind or "train"
    for last, _ in _resume_candidates(project, kind):
        return last
    raise CheckpointError(f"--resume: no interrupted {kind} run under {project}/*/weights/last.pt (finished runs "
                          f"are not resumed); give the path of the run to resume, or train further with --weights")


def train(opts: TrainOptions, *, weights: str | None = None, cfg: str | None = None, hyp: str | Hyp | None = None,
          resume=None, callbacks_factory=None, meta: dict | None = None, model=None,
          transfer: bool = True, kind: str | None = None) -> TrainResult:
    """Train from scratch (cfg), from weights, or resume an interrupted run.

    `hyp` (a file or a `Hyp`) overrides `opts.hyp`; both None: the official values for the model.
    `transfer` lets `weights` of another class count (or with `cfg`) start a new head (see `model_to_train`);
    sparse training passes False, since it needs a model trained on the data.
    `resume`: True for the newest interrupted run of `kind` (default "train") under `opts.project`, or a run
    folder / last.pt; every TrainOptions field is restored from the run (the given `opts` only supply device and
    workers). `kind` is recorded in the checkpoints (`meta["run"]`) so that `--resume` finds runs of its command.

    `callbacks_factory(model, data) -> list[Callback]` lets sparse training and distillation add their callbacks
    (built after the model exists, e.g. to size adapters). `model` may be given directly (a pruned model).
    """
    resume_state, save_dir = None, None
    if resume:
        last = find_resume_checkpoint(resume, opts.project, kind=kind)
        ckpt = read_checkpoint(last)
        if not ckpt.get("train_state"):
            raise CheckpointError(f"{last}: holds no training state to resume (only last.pt of a run does)")
        saved = dict(ckpt["meta"].get("opt") or {})
        opts = TrainOptions.from_dict({**saved, **{k: v for k, v in (("device", opts.device),
                                                                      ("workers", opts.workers)) if v not in ("", None)}})
        hyp = Hyp.from_dict(ckpt["meta"]["hyp"])
        meta = {**(ckpt["meta"] or {}), **(meta or {})}
        save_dir = last.parent.parent
        resume_state = ckpt["train_state"]
        weights = str(last)
        LOGGER.info(f"resuming {save_dir} from epoch {resume_state['epoch'] + 2}")
    data = load_data_config(opts.data)
    if opts.single_cls:
        data = data.single_class()
    seed_everything(opts.seed)  # before the model is built: its initial weights follow the seed
    if model is None:
        start = model_to_train if transfer and not resume else model_for_data  # a resumed run is its own model
        model, _ = start(weights, cfg, data, opts.modules)
    else:
        load_user_modules(opts.modules)
    hyp = opts.hyp if hyp is None else hyp  # an explicit Hyp (a finetune's) over the options' file
    if hyp is None:
        hyp = Hyp.default_for(model.yaml)
    elif not isinstance(hyp, Hyp):
        hyp = Hyp.load(hyp)
    if save_dir is None:
        save_dir = increment_path(Path(opts.project) / opts.name, opts.exist_ok)
    meta = {**(meta or {}), "run": kind or run_kind(meta)}
    callbacks: list[Callback] = callbacks_factory(model, data) if callbacks_factory else []
    trainer = Trainer(model, data, hyp, opts, save_dir, callbacks=callbacks, resume_state=resume_state, meta=meta)
    return trainer.fit()


def val(opts: ValOptions, model=None) -> dict:
    """Validate a checkpoint (ours or official) on the dataset's val (or test) split, as official val.py.

    The run gets its folder `runs/val/expN/` (`opts.project`/`opts.name`) with the per-class table in
    results.txt and what `opts` asks for (JSON, txt, plots); `task="speed"` times the model at conf 0.25 /
    IoU 0.45 and writes nothing. The metrics dict also carries `save_dir` and `files` when a folder was written.
    """
    d = load_data_config(opts.data)
    split = "test" if opts.task == "test" else "val"
    split_files(d, split)  # a missing test split fails before the model loads
    conf, iou = (0.25, 0.45) if opts.task == "speed" else (opts.conf_thres, opts.iou_thres)  # as official
    if model is None:
        model, _ = model_for_data(opts.weights, None, d, opts.modules)
    stride = model_stride(model)
    imgsz = check_imgsz(opts.imgsz, stride)
    v = Validator(d, imgsz, opts.batch_size, opts.device, opts.workers, conf, iou, opts.max_det, split=split,
                  stride=stride)
    writes = opts.task != "speed"
    m = v.run(model, record=writes)
    if writes:
        save_dir = increment_path(Path(opts.project) / opts.name, opts.exist_ok)
        m["files"] = write_val_outputs(save_dir, v.record, opts, Path(opts.weights).stem if opts.weights else "model")
        atomic_write_text(save_dir / "results.txt", format_metrics(m, per_class=True) + "\n")
        m["save_dir"] = str(save_dir)
    return m
