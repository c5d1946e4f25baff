"""Offline accelerator specs and simulate(), checked against the recorded real tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.errors import UsageError
from mmops.platform import detect, known_accelerators, match_spec, simulate
from mmops.platform.runner import ReplayRunner

NPU = Path(__file__).parent / "fixtures" / "npu-smi"


def test_simulate_eight_910b3():
    report = simulate("910B3", 8)
    assert report.simulated is True
    assert [d.index for d in report.devices] == list(range(8))
    d = report.devices[0]
    assert (d.vendor, d.name, d.memory_total_mib, d.memory_used_mib, d.memory_kind, d.bf16) == (
        "ascend", "910B3", 65536, 3378, "HBM", True,
    )  # fmt: skip
    assert "simulated: 8 x 910B3" in report.looked_at[0]
    assert "vllm-ascend/issues/3114" in report.looked_at[0]


def test_simulate_aliases_and_nvidia():
    assert simulate("h100", 2).devices[1].name == "NVIDIA H100 80GB HBM3"
    assert simulate("910_93", 16).devices[0].name == "Ascend910"
    t4 = simulate("T4", 1).devices[0]
    assert (t4.memory_total_mib, t4.bf16, t4.memory_used_mib) == (15360, False, 0)


def test_simulate_rejects_bad_input():
    with pytest.raises(UsageError, match=r"--device 'mi300' is not a known accelerator; valid: "):
        simulate("mi300", 8)
    with pytest.raises(UsageError, match="--devices must be at least 1"):
        simulate("910b3", 0)


def test_known_accelerators_cover_the_brief():
    specs = known_accelerators()
    for wanted in ("910b1", "910b2", "910b3", "910b4", "a3", "310p3", "a10", "l20", "l40s",
                   "a100-40", "a100-80", "h20", "h100-80", "h200", "rtx4090"):  # fmt: skip
        assert wanted in specs
    assert {s.id for s in specs.values() if not s.bf16} == {"310p3", "310p3-24g", "v100-32", "t4"}
    assert all(s.source for s in specs.values())
    assert specs["910b4"].memory_total_mib == 32768
    assert specs["h200"].memory_total_mib == 143771


@pytest.mark.parametrize(
    ("fixture", "spec_id"),
    [
        ("910b3-x8-idle.txt", "910b3"),
        ("910b4-x4-idle.txt", "910b4"),
        ("910b4-1-x8-busy.txt", "910b4-1"),
        ("a3-x16-idle.txt", "a3"),
        ("310p3-duo-x4-procs.txt", "310p3"),
    ],
)
def test_specs_agree_with_real_tables(tmp_path, fixture, spec_id):
    report = detect(ReplayRunner({("npu-smi", "info"): NPU / fixture}), env={}, dev_root=tmp_path)
    spec = known_accelerators()[spec_id]
    for device in report.devices:
        assert match_spec(device.name, device.memory_total_mib) == spec
        assert device.bf16 == spec.bf16 and device.memory_kind == spec.kind
        # The spec's total is never above what a real chip of that kind reports.
        assert spec.memory_total_mib <= device.memory_total_mib
    idle = min(d.memory_used_mib for d in report.devices)
    assert idle <= spec.idle_used_mib  # idle reserve covers the least-used real chip


def test_match_spec_unknown_and_closest():
    assert match_spec("NVIDIA B200", 183359) is None
    assert match_spec("310P3", 21534).id == "310p3-24g"
    assert match_spec("310p3", 44216).id == "310p3"
