"""The 640-px latency pass (benchmarks/latency640.py) times many architectures interleaved; onnxruntime sessions keep
their memory arenas at their peak, and sixteen yolov7-tiny sessions at batch 32 held at once took 24 GB and were
killed. Only one session may be alive at a time, and every model still gets one time per pass."""
import sys
from pathlib import Path

import onnxruntime
import pytest

from yolocompress.models.builder import Model

from ..conftest import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from latency640 import time_architectures  # noqa: E402


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_onnxruntime_passes_hold_one_session_at_a_time(monkeypatch):
    live, most = [0], [0]

    class Counted(onnxruntime.InferenceSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            live[0] += 1
            most[0] = max(most[0], live[0])

        def __del__(self):
            live[0] -= 1

    monkeypatch.setattr(onnxruntime, "InferenceSession", Counted)
    models = [Model(tiny_config()).eval() for _ in range(3)]
    timed = time_architectures(models, imgsz=64, batches=(2,), runtimes=("ort",), rounds=2, repeats=1, threads=1)
    assert most[0] == 1 and live[0] == 0
    rows = timed["ort bs2"]
    assert len(rows) == 3 and all(len(t.passes) == 2 for t, _ in rows)
    assert rows[0][1].passes == (1.0, 1.0)  # the first model against itself
