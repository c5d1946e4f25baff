"""nvidia-smi CSV parsing, failure texts and CUDA_VISIBLE_DEVICES, on recorded real outputs.

Each fixture's origin is in tests/fixtures/nvidia-smi/<name>.source.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.platform.nvidia import (
    explain_failure,
    parse_compute_apps,
    parse_cuda_visible,
    parse_query_gpu,
    rows_to_devices,
)
from mmops.platform.records import DeviceProcess

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


H200_UUIDS = [
    "GPU-a44622e3-2296-6285-0a86-84d0f6c67900",
    "GPU-4f31bb83-f8dc-d0af-029e-bc4356e6afeb",
    "GPU-4e9e74b7-4977-f04d-3af3-ccfe5f570e90",
    "GPU-02dbe542-8a6f-11a4-7c2a-486b7d4e9092",
    "GPU-cb449822-5571-be90-8303-e7558da3ea66",
    "GPU-8e137fa6-c3d9-6980-7733-0d8df296756e",
    "GPU-d9337494-6060-1440-039f-4654245b5764",
    "GPU-28780eb0-24d5-1f13-59b8-ae5c23617a72",
]


def test_h100_capture_with_units_and_212_columns():
    rows, problems = parse_query_gpu(fixture("h100-load.query-gpu.csv"))
    assert problems == []
    assert len(rows) == 1
    row = rows[0]
    assert (row.index, row.name) == (0, "NVIDIA H100 80GB HBM3")
    assert (row.memory_total_mib, row.memory_used_mib) == (81559, 19818)
    assert (row.utilization_pct, row.temperature_c) == (100, 59)
    procs, problems = parse_compute_apps(fixture("h100-load.compute-apps.csv"))
    assert problems == []
    assert procs == {
        "GPU-00000000-0000-0000-0000-000000000000": [
            DeviceProcess(11327, "/root/tools/memhog", 2566),
            DeviceProcess(11328, "/root/tools/memhog", 1542),
            DeviceProcess(11345, "./gpu_burn", 15690),
        ]
    }
    (device,) = rows_to_devices(rows, procs)
    assert device.vendor == "nvidia" and device.memory_kind == "VRAM" and device.bf16
    # total - used - free = 478 MiB the driver keeps: outside CUDA's total, so not free either.
    assert device.memory_reserved_mib == 478
    assert device.memory_free_mib == 81559 - 19818 - 478
    assert sum(p.memory_mib or 0 for p in device.processes) == 19798


def test_mig_capture_reports_na_utilization():
    rows, problems = parse_query_gpu(fixture("h100-mig-load.query-gpu.csv"))
    assert problems == []
    assert rows[0].utilization_pct is None  # "[N/A]" under MIG
    assert (rows[0].memory_total_mib, rows[0].memory_used_mib) == (81559, 11125)
    procs, _ = parse_compute_apps(fixture("h100-mig-load.compute-apps.csv"))
    assert [p.pid for p in procs["GPU-00000000-0000-0000-0000-000000000000"]] == [
        21180, 21181, 21198,
    ]  # fmt: skip


def test_eight_h200_other_field_set_and_not_found_process():
    rows, problems = parse_query_gpu(fixture("h200x8-busy.query-gpu.csv"))
    assert problems == []
    assert [r.index for r in rows] == list(range(8))
    assert [r.uuid for r in rows] == H200_UUIDS
    assert {r.memory_total_mib for r in rows} == {143771}
    assert [r.memory_used_mib for r in rows] == [
        130013, 130053, 105851, 129993, 106091, 105851, 106139, 58071,
    ]  # fmt: skip
    assert [r.name for r in rows] == [""] * 8  # this query did not ask for the name
    procs, _ = parse_compute_apps(fixture("h200x8-busy.compute-apps.csv"))
    assert sorted(procs) == sorted(H200_UUIDS)
    # "[Not Found]": a process in another PID namespace; nvidia-smi cannot name it.
    assert procs[H200_UUIDS[7]] == [DeviceProcess(1758887, "", 58060)]
    devices = rows_to_devices(rows, procs)
    assert [d.processes[0].pid for d in devices[:3]] == [1328667, 1328668, 1425258]


def test_headerless_nounits_rows_follow_query_order():
    text = "0, GPU-a, NVIDIA A10, 23028, 512, 22516, [Not Supported], 41\n"
    rows, problems = parse_query_gpu(text)
    assert problems == []
    assert (rows[0].name, rows[0].memory_used_mib, rows[0].utilization_pct) == (
        "NVIDIA A10",
        512,
        None,
    )


def test_used_is_derived_from_free_when_missing():
    text = "index, memory.total [MiB], memory.free [MiB]\n0, 81559, 1559\n"
    rows, _ = parse_query_gpu(text)
    assert rows[0].memory_used_mib == 80000


@pytest.mark.parametrize(
    "name",
    ["driver-failure.txt", "nvml-mismatch.txt", "no-devices.txt"],
)
def test_failure_texts_are_not_csv_and_are_explained(name):
    text = fixture(name)
    rows, problems = parse_query_gpu(text)
    assert rows == [] and problems and "not --query-gpu CSV" in problems[0]
    assert explain_failure(text) is not None


def test_failure_meanings():
    assert "not loaded" in explain_failure(fixture("driver-failure.txt"))
    assert "reload the driver" in explain_failure(fixture("nvml-mismatch.txt"))
    assert "sees no GPU" in explain_failure(fixture("no-devices.txt"))
    assert explain_failure("something else") is None


@pytest.mark.parametrize(
    "text",
    ["", "index, name, memory.total [MiB]\n", "0, GPU-x\n", ",,,\n", "\x00\xff"],
)
def test_garbage_and_empty_never_raise(text):
    rows, problems = parse_query_gpu(text)
    assert rows == []


def test_row_with_wrong_column_count_is_reported():
    text = fixture("h200x8-busy.query-gpu.csv") + "8, GPU-extra\n"
    rows, problems = parse_query_gpu(text)
    assert len(rows) == 8 and problems == ["1 row(s) with the wrong number of columns"]


@pytest.fixture
def h200_rows():
    return parse_query_gpu(fixture("h200x8-busy.query-gpu.csv"))[0]


def test_cuda_visible_indices_reorder(h200_rows):
    chosen, warnings = parse_cuda_visible("3,1", h200_rows)
    assert [r.index for r in chosen] == [3, 1] and warnings == []


def test_cuda_visible_uuid_prefix(h200_rows):
    chosen, warnings = parse_cuda_visible("GPU-28780eb0,GPU-a44622e3", h200_rows)
    assert [r.index for r in chosen] == [7, 0] and warnings == []


def test_cuda_visible_invalid_entry_ends_the_list(h200_rows):
    chosen, warnings = parse_cuda_visible("2,9,3", h200_rows)
    assert [r.index for r in chosen] == [2]
    assert "'9' is not a GPU index (0..7)" in warnings[0]
    chosen, warnings = parse_cuda_visible("2,abc,3", h200_rows)
    assert [r.index for r in chosen] == [2] and "is not a number" in warnings[0]
    chosen, warnings = parse_cuda_visible("GPU-ffff", h200_rows)
    assert chosen == [] and "matches no GPU" in warnings[0]


def test_cuda_visible_empty_repeat_and_mig(h200_rows):
    assert parse_cuda_visible("", h200_rows)[0] == []
    chosen, warnings = parse_cuda_visible("0,0", h200_rows)
    assert chosen == [] and "repeats" in warnings[0]
    chosen, warnings = parse_cuda_visible("MIG-4a1b", h200_rows)
    assert chosen is None and "MIG" in warnings[0]


def test_bf16_by_architecture():
    text = (
        "index, name, memory.total [MiB]\n0, Tesla V100-SXM2-32GB, 32768 MiB\n"
        "1, Tesla T4, 15360 MiB\n2, NVIDIA GeForce RTX 2080 SUPER, 8192 MiB\n"
        "3, NVIDIA L40S, 46068 MiB\n"
    )
    devices = rows_to_devices(parse_query_gpu(text)[0], {})
    assert [d.bf16 for d in devices] == [False, False, False, True]


def test_recorded_h200_idle_and_busy_keep_the_driver_reserve_out():
    """Recorded on a real H200 (h200-idle.source.md): torch's OOM text on that card said
    "total capacity of 139.80 GiB" (143155 MiB); used + free from nvidia-smi gives 143156."""
    rows, problems = parse_query_gpu(fixture("h200-idle.query-gpu.csv"))
    procs, app_problems = parse_compute_apps(fixture("h200-idle.compute-apps.csv"))
    assert problems == [] and app_problems == [] and procs == {}
    (idle,) = rows_to_devices(rows, procs)
    assert (idle.name, idle.memory_total_mib, idle.memory_reserved_mib) == ("NVIDIA H200", 143771, 615)
    assert abs((idle.memory_total_mib - idle.memory_reserved_mib) - 139.80 * 1024) < 1
    rows, _ = parse_query_gpu(fixture("h200-busy.query-gpu.csv"))
    procs, _ = parse_compute_apps(fixture("h200-busy.compute-apps.csv"))
    (busy,) = rows_to_devices(rows, procs)
    assert busy.memory_free_mib == 40138  # nvidia-smi's own free column
    assert busy.processes == (DeviceProcess(520, "python3", 103010),)
