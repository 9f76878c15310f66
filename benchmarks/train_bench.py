"""Train benchmark: our trainer in the official setting of ../shared/bench/README.md.

Official (ultralytics/yolov5 v7.0 train.py, this kind of 2-core CPU): yolov5n, hyp.digits.yaml, --img 192,
--batch-size 16, --epochs 40, --workers 2: 16.9 min, mAP50 0.144, mAP50-95 0.0899, about 48 training images/s.

usage: python benchmarks/train_bench.py [--epochs 40] [--cfg yolov5n.yaml] [--hyp ../shared/bench/hyp.digits.yaml]
       [--seed 0]
"""
import argparse
import csv
import json
import logging
import os
import time
from pathlib import Path

from yolocompress.engine.api import train
from yolocompress.engine.options import TrainOptions

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "bench"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", default="yolov5n.yaml")
    ap.add_argument("--data", default=str(SHARED / "data" / "data.yaml"))
    ap.add_argument("--hyp", default=str(SHARED / "hyp.digits.yaml"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--imgsz", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--project", default="runs/bench-train")
    ap.add_argument("--name", default="exp")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")
    os.chdir(HERE.parent)  # the bench data.yaml's path is relative to the project checkout
    t0 = time.time()
    res = train(TrainOptions(data=a.data, epochs=a.epochs, batch_size=a.batch_size, imgsz=a.imgsz, device=a.device,
                             workers=a.workers, project=a.project, name=a.name, seed=a.seed), cfg=a.cfg, hyp=a.hyp)
    wall = time.time() - t0
    with open(res.save_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    ips = [float(r["train/images_per_s"]) for r in rows]
    out = {"cfg": a.cfg, "seed": a.seed, "epochs": a.epochs, "imgsz": a.imgsz, "batch": a.batch_size, "wall_min": wall / 60,
           "train_images_per_s_median": sorted(ips)[len(ips) // 2], "mAP50": res.metrics.get("mAP50"),
           "mAP50-95": res.metrics.get("mAP50-95"), "precision": res.metrics.get("precision"),
           "recall": res.metrics.get("recall"), "save_dir": str(res.save_dir)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
