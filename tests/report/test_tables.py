"""Comparison tables: shares and deltas against the first row, and the three report files."""
import csv
import json

import pytest

from yolocompress.report.tables import compare_rows, format_cell, markdown_table, table_columns, write_report

BASE = {"Model": "baseline", "Parameters": 1_760_000, "GFLOPs": 4.2, "Model Size": 3.9, "mAP50": 0.5,
        "mAP50-95": 0.3, "Inference Time (bs 32)": 20.0}
PRUNED = {"Model": "pruned", "Parameters": 880_000, "GFLOPs": 2.1, "Model Size": 1.95, "mAP50": 0.48,
          "mAP50-95": 0.29, "Inference Time (bs 32)": 12.5}


def test_compare_rows_adds_shares_and_deltas_of_the_first_row():
    base, pruned = compare_rows([BASE, PRUNED])
    assert base["Parameters %"] == 100.0 and base["mAP50 delta"] == 0.0
    assert pruned["Parameters %"] == pytest.approx(50.0)
    assert pruned["GFLOPs %"] == pytest.approx(50.0)
    assert pruned["Inference Time (bs 32) %"] == pytest.approx(62.5)
    assert pruned["mAP50 delta"] == pytest.approx(-0.02)
    assert pruned["mAP50-95 delta"] == pytest.approx(-0.01)
    assert "mAP50 %" not in pruned and "Model %" not in pruned
    assert PRUNED.get("GFLOPs %") is None  # inputs are not modified
    assert compare_rows([]) == []


def test_missing_or_zero_baseline_values_give_no_comparison():
    rows = compare_rows([{"Model": "a", "GFLOPs": 0.0, "mAP50": None}, {"Model": "b", "GFLOPs": 1.0, "mAP50": 0.4}])
    assert "GFLOPs %" not in rows[1] and "mAP50 delta" not in rows[1]


def test_markdown_has_the_usual_columns_and_cells():
    rows = compare_rows([BASE, PRUNED])
    assert table_columns(rows) == ["Model", "Parameters", "GFLOPs", "Model Size", "mAP50", "mAP50-95",
                                   "Inference Time (bs 32)"]
    md = markdown_table(rows).splitlines()
    assert md[0] == "| Model | Parameters | GFLOPs | Model Size | mAP50 | mAP50-95 | Inference Time (bs 32) |"
    assert md[3] == ("| pruned | 0.88M (50.0%) | 2.10 (50.0%) | 1.95 MB (50.0%) | 0.4800 (-0.0200) | "
                     "0.2900 (-0.0100) | 12.50 ms (62.5%) |")
    assert markdown_table(rows, ["Model", "GFLOPs"], right_aligned=["GFLOPs"]).splitlines()[1] == "|---|---:|"
    assert format_cell({"GFLOPs": 0.0119}, "GFLOPs") == "0.0119"
    assert format_cell({"Parameters": 45_000}, "Parameters") == "45.0K"


def test_write_report_writes_md_csv_json(tmp_path):
    layers = [{"name": "model.0.conv", "before": 16, "after": 12}]
    paths = write_report([BASE, PRUNED], tmp_path / "run", title="Pruning report", notes=["GFLOPs ratio 2.000x"],
                         sections=[("Channels per layer", layers), ("Skipped", [])], extra={"prune": {"steps": 3}})
    md = paths["md"].read_text()
    assert md.startswith("# Pruning report") and "- GFLOPs ratio 2.000x" in md
    assert "## Channels per layer" in md and "| model.0.conv | 16 | 12 |" in md and "(none)" in md
    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["Model"] for r in rows] == ["baseline", "pruned"]
    assert float(rows[1]["GFLOPs %"]) == pytest.approx(50.0)
    data = json.loads(paths["json"].read_text())
    assert data["rows"][1]["mAP50 delta"] == pytest.approx(-0.02)
    assert data["Channels per layer"] == layers and data["prune"] == {"steps": 3}
