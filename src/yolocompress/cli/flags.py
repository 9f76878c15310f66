"""Flags generated from options dataclasses, and options rebuilt from parsed flags.

A field declared with `core.options.option(...)` becomes `--field-name` (or its `flag`), typed from the field's
annotation, with its help text and default shown in `--help`. A field whose type is itself an options dataclass
becomes an argument group of its own (`PruneOptions.pagcp` -> the "PAGCP" group). Nothing here knows any
particular command: `parser.py` says which options each command takes.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

FIELD_SEP = "__"  # argparse destination of a field: <prefix>__<field>, so two options classes never collide


class HelpFormatter(argparse.HelpFormatter):
    """Shows each flag's default after its help (`(default: 16)`), except for switches and empty defaults."""

    def _get_help_string(self, action):
        text = (action.help or "").replace("%", "%%")  # help texts are plain text, never format strings
        default = action.default
        empty = default is None or default is False or default is argparse.SUPPRESS or default in ([], (), "")
        if empty or action.nargs == 0:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def _plain_type(tp):
    """(base type, is a list) of an annotation: `int | None` -> (int, False), `list[int] | None` -> (int, True)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _plain_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return (args[0] if args else str), True
    return tp, False


def is_options(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def add_options(parser: argparse.ArgumentParser, cls, *, prefix: str = "", dest: str | None = None, exclude=(),
                defaults: dict | None = None, title: str | None = None) -> None:
    """Add a flag for every CLI field of `cls` to `parser`, in a group titled by the class docstring's first
    line (or `title`).

    `prefix` is put before generated flag names (`kd-` makes `logit` into `--kd-logit`); `exclude` leaves fields
    out (a command that sets them itself); `defaults` overrides field defaults for this command only (e.g. the
    project folder of each command). A nested options class gets a group of its own.
    """
    dest = dest or cls.__name__
    defaults = defaults or {}
    group = parser.add_argument_group(title or (cls.__doc__ or cls.__name__).splitlines()[0])
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in exclude or not meta.get("cli", False):
            continue
        tp = hints[f.name]
        if is_options(tp):
            add_options(parser, tp, prefix=prefix, dest=f"{dest}{FIELD_SEP}{f.name}", defaults=defaults.get(f.name))
            continue
        _add_flag(group, f, tp, prefix, f"{dest}{FIELD_SEP}{f.name}", defaults.get(f.name, _default(f)))


def _add_flag(parser, f: dataclasses.Field, tp, prefix: str, dest: str, default) -> None:
    meta = f.metadata
    flag = meta.get("flag") or f"--{prefix}{f.name.replace('_', '-')}"
    names = [flag, *meta.get("aliases", ())]
    base, is_list = _plain_type(tp)
    kw: dict[str, Any] = {"help": meta.get("help", ""), "default": default}
    if not flag.startswith("-"):  # a positional argument
        names, kw["metavar"] = [dest], flag
        if default is not None:
            kw["nargs"] = "?"
    else:
        kw["dest"] = dest
        if meta.get("required"):
            kw["required"] = True
    if meta.get("action") == "append":
        kw.update(action="append", type=meta.get("type") or base, metavar=meta.get("metavar") or f.name.upper())
    elif base is bool and not is_list and meta.get("off_flag"):  # tri-state: flag True, off flag False, else None
        kw["action"] = "store_true"
        parser.add_argument(meta["off_flag"], dest=dest, action="store_false", default=default,
                            help=meta.get("off_help", ""))
    elif base is bool and not is_list:
        kw["action"] = argparse.BooleanOptionalAction if default else "store_true"
        if default:
            kw["help"] += " (on by default; --no-... turns it off)"
    else:
        kw["type"] = _checked(meta["type"]) if meta.get("type") else (base if base in (int, float) else None)
        if meta.get("nargs"):
            kw["nargs"] = meta["nargs"]
        elif is_list:
            kw["nargs"] = "+"
        if meta.get("const") is not dataclasses.MISSING:
            kw["nargs"], kw["const"] = "?", meta["const"]
        choices = meta.get("choices")
        if choices is not None:
            kw["choices"] = list(choices() if callable(choices) else choices)
        if meta.get("metavar") or "choices" not in kw:  # choices show themselves: {l1,random,...}
            kw["metavar"] = meta.get("metavar") or ("X" if base is float else "N" if base is int else f.name.upper())
    if kw.get("type") is None:
        kw.pop("type", None)
    parser.add_argument(*names, **kw)


def _checked(parse):
    """argparse shows a type function's own message only for ArgumentTypeError; the library's parsers (in
    core/options.py, which must not know argparse) raise ValueError with the message users should read."""
    def run(s: str):
        try:
            return parse(s)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    run.__name__ = getattr(parse, "__name__", "value")
    return run


def options_from(args: argparse.Namespace, cls, *, dest: str | None = None, **fixed):
    """Rebuild `cls` from the flags `add_options` added (fields left out of the CLI keep their defaults;
    `fixed` sets fields the command decides)."""
    dest = dest or cls.__name__
    values = vars(args)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{dest}{FIELD_SEP}{f.name}"
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif is_options(hints[f.name]) and f.metadata.get("cli", False):
            kwargs[f.name] = options_from(args, hints[f.name], dest=key)
        elif key in values:
            v = values[key]
            kwargs[f.name] = list(v) if isinstance(v, tuple) else v
    return cls(**kwargs)
