"""How long `prune_to_target` takes to reach a target, per method: yolov5s (our builder, random weights; nc 10, the
digits classes) to 2.0x GFLOPs at 640 px. The gradient methods score on batches of the built-in digits data
(`data.demo.make_demo_dataset`, generated into --work). One intra-op thread. Each row records the wall time of
`prune_to_target` alone (model built, guard included), the steps, the ratio reached, the parameters left and a
fingerprint of the pruned widths, so that two versions of the loop can be compared row by row (run the same command
with another checkout first on PYTHONPATH; `--scope local|global` then pins the ranking scope that version takes as
a plain bool). Rows go to --out as they finish; a rerun skips them.

usage: python benchmarks/prune_speed.py [--cfg yolov5s.yaml] [--methods l1 lamp ...] [--scope design|local|global]
       [--speedup 2.0] [--round-to N|auto|none] [--out runs/prune-speed/results.json]
"""
import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import torch

T_IMPORT = time.time()
from yolocompress.core.hyp import Hyp  # noqa: E402
from yolocompress.models.builder import Model, load_config  # noqa: E402
from yolocompress.prune.methods import METHODS, torch_pruning_method_names  # noqa: E402
from yolocompress.prune.options import round_to_value  # noqa: E402
from yolocompress.prune.speedup import prune_to_target  # noqa: E402

IMPORT_S = time.time() - T_IMPORT


def digits_batches(work: Path, n: int, batch: int, imgsz: int, stride: int, hyp) -> list:
    """`n` batches of the digits data at `imgsz` (generated once into `work`)."""
    from yolocompress.data.dataset import create_dataloader, load_data_config
    from yolocompress.data.demo import make_demo_dataset
    yaml_path = work / "digits" / "data.yaml"
    if not yaml_path.is_file():
        make_demo_dataset(work / "digits", n_train=max(16, n * batch), n_val=8, imgsz=imgsz, seed=0)
    data = load_data_config(str(yaml_path))
    loader, _ = create_dataloader(data.train, imgsz, batch, stride, hyp, augment=False, workers=0, shuffle=False,
                                  nc=data.nc, prefix="prune-speed")
    out = []
    for imgs, targets, *_ in loader:
        out.append((imgs, targets))
        if len(out) == n:
            break
    return out


def grad_fn_for(method: str, model, batches, imgsz: int):
    from yolocompress.engine.losses import build_loss
    from yolocompress.prune.api import detection_grad_fn
    return detection_grad_fn(method, batches, build_loss(model, Hyp.default_for(model.yaml), imgsz), "cpu")


def fingerprint(per_layer: list) -> str:
    return hashlib.sha1(json.dumps([r["after"] for r in per_layer]).encode()).hexdigest()[:10]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="yolov5s.yaml")
    ap.add_argument("--nc", type=int, default=10, help="classes (10: the digits data the gradient methods use)")
    ap.add_argument("--methods", nargs="+", default=torch_pruning_method_names())
    ap.add_argument("--scope", choices=["design", "local", "global"], default="design",
                    help="ranking scope: each method's design (this checkout's table), or pinned for all")
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--imgsz", type=int, default=640, help="image size GFLOPs are counted at")
    ap.add_argument("--round-to", type=round_to_value, default=None,
                    help="N, auto or none (default none: the rows recorded before auto became the CLI default)")
    ap.add_argument("--grad-batches", type=int, default=2)
    ap.add_argument("--grad-batch-size", type=int, default=8)
    ap.add_argument("--grad-imgsz", type=int, default=128)
    ap.add_argument("--work", default="runs/prune-speed")
    ap.add_argument("--out", default=None, help="rows as JSON (default WORK/results.json)")
    ap.add_argument("--label", default="", help="a name for this checkout's rows (e.g. 'before', 'after')")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(a.out or work / "results.json")
    results = json.loads(out_path.read_text()) if out_path.is_file() else {"rows": {}}
    results.setdefault("import_s", {})[a.label] = IMPORT_S
    batches = None
    for method in a.methods:
        key = f"{a.label}/{method}/{a.scope}/{a.speedup}x/r{a.round_to}"
        if key in results["rows"]:
            continue
        torch.manual_seed(0)
        cfg = load_config(a.cfg)
        cfg["nc"] = a.nc
        model = Model(cfg).eval()
        with torch.no_grad():  # BN scales as after training, so that slim's ranking is not a tie
            g = torch.Generator().manual_seed(0)
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.3)
        grad_fn = None
        if METHODS[method].needs_grad:
            batches = batches or digits_batches(work, a.grad_batches, a.grad_batch_size, a.grad_imgsz, 32,
                                                Hyp.default_for(model.yaml))
            grad_fn = grad_fn_for(method, model, batches, a.grad_imgsz)
        kw = {} if a.scope == "design" else {"global_pruning": a.scope == "global"}
        t0 = time.time()
        res = prune_to_target(model, torch.rand(1, 3, 64, 64), method, a.speedup, imgsz=a.imgsz, grad_fn=grad_fn,
                              round_to=a.round_to, measure=False, **kw)
        row = {"method": method, "scope": a.scope, "seconds": time.time() - t0, "steps": res.steps,
               "speedup_gflops": res.speedup_gflops, "params_after": res.params_after, "reached": res.reached,
               "global": getattr(res, "global_pruning", a.scope == "global"), "widths": fingerprint(res.per_layer)}
        results["rows"][key] = row
        out_path.write_text(json.dumps(results, indent=1))
        print(f"{key}: {row['seconds']:.1f} s, {row['steps']} steps, {row['speedup_gflops']:.3f}x, "
              f"{row['params_after']:,} params, widths {row['widths']}", flush=True)


if __name__ == "__main__":
    main()
