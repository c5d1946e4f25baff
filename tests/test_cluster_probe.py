"""The node probe's own parts (fingerprint, interfaces, CANN files, addresses), the program run
as a child without Ray or with a Ray stand-in that hangs or refuses, and probe_cluster through
the injectable runner."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from build_model_dir import build_model_dir
from helpers import FIXTURES

from mmops.cluster import node_probe as P
from mmops.cluster.probe import PROGRAM, check_address, probe_argv, probe_cluster
from mmops.errors import UsageError
from mmops.platform import ReplayRunner
from mmops.platform.runner import CommandResult, Recording
from mmops.platform.software import software_stack

RAY = FIXTURES / "ray"
CANN = FIXTURES / "cann"


# ---------------------------------------------------------------------------- fingerprint
def test_same_model_same_fingerprint_and_what_changes_it(tmp_path):
    a = build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "a")
    b = build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "b")
    fa, fb = P.model_fingerprint(str(a)), P.model_fingerprint(str(b))
    assert fa["exists"] and fa["missing"] == [] and fa["fingerprint"] == fb["fingerprint"]
    shards = sorted(n for n in fa["files"] if n.endswith(".safetensors"))
    assert len(shards) == 5 and {"config.json", P.INDEX_NAME} <= set(fa["files"])
    # weights past the header are not read: equal headers and sizes, equal fingerprints
    first = b / shards[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    assert P.model_fingerprint(str(b))["fingerprint"] == fa["fingerprint"]
    # a shard of another size, or another config.json, is another model copy
    with first.open("ab") as fh:
        fh.write(b"\0" * 8)
    assert P.model_fingerprint(str(b))["fingerprint"] != fa["fingerprint"]
    cfg = json.loads((a / "config.json").read_text())
    cfg["max_position_embeddings"] = 1
    (a / "config.json").write_text(json.dumps(cfg))
    assert P.model_fingerprint(str(a))["files"]["config.json"] != fb["files"]["config.json"]


def test_fingerprint_of_broken_and_absent_dirs(tmp_path):
    missing = P.model_fingerprint(
        str(build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "m", shards="missing-shard"))
    )
    assert missing["missing"] == ["model-00005-of-00005.safetensors"]
    huge = P.model_fingerprint(
        str(build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "h", shards="huge-header"))
    )
    assert any("exceeds the 100 MB limit" in f.get("error", "") for f in huge["files"].values())
    cut = P.model_fingerprint(
        str(build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "t", shards="truncated-header"))
    )
    assert any("header cut short" in f.get("error", "") for f in cut["files"].values())
    absent = P.model_fingerprint(str(tmp_path / "nope"))
    assert absent == {
        "path": str(tmp_path / "nope"),
        "exists": False,
        "files": {},
        "missing": [],
        "error": "no such directory",
    }
    (tmp_path / "file").write_text("x")
    assert P.model_fingerprint(str(tmp_path / "file"))["error"] == "not a directory"


# ---------------------------------------------------------------------- host facts parts
def test_interfaces_with_psutil_and_from_the_kernel_alone(monkeypatch):
    found, source = P.interfaces()
    assert source == "psutil" and "lo" in found and "127.0.0.1" in found["lo"]
    monkeypatch.setitem(sys.modules, "psutil", None)  # a node whose python has no psutil
    kernel, source = P.interfaces()
    assert source == "sysfs"
    assert set(kernel) == {name for _, name in socket.if_nameindex()}
    for name, addrs in psutil.net_if_addrs().items():
        v4 = {a.address for a in addrs if a.family == socket.AF_INET}
        if len(v4) == 1:  # SIOCGIFADDR gives the primary IPv4 address only
            assert v4 <= set(kernel[name]), name


def test_cann_and_driver_files_read_as_mmops_platform_reads_them(tmp_path):
    cases = {
        "toolkit-info": (
            "ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info",
            "ascend_toolkit_install.8.2.RC1.info",
        ),
        "version-cfg": ("ascend-toolkit/latest/version.cfg", "version.8.0.0.cfg"),
        "cann-dir": (
            "cann-8.5.0/aarch64-linux/ascend_toolkit_install.info",
            "ascend_toolkit_install.8.5.0.info",
        ),
    }
    for name, (where, fixture) in cases.items():
        root = tmp_path / name / "Ascend"
        (root / where).parent.mkdir(parents=True)
        shutil.copy(CANN / fixture, root / where)
        (root / "driver").mkdir()
        shutil.copy(CANN / "driver-version.25.0.rc1.1.info", root / "driver" / "version.info")
        stack = software_stack(env={}, roots=[], ascend_root=root)
        mine = P.cann_version({}, str(root))
        assert mine is not None and mine["version"] == stack.cann_version, name
        assert (
            P.driver_versions(str(root), str(tmp_path / "proc"))["ascend"] == stack.driver_version
        )
    env = {"ASCEND_TOOLKIT_HOME": str(tmp_path / "cann-dir" / "Ascend" / "cann-8.5.0")}
    assert P.cann_version(env, str(tmp_path / "toolkit-info" / "Ascend"))["version"] == "8.5.0"
    assert P.cann_version({}, str(tmp_path / "empty")) is None


def test_nvidia_driver_and_device_files(tmp_path):
    proc = tmp_path / "proc" / "driver" / "nvidia"
    proc.mkdir(parents=True)
    # Written here in the form the NVIDIA kernel module gives /proc/driver/nvidia/version (not
    # a recording); the version is the H200's of tests/fixtures/nvidia-smi.
    (proc / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
        "(dvs-builder@U16-A24-23-2)  Tue Oct 14 00:00:00 UTC 2025\n"
        "GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n"
    )
    assert P.driver_versions(str(tmp_path / "none"), str(tmp_path / "proc")) == {
        "nvidia": "580.159.04"
    }
    dev = tmp_path / "dev"
    dev.mkdir()
    for n in ("davinci0", "davinci1", "davinci_manager", "nvidia0", "nvidiactl", "nvidia-uvm"):
        (dev / n).touch()
    assert P.device_files(str(dev)) == {"davinci": 2, "nvidia": 1}


def test_node_facts_in_this_process(tmp_path, monkeypatch):
    model = build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "m")
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    facts = P.node_facts(str(model))
    assert facts["errors"] == []
    assert facts["python"]["executable"] == sys.executable
    assert facts["packages"]["ray"] is None  # mmops' own venv has no Ray
    assert facts["model"]["exists"] and facts["env"] == {"GLOO_SOCKET_IFNAME": "lo"}
    json.dumps(facts)  # what a Ray task returns must survive the trip as JSON


def test_split_address():
    assert P.split_address("auto") is None
    assert P.split_address("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert P.split_address("ray://head:10001") == ("head", 10001)
    assert P.split_address("[fd00::2]:6379") == ("fd00::2", 6379)


@pytest.mark.parametrize(
    "good", ["auto", "10.0.0.1:6379", "head.example:6379", "ray://head:10001", "[fd00::2]:6379"]
)
def test_check_address_accepts(good):
    assert check_address(good) == good


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("10.0.0.1", "expected auto, HOST:PORT"),
        ("10.0.0.1:0", "port must be a number from 1 to 65535"),
        ("10.0.0.1:http", "port must be"),
        ("http://10.0.0.1:6379", "unknown scheme http://"),
        (":6379", "expected auto"),
        ("local", "expected auto"),
    ],
)
def test_check_address_refuses(bad, says):
    with pytest.raises(UsageError, match=f"--ray-address {bad}: .*{says}"):
        check_address(bad)


# --------------------------------------------------------------- the program, as a child
def run_program(tmp_path: Path, *args: str, fake_ray: str | None = None, timeout: float = 60):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    if fake_ray is not None:
        pkg = tmp_path / "fake" / "ray"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(fake_ray)
        env["PYTHONPATH"] = str(pkg.parent)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-u", str(PROGRAM), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        start_new_session=True,
    )
    return proc, json.loads(proc.stdout.strip().splitlines()[-1]), time.monotonic() - t0


def test_program_without_ray_says_so_at_once(tmp_path):
    proc, doc, took = run_program(tmp_path, "--address", "127.0.0.1:6379")
    assert proc.returncode == P.EXIT_NO_RAY and took < 10
    assert doc["error"]["kind"] == "no-ray" and sys.executable in doc["error"]["message"]


def test_program_head_unreachable_is_bounded(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused at once
        proc, doc, took = run_program(
            tmp_path, "--address", f"127.0.0.1:{port}", fake_ray="__version__ = '0.0-stand-in'\n"
        )
    assert proc.returncode == P.EXIT_UNREACHABLE and took < 10
    assert doc["error"] == {"kind": "unreachable", "message": "TCP connect: Connection refused"}
    assert doc["ray_version"] == "0.0-stand-in"


HANGS = """
import time
__version__ = "0.0-stand-in"
def init(**kw):
    time.sleep(600)
"""


def test_program_that_hangs_in_ray_init_times_out_and_leaves_nothing(tmp_path):
    proc, doc, took = run_program(tmp_path, "--address", "auto", "--timeout", "3", fake_ray=HANGS)
    assert proc.returncode == P.EXIT_TIMEOUT and 2.5 < took < 15
    assert doc["error"]["kind"] == "timeout"
    assert doc["error"]["message"] == "no answer within 3 s (at: ray.init)"
    stray = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "ray.scripts.scripts" in " ".join(p.info["cmdline"] or [])
    ]
    assert not [p for p in stray if p.ppid() == proc.pid]  # its `ray status` child died with it


REFUSES = """
__version__ = "0.0-stand-in"
def init(**kw):
    raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by setting `--address` flag or `RAY_ADDRESS` environment variable.")
"""


def test_program_auto_without_cluster(tmp_path):
    proc, doc, _ = run_program(tmp_path, "--address", "auto", fake_ray=REFUSES)
    assert proc.returncode == P.EXIT_UNREACHABLE
    assert doc["error"]["message"].startswith("Could not find any running Ray instance")


# ---------------------------------------------------------- probe_cluster, through runners
def test_probe_cluster_reads_a_recorded_answer_and_passes_its_flags():
    recorded = (RAY / "probe-2node-healthy.json").read_text()
    runner = ReplayRunner(
        {("/venv/bin/python",): Recording(stdout="ray noise\n" + json.dumps(json.loads(recorded)))}
    )
    rep = probe_cluster(
        "/venv/bin/python", "10.0.0.1:6379", "/models/q", timeout_s=12, runner=runner
    )
    assert rep.ok and len(rep.alive) == 2
    assert runner.calls == [tuple(probe_argv("/venv/bin/python", "10.0.0.1:6379", "/models/q", 12))]
    assert runner.calls[0][2] == str(PROGRAM) and "--model" in runner.calls[0]


def test_probe_cluster_when_the_child_cannot_run_or_says_nothing():
    rep = probe_cluster("/nope/python", "auto", runner=ReplayRunner({}))
    assert (
        rep.error_kind == "probe"
        and "could not run the node probe with /nope/python: not found" in rep.error
    )

    def hung(argv, timeout):
        return CommandResult(tuple(argv), None, "", "", f"timed out after {timeout:g}s")

    rep = probe_cluster("/venv/bin/python", "auto", timeout_s=5, runner=hung)
    assert rep.error_kind == "timeout" and "timed out after 20s" in rep.error
    crashed = Recording(stdout="", stderr="Traceback...\nSegmentation fault\n", returncode=139)
    rep = probe_cluster(
        "/venv/bin/python", "auto", runner=ReplayRunner({("/venv/bin/python",): crashed})
    )
    assert (
        rep.error_kind == "probe" and "exit 139" in rep.error and "Segmentation fault" in rep.error
    )
