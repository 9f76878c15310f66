"""Device selection with a clear answer when the requested device does not exist."""
from __future__ import annotations

import torch

from .errors import ConfigError


def select_device(device=None) -> torch.device:
    """'' or None -> first CUDA device if any else CPU; 'cpu'; '0' / 'cuda:0'; '0,1' -> the first of them."""
    if isinstance(device, torch.device):
        return device
    spec = str(device or "").strip().lower().replace("cuda:", "")
    if spec in ("", "auto"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    ids = [s for s in spec.split(",") if s]
    if not all(s.isdigit() for s in ids):
        raise ConfigError(f"--device {device!r}: expected 'cpu', a CUDA index like '0', or a list like '0,1'")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = [s for s in ids if int(s) >= n]
    if missing:
        raise ConfigError(f"--device {device!r}: CUDA device {', '.join(missing)} not found "
                          f"({n} CUDA device(s) visible); use --device cpu")
    return torch.device(f"cuda:{ids[0]}")
