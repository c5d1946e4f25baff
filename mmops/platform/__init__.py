"""Platform layer: which accelerators exist, their memory and processes, as plain records.

One backend per vendor (``ascend``, ``nvidia``), each fed by an injectable command runner so
recorded real outputs drive the tests. Importing this package starts no process and imports
nothing heavy: ``mmops doctor`` calls ``detect()`` on its fast path. The spec table (offline
planning) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmops.platform.detect import detect
from mmops.platform.records import Device, DeviceProcess, PlatformReport
from mmops.platform.runner import (
    CommandResult,
    CommandRunner,
    Recording,
    ReplayRunner,
    system_runner,
)

if TYPE_CHECKING:
    from mmops.platform.specs import AcceleratorSpec, known_accelerators, match_spec, simulate

_SPECS_NAMES = {"AcceleratorSpec", "known_accelerators", "match_spec", "simulate"}

__all__ = [
    "AcceleratorSpec",
    "CommandResult",
    "CommandRunner",
    "Device",
    "DeviceProcess",
    "PlatformReport",
    "Recording",
    "ReplayRunner",
    "detect",
    "known_accelerators",
    "match_spec",
    "simulate",
    "system_runner",
]


def __getattr__(name: str) -> Any:
    if name in _SPECS_NAMES:
        from mmops.platform import specs

        return getattr(specs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
