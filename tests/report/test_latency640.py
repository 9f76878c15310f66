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


def test_only_the_settings_missing_from_the_results_file_are_timed_again(tmp_path, monkeypatch):
    """A setting deleted after a disturbed pass (`--latency640-runtimes torch --latency640-batches 1` or the default
    command) is timed again alone; the sound settings keep their cells, and every row gets its architecture's."""
    from types import SimpleNamespace

    import torch

    import compare_methods
    from latency640 import architecture_key, cell, setting
    from yolocompress.core.stats import Ratio, Timing
    from yolocompress.models.checkpoint import load_model, save_checkpoint

    torch.manual_seed(0)
    narrow = tiny_config()
    narrow["width_multiple"] = narrow["width_multiple"] / 2
    paths = {}
    for name, cfg in (("base", tiny_config()), ("pruned", narrow)):
        paths[name] = tmp_path / f"{name}.pt"
        save_checkpoint(paths[name], Model(cfg))
    rows = {"v7t/baseline": {}, "v7t/l1/2.0x": {}, "v7t/l1/2.0x/kd": {}}
    weights = {"v7t/baseline": paths["base"], "v7t/l1/2.0x": paths["pruned"], "v7t/l1/2.0x/kd": paths["pruned"]}
    monkeypatch.setattr(compare_methods, "architecture_of", lambda b, k: weights[k])
    timed_settings = []

    def fake_timing(models, batches, runtimes, rounds, **_):
        (runtime,), (batch,) = runtimes, batches
        timed_settings.append((runtime, batch))
        return {setting(runtime, batch): [(Timing((10.0 * (i + 1),) * rounds), Ratio((1.0 / (i + 1),) * rounds))
                                          for i in range(len(models))]}
    monkeypatch.setattr(compare_methods, "time_architectures", fake_timing)

    archs = [architecture_key(load_model(paths[n])[0]) for n in ("base", "pruned")]
    sound = {cell("ort bs1"): 5.0, cell("torch bs32"): 50.0}  # timed before on a quiet machine: must stay
    done = {f"v7t:{x}": dict(sound) for x in archs}
    saved_after = []  # settings timed when the results file was written
    results = SimpleNamespace(data={"rows": rows, "latency640": done},
                              save=lambda: saved_after.append(len(timed_settings)))
    args = SimpleNamespace(models=["v7t"], latency640_prepare=False, latency640_runtimes=["torch", "ort"],
                           latency640_batches=[1, 32], latency640_rounds=2)
    compare_methods.latency640(SimpleNamespace(results=results, args=args, data=SimpleNamespace(nc=None)))

    assert timed_settings == [("torch", 1), ("ort", 32)]  # the two missing settings, each once, not all four
    assert saved_after[:2] == [1, 2]  # written after each setting: an interrupted pass keeps what it timed
    assert rows["v7t/baseline"][cell("ort bs1")] == 5.0 and rows["v7t/baseline"][cell("torch bs32")] == 50.0
    assert rows["v7t/baseline"][cell("torch bs1")] == 10.0 and rows["v7t/l1/2.0x"][cell("torch bs1")] == 20.0
    assert rows["v7t/l1/2.0x/kd"] == rows["v7t/l1/2.0x"]  # the distilled twin: the same architecture's cells
    assert rows["v7t/l1/2.0x"][cell("ort bs32", "spread")] == [20.0, 20.0]

    timed_settings.clear()  # everything timed: the same command times nothing
    compare_methods.latency640(SimpleNamespace(results=results, args=args, data=SimpleNamespace(nc=None)))
    assert timed_settings == []
