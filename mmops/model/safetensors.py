"""Read safetensors headers (tensor names, dtypes, shapes) without loading a tensor.

Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
N bytes of JSON, then the raw data. The reference loader refuses headers over 100 MB; so do we,
before reading them, so a corrupt length field can never make us allocate gigabytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100_000_000  # same cap as the safetensors reference implementation

# Bytes per element by safetensors dtype string.
DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F4": 0.5,
}


class HeaderError(ValueError):
    """A safetensors file whose header cannot be trusted; the message says why."""


@dataclass
class ShardInfo:
    path: Path
    tensors: int = 0
    params_by_dtype: dict[str, int] = field(default_factory=dict)
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())


def read_header(path: Path) -> ShardInfo:
    """Parse one shard's header and check every tensor's extent lies inside the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise HeaderError(f"{path.name}: file is {size} bytes, too short for a header")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise HeaderError(
                    f"{path.name}: header length field claims {n:,} bytes "
                    f"(limit {MAX_HEADER_BYTES:,}); the file is corrupt or not safetensors"
                )
            if 8 + n > size:
                raise HeaderError(
                    f"{path.name}: header claims {n:,} bytes but the file has {size - 8:,} after "
                    "the length field; the file is truncated"
                )
            raw = fh.read(n)
    except OSError as exc:
        raise HeaderError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"{path.name}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"{path.name}: header is not a JSON object")

    info = ShardInfo(path=path)
    data_size = size - 8 - n
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = meta["dtype"]
            shape = meta["shape"]
            start, end = meta["data_offsets"]
            # Strings, floats or negatives here crashed the comparisons and products below.
            if not isinstance(dtype, str) or not all(
                type(v) is int and v >= 0 for v in (*shape, start, end)
            ):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise HeaderError(f"{path.name}: tensor {name!r} has a malformed entry") from None
        if end > data_size or start > end:
            raise HeaderError(
                f"{path.name}: tensor {name!r} spans bytes {start}-{end} but the data section "
                f"is {data_size:,} bytes; the file is truncated"
            )
        count = 1
        for dim in shape:
            count *= dim
        info.tensors += 1
        info.params_by_dtype[dtype] = info.params_by_dtype.get(dtype, 0) + count
        info.bytes_by_dtype[dtype] = info.bytes_by_dtype.get(dtype, 0) + (end - start)
    return info
