"""Shared fixtures: tiny model configs and a tiny demo dataset, so every test stays fast on 2 CPU cores."""
import copy
import os

import pytest
import yaml

os.environ.setdefault("YOLOCOMPRESS_NO_BAR", "1")


def tiny_config(name: str = "yolov5n.yaml", width: float = 0.125, nc: int = 10) -> dict:
    """A shipped config at a fraction of its width (same layout, far fewer channels)."""
    from yolocompress.models.builder import load_config
    cfg = copy.deepcopy(load_config(name))
    cfg["width_multiple"], cfg["nc"] = width, nc
    return cfg


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A 12-train / 8-val image digits dataset at 64 px (generated, no download)."""
    from yolocompress.data.demo import make_demo_dataset
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", n_train=12, n_val=8, imgsz=64, seed=1)


@pytest.fixture
def tiny_v5():
    return tiny_config("yolov5n.yaml")


@pytest.fixture
def tiny_v7():
    return tiny_config("yolov7-tiny.yaml", width=0.25)


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)

# Tiny models on 2 cores: one intra-op thread avoids oversubscription (Torch-Pruning's small index ops and
# data-loader workers otherwise fight over the cores and run many times slower).
import torch  # noqa: E402

torch.set_num_threads(1)


_PLOT_FUNCTIONS = ("plot_labels", "plot_train_batch", "plot_validation")
_REAL_PLOTS: dict = {}


@pytest.fixture(scope="session", autouse=True)
def _training_plots_off():
    """Each matplotlib figure costs a second or more on 2 busy cores, and most tests train a model only to look
    at something else: training runs in tests write no labels/batch/validation plots unless a test asks for
    them with the `training_plots` fixture (the val command's plots are not affected: they are asked for)."""
    from yolocompress.engine import run_plots
    _REAL_PLOTS.update({name: getattr(run_plots, name) for name in _PLOT_FUNCTIONS})
    with pytest.MonkeyPatch.context() as mp:
        for name in _PLOT_FUNCTIONS:
            mp.setattr(run_plots, name, lambda *args, **kwargs: [])
        yield


@pytest.fixture
def training_plots(monkeypatch):
    """Training runs in this test write their plots, as they do outside the tests."""
    from yolocompress.engine import run_plots
    for name in _PLOT_FUNCTIONS:
        monkeypatch.setattr(run_plots, name, _REAL_PLOTS[name])
