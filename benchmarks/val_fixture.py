"""Validate the official yolov5n fixture with our validator and compare with what official val.py printed.

Official val.py (../shared/fixtures/README.md): P 0.521, R 0.647, mAP50 0.642, mAP50-95 0.486 on the 200 val images.
usage: python benchmarks/val_fixture.py
"""
import json
import os
import time
from pathlib import Path

from yolocompress.engine.api import val
from yolocompress.engine.options import ValOptions

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OFFICIAL = {"precision": 0.521, "recall": 0.647, "mAP50": 0.642, "mAP50-95": 0.486}


def main():
    os.chdir(ROOT)  # the bench data.yaml's path is relative to the project checkout
    t0 = time.time()
    m = val(ValOptions(weights=str(SHARED / "fixtures" / "yolov5n_official_digits.pt"),
                       data=str(SHARED / "bench" / "data" / "data.yaml"), imgsz=192, batch_size=32, device="cpu",
                       workers=2, plots=False, project="runs/val_fixture"))
    out = {k: round(m[k], 4) for k in OFFICIAL}
    out["max_abs_diff_vs_official"] = round(max(abs(m[k] - v) for k, v in OFFICIAL.items()), 4)
    out["wall_s"] = round(time.time() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
