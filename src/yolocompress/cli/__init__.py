"""The command line: the only place that knows argparse.

Flags (generated from the options dataclasses, see flags.py) -> typed options -> one library call per command
(commands.py) -> print, exit. Every user error surfaces as one line `error: ...` and exit code 2; `--verbose`
shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import metadata

from ..core.errors import YoloCompressError
from .commands import COMMANDS, Command
from .flags import HelpFormatter

LOGGER = logging.getLogger("yolocompress")
DESCRIPTION = ("Make YOLOv5 and YOLOv7 detectors smaller and faster: structured pruning (ten Torch-Pruning methods "
               "and PAGCP), sparse training and knowledge distillation, on the official architectures and "
               "checkpoints. Each command writes a run folder under runs/<command>/; `yolocompress COMMAND -h` "
               "explains its flags.")


def _version() -> str:
    try:
        return metadata.version("yolocompress")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_common(p) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--verbose", action="store_true", help="show full tracebacks and debug logs")
    g.add_argument("--json", action="store_true", help="end stdout with one JSON object (for scripts)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="yolocompress", description=DESCRIPTION, formatter_class=HelpFormatter)
    ap.add_argument("--version", action="version", version=f"yolocompress {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help[0].upper() + cmd.help[1:] + ".",
                           formatter_class=HelpFormatter)
        cmd.add(p)
        _add_common(p)
        p.set_defaults(command_row=cmd)
    return ap


def parse_command(argv) -> tuple[Command, dict, argparse.Namespace]:
    """(the command, the keyword arguments of its library call, the parsed flags) for `argv`."""
    args = build_parser().parse_args(argv)
    cmd: Command = args.command_row
    return cmd, cmd.build(args), args


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    cmd: Command = args.command_row
    try:
        result = cmd.run(**cmd.build(args))
    except YoloCompressError as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result if isinstance(result, dict) else {"result": result}, default=str))
    return 0
