"""Helpers of the benchmark scripts (benchmarks/common.py): prune switches with values, and recipe paths that
compare between checkouts (a later session's worktree resumes the rows of an earlier one)."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import in_checkout, prune_switches  # noqa: E402


def test_prune_switches_take_flags_off_flags_and_values_parsed_by_the_option():
    assert prune_switches(["global", "round-to=auto"]) == {"global_pruning": True, "round_to": "auto"}
    assert prune_switches(["local", "round-to=16", "max-ratio=0.5"]) == \
        {"global_pruning": False, "round_to": 16, "max_ratio": 0.5}
    assert prune_switches(["round-to=none"]) == {"round_to": None}
    with pytest.raises(SystemExit, match="unknown prune switch 'rnd'"):
        prune_switches(["rnd"])


def test_recipe_paths_compare_by_their_place_in_the_checkout():
    a = in_checkout("/work/bench/runs/compare-methods/data-train400/data.yaml")
    assert a == in_checkout("/work/main/runs/compare-methods/data-train400/data.yaml") == \
        "runs/compare-methods/data-train400/data.yaml"
    assert in_checkout("/work/wt/x/benchmarks/hyp.yolov7-tiny.digits.yaml") == "benchmarks/hyp.yolov7-tiny.digits.yaml"
    assert in_checkout("/data/elsewhere.yaml") == "/data/elsewhere.yaml" and in_checkout(4) == 4


def test_v7_recipe_keys_bind_only_once_the_file_holds_v7t_rows(tmp_path):
    from argparse import Namespace
    from common import Results
    out = tmp_path / "results.json"
    first = Namespace(imgsz=192, v7_weights=None, v7_epochs=80)
    r = Results(out, first)
    r.add("v5n/baseline", {"mAP50-95": 0.48}, t0=0.0)
    # the yolov5n rows do not depend on the v7t baseline: another one may be chosen for the v7t half
    r = Results(out, Namespace(imgsz=192, v7_weights="v7t.pt", v7_epochs=80))
    r.add("v7t/baseline", {"mAP50-95": 0.5}, t0=0.0)
    with pytest.raises(SystemExit, match=r"v7_weights v7t.pt -> other.pt"):
        Results(out, Namespace(imgsz=192, v7_weights="other.pt", v7_epochs=80))
    with pytest.raises(SystemExit, match=r"imgsz 192 -> 128"):
        Results(out, Namespace(imgsz=128, v7_weights="v7t.pt", v7_epochs=80))


def test_two_runs_sharing_a_results_file_keep_each_others_rows(tmp_path):
    from argparse import Namespace
    from common import Results
    out = tmp_path / "results.json"
    args = Namespace(imgsz=192)
    first, second = Results(out, args), Results(out, args)  # both read the file before either wrote a row
    first.add("v7t/lamp/2.0x", {"mAP50-95": 0.5}, t0=0.0)
    second.add("v7t/pagcp/2.0x", {"mAP50-95": 0.6}, t0=0.0)
    first.add("v7t/lamp/2.0x/kd", {"mAP50-95": 0.55}, t0=0.0)
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"v7t/lamp/2.0x", "v7t/pagcp/2.0x", "v7t/lamp/2.0x/kd"}
    assert set(json.loads(out.read_text())["minutes"]) == set(rows)


def test_a_row_another_run_remade_is_not_reverted_by_this_runs_older_copy(tmp_path):
    from argparse import Namespace
    from common import Results
    out = tmp_path / "results.json"
    Results(out, Namespace(imgsz=192)).add("v5n/sparse/slim", {"weights": "gone.pt"}, t0=0.0)
    grid, remake = Results(out, Namespace(imgsz=192)), Results(out, Namespace(imgsz=192))
    remake.add("v5n/sparse/slim", {"weights": "made-again.pt"}, t0=0.0)
    assert grid.row("v5n/sparse/slim")["weights"] == "gone.pt"  # still the old copy in this process ...
    grid.add("v7t/lamp/2.0x", {"weights": "lamp.pt"}, t0=0.0)  # ... which it did not change
    rows = json.loads(out.read_text())["rows"]
    assert rows["v5n/sparse/slim"]["weights"] == "made-again.pt" and rows["v7t/lamp/2.0x"]["weights"] == "lamp.pt"
    grid.data["rows"]["v7t/lamp/2.0x"]["bn_plot"] = "bn.png"  # a change made in place is this run's to write
    grid.save()
    assert json.loads(out.read_text())["rows"]["v7t/lamp/2.0x"]["bn_plot"] == "bn.png"
    assert grid.row("v5n/sparse/slim")["weights"] == "made-again.pt"  # and the run now sees the other's rows
    rows = grid.data["rows"]  # a reference taken before a save still writes through (latency640 holds one)
    grid.save()
    rows["v7t/lamp/2.0x"]["speed-up"] = "2.0x"
    grid.save()
    assert json.loads(out.read_text())["rows"]["v7t/lamp/2.0x"]["speed-up"] == "2.0x"
