"""What the benchmark scripts share: the bench data paths, one measured table row, a results file that keeps
every finished row (so an interrupted benchmark resumes where it stopped), and runs of `prune` / `train` with
distillation flags built the way the CLI builds them."""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from yolocompress.core.errors import DataError
from yolocompress.data.dataset import load_data_config
from yolocompress.distill.api import distill_callbacks_factory
from yolocompress.distill.options import DistillOptions
from yolocompress.engine.api import train
from yolocompress.core.hyp import Hyp
from yolocompress.core.runrecord import options_record, read_record, write_record
from yolocompress.engine.options import TrainOptions
from yolocompress.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from yolocompress.prune.api import prune_command
from yolocompress.prune.options import PruneOptions
from yolocompress.core.stats import count_gflops, count_params, interleaved_latency, measure_latency
from yolocompress.report.stats import checkpoint_size_mb
from yolocompress.report.tables import compare_rows, markdown_table

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BENCH_DATA = SHARED / "bench" / "data" / "data.yaml"
BENCH_HYP = SHARED / "bench" / "hyp.digits.yaml"
FIXTURE = SHARED / "fixtures" / "yolov5n_official_digits.pt"
V7_HYP = Path(__file__).resolve().parent / "hyp.yolov7-tiny.digits.yaml"
LOGGER = logging.getLogger("yolocompress")


def measure(label: str, weights, data, imgsz: int, device: str, validator) -> dict:
    """One table row: size (MB of our FP32 checkpoint), accuracy on the validator's data, CPU latency at batch 1
    and 32 (and GPU FP16 at batch 32)."""
    m = load_model(weights, nc=data.nc)[0]
    met = validator.run(m)
    r = {"Model": label, "Parameters": count_params(m), "GFLOPs": count_gflops(m, imgsz),
         "Model Size": checkpoint_size_mb(m), "mAP50": met["mAP50"], "mAP50-95": met["mAP50-95"],
         "CPU bs1 (ms)": measure_latency(m, imgsz, 1, "cpu"), "CPU bs32 (ms)": measure_latency(m, imgsz, 32, "cpu")}
    if torch.cuda.is_available():
        r["GPU bs32 FP16 (ms)"] = measure_latency(m, imgsz, 32, "0", half=True)
    r["weights"] = str(weights)
    return r


def remeasure_latency(results: "Results", imgsz: int, nc: int, rounds: int = 5) -> None:
    """Time every row's model again (CPU, and GPU FP16 when there is one), in `rounds` interleaved passes
    (core.stats.interleaved_latency): for a machine that was busy while the rows were made (latency measured
    beside other jobs is noise; accuracy and sizes are not affected)."""
    rows = results.data["rows"]
    models = [load_model(row["weights"], nc=nc)[0] for row in rows.values()]
    for bs in (1, 32):
        for row, t in zip(rows.values(), interleaved_latency(models, imgsz, bs, "cpu", rounds=rounds)):
            row[f"CPU bs{bs} (ms)"] = t
    if torch.cuda.is_available():  # rows made side by side on one GPU were timed sharing it
        for row, t in zip(rows.values(), interleaved_latency(models, imgsz, 32, "0", half=True, rounds=rounds)):
            row["GPU bs32 FP16 (ms)"] = t
    for key, row in rows.items():
        LOGGER.info(f"latency {key}: {row['CPU bs1 (ms)']:.2f} / {row['CPU bs32 (ms)']:.2f} ms")
    results.data["latency_rounds"] = rounds
    results.save()


def table(rows: list[dict]) -> str:
    """Markdown of `rows` against the first, without the bookkeeping columns."""
    return markdown_table(compare_rows([{k: v for k, v in r.items() if k != "weights"} for r in rows]))


# The options that decide what a finished row means: a rerun that changes one of them must not reuse old rows.
RECIPE_KEYS = ("weights", "v5_weights", "data", "hyp", "imgsz", "batch_size", "seed", "speedup", "finetune_epochs", "kd",
               "v7_weights", "v7_cfg", "v7_epochs", "v7_hyp", "train_images", "sparse_epochs", "v7_patience")


def in_checkout(value):
    """A recipe value as it compares between checkouts: an absolute path to a file of the checkout (its runs/ or
    benchmarks/ folders) becomes its path inside the checkout, so that a worktree elsewhere resumes the same rows."""
    if isinstance(value, str) and value.startswith("/"):
        for part in ("/runs/", "/benchmarks/"):
            if part in value:
                return part[1:] + value.split(part, 1)[1]
    return value


# Keyed parts of a results file that several processes may add to at once (Results.save merges them key by key).
SHARED_PARTS = ("rows", "minutes", "latency640")


class Results:
    """A JSON file of finished rows, rewritten atomically after each one; `has(key)` lets a rerun skip them.

    A rerun with another recipe (RECIPE_KEYS) into the same file is refused, so that one table never mixes
    recipes; a `--latency-only` pass re-times rows whatever their recipe and keeps the recorded one.
    """

    def __init__(self, path, args: argparse.Namespace):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"rows": {}, "minutes": {}}
        self._seen = json.loads(json.dumps(self.data))  # what save() compares with to find this process's changes
        new, old = vars(args), self.data.get("args", {})
        if not getattr(args, "latency_only", False):
            changed = [k for k in self._recipe_keys() if k in new and k in old
                       and in_checkout(new[k]) != in_checkout(old[k])]
            if changed and self.data["rows"]:
                raise SystemExit(f"{self.path}: its rows were made with other settings ("
                                 + ", ".join(f"{k} {old[k]} -> {new[k]}" for k in changed)
                                 + "); use another --project or --out, or the recorded settings")
            self.data["args"] = new
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _recipe_keys(self) -> list[str]:
        """The recipe keys the rows already made depend on: the v7t baseline's options (`v7_*`) only once the
        file holds v7t rows, so that the yolov7-tiny half of a comparison can start from a baseline chosen after
        the yolov5n rows were made."""
        has_v7 = any(k.startswith("v7t/") for k in self.data["rows"])
        return [k for k in RECIPE_KEYS if has_v7 or not k.startswith("v7_")]

    def has(self, key: str) -> bool:
        return key in self.data["rows"]

    def row(self, key: str) -> dict:
        return self.data["rows"][key]

    def add(self, key: str, row: dict, t0: float, **extra) -> None:
        self.data["rows"][key] = {**row, **extra}
        self.data["minutes"][key] = (time.time() - t0) / 60
        self.save()
        LOGGER.info(f"benchmark row {key}: {row}")

    def save(self) -> None:
        """Write atomically, after taking in what another process added or remade in the same file since this one
        last read or wrote it, so that two runs with disjoint rows (e.g. `--methods` split over two cores) can share
        one results file: their rows are kept, not reverted to this process's older copies. Merged in place, so
        references to `data`'s parts stay live."""
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
            for part, theirs in disk.items():
                if part not in SHARED_PARTS:
                    self.data.setdefault(part, theirs)
                    continue
                mine, seen = self.data.setdefault(part, {}), self._seen.get(part, {})
                for k, v in theirs.items():
                    changed_here = k in mine and (k not in seen or seen[k] != mine[k])
                    if not changed_here and mine.get(k) != v:
                        mine[k] = v
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            text = json.dumps(self.data, indent=1, default=str)
            tmp.write_text(text)
            tmp.replace(self.path)
            self._seen = json.loads(text)


def kd_options(logit: str | None = None, feature: str | None = None, teacher=None, logit_weight: float = 1.0,
               feature_weight: float = 1.0) -> DistillOptions | None:
    """The distillation options of a row (None without a loss: the row trains without a teacher)."""
    if not (logit or feature):
        return None
    return DistillOptions(teacher=None if teacher is None else str(teacher), logit=logit, feature=feature,
                          logit_weight=logit_weight, feature_weight=feature_weight)


def prune_switches(flags) -> dict:
    """PruneOptions fields from switches as the CLI spells them: `global` -> global_pruning=True, `local` ->
    global_pruning=False, `round-to=auto` -> round_to="auto" (a value parsed by the option's own type)."""
    by_flag = {(f.metadata.get("flag") or "--" + f.name.replace("_", "-")).lstrip("-"): f for f in fields(PruneOptions)}
    off = {f.metadata["off_flag"].lstrip("-"): f.name for f in fields(PruneOptions) if f.metadata.get("off_flag")}
    out = {}
    for flag in flags:
        name, has_value, value = flag.partition("=")
        if name in off and not has_value:
            out[off[name]] = False
        elif name in by_flag:
            f = by_flag[name]
            out[f.name] = (f.metadata.get("type") or str)(value) if has_value else True
        else:
            raise SystemExit(f"unknown prune switch {flag!r}; known: {', '.join(sorted({*by_flag, *off}))}")
    return out


def save_fp16(src, dst: Path) -> Path:
    """The model of checkpoint `src` with FP16 weights and no training state (small enough to commit)."""
    model, ckpt = load_model(src)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    meta = {k: v for k, v in (ckpt.get("meta") or {}).items() if k in ("epoch", "best_epoch", "metrics", "hyp", "opt")}
    return save_checkpoint(dst, model, state_dict=sd, meta={**meta, "fp16_of": str(src)})


def run_prune(weights, method: str, speedup: float, epochs: int, *, data, hyp, imgsz: int, batch: int, device: str,
              workers: int, project, name: str, seed: int = 0, switches=(), kd: DistillOptions | None = None,
              round_to: int | str | None = None, pruned_as=None) -> dict:
    """`yolocompress prune ... --exist-ok` through the library; returns its summary (with `best`). With epochs=0
    only the pruning runs, and `best` is the pruned, not finetuned, model (for architecture and latency tables).
    `round_to` is pinned to no rounding, not the CLI's `auto`: the recorded rows of the benchmarks were made
    before `auto` became the default, and a table must not mix the two (a `round-to=N` switch overrides it).

    `pruned_as`: the pruned.pt of another run of the same pruning (e.g. the row without distillation, or the same
    row of a grid with a shorter finetune): pruning is deterministic, so it is not made again (PAGCP on yolov7-tiny
    takes about 20 CPU-minutes); the run folder starts as a prune run interrupted after its pruning, and `prune
    --resume` finetunes it (or continues its finetune). Used only when that run's record shows the same pruning
    (`same_pruning`); otherwise this run prunes itself."""
    prune = PruneOptions(method=method, speedup=speedup, finetune_epochs=epochs,
                         **{"round_to": round_to, **prune_switches(switches)})
    opts = TrainOptions(data=str(data), hyp=str(hyp), imgsz=imgsz, batch_size=batch, workers=workers,
                        project=str(project), name=name, seed=seed, exist_ok=True, device=device or "",
                        epochs=max(epochs, 1))
    save_dir = Path(project) / name
    finished = (read_record(save_dir) or {}).get("finished")  # a run made whole before: made again, as without a twin
    if pruned_as is None or finished or not same_pruning(Path(pruned_as), weights, prune, opts):
        return prune_command(str(weights), prune, opts, kd)
    if not (save_dir / "pruned.pt").is_file():
        save_dir.mkdir(parents=True, exist_ok=True)
        write_record(save_dir, "prune", weights=str(weights), options=options_record(prune=prune, train=opts,
                                                                                     distill=kd))
        shutil.copyfile(pruned_as, save_dir / ".pruned.pt.copy")
        (save_dir / ".pruned.pt.copy").replace(save_dir / "pruned.pt")
        LOGGER.info(f"{save_dir}: finetuning the pruning of {pruned_as} (the same method and speed-up)")
    return prune_command(None, prune, opts, kd, resume=str(save_dir))


def same_pruning(pruned: Path, weights, prune: PruneOptions, opts: TrainOptions) -> bool:
    """Whether `pruned` (a prune run's pruned.pt) is what `prune` would make of `weights`: its run record names the
    same weights and pruning options (the finetune's length aside), and the same training images, image size,
    batch, hyperparameters and seed (the data-driven methods rank channels by losses and gradients on them)."""
    record = read_record(pruned.parent) if pruned.is_file() else None
    if not record or record.get("run") != "prune":
        return False
    saved = record.get("options") or {}
    theirs, ours = dict(saved.get("prune") or {}), options_record(prune=prune)["prune"]
    for options in (theirs, ours):  # the finetune's length is not part of the pruning
        options.pop("finetune_epochs", None)
    train_then, train_now = saved.get("train") or {}, options_record(train=opts)["train"]
    same = (record.get("weights") == str(weights) and theirs == ours
            and all(train_then.get(f) == train_now[f] for f in ("imgsz", "batch_size", "hyp", "seed"))
            and training_images(train_then.get("data")) == training_images(opts.data) is not None)
    if not same:
        LOGGER.info(f"{pruned}: another pruning or recipe than this {prune.method} {prune.speedup}x run; pruning again")
    return same


def training_images(data_yaml) -> list[str] | None:
    """The training image list of a data yaml (None when it is gone or unreadable: not provably the same data)."""
    try:
        return sorted(str(p) for p in load_data_config(str(data_yaml)).train)
    except DataError:
        return None


def run_train(*, data, hyp, epochs: int, imgsz: int, batch: int, device: str, workers: int, project, name: str,
              seed: int = 0, weights=None, cfg=None, model=None, meta=None, kd: DistillOptions | None = None,
              default_teacher=None, noautoanchor: bool = False, patience: int | None = None):
    """One training run with the engine (optionally distilled); returns the engine's TrainResult. `patience`: stop
    when validation fitness has not improved for that many epochs (the engine's default when None). A run of the same
    name that was interrupted (its last.pt holds training state short of `epochs`) is resumed, not restarted."""
    opts = TrainOptions(data=str(data), epochs=epochs, batch_size=batch, imgsz=imgsz, device=device, workers=workers,
                        project=str(project), name=name, exist_ok=True, noautoanchor=noautoanchor, seed=seed,
                        **({} if patience is None else {"patience": patience}))
    factory = distill_callbacks_factory(kd, imgsz, default_teacher=default_teacher)
    last = Path(project) / name / "weights" / "last.pt"
    state = read_checkpoint(last).get("train_state") if last.is_file() else None
    if state and state["epoch"] + 1 < epochs:
        LOGGER.info(f"{last}: resuming an interrupted benchmark run")
        return train(opts, resume=str(last), callbacks_factory=factory)
    return train(opts, weights=None if weights is None else str(weights), cfg=cfg, model=model, meta=meta,
                 hyp=Hyp.load(hyp), callbacks_factory=factory)


def prune_best(**kwargs) -> str:
    """run_prune, keeping only what a row needs: the best weights (picklable, for a worker process)."""
    return str(run_prune(**kwargs)["best"])


def train_best(**kwargs) -> str:
    """run_train, keeping only the best weights."""
    return str(run_train(**kwargs).best)


@dataclass
class Job:
    """One row to make: `fn(**kwargs)` (a top-level function, so that a worker process can run it) returns the
    weights to measure; `then(weights)` returns the jobs that need them (the rows of a baseline trained here)."""
    key: str
    label: str
    fn: Callable[..., str]
    kwargs: dict
    then: Callable[[str], list["Job"]] | None = field(default=None, repr=False)


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)  # N runs on a shared CPU: no oversubscription
    os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")


def _timed(fn, kwargs: dict) -> tuple[str, float]:
    t0 = time.time()
    return fn(**kwargs), t0


def _run_job(fn, kwargs: dict, key: str) -> tuple[str, float]:
    """A job in a worker process: its log lines say which row they belong to."""
    logging.basicConfig(level=logging.INFO, format=f"[{key}] %(message)s", force=True)
    return _timed(fn, kwargs)


def add_bench_args(ap: argparse.ArgumentParser, name: str) -> None:
    """The options every benchmark script takes: data, recipe basics, where rows go, the latency-only pass."""
    ap.add_argument("--data", default=str(BENCH_DATA))
    ap.add_argument("--hyp", default=str(BENCH_HYP))
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="training seed of every run (repeat with others to see the noise)")
    ap.add_argument("--project", default=f"runs/{name}",
                    help="run folder; a rerun into it skips finished rows, and is refused if the recipe changed")
    ap.add_argument("--out", default=None, help="the rows as JSON (default: PROJECT/results.json)")
    ap.add_argument("--latency-only", action="store_true",
                    help="only time every finished row again, one after the other (run on an idle machine)")
    ap.add_argument("--latency-rounds", type=int, default=5,
                    help="--latency-only (and prune_bench's pass after a run with --jobs > 1): passes over all rows; "
                         "each row keeps its median")


def add_v7_args(ap: argparse.ArgumentParser, epochs: int) -> None:
    """The yolov7-tiny baseline's options, for the scripts that compare on both architectures."""
    ap.add_argument("--v7-weights", default=None, help="the v7t baseline; default: train --v7-cfg here")
    ap.add_argument("--v7-cfg", default="yolov7-tiny.yaml", help="model yaml of the v7t baseline trained here")
    ap.add_argument("--v7-epochs", type=int, default=epochs, help="epochs of the v7t baseline trained here")
    ap.add_argument("--v7-hyp", default=str(V7_HYP),
                    help="v7t's recipe for its baseline and finetunes (its official tiny hyps, OTA loss, fliplr 0)")


class Bench:
    """A parsed benchmark command line, ready to run: logging set up, data loaded, validator and results made."""

    def __init__(self, a: argparse.Namespace):
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")
        os.chdir(ROOT)  # the bench data.yaml's path is relative to the project checkout
        from yolocompress.data.dataset import load_data_config
        from yolocompress.engine.validator import Validator
        a.out = a.out or str(Path(a.project) / "results.json")
        self.args = a
        self.data = load_data_config(a.data)
        self.results = Results(a.out, a)  # first: a refused rerun stops before the data is loaded
        self.validator = Validator(self.data, a.imgsz, 32, a.device, a.workers)
        self.common = dict(data=a.data, hyp=a.hyp, imgsz=a.imgsz, batch=a.batch_size, device=a.device,
                           workers=a.workers, project=a.project, seed=a.seed)

    def add(self, key: str, label: str, weights, t0: float) -> None:
        """Measure `weights` and keep the row under `key`."""
        a = self.args
        self.results.add(key, measure(label, weights, self.data, a.imgsz, a.device, self.validator), t0)

    def common_for(self, model: str) -> dict:
        """The run options of one baseline's runs: v7t trains with its own hyps (--v7-hyp)."""
        return dict(self.common, hyp=self.args.v7_hyp) if model == "v7t" else self.common

    def v7_baseline_run(self) -> dict:
        """run_train's arguments for the v7t baseline trained here (cached in the project folder as v7t-baseline)."""
        a = self.args
        return dict(self.common_for("v7t"), cfg=a.v7_cfg, epochs=a.v7_epochs, name="v7t-baseline")

    def run_jobs(self, jobs: list[Job]) -> None:
        """Make every job's row, `--jobs` at a time in worker processes (one at a time in this one by default),
        measuring each row here as soon as its run ends. A failed run is logged and the others go on; the
        benchmark then stops with the failed keys (a rerun retries only them)."""
        failed, made, parallel = [], [], getattr(self.args, "jobs", 1)  # only prune_bench takes --jobs

        def finish(job: Job, outcome: Callable[[], tuple[str, float]]) -> list[Job]:
            """Measure a finished run's row; returns the jobs that were waiting for its weights."""
            try:
                weights, t0 = outcome()
            except Exception as e:  # one bad row must not cost the others
                LOGGER.error(f"benchmark row {job.key} failed: {type(e).__name__}: {e}")
                failed.append(job.key)
                return []
            self.add(job.key, job.label, weights, t0)
            made.append(job.key)
            return job.then(weights) if job.then else []

        if parallel <= 1:
            queue = list(jobs)
            while queue:
                job = queue.pop(0)
                queue += finish(job, partial(_timed, job.fn, job.kwargs))
        else:
            threads = max(1, (os.cpu_count() or 1) // parallel)
            with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_init, initargs=(threads,)) as pool:
                running = {}

                def submit(job: Job) -> None:
                    running[pool.submit(_run_job, job.fn, job.kwargs, job.key)] = job

                for job in jobs:
                    submit(job)
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        job = running.pop(future)
                        for waiting in finish(job, future.result):
                            submit(waiting)
            if made:  # those rows were timed while other runs shared the machine
                self.remeasure_latency()
        if failed:
            raise SystemExit(f"benchmark rows failed: {', '.join(failed)} (the log says why; a rerun retries them)")

    def remeasure_latency(self) -> None:
        remeasure_latency(self.results, self.args.imgsz, self.data.nc, self.args.latency_rounds)
