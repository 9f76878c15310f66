"""The `info` and `export` library entry points: the opset reaches the file, weights the GFLOPs counter cannot
read are named."""
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from yolocompress.cli import parse_command
from yolocompress.core.errors import ConfigError
from yolocompress.models import registry
from yolocompress.models.api import ExportOptions, InfoOptions, export, info
from yolocompress.models.checkpoint import save_checkpoint

from ..conftest import write_yaml
from .helpers import small_cfg, small_model


def test_export_writes_the_opset_asked_for(tmp_path, capsys):
    """Through the CLI's parser too: `export --opset 13` lands in ExportOptions.opset."""
    command, kwargs, _ = parse_command(["export", "--weights", "w.pt", "--opset", "13"])
    assert command.name == "export" and kwargs["opts"].opset == 13
    weights = save_checkpoint(tmp_path / "m.pt", small_model("yolov5n"))
    out = export(ExportOptions(weights=str(weights), imgsz=64, opset=13))
    assert out["opset"] == 13 and out["max_abs_diff"] < 1e-3 and out["parity_skipped"] is None
    assert onnx.load(out["onnx"]).opset_import[0].version == 13
    assert "(opset 13)" in capsys.readouterr().out
    assert export(ExportOptions(weights=str(weights), imgsz=64))["opset"] == 17
    with pytest.raises(ConfigError, match="--opset 9 is not supported"):
        export(ExportOptions(weights=str(weights), imgsz=64, opset=9))


class RawWeights(nn.Module):
    """A user block convolving a raw nn.Parameter with F.conv2d: no counting rule reads it."""

    def __init__(self, c1, c2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c2, c1, 3, 3) * 0.01)

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


def test_info_names_modules_with_weights_the_counter_cannot_read(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_module()(RawWeights)
    cfg = small_cfg("yolov5n")
    cfg["backbone"][2] = [-1, 1, "RawWeights", [128]]
    result = info(InfoOptions(cfg=write_yaml(tmp_path / "raw.yaml", cfg), imgsz=64))
    assert result["uncounted"] == ["model.2 (RawWeights, 9,216 parameters)"]
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("not in the GFLOPs count")]
    assert line and "model.2 (RawWeights, 9,216 parameters)" in line[0]
    assert info(InfoOptions(cfg=write_yaml(tmp_path / "plain.yaml", small_cfg("yolov5n")), imgsz=64))["uncounted"] == []
