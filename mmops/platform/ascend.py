"""Ascend NPUs: parse ``npu-smi info``, apply the visible-devices variables, count /dev nodes.

``npu-smi info`` prints one row pair per chip. Layouts seen in real output (fixtures in
tests/fixtures/npu-smi/):

- Atlas A2 (910B): second header ``Chip | Bus-Id | AICore(%) Memory-Usage(MB) HBM-Usage(MB)``,
  one chip per NPU, memory in the HBM pair ("3378 / 65536", or "65099/ 65536" when wide).
- Atlas A3 (``Ascend910``): ``Chip  Phy-ID``, two dies per NPU; the Phy-ID is the device id.
- 310P (Atlas 300I Duo): ``Chip    Device``, several chips per card, DDR in Memory-Usage only.
- Atlas 800 training (910A): both a DDR pair and an HBM pair; HBM is the device memory.

Then a process table: ``No running processes found in NPU N`` or rows of
``NPU Chip | Process id | Process name | Process memory(MB) [| Process id in container]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mmops.platform.records import Device, DeviceProcess, MemoryKind

NPU_SMI_INFO = ["npu-smi", "info"]

_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_PAIR = re.compile(r"(\d+)\s*/\s*(\d+)")
_VERSION = re.compile(r"Version:\s*(\S+)")
_DAVINCI = re.compile(r"davinci(\d+)")
# 310P has no bf16; 910A (Atlas 800 9000, shown as 910A / 910ProB) predates it too.
_NO_BF16 = re.compile(r"^(310|910A|910Pro)", re.IGNORECASE)


@dataclass(frozen=True)
class NpuChip:
    """One chip (row pair) of ``npu-smi info``."""

    npu_id: int
    chip: int
    physical_id: int
    name: str
    health: str
    bus_id: str | None
    memory_kind: MemoryKind
    memory_total_mib: int
    memory_used_mib: int


@dataclass(frozen=True)
class NpuSmiInfo:
    """Parsed ``npu-smi info``. ``problems`` lists rows that looked like data but did not parse."""

    version: str | None
    chips: tuple[NpuChip, ...]
    processes: dict[tuple[int, int], tuple[DeviceProcess, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    has_table: bool = False  # the device header was seen (a table with no rows is not garbage)


def parse_npu_smi_info(text: str) -> NpuSmiInfo:
    """Parse the ``npu-smi info`` table. Never raises: odd rows land in ``problems``."""
    version: str | None = None
    chips: list[NpuChip] = []
    processes: dict[tuple[int, int], list[DeviceProcess]] = {}
    problems: list[str] = []
    section: str | None = None
    has_hbm = False
    first: tuple[int, str, str] | None = None  # npu id, name, health of the pending row pair
    has_table = False

    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        head = cells[0]
        if head.startswith("npu-smi"):
            match = _VERSION.search(line)
            version = match.group(1) if match else None
        elif any("Process id" in cell for cell in cells):
            section = "processes"
        elif head.startswith("NPU") and len(cells) >= 3 and cells[1].startswith("Health"):
            section, has_table = "devices", True
        elif head.startswith("Chip") and len(cells) >= 3 and cells[1].startswith("Bus-Id"):
            has_hbm = "HBM-Usage" in cells[2]
        elif section == "devices" and len(cells) >= 3:
            if first is not None and (_BUS_ID.match(cells[1]) or cells[1] in ("NA", "-")):
                chip = _second_row(first, cells, has_hbm)
                if chip is None:
                    problems.append(raw.rstrip())
                else:
                    chips.append(chip)
                first = None
            elif head[:1].isdigit():
                tokens = head.split()
                if len(tokens) >= 2 and tokens[0].isdigit():
                    first = (int(tokens[0]), " ".join(tokens[1:]), cells[1])
                else:
                    problems.append(raw.rstrip())
            else:
                problems.append(raw.rstrip())
        elif section == "processes" and len(cells) >= 4:
            parsed = _process_row(cells)
            if parsed is None:
                problems.append(raw.rstrip())
            else:
                key, proc = parsed
                processes.setdefault(key, []).append(proc)
    return NpuSmiInfo(
        version=version,
        chips=tuple(chips),
        processes={key: tuple(procs) for key, procs in processes.items()},
        problems=tuple(problems),
        has_table=has_table,
    )


def _second_row(first: tuple[int, str, str], cells: list[str], has_hbm: bool) -> NpuChip | None:
    npu_id, name, health = first
    tokens = cells[0].split()
    if not tokens or not tokens[0].isdigit():
        return None
    chip = int(tokens[0])
    # A3 shows "Chip Phy-ID", 310P "Chip Device": that id is the device (/dev/davinciN).
    physical = int(tokens[1]) if len(tokens) > 1 and tokens[1].isdigit() else npu_id
    pairs = [(int(used), int(total)) for used, total in _PAIR.findall(cells[2])]
    kind: MemoryKind
    if has_hbm and len(pairs) >= 2:
        ddr, hbm = pairs[0], pairs[1]
        (used, total), kind = (hbm, "HBM") if hbm[1] > 0 else (ddr, "DDR")
    elif not has_hbm and len(pairs) == 1:
        (used, total), kind = pairs[0], "DDR"
    else:
        return None
    bus = cells[1] if _BUS_ID.match(cells[1]) else None
    return NpuChip(npu_id, chip, physical, name, health, bus, kind, total, used)


def _process_row(cells: list[str]) -> tuple[tuple[int, int], DeviceProcess] | None:
    tokens = cells[0].split()
    if not tokens or not all(tok.isdigit() for tok in tokens[:2]) or not cells[1].isdigit():
        return None
    key = (int(tokens[0]), int(tokens[1]) if len(tokens) > 1 else 0)
    memory = int(cells[3]) if cells[3].isdigit() else None
    return key, DeviceProcess(pid=int(cells[1]), name=cells[2], memory_mib=memory)


def chips_to_devices(info: NpuSmiInfo) -> list[Device]:
    """Devices in runtime enumeration order (table order), logical index = position."""
    devices = []
    for index, chip in enumerate(info.chips):
        devices.append(
            Device(
                vendor="ascend",
                index=index,
                physical_id=chip.physical_id,
                name=chip.name,
                memory_total_mib=chip.memory_total_mib,
                memory_used_mib=chip.memory_used_mib,
                memory_kind=chip.memory_kind,
                health=chip.health,
                processes=info.processes.get((chip.npu_id, chip.chip), ()),
                bf16=not _NO_BF16.match(chip.name),
                bus_id=chip.bus_id,
            )
        )
    return devices


def parse_rt_visible(value: str, count: int) -> tuple[list[int], list[str]]:
    """Indices ``ASCEND_RT_VISIBLE_DEVICES`` selects among ``count`` devices, and warnings.

    Follows torch_npu's reader: digits and commas only, reading stops at any other character;
    an empty value means no devices. CANN silently drops ids that do not exist (the failure
    surfaces later as ``open device N failed``), and torch_npu needs ascending order.
    """
    name = "ASCEND_RT_VISIBLE_DEVICES"
    warnings: list[str] = []
    prefix = value[: len(value) - len(value.lstrip("0123456789,"))]
    if prefix != value:
        warnings.append(
            f"{name}={value!r}: torch_npu reads only digits and commas and stops at "
            f"{value[len(prefix)]!r}; only {prefix.rstrip(',') or 'nothing'!r} is used"
        )
    ids = [int(tok) for tok in prefix.split(",") if tok]
    if not ids:
        warnings.append(f"{name}={value!r} selects no device: the runtime will see none")
        return [], warnings
    if len(set(ids)) != len(ids):
        warnings.append(f"{name}={value!r} names a device twice")
    if ids != sorted(ids):
        warnings.append(
            f"{name}={value!r} is not in ascending order: torch_npu requires it "
            f"(torch.npu.is_available() returns False otherwise); use "
            f"{','.join(str(i) for i in sorted(set(ids)))}"
        )
    missing = [i for i in ids if i >= count]
    if missing:
        warnings.append(
            f"{name}={value!r} names device {', '.join(map(str, missing))} but only {count} "
            f"exist (0..{count - 1}); CANN drops it and the launch fails later with "
            f"'open device N failed'"
        )
    seen: list[int] = []
    for i in ids:
        if i < count and i not in seen:
            seen.append(i)
    return seen, warnings


def parse_physical_visible(value: str, present: list[int]) -> tuple[list[int] | None, list[str]]:
    """Physical ids ``ASCEND_VISIBLE_DEVICES`` (Ascend docker runtime) mounts, and warnings.

    Accepts ``0,1`` and ranges ``0-3``. Returns None when the value cannot be read, in which
    case no filtering happens.
    """
    name = "ASCEND_VISIBLE_DEVICES"
    ids: list[int] = []
    for token in (tok.strip() for tok in value.split(",")):
        if not token:
            continue
        span = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if span is None:
            return None, [f"{name}={value!r} is not a list of device ids; ignored"]
        low, high = int(span.group(1)), int(span.group(2) or span.group(1))
        ids.extend(range(low, high + 1))
    missing = [i for i in ids if i not in present]
    warnings = []
    if missing:
        warnings.append(
            f"{name}={value!r} names physical device {', '.join(map(str, missing))} which "
            f"npu-smi does not list (present: {', '.join(map(str, present)) or 'none'})"
        )
    return [i for i in present if i in ids], warnings


def count_davinci(dev_root: Path) -> list[int]:
    """Ids of ``/dev/davinciN`` nodes (not davinci_manager), sorted."""
    try:
        names = [entry.name for entry in dev_root.iterdir()]
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_DAVINCI.fullmatch, names) if m)
