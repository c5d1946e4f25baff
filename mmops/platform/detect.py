"""``detect()``: what accelerators this host (or container) has, as the runtime will see them.

Asks npu-smi, then nvidia-smi, through an injectable runner; counts /dev/davinciN and
/dev/nvidiaN so a missing tool in a container is told apart from a host with no device;
applies the visible-devices variables the way the runtimes do. Every failure becomes a line
in ``looked_at`` or ``warnings``, never an exception.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from mmops.platform import ascend, nvidia
from mmops.platform.records import Device, PlatformReport
from mmops.platform.runner import CommandResult, CommandRunner, system_runner

VISIBLE_VARS = (
    "ASCEND_RT_VISIBLE_DEVICES",
    "ASCEND_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
)


class _Notes:
    """Collects looked_at lines and warnings in order."""

    def __init__(self) -> None:
        self.looked: list[str] = []
        self.warnings: list[str] = []


def detect(
    runner: CommandRunner = system_runner,
    env: Mapping[str, str] = os.environ,
    dev_root: Path = Path("/dev"),
    timeout: float = 3.0,
) -> PlatformReport:
    """Find accelerators: Ascend first, then NVIDIA. Never raises for what it finds."""
    notes = _Notes()
    visible_env = {name: env[name] for name in VISIBLE_VARS if name in env}
    devices = _detect_ascend(runner, env, dev_root, timeout, notes)
    if devices is None:  # no Ascend device at all: an Ascend host hiding every NPU stays Ascend
        devices = _detect_nvidia(runner, env, dev_root, timeout, notes)
    return PlatformReport(
        devices=tuple(devices),
        looked_at=tuple(notes.looked),
        visible_env=visible_env,
        warnings=tuple(notes.warnings),
    )


def _describe(result: CommandResult) -> str:
    if result.error:
        return result.error
    first = next((line.strip() for line in result.output.splitlines() if line.strip()), "")
    return f"exit {result.returncode}: {first[:200]}" if first else f"exit {result.returncode}"


def _detect_ascend(
    runner: CommandRunner,
    env: Mapping[str, str],
    dev_root: Path,
    timeout: float,
    notes: _Notes,
) -> list[Device] | None:
    """Visible Ascend devices, or None when npu-smi lists none."""
    nodes = ascend.count_davinci(dev_root)
    notes.looked.append(f"{dev_root}/davinci*: {len(nodes)} node{'s' if len(nodes) != 1 else ''}")
    result = runner(list(ascend.NPU_SMI_INFO), timeout)
    command = " ".join(ascend.NPU_SMI_INFO)
    if not result.ok:
        notes.looked.append(f"{command}: {_describe(result)}")
        if result.error == "not found" and nodes:
            notes.warnings.append(
                f"npu-smi is not on PATH but {dev_root} has {len(nodes)} davinci device "
                f"node(s): in a container, mount /usr/local/bin/npu-smi, /usr/local/dcmi and "
                f"/usr/local/Ascend/driver (lib64, version.info) from the host"
            )
        elif result.error != "not found":
            notes.warnings.append(f"{command} failed ({_describe(result)})")
        return None
    info = ascend.parse_npu_smi_info(result.stdout)
    if not info.chips:
        notes.looked.append(f"{command}: no NPU rows in the output")
        if result.stdout.strip() and not info.has_table:
            first = result.stdout.strip().splitlines()[0][:120]
            notes.warnings.append(f"{command}: output not understood (first line: {first!r})")
        return None
    notes.looked.append(
        f"{command}: {len(info.chips)} chip(s) "
        f"({', '.join(sorted({c.name for c in info.chips}))}), npu-smi {info.version or '?'}"
    )
    for problem in info.problems:
        notes.warnings.append(f"{command}: skipped a row it could not read: {problem.strip()!r}")
    devices = ascend.chips_to_devices(info)
    if nodes and len(nodes) != len({d.physical_id for d in devices}):
        notes.looked.append(
            f"npu-smi lists {len(devices)} chip(s) but {dev_root} has {len(nodes)} davinci node(s)"
        )
    return _apply_ascend_visibility(devices, env, notes)


def _apply_ascend_visibility(
    devices: list[Device], env: Mapping[str, str], notes: _Notes
) -> list[Device]:
    if "ASCEND_VISIBLE_DEVICES" in env:
        value = env["ASCEND_VISIBLE_DEVICES"]
        present = [d.physical_id for d in devices if d.physical_id is not None]
        keep, warnings = ascend.parse_physical_visible(value, present)
        notes.looked.append(f"ASCEND_VISIBLE_DEVICES={value}")
        notes.warnings.extend(warnings)
        if keep is not None:
            devices = [d for d in devices if d.physical_id in keep]
    if "ASCEND_RT_VISIBLE_DEVICES" in env:
        value = env["ASCEND_RT_VISIBLE_DEVICES"]
        chosen, warnings = ascend.parse_rt_visible(value, len(devices))
        notes.looked.append(f"ASCEND_RT_VISIBLE_DEVICES={value}")
        notes.warnings.extend(warnings)
        devices = [devices[i] for i in chosen]
    for device in devices:
        if device.health not in (None, "OK"):
            notes.warnings.append(
                f"NPU {device.physical_id} ({device.name}) reports health {device.health} in "
                f"npu-smi: check `npu-smi info -t health -i <NPU id>` before launching on it"
            )
    return [_renumber(device, logical) for logical, device in enumerate(devices)]


def _renumber(device: Device, index: int) -> Device:
    return device if device.index == index else dataclasses.replace(device, index=index)


_NVIDIA_NODE = re.compile(r"nvidia\d+")


def _detect_nvidia(
    runner: CommandRunner,
    env: Mapping[str, str],
    dev_root: Path,
    timeout: float,
    notes: _Notes,
) -> list[Device]:
    try:
        nodes = [e.name for e in dev_root.iterdir() if _NVIDIA_NODE.fullmatch(e.name)]
    except OSError:
        nodes = []
    result = runner(list(nvidia.NVIDIA_SMI_QUERY), timeout)
    if not result.ok:
        notes.looked.append(f"nvidia-smi: {_describe(result)}")
        if result.error == "not found":
            if nodes:
                notes.warnings.append(
                    f"nvidia-smi is not on PATH but {dev_root} has {len(nodes)} nvidia device "
                    f"node(s): install the driver utilities or use the NVIDIA container runtime"
                )
        else:
            meaning = nvidia.explain_failure(result.output)
            detail = _describe(result)
            notes.warnings.append(
                f"nvidia-smi failed: {meaning} ({detail})" if meaning else f"nvidia-smi {detail}"
            )
        return []
    rows, problems = nvidia.parse_query_gpu(result.stdout)
    for problem in problems:
        notes.warnings.append(f"nvidia-smi --query-gpu: {problem}")
    names = ", ".join(sorted({r.name for r in rows if r.name}))
    notes.looked.append(
        f"nvidia-smi --query-gpu: {len(rows)} GPU(s)" + (f" ({names})" if names else "")
    )
    if not rows:
        return []
    processes: dict[str, list] = {}
    apps = runner(list(nvidia.NVIDIA_SMI_APPS), timeout)
    if apps.ok:
        processes, app_problems = nvidia.parse_compute_apps(apps.stdout)
        notes.warnings.extend(f"nvidia-smi --query-compute-apps: {p}" for p in app_problems)
        count = sum(len(procs) for procs in processes.values())
        notes.looked.append(f"nvidia-smi --query-compute-apps: {count} process(es)")
    else:
        notes.looked.append(f"nvidia-smi --query-compute-apps: {_describe(apps)}")
    if "CUDA_VISIBLE_DEVICES" in env:
        value = env["CUDA_VISIBLE_DEVICES"]
        notes.looked.append(f"CUDA_VISIBLE_DEVICES={value}")
        chosen, warnings = nvidia.parse_cuda_visible(value, rows)
        notes.warnings.extend(warnings)
        if chosen is not None:
            if len({r.name for r in rows}) > 1 and env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
                notes.warnings.append(
                    "GPUs of different models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA "
                    "numbers the fastest GPU first, so its indices may differ from nvidia-smi's"
                )
            rows = chosen
    return nvidia.rows_to_devices(rows, processes)
