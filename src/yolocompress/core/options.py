"""How an option is declared once: a dataclass field whose metadata carries its command-line help.

The library's command functions take dataclasses (`TrainOptions`, `PruneOptions`, ...); the CLI package
generates each flag from the field (name -> `--name-with-dashes`, default, type, help), so an option is written
in one place and its help text and default can never drift from what the library does.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Callable | None = None,
           flag: str | None = None, aliases: tuple = (), choices=None, type: Callable | None = None,
           nargs=None, metavar: str | None = None, cli: bool = True, const: Any = dataclasses.MISSING,
           required: bool = False, action: str | None = None, off_flag: str | None = None,
           off_help: str = "") -> Any:
    """A dataclass field with its CLI metadata.

    `flag` overrides the generated `--field-name`; `aliases` adds more spellings (`--img` for `--imgsz`);
    `choices` may be a callable (evaluated when the parser is built, e.g. the method table's names);
    `type` parses and checks one value (raising `argparse.ArgumentTypeError` with a one-line reason);
    `cli=False` keeps a field out of the command line (set by the library, e.g. `nbs`); `const` gives an
    optional-value flag (`--resume` alone vs `--resume PATH`); `action="append"` a repeatable flag;
    `off_flag` (with `off_help`) makes a `bool | None` field tri-state: the flag sets True, `off_flag` False, neither
    keeps None (e.g. `--global` / `--local`, None = the method's own choice).
    """
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "choices": choices, "type": type,
            "nargs": nargs, "metavar": metavar, "cli": cli, "const": const, "required": required,
            "action": action, "off_flag": off_flag, "off_help": off_help}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- value parsers for `option(type=...)`: ValueError with the line the user should read -------------------
def positive_int(s) -> int:
    v = int(s)
    if v < 1:
        raise ValueError(f"must be a positive integer, got {s}")
    return v


def non_negative_int(s) -> int:
    v = int(s)
    if v < 0:
        raise ValueError(f"must be 0 or more, got {s}")
    return v


def open_ratio(s) -> float:
    v = float(s)
    if not 0.0 < v < 1.0:
        raise ValueError(f"must be between 0 and 1 (exclusive), got {s}")
    return v


def speedup_factor(s) -> float:
    v = float(s)
    if not v > 1.0:
        raise ValueError(f"--speedup must be greater than 1.0 (e.g. 2.0 for twice as fast), got {s}")
    return v


def flat_settings(*options) -> dict:
    """{setting name: value} of the command-line fields of options objects, nested ones flattened; the names are
    the flags' (`--kd-logit` -> `kd_logit`), so a settings file reads like the command that made it."""
    out = {}
    for opts in options:
        for f in dataclasses.fields(opts):
            value = getattr(opts, f.name)
            if not f.metadata.get("cli", False):
                continue
            if dataclasses.is_dataclass(value):
                out.update(flat_settings(value))
                continue
            flag = f.metadata.get("flag")
            out[flag.lstrip("-").replace("-", "_") if flag else f.name] = value
    return out


# ---- options several commands share: declared once, so they read the same everywhere -----------------------
def data_option(required: bool = True):
    return option("", "dataset yaml (YOLO format: path, train, val, names)" + ("" if required else
                  "; required, except with --resume (the run's own is used)"), required=required, metavar="DATA.yaml")


def imgsz_option(default: int = 640):
    return option(default, "image size in pixels (rounded up to a multiple of the model stride)", aliases=("--img",),
                  type=positive_int)


def batch_option(default: int):
    return option(default, "images per batch", type=positive_int)


def device_option(default: str = ""):
    return option(default, "cpu, a CUDA index (0) or a list (0,1); empty: the first GPU if any, else cpu")


def worker_count(s) -> int:
    v = int(s)
    if v < 0:
        raise ValueError(f"--workers must be >= 0, got {s}")
    return v


def workers_option():
    return option(8, "data-loader worker processes (0: load in the main process)", type=worker_count)


def modules_option():
    return option(help="a Python file that registers your own modules with @register_module (repeatable)",
                  default_factory=list, action="append", metavar="FILE.py")


def project_option(default: str):
    return option(default, "folder of the run folders")


def name_option():
    return option("exp", "run folder name (exp, exp2, ... unless --exist-ok)")


def exist_ok_option():
    return option(False, "reuse the run folder --project/--name instead of making exp2, exp3, ...")
