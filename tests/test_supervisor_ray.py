"""The supervisor of a Ray launch: the cluster's nodes join liveness.

The server is the fake vLLM (tests/fakes/fake_vllm.py, real processes and HTTP); the node table
comes from a scripted watch the test edits, so each path runs in about a second: a node that dies
while READY, one the GCS marks dead only after the engine died, one that comes back, one that
does not, a watch that cannot read the cluster, a stop while waiting. The real helper on a real
cluster: tests/real/test_serve_ray_real.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import fake_planner, fake_spec  # noqa: E402

from mmops.cluster.watch import NodePoll, NodeState  # noqa: E402
from mmops.serve.events import StateChanged  # noqa: E402
from mmops.serve.replay import read_events  # noqa: E402
from mmops.serve.runs import Run  # noqa: E402
from mmops.serve.supervisor import Options, State, Supervisor  # noqa: E402

pytestmark = pytest.mark.timeout(60)

HEAD = NodeState("a" * 56, True, "10.0.0.2", "h1", True)
NODE = NodeState("b" * 56, True, "10.0.0.3", "h2")
DEAD = NodeState(NODE.node_id, False, NODE.ip, NODE.hostname,
                 death="UNEXPECTED_TERMINATION: health check failed due to missing too many "
                       "heartbeats")  # fmt: skip
BACK = NodeState("c" * 56, True, "10.0.0.3", "h2")  # `ray start` again there: a new id

FAST = Options(
    stop_sigint_s=3, stop_sigterm_s=3, reaper_grace_s=1, liveness_failures=2,
    cluster_interval_s=0.05, node_death_grace_s=2.0, node_recheck_s=0.05, node_return_s=3.0,
)  # fmt: skip


class ScriptedWatch:
    """A node watch whose table the test sets; counts polls, knows whether it was closed."""

    def __init__(self) -> None:
        self.table: tuple[NodeState, ...] = (HEAD, NODE)
        self.error: NodePoll | None = None
        self.polls = 0
        self.closed = False
        self.after_polls: dict[int, tuple[NodeState, ...]] = {}  # poll number -> table from it

    async def poll(self) -> NodePoll:
        self.polls += 1
        for n, table in sorted(self.after_polls.items()):
            if self.polls >= n:
                self.table = table
        await asyncio.sleep(0)
        return self.error or NodePoll(nodes=self.table, elapsed_ms=0.6)

    async def close(self) -> None:
        self.closed = True


def make(tmp_path: Path, watch: ScriptedWatch, **spec_kw) -> Supervisor:
    args = {"distributed-executor-backend": "ray", **spec_kw.pop("args", {})}
    spec = fake_spec(tmp_path / "rec.jsonl", args=args, **spec_kw)
    run = Run.create(tmp_path / "runs", "ray")
    return Supervisor(spec, planner=fake_planner, run_dir=run, options=FAST,
                      node_watch=lambda plan: watch)  # fmt: skip


async def until(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def events(sup: Supervisor) -> list[StateChanged]:
    return sup.transitions


def node_event(sup: Supervisor, state: State) -> StateChanged:
    return next(e for e in events(sup) if e.state == state and "node" in e.fields)


def test_a_node_that_dies_while_ready_is_named_and_the_retry_waits_for_it(tmp_path):
    watch = ScriptedWatch()
    sup = make(tmp_path, watch)

    async def go() -> None:
        await sup.start()
        assert await sup.wait_for(State.READY) == State.READY
        await until(lambda: any("watching 2 Ray node(s)" in e.reason for e in events(sup)))
        watch.table = (HEAD, DEAD)
        await until(lambda: sup.state == State.BACKOFF)
        await asyncio.sleep(0.3)
        assert sup.state == State.BACKOFF and sup.attempt == 1  # no retry while it is gone
        watch.table = (HEAD, DEAD, BACK)
        await until(lambda: sup.attempt == 2 and sup.state == State.READY)
        await sup.stop()

    asyncio.run(go())
    unhealthy = node_event(sup, State.UNHEALTHY)
    assert unhealthy.reason.startswith(f"Ray node 10.0.0.3 ({NODE.node_id[:8]}) (UNEXPECTED")
    backoff = node_event(sup, State.BACKOFF)
    node = backoff.fields["node"]
    assert isinstance(node, dict)
    assert node["ip"] == "10.0.0.3" and node["node_id"] == NODE.node_id
    assert "missing too many heartbeats" in str(node["death"])
    cause = backoff.cause
    assert cause is not None and cause.id == "ray.node_died" and cause.retryable
    assert cause.title == "A Ray node died or was lost"
    assert "every vLLM worker on it is gone" in cause.meaning  # the table's words
    assert backoff.fix is not None and backoff.fix.startswith("Check node 10.0.0.3: dmesg")
    assert "retrying once it is back in the Ray cluster" in backoff.reason
    assert any(f"{BACK.label} is alive in the Ray cluster again" in e.reason
               for e in events(sup))  # fmt: skip
    assert [e.state for e in events(sup)][-1] == State.STOPPED
    assert watch.closed
    # The run folder says the same (events.jsonl round trip).
    recorded = read_events(sup.run_dir.path)
    named = [r for r in recorded if isinstance(r.get("cause"), dict)]
    assert named and named[0]["cause"]["id"] == "ray.node_died"
    assert named[0]["node"]["ip"] == "10.0.0.3"


def test_engine_dies_first_and_the_gcs_names_the_node_a_little_later(tmp_path):
    watch = ScriptedWatch()
    # The fake's engine dies 0.5 s after READY (EngineDeadError); the GCS keeps the node alive
    # for a few more polls, as Ray does until its health checks give up (~13 s, measured).
    sup = make(tmp_path, watch, env={"FAKE_VLLM_DIE": "logged", "FAKE_VLLM_DIE_AFTER_S": "0.5"})

    async def go() -> None:
        await sup.start()
        assert await sup.wait_for(State.READY) == State.READY
        await until(lambda: sup.state == State.UNHEALTHY)
        watch.after_polls[watch.polls + 5] = (HEAD, DEAD)
        await until(lambda: sup.state in (State.BACKOFF, State.FAILED))
        await sup.stop()

    asyncio.run(go())
    first = next(e for e in events(sup) if e.state == State.UNHEALTHY)
    assert "engine dead behind a live API" in first.reason  # what vLLM showed first
    backoff = node_event(sup, State.BACKOFF)
    assert backoff.cause is not None and backoff.cause.id == "ray.node_died"
    log_cause = backoff.fields.get("log_cause")
    assert isinstance(log_cause, dict) and log_cause["id"] == "engine.dead"  # kept beside
    assert events(sup)[-1].reason.startswith("requested stop (while waiting for node 10.0.0.3")


def test_engine_death_with_every_node_alive_is_an_ordinary_failure(tmp_path):
    watch = ScriptedWatch()
    sup = make(tmp_path, watch, env={"FAKE_VLLM_DIE": "logged", "FAKE_VLLM_DIE_AFTER_S": "0.3"})

    async def go() -> None:
        await sup.start()
        await sup.wait_for(State.READY)
        await until(lambda: any(e.state == State.BACKOFF for e in events(sup)), timeout=15)
        await sup.stop()

    asyncio.run(go())
    backoff = next(e for e in events(sup) if e.state == State.BACKOFF)
    assert "node" not in backoff.fields
    assert backoff.cause is not None and backoff.cause.id == "engine.dead"
    # The log blamed a consequence, so the node table was read for a while first, and said so.
    looked = [e for e in events(sup) if e.reason.startswith("checking whether a Ray node died")]
    assert len(looked) == 1 and looked[0].time <= backoff.time


def test_a_node_that_does_not_come_back_fails_the_run_with_the_fix(tmp_path):
    watch = ScriptedWatch()
    sup = make(tmp_path, watch)

    async def go() -> State:
        await sup.start()
        await sup.wait_for(State.READY)
        await until(lambda: watch.polls >= 1 and sup._baseline is not None)
        watch.table = (HEAD, DEAD)
        return await sup.wait()

    assert asyncio.run(go()) == State.FAILED
    failed = events(sup)[-1]
    assert failed.state == State.FAILED
    assert "not back within 3 s, and vLLM cannot start without it" in failed.reason
    assert failed.fix is not None and "10.0.0.3" in failed.fix
    assert sup.attempt == 1 and watch.closed


def test_a_dead_head_shows_as_a_gcs_that_stops_answering(tmp_path):
    watch = ScriptedWatch()
    sup = make(tmp_path, watch, env={"FAKE_VLLM_DIE": "logged", "FAKE_VLLM_DIE_AFTER_S": "0.3"})

    async def go() -> None:
        await sup.start()
        await sup.wait_for(State.READY)
        await until(lambda: sup._baseline is not None)
        watch.error = NodePoll(error="the Ray GCS at 10.0.0.2:6379 does not answer",
                               kind="unreachable")  # fmt: skip
        await until(lambda: sup.state in (State.BACKOFF, State.FAILED), timeout=15)
        await sup.stop()

    asyncio.run(go())
    backoff = node_event(sup, State.BACKOFF)
    node = backoff.fields["node"]
    assert isinstance(node, dict) and node["is_head"] and node["ip"] == "10.0.0.2"
    assert "GCS does not answer" in str(node["death"])
    # Said once, not at every poll.
    said = [e for e in events(sup) if e.reason.startswith("Ray node watch:")]
    assert len(said) == 1


def test_a_watch_that_cannot_read_the_cluster_never_stops_a_serving_server(tmp_path):
    watch = ScriptedWatch()
    watch.error = NodePoll(error="Ray is not importable in /x/python", kind="no-ray")
    sup = make(tmp_path, watch)

    async def go() -> None:
        await sup.start()
        await sup.wait_for(State.READY)
        await until(lambda: watch.polls >= 10)
        assert sup.state == State.READY
        await sup.stop()

    asyncio.run(go())
    said = [e for e in events(sup) if e.reason.startswith("Ray node watch:")]
    assert len(said) == 1 and said[0].fields["cluster_watch"] == "no-ray"
    assert events(sup)[-1].state == State.STOPPED and watch.closed


def test_other_launches_have_no_node_watch(tmp_path):
    made: list[object] = []
    spec = fake_spec(tmp_path / "rec.jsonl")
    sup = Supervisor(spec, planner=fake_planner, options=FAST,
                     node_watch=lambda plan: made.append(plan) or ScriptedWatch())  # fmt: skip

    async def go() -> None:
        await sup.start()
        await sup.wait_for(State.READY)
        await sup.stop()

    asyncio.run(go())
    assert made == []
    assert not any("Ray" in e.reason for e in events(sup))
