"""What `--resume` needs to know about a run: which command made it, with which options, whether it finished.

Commands that train (`train`, `sparse`) keep it in every checkpoint's meta (`run`, `finished`, `options`);
commands made of several steps (`prune`, `compress`) in `run.json` of their run folder. Options are stored as
`dataclasses.asdict` of each options object and rebuilt with `restore`, so a resumed run gets every option of
the interrupted one (distillation, sparsity, pruning) without the user repeating a flag.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

from .errors import CheckpointError
from .rundir import atomic_write_text

RECORD = "run.json"
# options a resumed run may take anew from the command line: where it runs, not what it computes
RUNTIME_FIELDS = ("device", "workers")


def options_record(**options) -> dict:
    """{name: asdict(options) or None} of options objects, for a checkpoint's meta or run.json."""
    return {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else None) for k, v in options.items()}


def restore(cls, saved: dict | None, runtime=None):
    """Rebuild an options dataclass (nested ones too) from `options_record`'s dict; fields unknown to this version
    are dropped, fields added since take their defaults. `runtime` (an options object of the current command
    line) supplies device and workers when it sets them."""
    if saved is None:
        return None
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in saved:
            continue
        value, tp = saved[f.name], hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = restore(tp, value)
        kwargs[f.name] = value
    for name in RUNTIME_FIELDS:
        given = getattr(runtime, name, None)
        if name in kwargs and given not in (None, ""):
            kwargs[name] = given
    return cls(**kwargs)


def write_record(folder, kind: str, finished: bool = False, **fields) -> Path:
    path = Path(folder) / RECORD
    atomic_write_text(path, json.dumps({"run": kind, "finished": finished, **fields}, indent=1, default=str))
    return path


def read_record(folder) -> dict | None:
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CheckpointError(f"{path}: damaged run record (not JSON); resume with the original command and "
                              f"flags, or start a new run") from None
    return data if isinstance(data, dict) else None


def mark_finished(folder) -> None:
    record = read_record(folder)
    if record is not None:
        atomic_write_text(Path(folder) / RECORD, json.dumps({**record, "finished": True}, indent=1, default=str))


def newest_interrupted(project, kind: str) -> Path | None:
    """The most recently started run folder under `project` whose record says `kind` and not finished."""
    folders = [p.parent for p in Path(project).glob(f"*/{RECORD}")]
    for folder in sorted(folders, key=lambda p: (p / RECORD).stat().st_mtime, reverse=True):
        try:
            record = read_record(folder)
        except CheckpointError:
            continue
        if record and record.get("run") == kind and not record.get("finished"):
            return folder
    return None
