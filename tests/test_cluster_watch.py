"""The supervisor's watch of a Ray cluster's nodes, without Ray:

- the pure part (mmops/cluster/watch.py): which nodes died since READY, whether one is back;
- the helper (mmops/cluster/node_watch.py) run as a real process against a stand-in ``ray``
  package whose GcsClient answers like Ray 2.60's (GcsNodeInfo fields as recorded in
  docs/multinode.md), so its protocol and parsing are tested on every machine;
- health.NodeWatch driving real helper processes: answers, a helper that hangs (killed, no
  process left), one that cannot start (not restarted at every poll), close().

tests/real/test_serve_ray_real.py runs the real helper against a real cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mmops.cluster import node_watch
from mmops.cluster.watch import NodePoll, NodeState, describe, head_lost, is_back, lost_nodes
from mmops.serve.health import NodeWatch

pytestmark = pytest.mark.timeout(60)

HEAD = NodeState("a" * 56, True, "10.0.0.2", "h1", True)
NODE = NodeState("b" * 56, True, "10.0.0.3", "h2")
BASE = NodePoll(nodes=(HEAD, NODE))


def test_a_node_alive_at_ready_and_dead_now_is_lost_with_why():
    dead = NodeState(NODE.node_id, False, NODE.ip, NODE.hostname, death="UNEXPECTED_TERMINATION")
    lost = lost_nodes(BASE, NodePoll(nodes=(HEAD, dead)))
    assert lost == [dead]
    assert describe(lost) == (
        f"Ray node 10.0.0.3 ({NODE.node_id[:8]}) (UNEXPECTED_TERMINATION) is dead"
    )
    gone = lost_nodes(BASE, NodePoll(nodes=(HEAD,)))
    assert gone[0].ip == "10.0.0.3" and "no longer in the GCS" in (gone[0].death or "")


def test_a_failed_poll_says_nothing_about_nodes_but_may_mean_the_head():
    failed = NodePoll(error="the Ray GCS at 10.0.0.2:6379 does not answer", kind="unreachable")
    assert lost_nodes(BASE, failed) == []
    head = head_lost(BASE, failed)
    assert head is not None and head.label.startswith("head 10.0.0.2") and not head.alive
    assert head_lost(BASE, NodePoll(error="no ray", kind="no-ray")) is None


def test_a_node_is_back_by_id_by_address_or_by_a_replacement():
    dead = NodeState(NODE.node_id, False, NODE.ip)
    same_ip = NodeState("c" * 56, True, "10.0.0.3")
    assert is_back(dead, BASE, NodePoll(nodes=(HEAD, dead, same_ip))) == same_ip
    other = NodeState("d" * 56, True, "10.0.0.9")
    assert is_back(dead, BASE, NodePoll(nodes=(HEAD, dead, other))) == other
    assert is_back(dead, BASE, NodePoll(nodes=(HEAD, dead))) is None
    assert is_back(dead, BASE, NodePoll(error="x", kind="timeout")) is None


def test_poll_documents_parse():
    ok = NodePoll.from_json(
        json.dumps({"ok": True, "elapsed_ms": 0.6, "nodes": [
            {"node_id": "ff" * 28, "alive": False, "ip": "10.0.0.3", "death": "why"}]})
    )  # fmt: skip
    assert ok.ok and ok.nodes[0].death == "why" and ok.elapsed_ms == 0.6
    bad = NodePoll.from_json('{"ok": false, "kind": "unreachable", "error": "refused"}')
    assert not bad.ok and bad.kind == "unreachable"
    assert NodePoll.from_json("not json").kind == "probe"


# ------------------------------------------------------- the helper, on a stand-in Ray

FAKE_RAY = {
    "ray/__init__.py": '__version__ = "2.60.0"\n',
    "ray/_private/__init__.py": "",
    "ray/_private/services.py": textwrap.dedent(
        """
        import os
        def canonicalize_bootstrap_address(addr, temp_dir=None):
            if addr in (None, "auto"):
                addr = os.environ.get("RAY_ADDRESS")
                if not addr:
                    raise ConnectionError("Could not find any running Ray instance.")
            return addr
        """
    ),
    "ray/_raylet.py": textwrap.dedent(
        """
        import json, os

        class _Enum:
            def __init__(self, names):
                self.values_by_number = {i: type("V", (), {"name": n}) for i, n in enumerate(names)}

        class _Death:
            DESCRIPTOR = type("D", (), {"fields_by_name": {"reason": type("F", (), {
                "enum_type": _Enum(["UNSPECIFIED", "EXPECTED_TERMINATION",
                                    "UNEXPECTED_TERMINATION"])})}})
            def __init__(self, reason, message):
                self.reason, self.reason_message = reason, message

        class _Info:  # the GcsNodeInfo fields node_watch reads
            def __init__(self, d):
                self.state = 0 if d["alive"] else 1
                self.node_manager_address = d["ip"]
                self.node_manager_hostname = "host"
                self.is_head_node = d.get("head", False)
                self.death_info = _Death(2 if not d["alive"] else 0, d.get("why", ""))

        class _Id:
            def __init__(self, h):
                self._h = h
            def hex(self):
                return self._h

        class GcsClient:
            def __init__(self, address):
                self.address = address
            def get_all_node_info(self, timeout=None):
                with open(os.environ["FAKE_GCS_TABLE"]) as fh:
                    table = json.load(fh)
                if table == "hang":
                    import time; time.sleep(3600)
                return {_Id(d["id"]): _Info(d) for d in table}
        """
    ),
}


@pytest.fixture
def fake_ray(tmp_path: Path) -> tuple[dict[str, str], Path]:
    import socket

    root = tmp_path / "fake-ray"
    for rel, text in FAKE_RAY.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    table = tmp_path / "table.json"
    table.write_text(json.dumps([
        {"id": "aa" * 28, "alive": True, "ip": "10.0.0.2", "head": True},
        {"id": "bb" * 28, "alive": True, "ip": "10.0.0.3"},
    ]))  # fmt: skip
    # The helper checks the GCS port answers before it makes a client: give it one.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    env = {**os.environ, "PYTHONPATH": str(root), "FAKE_GCS_TABLE": str(table)}
    env["RAY_ADDRESS"] = f"127.0.0.1:{srv.getsockname()[1]}"
    yield env, table
    srv.close()


def run_helper(env: dict[str, str], stdin: str, *args: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-u", node_watch.__file__, *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_helper_answers_each_poll_and_exits_at_end_of_input(fake_ray):
    env, table = fake_ray
    docs = run_helper(env, "poll\npoll\n", "--address", "auto")
    assert docs[0]["ok"] and docs[0]["ready"] and docs[0]["reader"] == "gcs"
    assert docs[0]["gcs_address"] == env["RAY_ADDRESS"]
    nodes = docs[1]["nodes"]
    assert [(n["ip"], n["alive"], n["is_head"]) for n in nodes] == [
        ("10.0.0.2", True, True),
        ("10.0.0.3", True, False),
    ]
    assert len(docs) == 3  # ready + two answers; then stdin ended and so did the helper


def test_helper_reports_a_dead_nodes_reason(fake_ray):
    env, table = fake_ray
    table.write_text(json.dumps([{"id": "bb" * 28, "alive": False, "ip": "10.0.0.3",
                                  "why": "health check failed"}]))  # fmt: skip
    docs = run_helper(env, "poll\n", "--address", env["RAY_ADDRESS"])
    (node,) = docs[1]["nodes"]
    assert node["alive"] is False
    assert node["death"] == "UNEXPECTED_TERMINATION: health check failed"


def test_helper_says_why_it_cannot_watch(fake_ray):
    env, _ = fake_ray
    refused = run_helper(env, "", "--address", "127.0.0.1:1")
    assert refused == [{"error": refused[0]["error"], "kind": "unreachable", "ok": False,
                        "watch": "mmops-ray-node-watch"}]  # fmt: skip
    assert "does not answer" in refused[0]["error"]
    no_ray = run_helper({**env, "PYTHONPATH": ""}, "", "--address", "auto")
    if no_ray[0]["kind"] == "no-ray":  # this interpreter has no Ray at all (the project venv)
        assert "Ray is not importable" in no_ray[0]["error"]
    client = run_helper(env, "", "--address", "ray://10.0.0.2:10001")
    assert client[0]["kind"] == "ray-error" and "Ray Client" in client[0]["error"]


# -------------------------------------------------------------- NodeWatch, real helpers


def helper_procs() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(str(c).endswith("node_watch.py") for c in cmd) and p.pid != os.getpid():
            with_status = p.status() if p.is_running() else psutil.STATUS_ZOMBIE
            if with_status != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


def test_node_watch_polls_kills_a_hung_helper_and_leaves_nothing(fake_ray):
    env, table = fake_ray
    before = {p.pid for p in helper_procs()}

    async def go() -> None:
        watch = NodeWatch(sys.executable, "auto", env, poll_timeout_s=1.0)
        first = await watch.poll()
        assert first.ok and [n.ip for n in first.alive] == ["10.0.0.2", "10.0.0.3"]
        assert watch.ready is not None and watch.ready["reader"] == "gcs"
        pid = watch.pid
        assert pid is not None
        table.write_text(json.dumps("hang"))
        t = time.monotonic()
        hung = await watch.poll()
        assert hung.kind == "timeout" and time.monotonic() - t < 5
        assert watch.pid is None and _zombie(pid)
        table.write_text(json.dumps([{"id": "bb" * 28, "alive": True, "ip": "10.0.0.3"}]))
        again = await watch.poll()  # a new helper
        assert again.ok and [n.ip for n in again.nodes] == ["10.0.0.3"]
        await watch.close()
        assert watch.pid is None

    asyncio.run(go())
    deadline = time.monotonic() + 10
    while {p.pid for p in helper_procs()} - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {p.pid for p in helper_procs()} - before


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_helper_that_cannot_start_is_not_restarted_at_every_poll(fake_ray, tmp_path):
    env, _ = fake_ray
    starts = tmp_path / "starts"
    script = tmp_path / "fails.py"
    script.write_text(
        f"open({str(starts)!r}, 'a').write('x')\n"
        "print('some warning first')\n"
        'print(\'{"ok": false, "kind": "unreachable", "error": "refused"}\')\n'
    )

    async def go() -> None:
        watch = NodeWatch(sys.executable, "auto", env, argv=[sys.executable, str(script)],
                          restart_after_s=60)  # fmt: skip
        for _ in range(3):
            poll = await watch.poll()
            assert poll.kind == "unreachable" and poll.error == "refused"
        await watch.close()

    asyncio.run(go())
    assert starts.read_text() == "x"


def test_a_helper_that_dies_says_its_last_words(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import sys\nprint('Traceback: boom', flush=True)\nsys.exit(1)\n")

    async def go() -> NodePoll:
        watch = NodeWatch(sys.executable, "auto", {}, argv=[sys.executable, str(script)])
        try:
            return await watch.poll()
        finally:
            await watch.close()

    poll = asyncio.run(go())
    assert poll.kind == "probe" and "Traceback: boom" in (poll.error or "")


def test_a_helper_never_outlives_mmops_killed_with_sigkill(fake_ray, tmp_path):
    env, _ = fake_ray
    repo = Path(__file__).resolve().parents[1]
    owner_py = tmp_path / "owner.py"
    owner_py.write_text(
        textwrap.dedent(
            f"""
            import asyncio, os, sys
            sys.path.insert(0, {str(repo)!r})
            from mmops.serve.health import NodeWatch

            async def main():
                watch = NodeWatch(sys.executable, "auto", dict(os.environ))
                poll = await watch.poll()
                print("polled", poll.ok, watch.pid, flush=True)
                await asyncio.sleep(3600)

            asyncio.run(main())
            """
        )
    )
    owner = subprocess.Popen(
        [sys.executable, str(owner_py)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        said = owner.stdout.readline().split()
        assert said[:2] == ["polled", "True"], said
        reaper = psutil.Process(int(said[2]))
        procs = [reaper, *reaper.children(recursive=True)]
        assert any(str(c).endswith("node_watch.py") for p in procs for c in p.cmdline()[-6:])
    finally:
        owner.kill()  # mmops dies without a word: no close(), no finally of its own
        owner.wait(10)
    deadline = time.monotonic() + 10
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not _zombie(p.pid)]
        time.sleep(0.1)
    assert not alive, [p.pid for p in alive]
