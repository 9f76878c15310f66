"""Shared by the reliability tests: a tiny dataset copied per case, a tiny model yaml, and a CLI runner that
returns (exit code, stderr) for both our errors and argparse's."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from yolocompress.cli import main

from ..conftest import tiny_config

IMGSZ = 64
FAST = ["--imgsz", str(IMGSZ), "--batch-size", "4", "--device", "cpu", "--workers", "0"]


def copy_dataset(src_yaml, dst: Path) -> Path:
    """A private copy of a dataset (its yaml pointing at the copy), safe to corrupt."""
    src = Path(src_yaml).parent
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.cache"))
    d = yaml.safe_load((src / "data.yaml").read_text())
    d["path"] = str(dst)
    (dst / "data.yaml").write_text(yaml.safe_dump(d))
    return dst / "data.yaml"


def make_inputs(tmp_path_factory, name: str, seed: int) -> dict:
    """What a module's cases start from: a tiny 10-class dataset (8 train / 4 val images at IMGSZ), a tiny model
    yaml, and a checkpoint of that model with fixed initial weights."""
    import torch

    from yolocompress.data.demo import make_demo_dataset
    from yolocompress.models.builder import Model
    from yolocompress.models.checkpoint import save_checkpoint
    root = tmp_path_factory.mktemp(name)
    data = make_demo_dataset(root / "data", n_train=8, n_val=4, imgsz=IMGSZ, seed=seed)
    torch.manual_seed(0)
    weights = save_checkpoint(root / "tiny.pt", Model(tiny_config(nc=10)))
    return {"root": root, "data": data, "cfg": write_cfg(root / "tiny.yaml"), "weights": weights}


def write_cfg(path: Path, nc: int = 10, **changes) -> str:
    cfg = tiny_config(nc=nc)
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def run_cli(capsys, argv) -> tuple[int, str]:
    """Run `yolocompress ARGV` in-process; returns (exit code, stderr)."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage + one `error:` line, exit 2
        rc = e.code
    return rc, capsys.readouterr().err


def assert_one_line_error(rc, err, pattern=None):
    """Exit 2, exactly one `error: ...` line on stderr, no traceback, and it names what/where."""
    import re
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^(yolocompress \w[\w-]*: )?error: ", ln)]
    assert len(errors) == 1, err
    if pattern:
        assert re.search(pattern, errors[0]), errors[0]
    return errors[0]
