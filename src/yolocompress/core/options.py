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
           required: bool = False) -> Any:
    """A dataclass field with its CLI metadata.

    `flag` overrides the generated `--field-name`; `aliases` adds more spellings (`--img` for `--imgsz`);
    `choices` may be a callable (evaluated when the parser is built, e.g. the method table's names);
    `type` parses and checks one value (raising `argparse.ArgumentTypeError` with a one-line reason);
    `cli=False` keeps a field out of the command line (set by the library, e.g. `nbs`); `const` gives an
    optional-value flag (`--resume` alone vs `--resume PATH`).
    """
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "choices": choices, "type": type,
            "nargs": nargs, "metavar": metavar, "cli": cli, "const": const, "required": required}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
