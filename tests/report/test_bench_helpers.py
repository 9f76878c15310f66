"""Helpers of the benchmark scripts (benchmarks/common.py): prune switches with values, and recipe paths that
compare between checkouts (a later session's worktree resumes the rows of an earlier one)."""
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
