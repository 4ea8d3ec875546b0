"""Shared helpers for the reference fixture scripts (CPU, float32, deterministic)."""

import json
import os
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def set_determinism(seed: int = 0) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)


def f32(x) -> float:
    """Shortest decimal that round-trips to the same float32 (at most 9 significant digits).

    Parsing the emitted decimal as f32 in Rust gives back the exact float32 value.
    """
    return float(str(np.float32(x)))


def f32_nested(t: torch.Tensor):
    arr = t.detach().to(torch.float32).cpu().numpy()
    flat = [f32(v) for v in arr.reshape(-1)]
    out = np.array(flat, dtype=object).reshape(arr.shape)
    return out.tolist()


def write_json(path: Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        # Compact inner lists: one line per sequence row keeps the file small but readable.
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
