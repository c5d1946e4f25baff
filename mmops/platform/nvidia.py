"""NVIDIA GPUs: parse ``nvidia-smi --query-gpu`` / ``--query-compute-apps`` CSV, apply
``CUDA_VISIBLE_DEVICES``, and name nvidia-smi's own failure messages.

The queries keep the CSV header (``--format=csv,nounits``, no ``noheader``): the parser maps
columns by name, so recorded outputs with other field sets, field orders or units (real
captures often have ``81559 MiB``) parse too. Header-less rows are read in ``QUERY_FIELDS``
order.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from mmops.platform.records import Device, DeviceProcess

QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
)
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,nounits"]
NVIDIA_SMI_APPS = [
    "nvidia-smi",
    "--query-compute-apps=gpu_uuid,pid,process_name,used_memory",
    "--format=csv,nounits",
]

# Architectures before Ampere (compute capability < 8.0) have no bf16.
_NO_BF16 = re.compile(
    r"V100|\bT4\b|P100|P40|\bP4\b|K80|K40|M60|M40|GTX|RTX 20\d\d|TITAN (V|RTX|X)|Quadro RTX"
    r"|Tesla [KMP]",
    re.IGNORECASE,
)
_LEADING_INT = re.compile(r"^\s*(-?\d+)")

# nvidia-smi's own failure texts -> what they mean for the user.
_FAILURES = (
    (
        "couldn't communicate with the NVIDIA driver",
        "the NVIDIA driver is not loaded or not reachable (in a container: run it with "
        "--gpus / the NVIDIA container runtime)",
    ),
    (
        "Driver/library version mismatch",
        "the NVIDIA kernel driver and user-space library versions differ: reload the driver "
        "or reboot",
    ),
    ("No devices were found", "the NVIDIA driver is loaded but sees no GPU"),
    ("NVML Shared Library Not Found", "libnvidia-ml.so is missing: the driver is not installed"),
    ("Insufficient Permissions", "nvidia-smi lacks permission to read the GPUs"),
)


@dataclass(frozen=True)
class GpuRow:
    position: int
    index: int | None
    uuid: str | None
    name: str
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_pct: int | None
    temperature_c: int | None
    memory_free_mib: int | None = None


def _header_key(cell: str) -> str:
    """``memory.total [MiB]`` -> ``memory.total``."""
    return cell.split(" [", 1)[0].strip().lower()


def _number(value: str | None) -> int | None:
    """``81559 MiB`` / ``100 %`` / ``59`` -> int; ``[N/A]``, ``[Not Supported]`` -> None."""
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    return int(match.group(1)) if match else None


def _csv_rows(text: str, default_fields: tuple[str, ...]) -> tuple[list[dict[str, str]], int]:
    """Rows as dicts keyed by field name (header if present, else ``default_fields``), and
    the number of rows whose column count did not fit."""
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if not rows:
        return [], 0
    has_header = not _LEADING_INT.match(rows[0][0]) and not rows[0][0].startswith("GPU-")
    fields = [_header_key(cell) for cell in rows[0]] if has_header else list(default_fields)
    body = rows[1:] if has_header else rows
    good = [row for row in body if len(row) == len(fields)]
    records = [
        {field: value.strip() for field, value in zip(fields, row, strict=True)} for row in good
    ]
    return records, len(body) - len(good)


def parse_query_gpu(text: str) -> tuple[list[GpuRow], list[str]]:
    """Parse ``--query-gpu`` CSV into rows, plus problems (unreadable rows/columns)."""
    problems: list[str] = []
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not _LEADING_INT.match(lines[0]) and "memory.total" not in lines[0]:
        return [], [f"not --query-gpu CSV (first line: {lines[0][:80]!r})"]
    records, misfits = _csv_rows(text, QUERY_FIELDS)
    if misfits:
        problems.append(f"{misfits} row(s) with the wrong number of columns")
    rows = []
    for position, rec in enumerate(records):
        total = _number(rec.get("memory.total"))
        used = _number(rec.get("memory.used"))
        free = _number(rec.get("memory.free"))
        if used is None and total is not None and free is not None:
            used = total - free
        if total is None:
            problems.append(f"GPU row {position} has no memory.total: {rec}")
            continue
        rows.append(
            GpuRow(
                position=position,
                index=_number(rec.get("index")),
                uuid=rec.get("uuid") or None,
                name=rec.get("name", ""),
                memory_total_mib=total,
                memory_used_mib=used,
                utilization_pct=_number(rec.get("utilization.gpu")),
                temperature_c=_number(rec.get("temperature.gpu")),
                memory_free_mib=free,
            )
        )
    return rows, problems


def parse_compute_apps(text: str) -> tuple[dict[str, list[DeviceProcess]], list[str]]:
    """Parse ``--query-compute-apps`` CSV into processes keyed by GPU uuid."""
    records, misfits = _csv_rows(text, ("gpu_uuid", "pid", "process_name", "used_memory"))
    by_uuid: dict[str, list[DeviceProcess]] = {}
    problems = [f"{misfits} process row(s) with the wrong number of columns"] if misfits else []
    for rec in records:
        uuid, pid = rec.get("gpu_uuid"), _number(rec.get("pid"))
        if not uuid or pid is None:
            problems.append(f"process row without gpu_uuid/pid: {rec}")
            continue
        name = rec.get("process_name", "")
        memory = rec.get("used_gpu_memory", rec.get("used_memory"))
        by_uuid.setdefault(uuid, []).append(
            DeviceProcess(
                pid=pid,
                name="" if name.startswith("[") else name,  # "[Not Found]": another namespace
                memory_mib=_number(memory),
            )
        )
    return by_uuid, problems


def explain_failure(output: str) -> str | None:
    """A one-line meaning for a known nvidia-smi failure text, else None."""
    for needle, meaning in _FAILURES:
        if needle.lower() in output.lower():
            return meaning
    return None


def parse_cuda_visible(value: str, gpus: list[GpuRow]) -> tuple[list[GpuRow] | None, list[str]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` selects, in its order, plus warnings.

    Follows the CUDA runtime (and torch's reader): comma-separated indices or ``GPU-`` uuid
    prefixes; an invalid or out-of-range entry ends the list; a repeated entry selects
    nothing. ``MIG-`` uuids cannot be resolved from ``--query-gpu``: returns None (no filter).
    """
    name = "CUDA_VISIBLE_DEVICES"
    entries = [entry.strip() for entry in value.split(",")]
    if value.strip() == "":
        return [], [f"{name} is set but empty: the runtime will see no GPU"]
    if entries[0].startswith("MIG-"):
        return None, [f"{name}={value!r} selects MIG instances; showing their parent GPUs"]
    chosen: list[GpuRow] = []
    warnings: list[str] = []
    by_index = {gpu.index if gpu.index is not None else gpu.position: gpu for gpu in gpus}
    for entry in entries:
        if entry.startswith("GPU-"):
            matches = [gpu for gpu in gpus if gpu.uuid and gpu.uuid.startswith(entry)]
            gpu = matches[0] if len(matches) == 1 else None
            reason = "matches no GPU" if not matches else "matches several GPUs"
        else:
            number = _number(entry)
            gpu = by_index.get(number) if number is not None and number >= 0 else None
            reason = (
                f"is not a GPU index (0..{len(gpus) - 1})"
                if number is not None and number >= 0
                else "is not a number"
            )
        if gpu is None:
            warnings.append(
                f"{name}={value!r}: entry {entry!r} {reason}; CUDA ignores it and every "
                f"entry after it"
            )
            break
        if gpu in chosen:
            warnings.append(f"{name}={value!r} repeats {entry!r}: CUDA then sees no GPU")
            return [], warnings
        chosen.append(gpu)
    return chosen, warnings


def _reserved_mib(row: GpuRow) -> int:
    """What the driver keeps back: memory.total - memory.used - memory.free. CUDA's own total
    (cudaMemGetInfo, the figure vLLM multiplies by --gpu-memory-utilization) leaves it out:
    recorded on an H200, nvidia-smi said 143771 MiB total, 0 used, 143156 free, and torch's OOM
    text said "total capacity of 139.80 GiB" (143155 MiB)."""
    total, used, free = row.memory_total_mib, row.memory_used_mib, row.memory_free_mib
    if total is None or used is None or free is None:
        return 0
    return max(0, total - used - free)


def rows_to_devices(rows: list[GpuRow], processes: dict[str, list[DeviceProcess]]) -> list[Device]:
    """Devices with logical index = position in ``rows`` (already filtered and ordered)."""
    return [
        Device(
            vendor="nvidia",
            index=logical,
            physical_id=row.index if row.index is not None else row.position,
            name=row.name,
            memory_total_mib=row.memory_total_mib or 0,
            memory_used_mib=row.memory_used_mib or 0,
            memory_kind="VRAM",
            health=None,
            processes=tuple(processes.get(row.uuid or "", ())),
            bf16=not _NO_BF16.search(row.name),
            uuid=row.uuid,
            utilization_pct=row.utilization_pct,
            temperature_c=row.temperature_c,
            memory_reserved_mib=_reserved_mib(row),
        )
        for logical, row in enumerate(rows)
    ]
