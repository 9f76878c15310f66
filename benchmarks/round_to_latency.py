"""Which `--round-to` buys the most speed per GFLOP on this CPU: yolov5n (our builder, random weights: architecture
only) pruned to 2.0x GFLOPs at 640 px without rounding and with 8, 16 and 32, for a per-layer (`l1`) and a global
(`lamp`) ranking; every model then timed at 640 px, batch 1 and 32, in PyTorch and onnxruntime, in interleaved
passes (benchmarks/latency640.py); `auto` is the default rule (16 for layers of 64 channels or more, 8 for 32-63). Speed-up per GFLOP = latency speed-up / GFLOPs ratio: 1.0 means the time fell as
much as the arithmetic. Writes JSON to --out and a markdown table to stdout.

usage: python benchmarks/round_to_latency.py [--cfg yolov5n.yaml] [--methods l1 lamp] [--round-to none 8 16 32 auto]
       [--rounds 3] [--threads 1] [--out runs/round-to/results.json]
"""
import argparse
import json
import logging
from pathlib import Path

import torch

from latency640 import time_architectures
from yolocompress.core.stats import count_gflops, count_params
from yolocompress.models.builder import Model, load_config
from yolocompress.prune.options import round_to_value
from yolocompress.prune.speedup import prune_to_target


def build(cfg_name: str, nc: int):
    torch.manual_seed(0)
    cfg = load_config(cfg_name)
    cfg["nc"] = nc
    model = Model(cfg).eval()
    with torch.no_grad():  # BN scales as after training
        g = torch.Generator().manual_seed(0)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.3)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="yolov5n.yaml")
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--methods", nargs="+", default=["l1", "lamp"])
    ap.add_argument("--round-to", nargs="+", type=round_to_value, default=[None, 8, 16, 32, "auto"],
                    help="N, auto or none (0 = none)")
    ap.add_argument("--speedup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing passes")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (PyTorch and onnxruntime)")
    ap.add_argument("--runtimes", nargs="+", default=["torch", "ort"])
    ap.add_argument("--out", default="runs/round-to/results.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(a.threads)
    base = build(a.cfg, a.nc)
    g0 = count_gflops(base, 640)
    labels, models, rows = ["baseline"], [base], [{"model": "baseline", "GFLOPs": g0, "params": count_params(base)}]
    for method in a.methods:
        for r in a.round_to:
            m = build(a.cfg, a.nc)
            out = prune_to_target(m, torch.rand(1, 3, 64, 64), method, a.speedup, imgsz=640, round_to=r,
                                  measure=False)
            labels.append(f"{method} round_to {r or 'none'}")
            models.append(m.eval())
            rows.append({"model": labels[-1], "GFLOPs": out.gflops_after, "gflops_ratio": out.speedup_gflops,
                         "params": out.params_after, "reached": out.reached})
    timed = time_architectures(models, batches=(1, 32), runtimes=a.runtimes, rounds=a.rounds, threads=a.threads)
    for setting, cells in timed.items():
        for row, (t, ratio) in zip(rows, cells):
            row[f"{setting} ms"] = t.median
            row[f"{setting} spread"] = list(t.spread)
            row[f"{setting} speed-up"] = ratio.text()
            row[f"{setting} speed-up median"] = ratio.median
            row[f"{setting} significant"] = ratio.significant
            if "gflops_ratio" in row:
                row[f"{setting} per GFLOP"] = ratio.median / row["gflops_ratio"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    settings = list(timed)
    print("| model | params | GFLOPs ratio | " + " | ".join(f"{s} ms (spread) / speed-up / per GFLOP" for s in settings)
          + " |\n|---|---:|---:|" + "---|" * len(settings))
    for row in rows:
        cells = [f"{row[f'{s} ms']:.1f} ({row[f'{s} spread'][0]:.1f}-{row[f'{s} spread'][1]:.1f}) / "
                 f"{row[f'{s} speed-up']} / " + (f"{row[f'{s} per GFLOP']:.2f}" if f"{s} per GFLOP" in row else "")
                 for s in settings]
        print(f"| {row['model']} | {row['params'] / 1e6:.2f}M | {row.get('gflops_ratio', 1.0):.3f} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
