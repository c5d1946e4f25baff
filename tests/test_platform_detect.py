"""detect() end to end with recorded command outputs, a fake /dev, and visible-device env."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mmops.platform import CommandResult, Recording, ReplayRunner, detect
from mmops.platform.ascend import NPU_SMI_INFO
from mmops.platform.nvidia import NVIDIA_SMI_APPS, NVIDIA_SMI_QUERY

FIXTURES = Path(__file__).parent / "fixtures"
NPU = FIXTURES / "npu-smi"
NV = FIXTURES / "nvidia-smi"


@pytest.fixture
def dev(tmp_path):
    """An empty /dev; tests add nodes."""
    root = tmp_path / "dev"
    root.mkdir()
    return root


def npu(name: str) -> ReplayRunner:
    return ReplayRunner({("npu-smi", "info"): NPU / name})


def nvidia(stem: str) -> ReplayRunner:
    return ReplayRunner(
        {
            ("nvidia-smi", "--query-gpu"): NV / f"{stem}.query-gpu.csv",
            ("nvidia-smi", "--query-compute-apps"): NV / f"{stem}.compute-apps.csv",
        }
    )


def test_ascend_host_in_runtime_order(dev):
    for i in range(8):
        (dev / f"davinci{i}").touch()
    (dev / "davinci_manager").touch()
    runner = npu("910b3-x8-idle.txt")
    report = detect(runner, env={}, dev_root=dev)
    assert len(report.devices) == 8
    assert [d.index for d in report.devices] == list(range(8))
    assert {d.vendor for d in report.devices} == {"ascend"}
    assert sum(d.memory_used_mib for d in report.devices) == 8 * 3378
    assert report.looked_at == (
        f"{dev}/davinci*: 8 nodes",
        "npu-smi info: 8 chip(s) (910B3), npu-smi 25.2.0",
    )
    assert report.warnings == () and report.simulated is False
    assert runner.calls == [tuple(NPU_SMI_INFO)]  # NVIDIA is not asked on an Ascend host


def test_rt_visible_devices_renumber(dev):
    report = detect(
        npu("910b4-1-x8-busy.txt"), env={"ASCEND_RT_VISIBLE_DEVICES": "2,3"}, dev_root=dev
    )
    assert [(d.index, d.physical_id, d.memory_used_mib) for d in report.devices] == [
        (0, 2, 3448),
        (1, 3, 3447),
    ]
    assert report.visible_env == {"ASCEND_RT_VISIBLE_DEVICES": "2,3"}
    assert "ASCEND_RT_VISIBLE_DEVICES=2,3" in report.looked_at


def test_rt_visible_naming_a_missing_device_warns(dev):
    report = detect(
        npu("910b4-x4-idle.txt"), env={"ASCEND_RT_VISIBLE_DEVICES": "3,4"}, dev_root=dev
    )
    assert [d.physical_id for d in report.devices] == [3]
    assert len(report.warnings) == 1 and "names device 4 but only 4 exist" in report.warnings[0]


def test_empty_rt_visible_hides_every_npu_but_stays_ascend(dev):
    runner = npu("910b3-x8-idle.txt")
    report = detect(runner, env={"ASCEND_RT_VISIBLE_DEVICES": ""}, dev_root=dev)
    assert report.devices == ()
    assert "selects no device" in report.warnings[0]
    assert runner.calls == [tuple(NPU_SMI_INFO)]


def test_docker_physical_then_runtime_logical(dev):
    env = {"ASCEND_VISIBLE_DEVICES": "4,5,6,7", "ASCEND_RT_VISIBLE_DEVICES": "1"}
    report = detect(npu("310p3-duo-x4-procs.txt"), env=env, dev_root=dev)
    (device,) = report.devices
    assert (device.index, device.physical_id, device.memory_total_mib) == (0, 5, 43757)
    assert [p.pid for p in device.processes] == [904546]
    assert device.bf16 is False and device.memory_kind == "DDR"
    assert report.visible_env == env


def test_unhealthy_npus_warn(dev):
    report = detect(npu("910-training-x8-warning.txt"), env={}, dev_root=dev)
    assert len(report.devices) == 8
    assert [w.split(" reports")[0] for w in report.warnings] == ["NPU 3 (xxx)", "NPU 7 (xxx)"]
    assert "health Warning" in report.warnings[0]
    hidden = detect(
        npu("910-training-x8-warning.txt"), env={"ASCEND_RT_VISIBLE_DEVICES": "0,1"}, dev_root=dev
    )
    assert hidden.warnings == ()  # only devices the launch will use are reported


def test_npu_smi_missing_with_davinci_nodes_warns(dev):
    (dev / "davinci0").touch()
    (dev / "davinci1").touch()
    report = detect(ReplayRunner({}), env={}, dev_root=dev)
    assert report.devices == ()
    assert report.looked_at[:2] == (f"{dev}/davinci*: 2 nodes", "npu-smi info: not found")
    assert "npu-smi is not on PATH" in report.warnings[0]
    assert "/usr/local/bin/npu-smi" in report.warnings[0]


def test_nothing_at_all_is_quiet(dev):
    report = detect(ReplayRunner({}), env={}, dev_root=dev)
    assert report.devices == () and report.warnings == ()
    assert report.looked_at == (
        f"{dev}/davinci*: 0 nodes",
        "npu-smi info: not found",
        "nvidia-smi: not found",
    )


def test_npu_smi_timeout_and_failure(dev):
    runner = ReplayRunner(
        {("npu-smi",): Recording(stdout="", returncode=None, error="timed out after 3s")}
    )
    report = detect(runner, env={}, dev_root=dev)
    assert report.warnings == ("npu-smi info failed (timed out after 3s)",)
    # Real message quoted in a public host-evidence note (repository not identified).
    runner = ReplayRunner(
        {
            ("npu-smi",): Recording(
                stdout="dcmi module initialize failed. ret is -8005\n", returncode=255
            )
        }
    )
    report = detect(runner, env={}, dev_root=dev)
    assert report.warnings == (
        "npu-smi info failed (exit 255: dcmi module initialize failed. ret is -8005)",
    )


def test_npu_smi_garbage_then_nvidia_is_tried(dev):
    runner = ReplayRunner(
        {
            ("npu-smi", "info"): "Segmentation fault (core dumped)\n",
            ("nvidia-smi", "--query-gpu"): NV / "h100-load.query-gpu.csv",
        }
    )
    report = detect(runner, env={}, dev_root=dev)
    assert "output not understood" in report.warnings[0] and "Segmentation" in report.warnings[0]
    assert [d.name for d in report.devices] == ["NVIDIA H100 80GB HBM3"]
    assert "nvidia-smi --query-compute-apps: not found" in report.looked_at


def test_table_without_rows_is_not_garbage(dev):
    header = "\n".join((NPU / "910b3-x8-idle.txt").read_text(encoding="utf-8").splitlines()[:6])
    report = detect(ReplayRunner({("npu-smi", "info"): header}), env={}, dev_root=dev)
    assert report.devices == () and report.warnings == ()
    assert "npu-smi info: no NPU rows in the output" in report.looked_at


def test_nvidia_host_with_processes(dev):
    runner = nvidia("h200x8-busy")
    report = detect(runner, env={}, dev_root=dev)
    assert len(report.devices) == 8
    assert [d.physical_id for d in report.devices] == list(range(8))
    assert sum(len(d.processes) for d in report.devices) == 8
    assert report.devices[7].processes[0].name == ""
    assert runner.calls[1:] == [tuple(NVIDIA_SMI_QUERY), tuple(NVIDIA_SMI_APPS)]
    assert "nvidia-smi --query-compute-apps: 8 process(es)" in report.looked_at


def test_cuda_visible_devices(dev):
    env = {"CUDA_VISIBLE_DEVICES": "GPU-28780eb0,2"}
    report = detect(nvidia("h200x8-busy"), env=env, dev_root=dev)
    assert [(d.index, d.physical_id, d.memory_used_mib) for d in report.devices] == [
        (0, 7, 58071),
        (1, 2, 105851),
    ]
    report = detect(nvidia("h200x8-busy"), env={"CUDA_VISIBLE_DEVICES": "1,8"}, dev_root=dev)
    assert [d.physical_id for d in report.devices] == [1]
    assert "'8' is not a GPU index" in report.warnings[0]


@pytest.mark.parametrize(
    ("name", "returncode", "meaning"),
    [
        ("driver-failure.txt", 9, "not loaded"),
        ("nvml-mismatch.txt", 255, "versions differ"),
        ("no-devices.txt", 6, "sees no GPU"),
    ],
)
def test_nvidia_failures_become_warnings(dev, name, returncode, meaning):
    text = (NV / name).read_text(encoding="utf-8")
    runner = ReplayRunner({("nvidia-smi",): Recording(stdout=text, returncode=returncode)})
    report = detect(runner, env={}, dev_root=dev)
    assert report.devices == ()
    (warning,) = report.warnings
    assert warning.startswith("nvidia-smi failed: ") and meaning in warning
    assert text.strip()[:40] in warning


def test_nvidia_smi_missing_with_device_nodes(dev):
    (dev / "nvidia0").touch()
    (dev / "nvidiactl").touch()
    report = detect(ReplayRunner({}), env={}, dev_root=dev)
    assert (
        "nvidia-smi is not on PATH but" in report.warnings[0] and "1 nvidia" in report.warnings[0]
    )


def test_results_from_command_result_values(dev):
    stdout = (NPU / "a3-x16-idle.txt").read_text(encoding="utf-8")
    runner = ReplayRunner({("npu-smi", "info"): CommandResult(("x",), 0, stdout, "")})
    report = detect(runner, env={}, dev_root=dev)
    assert len(report.devices) == 16 and report.devices[15].physical_id == 15


def test_detect_is_fast(dev):
    runner = npu("a3-x16-idle.txt")
    best = min(_timed(lambda: detect(runner, env={}, dev_root=dev)) for _ in range(5))
    assert best < 0.05, f"detect() on a recorded 16-die table took {best:.3f}s"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
