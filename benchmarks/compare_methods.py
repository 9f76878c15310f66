"""The seed-style method comparison on a yolov5n and a yolov7-tiny baseline, resumable row by row.

Per baseline: the control row (the baseline finetuned with the same recipe, so that gains from the extra epochs are
not credited to pruning); every method at the first speed-up in its designed setting (the method table's ranking
scope); `slim`, `group_slim`, `group_sl` and `group_reg` again after their own sparse training (rows "(Sparse)",
with the sparse run's BN plot linked); PAGCP; then the `--top` best at the first speed-up (by mAP50-95 without
distillation) at the other speed-ups; every pruned row and the control with and without logit distillation from
the baseline (`--kd`). Then CPU latency at 640 px, batch 1 and 32, PyTorch and onnxruntime, for every distinct
architecture in interleaved passes, with each model's spread and its speed-up range (benchmarks/latency640.py).

Rows go to --out (default benchmarks/results/compare.json, tracked in git) as they finish; a rerun skips them, and
one with another recipe is refused. The protocol (image size, training images, epochs) and its cost are in
docs/benchmarks.md. Baselines: yolov5n = the official checkpoint of ../shared/fixtures/ (192 px); yolov7-tiny =
--v7-weights, or trained here by our engine from --v7-cfg until its validation mAP stops rising (--v7-patience).
The recorded grid's yolov7-tiny is benchmarks/results/compare_v7t_baseline_fp16.pt: trained on all training images
at 192 px starting from the distillation benchmark's yolov7-tiny (docs/benchmarks.md says the command), because
from scratch on this CPU it was still far from converged after 80 epochs.

usage: python benchmarks/compare_methods.py [--models v5n v7t] [--methods l1 lamp ...] [--sparse-methods ...]
       [--top 3] [--speedups 2.0 3.0 4.0] [--finetune-epochs 4] [--sparse-epochs 4] [--train-images 400]
       [--kd l1] [--device 0] [--no-latency640] [--latency-only]
The same command runs on a GPU (--device 0); nothing waits for one.
"""
import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common import (FIXTURE, ROOT, Bench, add_bench_args, add_v7_args, kd_options, run_prune, run_train,
                    save_fp16)
from latency640 import RUNTIMES, architecture_key, as_cells, cell, setting, time_architectures
from yolocompress.core.stats import count_params
from yolocompress.engine.options import TrainOptions
from yolocompress.models.checkpoint import load_model
from yolocompress.prune.methods import sparse_method_names, torch_pruning_method_names
from yolocompress.prune.options import SparseOptions
from yolocompress.prune.sparse import sparse_command
from yolocompress.report.tables import format_value, markdown_table

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "compare.json"
RUNTIME_NAMES = {"torch": "PyTorch", "ort": "onnxruntime"}
SETTINGS640 = [(setting(rt, bs), f"{RUNTIME_NAMES[rt]} bs{bs}") for rt in RUNTIMES for bs in (1, 32)]
UNPRUNED = ("baseline", "control", "sparse")  # row kinds that are not a pruning


@dataclass(frozen=True)
class RowKey:
    """A row's key in the results file, `v7t/lamp/2.0x/kd`, `v5n/group_reg+sparse/4.0x`, `v5n/control/kd` or
    `v5n/sparse/slim` (a sparse-training run): written and read here only."""
    model: str
    kind: str  # a method, or one of UNPRUNED
    speedup: float | None = None
    kd: bool = False
    sparse: bool = False  # pruned from the method's own sparse-training run
    method: str = ""  # of a sparse-training row

    def __str__(self) -> str:
        if self.kind == "sparse":
            return f"{self.model}/sparse/{self.method}"
        kind = self.kind + ("+sparse" if self.sparse else "")
        speed = f"/{self.speedup}x" if self.speedup is not None else ""
        return f"{self.model}/{kind}{speed}" + ("/kd" if self.kd else "")

    @classmethod
    def parse(cls, key: str) -> "RowKey":
        model, kind, *rest = key.split("/")
        if kind == "sparse":
            return cls(model, kind, method=rest[0])
        kd = rest[-1:] == ["kd"]
        speed = [float(x.removesuffix("x")) for x in rest if x.endswith("x")]
        return cls(model, kind.removesuffix("+sparse"), speed[0] if speed else None, kd, kind.endswith("+sparse"))

    @property
    def pruned(self) -> bool:
        return self.kind not in UNPRUNED


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", choices=["v5n", "v7t"], default=["v5n", "v7t"])
    ap.add_argument("--methods", nargs="+", default=torch_pruning_method_names() + ["pagcp"])
    ap.add_argument("--sparse-methods", nargs="*", default=list(sparse_method_names()),
                    help="methods also run after their own sparse training (rows labelled '(Sparse)')")
    ap.add_argument("--speedups", nargs="+", type=float, default=[2.0, 3.0, 4.0])
    ap.add_argument("--top", type=int, default=3, help="methods carried on to the higher speed-ups")
    ap.add_argument("--kd", default="l1", help="logit loss of the distilled runs ('none' to skip them)")
    ap.add_argument("--v5-weights", default=str(FIXTURE), help="the v5n baseline (default: the official fixture)")
    add_v7_args(ap, epochs=80)
    ap.add_argument("--v7-patience", type=int, default=10,
                    help="the v7t baseline trained here stops when validation mAP has not risen for N epochs")
    ap.add_argument("--finetune-epochs", type=int, default=4)
    ap.add_argument("--sparse-epochs", type=int, default=4, help="epochs of each sparse-training run")
    ap.add_argument("--train-images", type=int, default=400,
                    help="first N training images (sorted) for every run; 0 = all (the protocol, docs/benchmarks.md)")
    ap.add_argument("--pruned-from", default=None, metavar="PROJECT",
                    help="another grid's run folder (e.g. runs/compare-methods): a row whose pruning is there, made "
                         "the same way, finetunes that pruned.pt instead of pruning again (e.g. a longer finetune)")
    ap.add_argument("--no-controls", action="store_true",
                    help="leave the control rows to another process making the same grid (two processes training "
                         "one control into one run folder would spoil it)")
    ap.add_argument("--no-latency640", action="store_true", help="skip the 640-px latency pass at the end")
    ap.add_argument("--table-only", action="store_true",
                    help="print the tables of the rows made so far (e.g. while a run is going) and stop")
    ap.add_argument("--latency640-rounds", type=int, default=3, help="interleaved passes of the 640-px timing")
    ap.add_argument("--latency640-prepare", action="store_true",
                    help="only make the architectures the 640-px pass times (rows whose run folders are gone are "
                         "pruned again): the slow part, which may run beside other jobs; time later on a quiet machine")
    ap.add_argument("--latency640-batches", nargs="+", type=int, default=[1, 32],
                    help="batch sizes of the 640-px timing (1 and 32; smaller for a smoke run)")
    ap.add_argument("--latency640-runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES),
                    help="runtimes of the 640-px timing; a setting whose cells are missing from the results file "
                         "(e.g. deleted after a disturbed pass) is timed again, the others are kept")
    add_bench_args(ap, "compare-methods")
    a = ap.parse_args()
    a.out = a.out or str(DEFAULT_OUT)
    if a.table_only:
        print_tables(json.loads(Path(a.out).read_text()), a.models)
        return
    os.chdir(ROOT)  # the bench data.yaml's path is relative to the project checkout
    a.data = subset_data(a.data, a.train_images, Path(a.project)) if a.train_images else a.data
    b = Bench(a)
    if a.latency_only:
        b.remeasure_latency()
    else:
        run_all(b)
    if not a.no_latency640:
        latency640(b)
    print_tables(b.results.data, a.models)


def print_tables(data: dict, models) -> None:
    """Per baseline, the grid's table and (once that pass has run) its 640-px latency table, as in
    docs/benchmarks.md."""
    for model in models:
        if any(k.startswith(model + "/") for k in data["rows"]):
            print(f"\n{model}\n" + grid_table(data, model))
            latency = latency640_table(data, model)
            print(f"\n{model} at 640 px\n{latency}" if latency else "")


def latency640_table(data: dict, model: str) -> str:
    """Markdown of the 640-px pass, one line per architecture, named by the rows that made it in the grid's order
    (`l1 2.0x = random 2.0x`; distilled twins and controls left out); each cell the median ms with its min-max over
    passes, and the speed-up over the baseline with its per-pass range. Empty before the pass has run."""
    baseline = data["rows"][str(RowKey(model, "baseline"))]
    settings = [(s, name) for s, name in SETTINGS640 if cell(s) in baseline]
    if not settings:
        return ""
    head = ["row (architecture)", "Parameters"] + [h for _, name in settings
                                                   for h in (f"{name} ms", f"{name} speed-up")]
    groups: dict[tuple, list[str]] = {}  # one architecture's timings: the rows that have it, in the grid's order
    for k in grid_order(data, model):
        timed = tuple(data["rows"][k].get(cell(s)) for s, _ in settings)
        if None not in timed:
            groups.setdefault(timed, []).append(k)
    lines = []
    for keys in groups.values():
        k, r = keys[0], data["rows"][keys[0]]
        same = [row_label(data["rows"][o], model) for o in keys[1:]
                if RowKey.parse(o).pruned and not RowKey.parse(o).kd]  # other methods that made this architecture
        cells = [" = ".join([row_label(r, model)] + same),
                 format_value("Parameters", r["Parameters"])]
        for s, _ in settings:
            lo, hi = r[cell(s, "spread")]
            speedup = "" if RowKey.parse(k).kind == "baseline" else r[cell(s, "speed-up")]
            cells += [f"{r[cell(s)]:.0f} ({lo:.0f}-{hi:.0f})", speedup]
        lines.append(dict(zip(head, cells)))
    return markdown_table(lines, head, right_aligned=[h for h in head if h.endswith(" ms")] + ["Parameters"])


LATENCY640 = [(cell(s, "speed-up"), f"640 px {name}") for s, name in SETTINGS640]


def grid_table(data: dict, model: str) -> str:
    """Markdown of `model`'s rows: sizes, accuracy against the baseline and against the control finetuned the same
    way (with or without distillation), wall minutes, and the 640-px speed-ups once that pass has run. The rows'
    own 192-px latency is left out: it was timed beside the next row's training."""
    rows, minutes = data["rows"], data.get("minutes", {})
    mine = {k: rows[k] for k in grid_order(data, model)}
    base = mine[str(RowKey(model, "baseline"))]["mAP50-95"]
    speed = [(col, head) for col, head in LATENCY640 if any(col in r for r in mine.values())]
    head = ["row", "Parameters", "GFLOPs (192 px)", "mAP50", "mAP50-95", "vs baseline", "vs control (same KD)",
            "minutes"] + [h for _, h in speed]
    cells = []
    for k, r in mine.items():
        key = RowKey.parse(k)
        control = rows.get(str(RowKey(model, "control", kd=key.kd)))
        vs_control = f"{r['mAP50-95'] - control['mAP50-95']:+.4f}" if key.pruned and control else ""
        cells.append(dict(zip(head, [
            row_label(r, model), format_value("Parameters", r["Parameters"]), f"{r['GFLOPs']:.3f}",
            f"{r['mAP50']:.4f}", f"{r['mAP50-95']:.4f}", f"{r['mAP50-95'] - base:+.4f}", vs_control,
            f"{minutes.get(k, 0):.1f}"] + [r.get(col, "") for col, _ in speed])))
    return markdown_table(cells, head, right_aligned=head[1:8])


def row_label(row: dict, model: str) -> str:
    """A row's name in its model's tables (`lamp 2.0x +KD l1`, without the model)."""
    return row["Model"].removeprefix(model + " ")


def grid_order(data: dict, model: str) -> list[str]:
    """`model`'s row keys in the grid's order, whatever order parallel processes finished them in: baseline and
    controls; each method at the first speed-up (the method table's order, PAGCP last); each sparse run followed by
    its pruned rows; then each higher speed-up, its methods in the ranking that chose them (mAP50-95 at the first
    speed-up without KD, as run_all ranks); without before with KD."""
    keys = [RowKey.parse(k) for k in data["rows"] if k.startswith(model + "/")]
    order = torch_pruning_method_names() + ["pagcp"]
    first = min((k.speedup for k in keys if k.pruned), default=0.0)
    top = ranked_names(data["rows"], model, first)

    def place(k: RowKey):
        if not k.pruned and k.kind != "sparse":
            return (0.0, 0, 0, 0 if k.kind == "baseline" else 1 + k.kd)
        method = k.method if k.kind == "sparse" else k.kind
        name = method + ("+sparse" if k.sparse or k.kind == "sparse" else "")
        rank = top.index(name) if k.pruned and k.speedup != first and name in top else len(top) + (
            order.index(method) if method in order else len(order))
        sparse_block = k.kind == "sparse" or (k.sparse and k.speedup == first)  # later speed-ups: by rank only
        return (first if k.kind == "sparse" else k.speedup, int(sparse_block), rank,
                -1 if k.kind == "sparse" else int(k.kd))
    return [str(k) for k in sorted(keys, key=place)]


def ranked_names(rows: dict, model: str, speedup: float) -> list[str]:
    """Methods (`lamp`, `group_reg+sparse`) of `model`'s rows at `speedup` without KD, best mAP50-95 first: the
    ranking that picks the methods of the higher speed-ups (run_all) and orders their rows (grid_order)."""
    keys = [RowKey.parse(k) for k in rows if k.startswith(model + "/")]
    score = {k.kind + ("+sparse" if k.sparse else ""): rows[str(k)]["mAP50-95"] for k in keys
             if k.pruned and k.speedup == speedup and not k.kd}
    return sorted(score, key=lambda name: -score[name])


def subset_data(data_yaml, n: int, project: Path) -> str:
    """A data yaml whose training split is the first `n` images (sorted) of `data_yaml`'s; validation unchanged."""
    import yaml
    from yolocompress.data.dataset import load_data_config
    cfg = load_data_config(str(Path(data_yaml).resolve()))
    images = sorted(cfg.train)[:n]
    if len(images) < n:
        raise SystemExit(f"--train-images {n}: {data_yaml} has only {len(images)} training images")
    out = (ROOT / project).resolve() / f"data-train{n}"
    out.mkdir(parents=True, exist_ok=True)
    for split, files in (("train", images), ("val", cfg.val)):
        (out / f"{split}.txt").write_text("".join(f"{Path(p).resolve()}\n" for p in files))
    (out / "data.yaml").write_text(yaml.safe_dump({"path": str(out), "train": "train.txt", "val": "val.txt",
                                                   "nc": cfg.nc, "names": list(cfg.names)}))
    return str(out / "data.yaml")


def run_all(b: Bench):
    a, results = b.args, b.results
    kd_modes = [False] + ([True] if a.kd != "none" else [])
    kd_label = f" +KD {a.kd}"
    for model in a.models:
        common = b.common_for(model)
        key = str(RowKey(model, "baseline"))
        if not results.has(key):
            t0 = time.time()
            weights = a.v5_weights if model == "v5n" else a.v7_weights
            if weights is None:  # kept FP16 beside the results file: the rows of a later session start from it
                best = run_train(**b.v7_baseline_run(), patience=a.v7_patience).best
                weights = save_fp16(best, Path(a.out).with_name(f"{Path(a.out).stem}_{model}_baseline_fp16.pt"))
            b.add(key, f"{model} baseline", weights, t0)
        base = results.row(key)["weights"]
        for kd in [] if a.no_controls else kd_modes:  # extra epochs alone: what pruning must not be credited with
            k = str(RowKey(model, "control", kd=kd))
            if not results.has(k):
                t0 = time.time()
                res = run_train(weights=base, epochs=a.finetune_epochs, name=k.replace("/", "-"), noautoanchor=True,
                                kd=kd_options(a.kd, teacher=base) if kd else None, **common)
                b.add(k, f"{model} control: baseline finetuned {a.finetune_epochs} epochs" + (kd_label if kd else ""),
                      res.best, t0)

        def prune(method, speedup, kd, start=base, sparse=False):
            k = str(RowKey(model, method, speedup, kd, sparse))
            if not results.has(k):
                t0 = time.time()
                twin = str(RowKey(model, method, speedup, sparse=sparse)).replace("/", "-")
                earlier = [Path(p) / twin / "pruned.pt" for p in ([a.project] if kd else []) + [a.pruned_from] if p]
                res = run_prune(start, method, speedup, a.finetune_epochs, name=k.replace("/", "-"),
                                kd=kd_options(a.kd, teacher=base) if kd else None,
                                pruned_as=next((p for p in earlier if p.is_file()), None), **common)
                label = f"{model} {method}{' (Sparse)' if sparse else ''} {speedup}x" + (kd_label if kd else "")
                b.add(k, label, res["best"], t0)
                if sparse:
                    bn_plot = results.row(str(RowKey(model, "sparse", method=method)))["bn_plot"]
                    results.data["rows"][k]["bn_plot"] = bn_plot
                    results.save()

        first, candidates = a.speedups[0], []
        for method in a.methods:
            for kd in kd_modes:
                prune(method, first, kd)
            candidates.append((method, base, False))
        for method in a.sparse_methods:
            start = sparse_start(b, model, method)
            for kd in kd_modes:
                prune(method, first, kd, start, sparse=True)
            candidates.append((method, start, True))
        order = ranked_names(results.data["rows"], model, first)
        ranked = sorted(candidates, key=lambda c: order.index(c[0] + ("+sparse" if c[2] else "")))
        for speedup in a.speedups[1:]:
            for method, start, sparse in ranked[:a.top]:
                for kd in kd_modes:
                    prune(method, speedup, kd, start, sparse)


def sparse_start(b: Bench, model: str, method: str) -> str:
    """The baseline after `--sparse-epochs` of `yolocompress sparse --method METHOD` (its row; made again when
    its run folder is gone, e.g. in a later session's checkout)."""
    a, results, common = b.args, b.results, b.common_for(model)
    k = str(RowKey(model, "sparse", method=method))
    if not results.has(k) or not Path(results.row(k)["weights"]).is_file():
        t0 = time.time()
        opts = TrainOptions(data=str(common["data"]), hyp=str(common["hyp"]), imgsz=common["imgsz"],
                            batch_size=common["batch"], workers=common["workers"], device=common["device"],
                            project=str(common["project"]), name=k.replace("/", "-"), exist_ok=True,
                            seed=common["seed"], epochs=a.sparse_epochs, noautoanchor=True)
        res = sparse_command(results.row(str(RowKey(model, "baseline")))["weights"], SparseOptions(method=method),
                             opts)
        b.add(k, f"{model} {method} sparse training, {a.sparse_epochs} epochs (not pruned)", res["best"], t0)
        results.data["rows"][k]["bn_plot"] = str(Path(res["save_dir"]) / "bn_gamma.png")
        results.save()
    return results.row(k)["weights"]


def architecture_of(b: Bench, key: str) -> str:
    """Weights with the architecture of row `key`, for timing: its own, or when its run folder is gone (rows made
    on another machine) the baseline for unpruned rows and the same pruning again, not finetuned, for pruned ones
    (checked against the recorded parameter count)."""
    row = b.results.row(key)
    if Path(row["weights"]).is_file():
        return row["weights"]
    k = RowKey.parse(key)
    base = b.results.row(str(RowKey(k.model, "baseline")))["weights"]
    if not k.pruned:
        return base
    start = sparse_start(b, k.model, k.kind) if k.sparse else base
    unfinetuned = RowKey(k.model, k.kind, k.speedup, sparse=k.sparse)  # the kd row has the same architecture
    name = str(unfinetuned).replace("/", "-") + "-architecture"
    pruned = Path(b.args.project) / name / "pruned.pt"
    if not pruned.is_file():
        common = dict(b.common_for(k.model), project=b.args.project)
        pruned = Path(run_prune(start, k.kind, k.speedup, 0, name=name, **common)["pruned"])
    made = count_params(load_model(pruned)[0])
    if made != row["Parameters"]:
        raise SystemExit(f"error: pruning {unfinetuned} again gave {made:,} parameters, row {key} has "
                         f"{row['Parameters']:,}: its architecture cannot be timed; rerun that row")
    return str(pruned)


def latency640(b: Bench) -> None:
    """640-px CPU latency (PyTorch and onnxruntime, batch 1 and 32) of every distinct architecture, against the
    first baseline's, in interleaved passes; cells copied to every row of that architecture. Done once per set of
    architectures (kept in the results file)."""
    results = b.results
    rows = results.data["rows"]
    models, keys = {}, {}
    for k in rows:
        if RowKey.parse(k).model not in b.args.models:
            continue
        m = load_model(architecture_of(b, k), nc=b.data.nc)[0]
        arch = architecture_key(m)
        keys[k] = arch
        models.setdefault(arch, m)
    if b.args.latency640_prepare:
        print(f"{len(models)} architectures ready for the 640-px pass; time them on a quiet machine "
              "(the same command without --latency640-prepare)")
        return
    done = results.data.setdefault("latency640", {})
    for model in b.args.models:  # each baseline is the reference of its own rows
        base = keys.get(str(RowKey(model, "baseline")))
        archs = [base] + sorted({keys[k] for k in keys if RowKey.parse(k).model == model} - {base}) if base else []
        have = [done.get(f"{model}:{x}", {}) for x in archs]
        for runtime, batch in missing_settings(have, b.args.latency640_runtimes, b.args.latency640_batches):
            timed = time_architectures([models[x] for x in archs], batches=(batch,), runtimes=(runtime,),
                                       rounds=b.args.latency640_rounds)
            for i, x in enumerate(archs):  # the other settings' cells are kept
                done[f"{model}:{x}"] = {**done.get(f"{model}:{x}", {}), **as_cells(timed, i)}
            results.save()
    for k, row in rows.items():
        if k in keys:
            row.update(done.get(f"{RowKey.parse(k).model}:{keys[k]}", {}))
    results.save()


def missing_settings(have: list[dict], runtimes, batches) -> list[tuple[str, int]]:
    """The (runtime, batch) settings that some architecture's recorded 640-px cells (`have`, one dict each) lack:
    only those are timed, so a setting deleted after a disturbed pass is timed again without re-timing, and
    overwriting, the settings that were sound."""
    return [(rt, bs) for rt in runtimes for bs in batches if any(cell(setting(rt, bs)) not in c for c in have)]


if __name__ == "__main__":
    main()
