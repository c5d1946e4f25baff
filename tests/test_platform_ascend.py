"""npu-smi parsing and Ascend visible-device rules, on recorded real `npu-smi info` tables.

Each fixture's origin is in tests/fixtures/npu-smi/<name>.source.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.platform.ascend import (
    chips_to_devices,
    count_davinci,
    parse_npu_smi_info,
    parse_physical_visible,
    parse_rt_visible,
)
from mmops.platform.records import DeviceProcess

FIXTURES = Path(__file__).parent / "fixtures" / "npu-smi"


def table(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_910b3_idle_eight_chips():
    info = parse_npu_smi_info(table("910b3-x8-idle.txt"))
    assert info.version == "25.2.0"
    assert info.problems == ()
    assert [c.npu_id for c in info.chips] == list(range(8))
    assert {c.name for c in info.chips} == {"910B3"}
    assert [c.memory_used_mib for c in info.chips] == [3378] * 8
    assert [c.memory_total_mib for c in info.chips] == [65536] * 8
    assert {c.memory_kind for c in info.chips} == {"HBM"}
    assert [c.bus_id for c in info.chips] == [
        "0000:C1:00.0", "0000:C2:00.0", "0000:81:00.0", "0000:82:00.0",
        "0000:01:00.0", "0000:02:00.0", "0000:41:00.0", "0000:42:00.0",
    ]  # fmt: skip
    assert info.processes == {}
    devices = chips_to_devices(info)
    assert [d.index for d in devices] == list(range(8))
    assert [d.physical_id for d in devices] == list(range(8))
    assert all(d.bf16 and d.health == "OK" and d.memory_free_mib == 62158 for d in devices)


def test_910b4_1_busy_with_processes():
    info = parse_npu_smi_info(table("910b4-1-x8-busy.txt"))
    assert info.problems == ()
    # "59719/ 65536": five-digit values lose the space before the slash.
    assert [c.memory_used_mib for c in info.chips] == [
        12566, 59719, 3448, 3447, 3444, 3445, 7952, 17937,
    ]  # fmt: skip
    assert {c.name for c in info.chips} == {"910B4-1"}
    assert info.processes[(1, 0)] == (
        DeviceProcess(2357, "llama-box-rpc-s", 111),
        DeviceProcess(2394858, "VLLMEngineCor", 56313),
    )
    assert info.processes[(7, 0)] == (
        DeviceProcess(5284, "llama-box-rpc-s", 111),
        DeviceProcess(2395206, "python", 13162),
        DeviceProcess(2395167, "python", 1429),
    )
    assert info.processes[(5, 0)] == (DeviceProcess(2367, "llama-box-rpc-s", 112),)
    assert sum(len(p) for p in info.processes.values()) == 11
    devices = chips_to_devices(info)
    assert [p.pid for p in devices[1].processes] == [2357, 2394858]


def test_310p3_duo_ddr_two_chips_per_card():
    info = parse_npu_smi_info(table("310p3-duo-x4-procs.txt"))
    assert info.problems == ()
    assert [(c.npu_id, c.chip, c.physical_id) for c in info.chips] == [
        (2, 0, 0), (2, 1, 1), (3, 0, 2), (3, 1, 3), (5, 0, 4), (5, 1, 5), (6, 0, 6), (6, 1, 7),
    ]  # fmt: skip
    assert [c.memory_total_mib for c in info.chips] == [44216, 43757] * 4
    assert [c.memory_used_mib for c in info.chips] == [
        1417, 1516, 1666, 1260, 1691, 1381, 1196, 1758,
    ]  # fmt: skip
    assert {c.memory_kind for c in info.chips} == {"DDR"}
    assert info.processes == {
        (5, 0): (
            DeviceProcess(904545, "python3", 101),
            DeviceProcess(917047, "mindie_llm_back", 101),
        ),
        (5, 1): (DeviceProcess(904546, "python3", 100),),
    }
    devices = chips_to_devices(info)
    assert not any(d.bf16 for d in devices)  # 310P has no bf16
    assert [p.pid for p in devices[5].processes] == [904546]


def test_a3_sixteen_dies_with_phy_ids():
    info = parse_npu_smi_info(table("a3-x16-idle.txt"))
    assert info.version == "25.3.rc1.2"
    assert info.problems == ()
    assert len(info.chips) == 16
    assert [c.physical_id for c in info.chips] == list(range(16))
    assert [(c.npu_id, c.chip) for c in info.chips[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {c.name for c in info.chips} == {"Ascend910"}
    assert [c.memory_used_mib for c in info.chips] == [
        3158, 2882, 3151, 2879, 3154, 2881, 3140, 2892,
        3141, 2890, 3153, 2879, 3153, 2880, 3139, 2890,
    ]  # fmt: skip
    assert sum(c.memory_total_mib for c in info.chips) == 16 * 65536


def test_910b4_32g_and_old_training_layout():
    info = parse_npu_smi_info(table("910b4-x4-idle.txt"))
    assert info.version == "24.1.rc3"
    assert [(c.memory_used_mib, c.memory_total_mib) for c in info.chips] == [
        (2859, 32768), (2848, 32768), (2847, 32768), (2847, 32768),
    ]  # fmt: skip
    old = parse_npu_smi_info(table("910-training-x8-warning.txt"))
    assert old.problems == ()
    # Both a DDR pair (4252 / 15137) and an HBM pair (0 / 32768): the HBM is the device memory.
    assert [(c.memory_kind, c.memory_used_mib, c.memory_total_mib) for c in old.chips[:1]] == [
        ("HBM", 0, 32768)
    ]
    assert [c.health for c in old.chips] == ["OK"] * 3 + ["Warning"] + ["OK"] * 3 + ["Warning"]
    assert [len(old.processes[(n, 0)]) for n in range(8)] == [4] * 8
    assert [p.pid for p in old.processes[(0, 0)]] == [37656, 37664, 37640, 37648]
    assert {p.memory_mib for procs in old.processes.values() for p in procs} == {686}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Segmentation fault (core dumped)\n",
        "dcmi module initialize failed. ret is -8005\n",
        "| 0 | | |\n| garbage | 0000:C1:00.0 | x |\n",
        "\x00\xff binary \x1b[31m junk",
    ],
)
def test_garbage_never_raises(text):
    info = parse_npu_smi_info(text)
    assert info.chips == ()


def test_truncated_table_keeps_complete_rows():
    lines = table("910b3-x8-idle.txt").splitlines()
    # Cut in the middle of NPU 2's row pair.
    info = parse_npu_smi_info("\n".join(lines[:13]))
    assert [c.npu_id for c in info.chips] == [0, 1]


def test_unreadable_row_is_reported_not_raised():
    text = table("910b3-x8-idle.txt").replace(
        "0000:C2:00.0  | 0           0    / 0          3378 / 65536",
        "0000:C2:00.0  | 0           n/a",
    )
    info = parse_npu_smi_info(text)
    assert len(info.chips) == 7
    assert len(info.problems) == 1 and "0000:C2:00.0" in info.problems[0]


def test_rt_visible_selects_and_renumbers():
    assert parse_rt_visible("2,3", 8) == ([2, 3], [])
    assert parse_rt_visible("0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", 16)[0] == list(range(16))


def test_rt_visible_missing_device_warns():
    chosen, warnings = parse_rt_visible("0,9", 8)
    assert chosen == [0]
    assert len(warnings) == 1
    assert "names device 9" in warnings[0] and "only 8 exist" in warnings[0]
    assert "open device N failed" in warnings[0]


def test_rt_visible_parsing_rules():
    chosen, warnings = parse_rt_visible("0, 1", 8)  # torch_npu stops at the space
    assert chosen == [0]
    assert "stops at ' '" in warnings[0]
    chosen, warnings = parse_rt_visible("", 8)
    assert chosen == [] and "selects no device" in warnings[0]
    chosen, warnings = parse_rt_visible("3,1", 8)
    assert chosen == [3, 1]
    assert "ascending" in warnings[0] and "use 1,3" in warnings[0]
    chosen, warnings = parse_rt_visible("1,1", 8)
    assert chosen == [1] and "twice" in warnings[0]


def test_physical_visible_filters_by_device_id():
    present = list(range(8))
    assert parse_physical_visible("4-5", present) == ([4, 5], [])
    assert parse_physical_visible("6,2", present) == ([2, 6], [])
    keep, warnings = parse_physical_visible("7,9", present)
    assert keep == [7] and "physical device 9" in warnings[0]
    keep, warnings = parse_physical_visible("all", present)
    assert keep is None and "ignored" in warnings[0]


def test_count_davinci_ignores_manager_nodes(tmp_path):
    for name in ("davinci0", "davinci1", "davinci10", "davinci_manager", "devmm_svm", "hisi_hdc"):
        (tmp_path / name).touch()
    assert count_davinci(tmp_path) == [0, 1, 10]
    assert count_davinci(tmp_path / "missing") == []
