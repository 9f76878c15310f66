"""`yolocompress info`: the layer table shows the model's real channels (a pruned model's, not its yaml's)."""
import ast
import re

from yolocompress.models.api import layer_channels, layer_table

from .helpers import prune, small_model


def _conv_args(table: str, index: int) -> list:
    row = next(r for r in table.splitlines()[1:] if int(r.split()[0]) == index)
    return ast.literal_eval(re.search(r"\[.*\]$", row).group(0))


def test_pruned_model_shows_its_real_channels():
    model = small_model("yolov5n")
    before = layer_channels(model)
    pruned = prune(model, ratio=0.5)
    after = layer_channels(pruned)
    first = pruned.model[0]
    assert after[0][1] == first.conv.out_channels < before[0][1]
    table = layer_table(pruned)
    assert _conv_args(table, 0)[:2] == [3, first.conv.out_channels]
    assert _conv_args(table, 1)[:2] == [first.conv.out_channels, pruned.model[1].conv.out_channels]


def test_unpruned_table_has_the_official_parsed_arguments():
    table = layer_table(small_model("yolov5n"))
    c0 = small_model("yolov5n").model[0].conv.out_channels
    assert _conv_args(table, 0) == [3, c0, 6, 2, 2]  # as official YOLOv5 prints [c1, c2, k, s, p]
