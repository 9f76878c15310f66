"""CPU latency where users deploy: 640 px, batch 1 and 32, PyTorch and onnxruntime, architecture only (random
weights give the same time), timed in interleaved passes with each model's per-pass spread, and each model's speed-up
over the first one pass by pass (`core.stats.Ratio`: median, range, whether the range supports ranking).

`time_architectures(models, ...)` is what benchmarks/compare_methods.py and benchmarks/round_to_latency.py use.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from yolocompress.core.stats import Ratio, Timing, interleaved_timings

RUNTIMES = ("torch", "ort")


def setting(runtime: str, batch: int) -> str:
    """A timed setting's name (`torch bs1`): the key of time_architectures' result."""
    return f"{runtime} bs{batch}"


def cell(name: str, what: str = "(ms)") -> str:
    """A row's column for setting `name`: `CPU 640 torch bs1 (ms)`, `... spread`, `... speed-up`,
    `... speed-up passes`. The one place these names are spelled."""
    return f"CPU 640 {name} {what}"


def architecture_key(model: nn.Module) -> str:
    """Output channels of every convolution, hashed: two rows with one key have one latency."""
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    return hashlib.sha1(json.dumps(widths).encode()).hexdigest()[:12]


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _ort_timings(models, imgsz: int, batch: int, rounds: int, repeats: int, threads: int) -> list[Timing]:
    """One session alive at a time, made again in every pass: a session keeps its memory arena at its peak, and
    sixteen yolov7-tiny sessions at 640 px batch 32 held at once took 24 GB (the kernel killed the pass)."""
    from yolocompress.models.export import export_onnx
    with tempfile.TemporaryDirectory() as tmp:
        paths = [export_onnx(m, Path(tmp) / f"m{i}_{batch}.onnx", imgsz=imgsz, batch_size=batch)
                 for i, m in enumerate(models)]
        x = torch.rand(batch, 3, imgsz, imgsz).numpy()
        times = [[] for _ in models]
        for _ in range(rounds):
            for i, path in enumerate(paths):
                session = _ort_session(path, threads)
                feed = {session.get_inputs()[0].name: x}
                session.run(None, feed)  # warm-up
                runs = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    session.run(None, feed)
                    runs.append((time.perf_counter() - t0) * 1000)
                times[i].append(statistics.median(runs))
                del session
    return [Timing(tuple(t)) for t in times]


def time_architectures(models: list, imgsz: int = 640, batches=(1, 32), runtimes=RUNTIMES, rounds: int = 3,
                       repeats: int | None = None, threads: int | None = None) -> dict:
    """{setting(runtime, batch): [(Timing, Ratio vs models[0]), ...]} for every model, interleaved per setting.

    repeats: timed runs per pass (default 10 at batch 1, 3 at batch 32: a 640-px batch of 32 takes seconds here).
    """
    threads = threads or torch.get_num_threads()
    out = {}
    for runtime in runtimes:
        for bs in batches:
            reps = repeats or (10 if bs == 1 else 3)
            if runtime == "torch":
                timings = interleaved_timings(models, imgsz, bs, "cpu", rounds=rounds, warmup=1, repeats=reps)
            else:
                timings = _ort_timings(models, imgsz, bs, rounds, reps, threads)
            base = timings[0]
            out[setting(runtime, bs)] = [(t, Ratio(tuple(b / x for b, x in zip(base.passes, t.passes))))
                                         for t in timings]
    return out


def as_cells(timed: dict, i: int) -> dict:
    """Row cells of model `i`: `CPU 640 <runtime> bs<N> (ms)`, its spread and its speed-up text."""
    cells = {}
    for name, rows in timed.items():
        t, r = rows[i]
        cells[cell(name)] = t.median
        cells[cell(name, "spread")] = list(t.spread)
        cells[cell(name, "speed-up")] = r.text()
        cells[cell(name, "speed-up passes")] = list(r.passes)
    return cells
