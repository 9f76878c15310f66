"""The distillation benchmark prints setting (a)'s tables from its results file alone (`--table-only`), so that
docs/benchmarks.md is regenerated from the recorded rows, never retyped."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from distill_bench import a_tables  # noqa: E402


def row(m, seed=0, **extra):
    return {"Model": "m", "mAP50": m + 0.2, "mAP50-95": m, "seed": seed, **extra}


def test_seed0_rows_against_no_teacher_and_the_repeated_rows_with_mean_spread_and_delta():
    rows = {"teacher": row(0.6), "none": row(0.40), "l2": row(0.45, kd_logit_share_last=0.2),
            "l1+mgd": row(0.38, kd_logit_share_last=0.17, kd_feature_share_last=0.16),
            "none@seed1": row(0.20, 1), "none@seed2": row(0.30, 2), "l2@seed1": row(0.47, 1), "l2@seed2": row(0.46, 2)}
    text = a_tables(rows)
    assert "| m | | | 0.8000 | 0.6000 | |" in text  # the teacher, by its model name
    assert "| `l2` | logit | 0.20 | 0.6500 | 0.4500 | +0.0500 |" in text
    assert "| `l1+mgd` | pair | 0.17 + 0.16 | 0.5800 | 0.3800 | -0.0200 |" in text
    assert "| no teacher | 0.4000 | 0.2000 | 0.3000 | 0.3000 | 0.2000-0.4000 | 0.1000 |  |" in text
    assert "| `l2` | 0.4500 | 0.4700 | 0.4600 | 0.4600 | 0.4500-0.4700 | 0.0100 | +0.1600 |" in text


def test_a_row_missing_a_seed_leaves_its_cell_empty_and_no_seeds_means_one_table():
    rows = {"none": row(0.4), "cwd": row(0.42), "none@seed1": row(0.3, 1), "cwd@seed1": row(0.41, 1),
            "none@seed2": row(0.2, 2)}
    text = a_tables(rows)
    assert "| `cwd` | 0.4200 | 0.4100 |  | 0.4150 | 0.4100-0.4200 | 0.0071 | +0.0650 |" in text  # seeds 0-1 only
    assert "seed 0" not in a_tables({"none": row(0.4), "l2": row(0.5)})
