"""Distillation benchmark: each loss against the same training run without a teacher.

(a) teacher -> student from scratch, on the generated digits data (`yolocompress demo-data`'s generator, made here,
    deterministic): a teacher trained here by our engine until its validation mAP stops rising (at most
    --teacher-epochs, early stop after --teacher-patience epochs without a better mAP), then students from scratch
    with the same recipe and seed: no teacher, each logit loss, each feature loss, two logit+feature pairs; then the
    no-teacher row and the best two rows of seed 0 again with --extra-seeds. `--a-pair v5`: a yolov5s teacher and
    yolov5n students; `--a-pair v7`: a yolov7-tiny teacher and students of yolov7-tiny pruned to 2.0x GFLOPs
    (per-layer `l1` on the seed's fresh initialisation: the pruned architecture, trained from scratch), each pair
    with its own results file and teacher. The protocol and its measured cost are in docs/benchmarks.md
    ("Distillation, setting (a)").
(b) prune + distill, on ../shared/bench/: the official yolov5n of ../shared/fixtures/ is pruned (LAMP 2.0x and
    3.0x, PAGCP 2.0x, ...) and each pruned model is finetuned without a teacher and with the unpruned model as
    teacher, one row per loss.

Every row is written to the results JSON as soon as it is measured (a rerun skips it; `--git-commit` also commits
the file, so that the rows survive the machine); a run interrupted mid-training resumes from its last.pt when its
run folder still exists. The teacher of (a) is kept, FP16, next to the results file (--teacher-out), so students
can be added later without retraining it. The same command runs on a GPU with `--device 0`.

usage: python benchmarks/distill_bench.py --settings a [--a-pair v5|v7] [--device cpu|0] [--git-commit]
       python benchmarks/distill_bench.py --settings b [--b-methods lamp@2 lamp@3 pagcp@2]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from common import BENCH_DATA, BENCH_HYP, FIXTURE, ROOT, SHARED, run_prune, save_fp16
from yolocompress.core.hyp import Hyp
from yolocompress.core.stats import count_gflops, count_params
from yolocompress.data.dataset import load_data_config
from yolocompress.demo import FULL as DEMO_RECIPE
from yolocompress.distill.distiller import DistillCallback
from yolocompress.distill.options import DistillOptions
from yolocompress.engine.api import train
from yolocompress.engine.options import TrainOptions
from yolocompress.engine.validator import Validator
from yolocompress.models.builder import build_model, load_config
from yolocompress.models.checkpoint import load_model, read_checkpoint

LOGGER = logging.getLogger("yolocompress")
RESULTS = Path(__file__).resolve().parent / "results"

# config name -> (logit loss, feature loss)
CONFIGS = {"none": (None, None), "l1": ("l1", None), "l2": ("l2", None), "ast": ("ast", None),
           "mimic": (None, "mimic"), "mgd": (None, "mgd"), "cwd": (None, "cwd"),
           "l1+mgd": ("l1", "mgd"), "ast+cwd": ("ast", "cwd"), "l2+cwd": ("l2", "cwd"), "l1+cwd": ("l1", "cwd")}
A_CONFIGS = ["none", "l1", "l2", "ast", "mimic", "mgd", "cwd", "l1+mgd", "ast+cwd"]
B_CONFIGS = ["none", "l1", "l2", "ast", "mimic", "mgd", "cwd", "l1+mgd"]


@dataclass(frozen=True)
class ProtocolA:
    """What decides the numbers of setting (a); a results file made with another protocol is refused."""
    n_train: int = 600
    n_val: int = 120
    imgsz: int = 128
    batch_size: int = 16
    student_epochs: int = 40
    student_val_every: int = 5
    teacher_epochs: int = 100
    teacher_patience: int = 15
    kd_share: float = 0.25  # --kd-auto-weight of every distilled row, re-set each epoch
    data_seed: int = 0


@dataclass(frozen=True)
class Pair:
    """A teacher and its student architecture for setting (a). `student_speedup`: the student is `student_cfg`
    pruned to that GFLOPs speed-up by per-layer `l1` right after its seeded initialisation (no training before)."""
    teacher_cfg: str
    student_cfg: str
    student_speedup: float | None
    results: str  # stem of the results file and of the teacher's FP16 file in benchmarks/results/

    def student_name(self) -> str:
        stem = Path(self.student_cfg).stem
        return stem if self.student_speedup is None else f"{stem} l1 {self.student_speedup}x"


PAIRS = {"v5": Pair("yolov5s.yaml", "yolov5n.yaml", None, "distill_a"),
         "v7": Pair("yolov7-tiny.yaml", "yolov7-tiny.yaml", 2.0, "distill_a_v7")}


def parse_config(name: str) -> tuple:
    """`NAME` -> (logit, feature); an unknown name stops with the list of known ones."""
    if name not in CONFIGS:
        raise SystemExit(f"error: unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    return CONFIGS[name]


def distill_options(name: str, share: float | None, logit_weight=None, feature_weight=None) -> DistillOptions:
    logit, feature = parse_config(name)
    return DistillOptions(logit=logit, feature=feature, logit_weight=logit_weight, feature_weight=feature_weight,
                          auto_weight=share, auto_weight_per_epoch=share is not None)


class ResultsFile:
    """Finished rows as JSON, rewritten atomically after each; optionally committed to git as they finish."""

    def __init__(self, path: Path, protocol: dict, commit: bool, student_keys=()):
        """`student_keys`: protocol entries that only the student rows depend on (free while only the teacher
        row exists)."""
        self.path, self.commit = Path(path), commit
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"rows": {}}
        old = self.data.get("protocol") or {}
        students = any(k != "teacher" for k in self.data["rows"])
        changed = [k for k, v in protocol.items() if k in old and old[k] != v and (students or k not in student_keys)]
        if changed and self.data["rows"]:
            changed = ", ".join(f"{k} {old[k]} -> {protocol[k]}" for k in changed)
            raise SystemExit(f"error: {self.path} holds rows of another protocol ({changed}); use another --out "
                             f"or the recorded protocol")
        self.data["protocol"] = protocol

    def has(self, key: str) -> bool:
        return key in self.data["rows"]

    def row(self, key: str) -> dict:
        return self.data["rows"][key]

    def add(self, key: str, row: dict) -> None:
        self.data["rows"][key] = row
        self.save()
        LOGGER.info(f"benchmark row {key}: {row}")
        if self.commit:
            self.git_commit(f"distill_bench: row {key} ({row.get('mAP50-95', 0):.4f} mAP50-95)")

    def save(self) -> None:
        """Atomically, keeping rows that another process running the same setting wrote meanwhile (rows are
        only ever added, so two processes can share a results file, e.g. one per seed)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            self.data["rows"] = {**json.loads(self.path.read_text())["rows"], **self.data["rows"]}
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)

    def git_commit(self, message: str, extra=()) -> None:
        """Commit the results file (and `extra` paths) alone; a failure (a lock, no repository) only warns."""
        paths = [str(self.path), *map(str, extra)]
        for attempt in range(5):
            add = subprocess.run(["git", "add", "--", *paths], cwd=ROOT, capture_output=True, text=True)
            done = add.returncode == 0 and subprocess.run(
                ["git", "commit", "-m", message, "--only", "--", *paths], cwd=ROOT, capture_output=True,
                text=True).returncode == 0
            if done:
                return
            time.sleep(5 * (attempt + 1))
        LOGGER.warning(f"could not commit {paths} (git busy or nothing changed); the file is saved")


def measure(label: str, weights, validator: Validator, nc: int, imgsz: int) -> dict:
    """A table row: parameters, GFLOPs at the benchmark size, mAP on the validation split."""
    m = load_model(weights, nc=nc)[0]
    met = validator.run(m)
    return {"Model": label, "Parameters": count_params(m), "GFLOPs": count_gflops(m, imgsz),
            "mAP50": met["mAP50"], "mAP50-95": met["mAP50-95"], "weights": str(weights)}


def train_row(opts: TrainOptions, *, cfg=None, weights=None, model=None, meta=None, build=None, hyp=None,
              callbacks_factory=None):
    """One training run; an interrupted run of the same name (its last.pt short of `epochs`) resumes instead,
    and a run that had finished (killed while measuring) is not trained again. `build()` -> (model, meta) makes
    the starting model only when the run starts anew (a resumed run is its own model)."""
    wdir = Path(opts.project) / opts.name / "weights"
    last = wdir / "last.pt"
    state = read_checkpoint(last).get("train_state") if last.is_file() else None
    if state:
        ckpt_meta = read_checkpoint(last)["meta"]
        stopped = ckpt_meta["epoch"] - int(ckpt_meta.get("best_epoch", ckpt_meta["epoch"])) >= opts.patience
        if state["epoch"] + 1 >= opts.epochs or stopped:
            LOGGER.info(f"{last}: the run had finished; measuring its best.pt")
            return wdir / "best.pt"
        LOGGER.info(f"{last}: resuming an interrupted benchmark run")
        return train(opts, resume=str(last), callbacks_factory=callbacks_factory).best
    if build is not None:
        model, meta = build()
    return train(opts, cfg=cfg, weights=None if weights is None else str(weights), model=model, meta=meta, hyp=hyp,
                 callbacks_factory=callbacks_factory).best


class Timer:
    """Wall and CPU (this process, all threads) minutes of one row."""

    def __enter__(self):
        self.wall, self.cpu = time.time(), time.process_time()
        return self

    def minutes(self) -> dict:
        return {"wall_min": (time.time() - self.wall) / 60, "cpu_min": (time.process_time() - self.cpu) / 60}

    def __exit__(self, *exc):
        return False


# ---- setting (a) ---------------------------------------------------------------------------------------
def setting_a(a: argparse.Namespace) -> None:
    p = ProtocolA(n_train=a.a_train, n_val=a.a_val, imgsz=a.a_imgsz, batch_size=a.batch_size,
                  student_epochs=a.a_epochs, teacher_epochs=a.teacher_epochs, teacher_patience=a.teacher_patience,
                  kd_share=a.kd_share)
    pair = PAIRS[a.a_pair]
    project = Path(a.project) / ("a" if a.a_pair == "v5" else f"a-{a.a_pair}")
    out = a.out_a or RESULTS / f"{pair.results}.json"
    results = ResultsFile(out, {**asdict(p), "hyp": dict(DEMO_RECIPE.hyp), **asdict(pair)}, a.git_commit,
                          student_keys=("student_epochs", "student_val_every", "kd_share", "student_cfg",
                                        "student_speedup"))
    from yolocompress.data.demo import make_demo_dataset
    data_yaml = project / "digits" / "data.yaml"
    if not data_yaml.is_file():  # deterministic: the same seed writes the same files
        make_demo_dataset(project / "digits", n_train=p.n_train, n_val=p.n_val, imgsz=p.imgsz, seed=p.data_seed)
    data = load_data_config(str(data_yaml))
    # the demo's changes for this data on each model's official recipe (yolov7-tiny: its tiny hyps, OTA loss)
    official = Hyp.default_for(load_config(pair.teacher_cfg))
    hyp = Hyp(**{**official.to_dict(), **dict(DEMO_RECIPE.hyp)})
    validator = Validator(data, p.imgsz, 32, a.device, a.workers)

    def opts(name, epochs, seed, val_every=1, patience=None):
        return TrainOptions(data=str(data_yaml), epochs=epochs, batch_size=p.batch_size, imgsz=p.imgsz,
                            device=a.device, workers=a.workers, seed=seed, project=str(project), name=name,
                            exist_ok=True, nbs=p.batch_size, val_every=val_every,
                            patience=patience or epochs + 1)

    teacher = Path(a.teacher_out or RESULTS / f"{pair.results}_teacher_fp16.pt")
    if a.teacher_a:
        teacher = Path(a.teacher_a)
    elif not results.has("teacher") or not teacher.is_file():
        with Timer() as t:
            best = train_row(opts("teacher", p.teacher_epochs, 0, patience=p.teacher_patience),
                             cfg=pair.teacher_cfg, hyp=hyp)
            save_fp16(best, teacher)
        meta = read_checkpoint(best)["meta"]
        results.add("teacher", {**measure(f"teacher {Path(pair.teacher_cfg).stem}", teacher, validator, data.nc,
                                          p.imgsz),
                                "epochs": int(meta["epoch"]) + 1, "best_epoch": int(meta["best_epoch"]) + 1,
                                **t.minutes()})
        if a.git_commit:
            results.git_commit("distill_bench: the setting (a) teacher (FP16)", extra=[teacher])
    if a.teacher_only:
        return

    def student(config: str, seed: int) -> None:
        key = config if seed == 0 else f"{config}@seed{seed}"
        if results.has(key):
            return
        factory = None
        if config != "none":
            o = distill_options(config, p.kd_share)
            factory = lambda model, _data: [DistillCallback(model, str(teacher), o, imgsz=p.imgsz)]  # noqa: E731
        with Timer() as t:
            best = train_row(opts(f"{config}-s{seed}", p.student_epochs, seed, val_every=p.student_val_every),
                             cfg=pair.student_cfg, build=lambda: student_model(pair, data.nc, seed, p.imgsz),
                             hyp=hyp, callbacks_factory=factory)
        row = measure(f"{pair.student_name()} {config}" + (f" (seed {seed})" if seed else ""), best, validator,
                      data.nc, p.imgsz)
        results.add(key, {**row, "config": config, "seed": seed, **kd_record(best.parent.parent), **t.minutes()})

    for seed in a.seeds or [0]:
        for c in a.configs_a:
            student(c, seed)
    if a.extra_seeds and a.seeds is None:
        ranked = sorted((c for c in a.configs_a if c != "none" and results.has(c)),
                        key=lambda c: results.row(c)["mAP50-95"], reverse=True)
        repeat = ["none"] + ranked[:2]
        repeat += [c for c in a.seed_configs if c not in repeat]
        results.data["seed_configs"] = repeat
        results.save()
        for seed in range(1, a.extra_seeds + 1):
            for c in repeat:
                student(c, seed)
    print("\nsetting (a)\n" + a_tables(results.data["rows"]))


def student_model(pair: Pair, nc: int, seed: int, imgsz: int):
    """(model, meta) of a pruned student, freshly initialised by `seed` and pruned before any training; (None, None)
    for a plain yaml student (the engine builds it from the yaml with the seed)."""
    if pair.student_speedup is None:
        return None, None
    from yolocompress.engine.trainer import seed_everything
    from yolocompress.prune.speedup import prune_to_target
    seed_everything(seed)
    model = build_model(pair.student_cfg, nc=nc)
    out = prune_to_target(model, torch.rand(1, 3, 64, 64), "l1", pair.student_speedup, imgsz=imgsz, measure=False)
    LOGGER.info(f"student: {pair.student_name()}, {out.params_after:,} parameters, {out.speedup_gflops:.3f}x GFLOPs")
    return out.model, {"pruned": True, "method": "l1", "speedup": pair.student_speedup, "prune": out.summary()}


def kd_record(run_dir: Path) -> dict:
    """The distillation weights chosen and the terms' share of the loss in the last epoch, from results.csv."""
    import csv
    path = run_dir / "results.csv"
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(path.open()))
    if not rows:
        return {}
    last = {k.strip(): v for k, v in rows[-1].items()}
    first = {k.strip(): v for k, v in rows[0].items()}
    out = {}
    for term in ("kd_logit", "kd_feature"):
        if f"train/{term}" in last:
            out[f"{term}_share_last"] = float(last[f"train/{term}_share"])
            out[f"{term}_weight_first"] = float(first.get(f"train/{term}_weight") or "nan")
            out[f"{term}_weight_last"] = float(last.get(f"train/{term}_weight") or "nan")
    return out


def a_tables(rows: dict, configs=A_CONFIGS) -> str:
    """Setting (a)'s two tables as docs/benchmarks.md shows them, from a results file's rows: seed 0 (each row
    against the no-teacher row), then every row run with more seeds (per seed, mean, min-max, sd, and the mean of
    its per-seed deltas against no teacher, over the seeds both have)."""
    def kind(config):
        logit, feature = CONFIGS[config]
        return "pair" if logit and feature else "logit" if logit else "feature" if feature else ""

    def share(r):
        return " + ".join(f"{r[k]:.2f}" for k in ("kd_logit_share_last", "kd_feature_share_last") if k in r)

    out = ["| student | loss | share of the total loss (last epoch) | mAP50 | mAP50-95 | delta vs no teacher |",
           "|---|---|---:|---:|---:|---:|"]
    if "teacher" in rows:
        t = rows["teacher"]
        out.append(f"| {t['Model']} | | | {t['mAP50']:.4f} | {t['mAP50-95']:.4f} | |")
    base = rows.get("none", {}).get("mAP50-95")
    for c in [c for c in configs if c in rows]:
        r = rows[c]
        delta = "" if c == "none" or base is None else f"{r['mAP50-95'] - base:+.4f}"
        name = "no teacher" if c == "none" else f"`{c}`"
        out.append(f"| {name} | {kind(c)} | {share(r)} | {r['mAP50']:.4f} | {r['mAP50-95']:.4f} | {delta} |")
    seeds = sorted({r.get("seed", 0) for r in rows.values()} - {0})
    repeated = [c for c in configs if any(f"{c}@seed{s}" in rows for s in seeds)]
    if not repeated:
        return "\n".join(out)

    def per_seed(c):
        return [rows.get(c if s == 0 else f"{c}@seed{s}", {}).get("mAP50-95") for s in [0] + seeds]

    out += ["", "| row | " + " | ".join(f"seed {s}" for s in [0] + seeds)
            + " | mean | min-max | sd | mean delta vs no teacher (same seeds) |", "|---|" + "---:|" * (len(seeds) + 5)]
    none = per_seed("none")
    for c in repeated:
        vals = per_seed(c)
        got = [v for v in vals if v is not None]
        mean = sum(got) / len(got)
        paired = [v - n for v, n in zip(vals, none) if v is not None and n is not None]
        delta = f"{sum(paired) / len(paired):+.4f}" if paired and c != "none" else ""
        cells = " | ".join("" if v is None else f"{v:.4f}" for v in vals)
        sd = f"{statistics.stdev(got):.4f}" if len(got) > 1 else ""
        out.append(f"| {'no teacher' if c == 'none' else f'`{c}`'} | {cells} | {mean:.4f} | "
                   f"{min(got):.4f}-{max(got):.4f} | {sd} | {delta} |")
    return "\n".join(out)


# ---- setting (b) ---------------------------------------------------------------------------------------
def setting_b(a: argparse.Namespace) -> None:
    """Each pruned model of --b-methods, finetuned without a teacher and with the unpruned model as teacher."""
    project = Path(a.project) / "b"
    shared = Path(a.shared)
    bench_data, bench_hyp, fixture = (shared / p.relative_to(SHARED) for p in (BENCH_DATA, BENCH_HYP, FIXTURE))
    bench_data = absolute_data_yaml(bench_data, project / "bench-data.yaml")
    results = ResultsFile(a.out_b, {"epochs": a.b_epochs, "imgsz": 192, "batch_size": a.batch_size,
                                    "methods": a.b_methods, "configs": a.configs_b,
                                    "logit_weight": a.b_logit_weight, "feature_weight": a.b_feature_weight,
                                    "kd_share": a.b_kd_share}, a.git_commit)
    data = load_data_config(str(bench_data))
    validator = Validator(data, 192, 32, a.device, a.workers)
    common = dict(data=bench_data, hyp=bench_hyp, imgsz=192, batch=a.batch_size, device=a.device,
                  workers=a.workers, project=project, seed=0)

    def finetune(model, meta, name: str, options: DistillOptions | None, weights=None):
        """The finetune every row shares: b-epochs on the bench data, seed 0, optionally with the unpruned teacher."""
        opts = TrainOptions(data=str(bench_data), epochs=a.b_epochs, batch_size=a.batch_size, imgsz=192,
                            device=a.device, workers=a.workers, project=str(project), name=name, exist_ok=True,
                            noautoanchor=True, seed=0)
        factory = None if options is None else (lambda m, _d: [
            DistillCallback(m, str(fixture), options, imgsz=192, teacher_name="unpruned")])
        return train_row(opts, weights=weights, model=model, meta=meta, hyp=Hyp.load(bench_hyp),
                         callbacks_factory=factory)

    if not results.has("control"):  # what the extra epochs alone give: the target distillation closes the gap to
        with Timer() as t:
            best = finetune(None, None, "control", None, weights=fixture)
        results.add("control", {**measure(f"unpruned yolov5n finetuned {a.b_epochs} epochs", best, validator,
                                          data.nc, 192), **t.minutes()})
    for spec in a.b_methods:
        method, _, speedup = spec.partition("@")
        method, sparse = method.removesuffix("+sparse"), method.endswith("+sparse")
        tag = f"{method}{'-sparse' if sparse else ''}-{speedup}x"
        pruned = project / f"{tag}-none" / "pruned.pt"
        base = sparse_trained(method, a.b_epochs, common, fixture) if sparse else fixture
        for c in a.configs_b:
            key = f"{tag}/{c}"
            if results.has(key):
                continue
            with Timer() as t:
                if c == "none":  # prune once; this run's finetune is the row without a teacher
                    best = run_prune(base, method, float(speedup), a.b_epochs, name=f"{tag}-none", **common)["best"]
                else:
                    if not pruned.is_file():  # the `none` row was made on another machine: prune again, no finetune
                        reprune(base, method, float(speedup), pruned, results.row(f"{tag}/none"), common)
                    o = distill_options(c, a.b_kd_share, a.b_logit_weight, a.b_feature_weight)
                    model = load_model(pruned, nc=data.nc)[0]
                    best = finetune(model, read_checkpoint(pruned)["meta"], f"{tag}-{c}", o)
            label = f"{'GroupSL (Sparse)' if sparse and method == 'group_sl' else method} {speedup}x"
            row = measure(f"{label}, {c}", best, validator, data.nc, 192)
            results.add(key, {**row, **kd_record(Path(best).parent.parent), **t.minutes()})


def reprune(base, method: str, speedup: float, pruned: Path, none_row: dict, common: dict) -> None:
    """Make `pruned` again (prune only) and check it is the architecture the recorded `none` row was finetuned
    from: a different one would make its deltas meaningless."""
    out = run_prune(base, method, speedup, 0, name=pruned.parent.name + "-reprune", **common)
    model = load_model(out["pruned"])[0]
    if count_params(model) != none_row["Parameters"]:
        raise SystemExit(f"error: pruning {method} {speedup}x again gave {count_params(model)} parameters, the recorded "
                         f"`none` row has {none_row['Parameters']}; delete its rows from the results file to redo them")
    pruned.parent.mkdir(parents=True, exist_ok=True)
    Path(out["pruned"]).replace(pruned)


def absolute_data_yaml(src: Path, dst: Path) -> Path:
    """A copy of the bench data.yaml whose `path` is absolute (the shipped one is relative to a checkout next to
    ../shared, which a git worktree elsewhere is not)."""
    import yaml
    cfg = yaml.safe_load(src.read_text())
    root = Path(cfg.get("path") or src.parent)
    if not root.is_absolute():
        root = src.parent if not (ROOT / root).is_dir() else (ROOT / root)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump({**cfg, "path": str(root.resolve())}, sort_keys=False))
    return dst


def sparse_trained(method: str, epochs: int, common: dict, fixture: Path) -> Path:
    """The fixture after `epochs` of `yolocompress sparse --method METHOD` (made once, then reused; an
    interrupted sparse run resumes)."""
    from yolocompress.prune.options import SparseOptions
    from yolocompress.prune.sparse import sparse_command
    best = Path(common["project"]) / f"sparse-{method}" / "weights" / "best.pt"
    last = best.parent / "last.pt"
    if last.is_file() and read_checkpoint(last)["meta"]["epoch"] + 1 >= epochs and best.is_file():
        return best
    opts = TrainOptions(data=str(common["data"]), hyp=str(common["hyp"]), epochs=epochs, imgsz=common["imgsz"],
                        batch_size=common["batch"], device=common["device"] or "", workers=common["workers"],
                        project=str(common["project"]), name=f"sparse-{method}", exist_ok=True, seed=0)
    res = sparse_command(str(fixture), SparseOptions(method=method), opts, resume=str(last) if last.is_file() else None)
    return Path(res["best"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", choices=["a", "b"], default=["a"])
    ap.add_argument("--device", default="", help="cpu or a CUDA device (0)")
    ap.add_argument("--workers", type=int, default=0, help="data-loader workers (0: load in this process)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads on the CPU")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--project", default="runs/distill-bench", help="run folders (a rerun resumes in them)")
    ap.add_argument("--git-commit", action="store_true", help="commit the results file after each row")
    g = ap.add_argument_group("setting (a)")
    g.add_argument("--configs-a", nargs="+", default=A_CONFIGS, help="rows: " + ", ".join(CONFIGS))
    g.add_argument("--extra-seeds", type=int, default=2, help="seeds 1..N for `none` and the best two rows")
    g.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="run --configs-a with exactly these seeds instead (e.g. a second process for seeds 1 2)")
    g.add_argument("--seed-configs", nargs="*", default=["cwd"],
                   help="rows also repeated with the extra seeds (besides `none` and the best two); the default, "
                        "the best feature loss, tells whether a feature loss beats the no-teacher spread")
    g.add_argument("--a-train", type=int, default=ProtocolA.n_train, help="generated train images")
    g.add_argument("--a-val", type=int, default=ProtocolA.n_val, help="generated validation images")
    g.add_argument("--a-imgsz", type=int, default=ProtocolA.imgsz)
    g.add_argument("--a-epochs", type=int, default=ProtocolA.student_epochs, help="student epochs from scratch")
    g.add_argument("--teacher-epochs", type=int, default=ProtocolA.teacher_epochs, help="the teacher's most epochs")
    g.add_argument("--teacher-patience", type=int, default=ProtocolA.teacher_patience,
                   help="stop the teacher after this many epochs without a better validation mAP")
    g.add_argument("--teacher-only", action="store_true", help="train (or find) the teacher, then stop")
    g.add_argument("--teacher-a", default=None, help="a teacher checkpoint instead of training one")
    g.add_argument("--a-pair", choices=sorted(PAIRS), default="v5",
                   help="v5: yolov5s teacher, yolov5n students; v7: yolov7-tiny teacher, students of yolov7-tiny "
                        "pruned to 2.0x (l1, per layer) and trained from scratch")
    g.add_argument("--teacher-out", default=None, help="the teacher's FP16 file (default: benchmarks/results/"
                                                        "<pair's results>_teacher_fp16.pt)")
    g.add_argument("--kd-share", type=float, default=ProtocolA.kd_share,
                   help="--kd-auto-weight of each distillation term (re-set every epoch)")
    g.add_argument("--out-a", default=None, help="results file (default: benchmarks/results/distill_a.json for v5, "
                                                  "distill_a_v7.json for v7)")
    g.add_argument("--table-only", action="store_true",
                   help="print the tables of the results file of --a-pair (or --out-a) and stop")
    g = ap.add_argument_group("setting (b)")
    g.add_argument("--b-methods", nargs="+", default=["lamp@2.0", "lamp@3.0", "group_sl+sparse@2.0", "pagcp@2.0"],
                   help="METHOD@SPEEDUP pruned rows; METHOD+sparse prunes after --b-epochs of sparse training")
    g.add_argument("--configs-b", nargs="+", default=B_CONFIGS)
    g.add_argument("--b-epochs", type=int, default=10, help="finetune epochs after pruning")
    g.add_argument("--b-kd-share", type=float, default=None, help="--kd-auto-weight in (b) (default: off)")
    g.add_argument("--b-logit-weight", type=float, default=None, help="default: the loss's default weight")
    g.add_argument("--b-feature-weight", type=float, default=None, help="default: the loss's default weight")
    g.add_argument("--out-b", default=str(RESULTS / "distill_b.json"))
    g.add_argument("--shared", default=str(SHARED), help="the folder holding bench/ and fixtures/ (../shared)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")
    torch.set_num_threads(a.threads)
    os.chdir(ROOT)
    if a.table_only:
        out = Path(a.out_a or RESULTS / f"{PAIRS[a.a_pair].results}.json")
        print(a_tables(json.loads(out.read_text())["rows"]))
        return
    for c in a.configs_a + a.configs_b + a.seed_configs:
        parse_config(c)
    if "a" in a.settings:
        setting_a(a)
    if "b" in a.settings:
        setting_b(a)


if __name__ == "__main__":
    main()
