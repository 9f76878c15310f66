"""Comparison tables from measured numbers, written as report.md, report.csv and report.json.

Used by `prune`, `compress` and `bench`. Rows are plain dicts: `Model` (a label) and numbers under the
column names below. `compare_rows` adds, for each numeric column, its share of the first row
(`<col> %`) or, for accuracy columns, the difference from it (`<col> delta`). The markdown has the
layout of pruning reports:

| Model | Parameters | GFLOPs | Model Size | mAP50 | mAP50-95 | Inference Time (bs 32) |
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..core.rundir import atomic_write_text

COLUMNS = ("Model", "Parameters", "GFLOPs", "Model Size", "mAP50", "mAP50-95", "Inference Time")
DELTA_PREFIXES = ("mAP", "precision", "recall", "Precision", "Recall")  # accuracy: a difference, not a share
PCT, DELTA = " %", " delta"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(col: str) -> str:
    return "delta" if col.startswith(DELTA_PREFIXES) else "pct"


def compare_rows(rows: list[dict]) -> list[dict]:
    """Copies of `rows` with `<col> %` (share of the first row, in percent) or `<col> delta` added."""
    if not rows:
        return []
    base = rows[0]
    out = []
    for row in rows:
        new = dict(row)
        for col, v in row.items():
            b = base.get(col)
            if col.endswith((PCT, DELTA)) or not (_is_number(v) and _is_number(b)):
                continue
            if _kind(col) == "delta":
                new[col + DELTA] = v - b
            elif b:
                new[col + PCT] = 100.0 * v / b
        out.append(new)
    return out


def format_value(col: str, v) -> str:
    """The value alone, as a table cell prints it (`1.23M`, `12.34 MB`, `0.4567`)."""
    if not _is_number(v):
        return "" if v is None else str(v)
    if col.startswith("Parameters"):
        return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v / 1e3:.1f}K"
    if col.startswith("Model Size"):
        return f"{v:.2f} MB"
    if col.startswith("Inference Time") or col.endswith("(ms)"):
        return f"{v:.2f} ms"
    if col.startswith("GFLOPs"):
        return f"{v:.2f}" if v >= 1 else f"{v:.3g}"
    if _kind(col) == "delta":
        return f"{v:.4f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_cell(row: dict, col: str) -> str:
    """`1.23M (52.1%)` or `0.4567 (-0.0123)`: the value and its comparison with the first row."""
    text = format_value(col, row.get(col))
    if _is_number(row.get(col + PCT)):
        text += f" ({row[col + PCT]:.1f}%)"
    elif _is_number(row.get(col + DELTA)):
        text += f" ({row[col + DELTA]:+.4f})"
    return text


def table_columns(rows: list[dict]) -> list[str]:
    """Columns in the usual order first, then any others, without the derived comparison columns."""
    seen: list[str] = []
    for row in rows:
        seen += [k for k in row if k not in seen and not k.endswith((PCT, DELTA))]
    known = [c for prefix in COLUMNS for c in seen if c == prefix or c.startswith(prefix + " (")]
    return known + [c for c in seen if c not in known]


def markdown_table(rows: list[dict], columns: list[str] | None = None, right_aligned=()) -> str:
    """`right_aligned`: columns whose cells line up on the right (numbers without comparisons, as in the docs)."""
    columns = columns or table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---:" if c in right_aligned else "---"
                                                                 for c in columns) + "|"]
    lines += ["| " + " | ".join(format_cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _csv_text(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_report(rows: list[dict], out_dir, stem: str = "report", title: str = "Report", *, notes=(),
                 sections=(), extra: dict | None = None) -> dict[str, Path]:
    """Write `<stem>.md`, `<stem>.csv` and `<stem>.json` in `out_dir`; returns their paths.

    rows: measured rows, the first is the baseline (compared with `compare_rows` here).
    notes: lines printed under the table in the markdown.
    sections: (heading, rows) pairs for further markdown tables (e.g. channels per layer).
    extra: more keys for the JSON file (sections go there under their heading too).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    compared = compare_rows(rows)
    md = [f"# {title}", "", markdown_table(compared)]
    if notes:
        md += [""] + [f"- {n}" for n in notes]
    for heading, sec_rows in sections:
        md += ["", f"## {heading}", "", markdown_table(sec_rows) if sec_rows else "(none)"]
    paths = {k: out_dir / f"{stem}.{k}" for k in ("md", "csv", "json")}
    atomic_write_text(paths["md"], "\n".join(md) + "\n")
    atomic_write_text(paths["csv"], _csv_text(compared))
    payload = {"title": title, "rows": compared, "notes": list(notes),
               **{heading: list(sec_rows) for heading, sec_rows in sections}, **(extra or {})}
    atomic_write_text(paths["json"], json.dumps(payload, indent=2, default=str) + "\n")
    return paths
