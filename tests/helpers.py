"""Helpers shared by fast-tier tests (import as `from helpers import ...`)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def write_sparse_weights(dest: Path, total_bytes: int, dtype: str = "BF16") -> Path:
    """A real safetensors file whose one tensor has ``total_bytes`` of data, stored sparse.

    Lets memory tests size a 7B or 72B model from a real header without writing gigabytes.
    """
    elems = total_bytes // 2
    header = {
        "model.embed_tokens.weight": {
            "dtype": dtype,
            "shape": [elems],
            "data_offsets": [0, elems * 2],
        }
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = dest / "model.safetensors"
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        fh.truncate(8 + len(raw) + elems * 2)
    for stale in dest.glob("model-*.safetensors"):
        stale.unlink()
    idx = dest / "model.safetensors.index.json"
    if idx.exists():
        idx.unlink()
    return path
