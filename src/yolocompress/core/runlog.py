"""A run's log file: what the console shows, and the detail it does not (one line per pruning step), in
`<run folder>/<name>.log`, so that a long console stays readable and nothing is lost."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

DETAIL = "yolocompress.detail"  # records for the log file only (a progress bar stands for them on the console)


def detail_logger() -> logging.Logger:
    log = logging.getLogger(DETAIL)
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


@contextlib.contextmanager
def log_file(path):
    """While inside, the yolocompress log and the detail log are also appended to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    loggers = [logging.getLogger("yolocompress"), detail_logger()]
    for log in loggers:
        log.addHandler(handler)
    try:
        yield path
    finally:
        for log in loggers:
            log.removeHandler(handler)
        handler.close()
