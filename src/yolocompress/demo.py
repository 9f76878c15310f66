"""`yolocompress demo [--quick]` (what `make demo` runs): the whole product on the built-in digits data.

Generates the dataset, trains a YOLOv5n baseline, compresses it (LAMP to 2.0x fewer GFLOPs, finetuned with
logit distillation from the baseline), then benchmarks baseline and result side by side. Each step is a stage
of one folder, so running the demo again continues where it stopped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.hyp import Hyp
from .core.options import option
from .data.demo import make_demo_dataset
from .distill.options import DistillOptions
from .engine.api import train
from .engine.options import TrainOptions
from .pipeline import compress_command
from .prune.options import PruneOptions
from .bench import BenchOptions, bench_command
from .stages import StageRunner

LOGGER = logging.getLogger("yolocompress")


@dataclass(frozen=True)
class DemoRecipe:
    n_train: int
    n_val: int
    imgsz: int
    epochs: int
    finetune_epochs: int
    batch_size: int
    # the official scratch-low values except: no left-right flip (a mirrored digit is another glyph), and larger
    # objectness/class gains, which the official recipe scales down by (imgsz / 640)^2 and nc / 80 for small inputs
    hyp: tuple = (("fliplr", 0.0), ("obj", 5.0), ("cls", 4.0), ("lr0", 0.02))


@dataclass
class DemoOptions:
    """The end-to-end demo"""

    quick: bool = option(False, "toy size, a few minutes (what the tests run)")
    out: str = option("runs/demo", "folder of the demo's stages (a rerun continues where it stopped)")
    device: str = option("cpu", "cpu or a CUDA index")


FULL = DemoRecipe(n_train=600, n_val=120, imgsz=128, epochs=80, finetune_epochs=10, batch_size=16)
QUICK = DemoRecipe(n_train=48, n_val=16, imgsz=64, epochs=2, finetune_epochs=1, batch_size=16)


def run_demo(opts: DemoOptions, workers: int = 2) -> dict:
    quick, out, device = opts.quick, opts.out, opts.device
    recipe = QUICK if quick else FULL
    if str(device) == "cpu":
        # one intra-op thread on every machine: the thread count changes the order of float sums, so the same demo
        # gave other numbers on machines with more cores (docs/benchmarks.md, "What varies"); on a 2-core machine
        # it is also the fast choice (it leaves the other core to the data-loader workers)
        torch.set_num_threads(1)
    root = Path(out) / ("quick" if quick else "full")
    runner = StageRunner(root)
    data = runner.run("1-data", lambda d, r: {"data": str(make_demo_dataset(
        d / "digits", n_train=recipe.n_train, n_val=recipe.n_val, imgsz=recipe.imgsz, seed=0))})["data"]
    hyp_file = root / "hyp.demo.yaml"
    if not hyp_file.exists():
        import yaml
        hyp_file.write_text(yaml.safe_dump({**Hyp().to_dict(), **dict(recipe.hyp)}, sort_keys=False))

    def baseline(d: Path, resuming: bool) -> dict:
        opts = TrainOptions(data=data, epochs=recipe.epochs, batch_size=recipe.batch_size, imgsz=recipe.imgsz,
                            device=device, workers=workers, project=str(root), name=d.name, exist_ok=True,
                            val_every=10, nbs=recipe.batch_size)  # no accumulation: more updates per image
        last = d / "weights" / "last.pt"
        res = train(opts, resume=str(d)) if resuming and last.is_file() else \
            train(opts, cfg="yolov5n.yaml", hyp=str(hyp_file))
        return {"best": str(res.best), "mAP50": res.metrics.get("mAP50"), "mAP50-95": res.metrics.get("mAP50-95")}

    base = runner.run("2-baseline", baseline, resumable=True)
    finetune = TrainOptions(data=data, epochs=recipe.finetune_epochs, batch_size=recipe.batch_size,
                            imgsz=recipe.imgsz, device=device, workers=workers, hyp=str(hyp_file), project=str(root),
                            name="3-compress")
    comp = compress_command(base["best"], PruneOptions(method="lamp", speedup=2.0, report_batch=32), finetune,
                            distill=DistillOptions(teacher="auto", logit="l2", logit_weight=1.0))
    bench = runner.run("4-bench", lambda d, r: bench_command(BenchOptions(
        weights=[base["best"], comp["best"]], data=data, imgsz=recipe.imgsz, batch_size=32, device=device,
        workers=workers, project=str(root), name=d.name, exist_ok=True)))
    print(f"\ndemo complete: baseline mAP50 {base['mAP50']:.3f}, compressed mAP50 {comp['mAP50']:.3f} at "
          f"{comp['speedup_gflops']:.2f}x fewer GFLOPs\nplots: " + ", ".join(bench["plots"]))
    return {"baseline": base, "compressed": {k: comp[k] for k in ("best", "mAP50", "mAP50-95", "speedup_gflops")},
            "bench": bench["save_dir"], "plots": bench["plots"]}
