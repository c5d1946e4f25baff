"""`mmops serve --distributed-executor-backend ray` against a real 2-node Ray cluster, a node
killed while READY.

The cluster is real `ray start` processes of the vLLM venv's Ray (2.60.0) on this machine
(tests/fixtures/ray/local_cluster.py: head 127.0.0.2, node 127.0.0.3, {"NPU": 2} each). The
server is the project's fake vLLM (tests/fakes/fake_vllm.py) in the vLLM venv's python, in its
Ray mode: ray.init() as vLLM calls it, one actor pinned to each node as vLLM's workers are. The
real vLLM CPU build cannot be the server here: its CPU platform declares no Ray device key
(vllm/platforms/interface.py:150 ray_device_key = "", which cpu.py keeps), and
initialize_ray_cluster raises "current platform cpu does not support ray"
(vllm/v1/executor/ray_utils.py:572-576).

What runs for real: the plan's job runtime environment reaching the worker on the other node
(and beating that node's own `ray start` value), the supervisor's node watch (the helper in the
vLLM venv's python, one GCS read per poll), the GCS marking the killed node dead, the named
failure with the node and the table's fix, the retry held until a node is back, the retry
itself, and a stop that leaves no process behind. About 100 s on 2 cores, most of it `ray start`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "ray"))
sys.path.insert(0, str(REPO / "tests" / "fakes"))

from fakesupport import FAKE_PKG, cli_env, free_port  # noqa: E402
from local_cluster import LocalRayCluster  # noqa: E402

pytestmark = pytest.mark.timeout(300)
REPORTED = "PYTORCH_NPU_ALLOC_CONF,HCCL_SOCKET_IFNAME,FAKE_VLLM_SCENARIO"
# The worker node's own `ray start` environment: one value the launch overrides, one it leaves.
NODE_ENV = {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True", "HCCL_SOCKET_IFNAME": "lo"}


def _unavailable(reason: str) -> None:
    if os.environ.get("MMOPS_REQUIRE_REAL") == "1":
        pytest.fail(f"MMOPS_REQUIRE_REAL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def cluster(
    vllm_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRayCluster]:
    ray_cli = vllm_python.parent / "ray"
    if not ray_cli.exists():
        _unavailable(f"no Ray in the vLLM venv {vllm_python} (scripts/vllm_venv.sh installs it)")
    ray = LocalRayCluster(ray_cli, tmp_path_factory.mktemp("rs") / "c")
    try:
        ray.start_head({"NPU": 2})
        ray.add_node("w1", {"NPU": 2}, env=NODE_ENV)
        ray.wait_alive(2)
        yield ray
    finally:
        left = ray.stop()
        assert left == [], f"Ray processes outlived teardown: {left}"


def profile(tmp_path: Path, python: Path, rec: Path) -> Path:
    env = {
        "PYTHONPATH": str(FAKE_PKG),  # `python -m vllm.entrypoints.openai.api_server` -> the fake
        "FAKE_VLLM_RAY": "1",
        "FAKE_VLLM_RAY_ENV": REPORTED,
        "FAKE_VLLM_RECORD": str(rec),
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:False",
    }
    path = tmp_path / "ray-fake.yaml"
    path.write_text(
        f"name: ray-fake\nmodel: fake-model\nvllm_python: {python}\ndevice: {{kind: cpu}}\n"
        f"serve:\n  port: {free_port()}\n  host: 127.0.0.1\n"
        "env:\n" + "".join(f"  {k}: '{v}'\n" for k, v in env.items())
        + "restart: {max_attempts: 3, window_s: 600, backoff_initial_s: 0.2, backoff_max_s: 1, "
        "jitter: 0}\nreadiness: {timeout_s: 120, interval_s: 0.2}\n"
    )  # fmt: skip
    return path


def events(state: Path) -> list[dict]:
    runs = list(state.iterdir()) if state.exists() else []
    if not runs:
        return []
    path = runs[0] / "events.jsonl"
    if not path.exists():
        return []
    return [
        json.loads(x) for x in path.read_text().splitlines() if x.endswith("}") and '"state"' in x
    ]


def wait_for(state: Path, test, what: str, timeout: float, proc: subprocess.Popen) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in events(state):
            if test(ev):
                return ev
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    got = "\n".join(f"{e['state']} {e['attempt']}: {e['reason']}" for e in events(state))
    raise AssertionError(
        f"no {what} within {timeout:g} s (mmops exit {proc.poll()}); events:\n{got}"
    )


def records(rec: Path, event: str) -> list[dict]:
    if not rec.exists():
        return []
    return [r for r in map(json.loads, rec.read_text().splitlines()) if r.get("event") == event]


def helpers() -> list[psutil.Process]:
    """Node-watch helpers (and their reapers) alive on this machine."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if any(str(c).endswith("node_watch.py") for c in cmd) and p.info["status"] != "zombie":
            found.append(p)
    return found


def test_a_node_killed_while_ready_is_a_named_failure_and_the_retry_waits_for_it(
    cluster: LocalRayCluster, vllm_python: Path, tmp_path: Path
):
    t0 = time.monotonic()
    rec = tmp_path / "rec.jsonl"
    state = tmp_path / "state"
    before = {p.pid for p in helpers()}
    argv = [sys.executable, "-m", "mmops", "serve", "-p", str(profile(tmp_path, vllm_python, rec)),
            "--no-preflight", "-q", "--state-dir", str(state), "--ray-address", cluster.address,
            "--distributed-executor-backend", "ray"]  # fmt: skip
    env = {k: v for k, v in cli_env().items() if not k.startswith("RAY_")}
    with (tmp_path / "mmops.err").open("wb") as err:
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # fmt: skip
    mmops_tree: list[psutil.Process] = []
    try:
        wait_for(state, lambda e: e["state"] == "READY", "READY", 120, proc)
        watching = wait_for(state, lambda e: "watching 2 Ray node(s)" in e["reason"],
                            "the node watch's baseline", 60, proc)  # fmt: skip
        assert {n["ip"] for n in watching["nodes"]} == {"127.0.0.2", "127.0.0.3"}
        mmops_tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]

        # The plan's runtime environment reached the worker on the other node, over that node's
        # own value; what the launch does not set stays the node's.
        (workers,) = records(rec, "ray_workers")
        other = next(w for w in workers["workers"] if w["ip"] == "127.0.0.3")
        assert other["env"]["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:False"
        assert other["env"]["HCCL_SOCKET_IFNAME"] == "lo"
        assert other["env"]["FAKE_VLLM_SCENARIO"] is None  # the fake's default: not set anywhere
        plan = json.loads((next(state.iterdir()) / "plan.json").read_text())
        assert plan["ray"]["address"] == cluster.address
        assert "PYTORCH_NPU_ALLOC_CONF" in plan["ray"]["carried"]

        killed_at = time.monotonic()
        cluster.kill_node("w1")
        backoff = wait_for(state, lambda e: e["state"] == "BACKOFF", "the named failure", 90, proc)
        named_after = time.monotonic() - killed_at
        assert backoff["cause"]["id"] == "ray.node_died", backoff
        assert backoff["node"]["ip"] == "127.0.0.3" and not backoff["node"]["alive"]
        assert backoff["node"]["node_id"] in {n["node_id"] for n in watching["nodes"]}
        assert backoff["fix"].startswith("Check node 127.0.0.3: dmesg")
        assert backoff["reason"].startswith("Ray node 127.0.0.3 (")
        assert "retrying once it is back in the Ray cluster" in backoff["reason"]
        time.sleep(3)
        assert not [e for e in events(state) if e["attempt"] == 2], "retried without the node"

        # A node joins again (another host's address here): the retry goes ahead and serves.
        cluster.add_node("w2", {"NPU": 2}, env=NODE_ENV)
        wait_for(state, lambda e: "alive in the Ray cluster again" in e["reason"],
                 "the node back", 90, proc)  # fmt: skip
        wait_for(state, lambda e: e["state"] == "READY" and e["attempt"] == 2,
                 "READY again", 120, proc)  # fmt: skip
        assert len(records(rec, "ray_workers")) == 2
        mmops_tree += [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if p not in mmops_tree]  # fmt: skip
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    final = events(state)[-1]
    assert final["state"] == "STOPPED", final
    # Nothing of mmops is left: its children, the fake vLLMs, the node-watch helper.
    fakes = [r["pid"] for r in records(rec, "start")]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alive = [p for p in mmops_tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        alive += [p for p in helpers() if p.pid not in before]
        alive += [psutil.Process(pid) for pid in fakes if psutil.pid_exists(pid)
                  and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]  # fmt: skip
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
    print(f"named {named_after:.1f} s after the kill; whole run {time.monotonic() - t0:.0f} s")
