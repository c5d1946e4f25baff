"""The allocator setting of a launch: PYTORCH_NPU_ALLOC_CONF / PYTORCH_CUDA_ALLOC_CONF.

Both are comma-separated ``key:value`` pairs (``expandable_segments:True,max_split_size_mb:256``).
This is the one reader and merger of them: doctor checks them, the plan shows them, and a
remedy (``env_merge``) changes one key while keeping the user's others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

NPU_VAR = "PYTORCH_NPU_ALLOC_CONF"
CUDA_VAR = "PYTORCH_CUDA_ALLOC_CONF"
ALLOC_VARS = (NPU_VAR, CUDA_VAR)
# vllm-ascend sets PYTORCH_NPU_ALLOC_CONF=expandable_segments:True itself from v0.14.0rc1 when
# the variable is unset (vllm-project/vllm-ascend#5855, vllm_ascend/platform.py).
ASCEND_EXPANDABLE_DEFAULT_SINCE = "0.14.0rc1"
NPU_UNSET_NOTE = (
    f"{NPU_VAR} unset: vllm-ascend >= {ASCEND_EXPANDABLE_DEFAULT_SINCE} turns "
    "expandable_segments:True on by itself"
)


def parse_alloc_conf(text: str | None) -> dict[str, str]:
    """``key:value`` pairs in order, blanks stripped; a bare ``key`` (no colon) maps to ``""``."""
    pairs: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            key, _, value = part.partition(":")
            pairs[key.strip()] = value.strip()
    return pairs


def format_alloc_conf(pairs: dict[str, str]) -> str:
    """The conf string of ``pairs`` (a bare key stays bare)."""
    return ",".join(f"{k}:{v}" if v else k for k, v in pairs.items())


def merge_alloc_conf(current: str | None, update: str) -> str:
    """Merge ``key:val`` pairs of ``update`` into a comma-separated allocator conf, keeping others.

    >>> merge_alloc_conf("max_split_size_mb:256,expandable_segments:True", "expandable_segments:False")
    'max_split_size_mb:256,expandable_segments:False'
    """
    return format_alloc_conf({**parse_alloc_conf(current), **parse_alloc_conf(update)})


def allocator_mode(
    env: Mapping[str, str], parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Allocator settings the child will see (delta first, then inherited)."""
    base = os.environ if parent is None else parent
    out = {}
    for var in ALLOC_VARS:
        value = env.get(var, base.get(var))
        if value is not None:
            out[var] = value
    return out
