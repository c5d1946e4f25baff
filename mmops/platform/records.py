"""Plain records the platform layer hands out: devices, their processes, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Vendor = Literal["ascend", "nvidia"]
MemoryKind = Literal["HBM", "DDR", "VRAM"]


@dataclass(frozen=True)
class DeviceProcess:
    """A process holding device memory. ``name`` is "" when the tool could not name it
    (npu-smi in a container, nvidia-smi's "[Not Found]"); ``memory_mib`` is None when the
    tool says "[N/A]" (MIG, Windows WDDM)."""

    pid: int
    name: str
    memory_mib: int | None


@dataclass(frozen=True)
class Device:
    """One accelerator as the runtime will see it.

    ``index`` is the logical index after ``ASCEND_RT_VISIBLE_DEVICES`` / ``CUDA_VISIBLE_DEVICES``
    (what ``npu:N`` / ``cuda:N`` means to vLLM); ``physical_id`` is the id the host tools use
    (npu-smi NPU id, Phy-ID or Device column; nvidia-smi index). Memory is in MiB: npu-smi's
    "MB" columns are MiB (64 GB HBM shows as 65536).
    """

    vendor: Vendor
    index: int
    physical_id: int | None
    name: str
    memory_total_mib: int
    memory_used_mib: int
    memory_kind: MemoryKind
    health: str | None = None
    processes: tuple[DeviceProcess, ...] = ()
    bf16: bool = True
    uuid: str | None = None
    bus_id: str | None = None
    utilization_pct: int | None = None
    temperature_c: int | None = None
    # Memory the driver holds back from the runtime's total (NVIDIA: total - used - free).
    memory_reserved_mib: int = 0

    @property
    def memory_free_mib(self) -> int:
        return max(self.memory_total_mib - self.memory_used_mib - self.memory_reserved_mib, 0)


@dataclass(frozen=True)
class PlatformReport:
    """What ``detect()`` (or ``simulate()``) found, and how it found it.

    ``looked_at`` is a human list of every source consulted and what it said, in order;
    ``warnings`` are problems the user can act on (missing tool, bad visible-devices value,
    unparseable output). ``visible_env`` holds the device-selection variables that were set.
    """

    devices: tuple[Device, ...]
    looked_at: tuple[str, ...] = ()
    visible_env: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    simulated: bool = False

    @property
    def vendor(self) -> Vendor | None:
        """The vendor of the devices found, or None when there are none."""
        return self.devices[0].vendor if self.devices else None
