"""The method-comparison grid prints its docs table from the results file alone (`compare_methods.py --table-only`),
so that docs/benchmarks.md is regenerated from the recorded rows, never retyped."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from compare_methods import grid_table  # noqa: E402


def row(label, m, params=1_000_000, **extra):
    return {"Model": label, "Parameters": params, "GFLOPs": 0.2, "mAP50": m + 0.2, "mAP50-95": m, **extra}


def data(**extra_cells):
    rows = {"v7t/baseline": row("v7t baseline", 0.60, 6_040_000),
            "v7t/control": row("v7t control", 0.58, 6_040_000),
            "v7t/control/kd": row("v7t control +KD l1", 0.59, 6_040_000),
            "v7t/lamp/2.0x": row("v7t lamp 2.0x", 0.50, 99_400, **extra_cells),
            "v7t/lamp/2.0x/kd": row("v7t lamp 2.0x +KD l1", 0.55, 99_400),
            "v7t/sparse/slim": row("v7t slim sparse training", 0.57),
            "v5n/baseline": row("v5n baseline", 0.48)}
    return {"rows": rows, "minutes": {"v7t/lamp/2.0x": 3.25}}


def cells(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_pruned_rows_compare_with_the_control_finetuned_the_same_way():
    t = grid_table(data(), "v7t")
    assert cells(t, "lamp 2.0x") == ["lamp 2.0x", "99.4K", "0.200", "0.7000", "0.5000", "-0.1000", "-0.0800", "3.2"]
    assert cells(t, "lamp 2.0x +KD l1")[5:7] == ["-0.0500", "-0.0400"]  # against the control with KD
    assert cells(t, "slim sparse training")[6] == ""  # not a pruned row: no control delta
    assert "v5n" not in t and "640 px" not in t


def test_the_640px_speed_ups_appear_once_measured():
    t = grid_table(data(**{"CPU 640 torch bs1 speed-up": "1.82x (1.75-1.90)"}), "v7t")
    assert "640 px PyTorch bs1" in t.splitlines()[0] and "640 px onnxruntime bs32" not in t
    assert cells(t, "lamp 2.0x")[-1] == "1.82x (1.75-1.90)" and cells(t, "lamp 2.0x +KD l1")[-1] == ""


def test_every_recorded_row_key_reads_back_as_written():
    import json
    from compare_methods import DEFAULT_OUT, RowKey
    keys = list(json.loads(DEFAULT_OUT.read_text())["rows"])
    assert len(keys) > 40
    assert [str(RowKey.parse(k)) for k in keys] == keys
    k = RowKey.parse("v5n/group_reg+sparse/4.0x/kd")
    assert (k.kind, k.speedup, k.kd, k.sparse, k.pruned) == ("group_reg", 4.0, True, True, True)
    assert RowKey.parse("v5n/sparse/slim") == RowKey("v5n", "sparse", method="slim") and not RowKey("v5n", "control").pruned


def test_rows_finished_by_parallel_processes_print_in_the_grids_order():
    import random
    from compare_methods import grid_order
    expected = ["v7t/baseline", "v7t/control", "v7t/control/kd", "v7t/l1/2.0x", "v7t/l1/2.0x/kd", "v7t/lamp/2.0x",
                "v7t/pagcp/2.0x", "v7t/pagcp/2.0x/kd", "v7t/sparse/slim", "v7t/slim+sparse/2.0x",
                "v7t/slim+sparse/2.0x/kd", "v7t/sparse/group_reg", "v7t/group_reg+sparse/2.0x",
                "v7t/pagcp/3.0x", "v7t/pagcp/3.0x/kd", "v7t/group_reg+sparse/3.0x", "v7t/lamp/3.0x",
                "v7t/pagcp/4.0x"]
    shuffled = expected[:]
    random.Random(0).shuffle(shuffled)
    scores = {"v7t/pagcp/2.0x": 0.6, "v7t/group_reg+sparse/2.0x": 0.5, "v7t/lamp/2.0x": 0.4, "v7t/l1/2.0x": 0.3,
              "v7t/slim+sparse/2.0x": 0.1}  # the ranking that chose the higher speed-ups' methods
    data = {"rows": {k: {"mAP50-95": scores.get(k, 0.2)} for k in shuffled + ["v5n/baseline"]}}
    assert grid_order(data, "v7t") == expected


def test_the_640px_table_has_one_line_per_architecture_named_by_the_methods_that_made_it():
    from compare_methods import latency640_table
    d = data()
    assert latency640_table(d, "v7t") == ""  # before the pass

    def timed(ms, speedup):
        return {"CPU 640 ort bs1 (ms)": ms, "CPU 640 ort bs1 spread": [ms - 1, ms + 2],
                "CPU 640 ort bs1 speed-up": speedup}
    for k in ("v7t/baseline", "v7t/control", "v7t/control/kd", "v7t/sparse/slim"):
        d["rows"][k].update(timed(30.0, "1.0x (1.0-1.0, not significant)"))
    d["rows"]["v7t/l1/2.0x"] = row("v7t l1 2.0x", 0.45, 99_400)
    for k in ("v7t/lamp/2.0x", "v7t/lamp/2.0x/kd", "v7t/l1/2.0x"):  # one architecture, copied cells
        d["rows"][k].update(timed(20.4, "1.47x (1.40-1.52)"))
    lines = latency640_table(d, "v7t").splitlines()
    assert lines[0] == "| row (architecture) | Parameters | onnxruntime bs1 ms | onnxruntime bs1 speed-up |"
    assert lines[1] == "|---|---:|---:|---|"
    assert lines[2:] == ["| baseline | 6.04M | 30 (29-32) |  |",
                         "| l1 2.0x = lamp 2.0x | 99.4K | 20 (19-22) | 1.47x (1.40-1.52) |"]
