"""The event interface: records round-trip through events.jsonl, the status fold, events(since)
on the live supervisor (real fake-vLLM child processes) and on a replay of its run folder."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import fake_planner, fake_spec  # noqa: E402

from mmops.errors import UsageError  # noqa: E402
from mmops.serve.events import (  # noqa: E402
    LogLines,
    PhaseReached,
    StateChanged,
    Status,
    fold,
    fold_all,
    from_dict,
    iso_time,
    parse_time,
    to_dict,
)
from mmops.serve.replay import RunReplay  # noqa: E402
from mmops.serve.runs import Run  # noqa: E402
from mmops.serve.states import State  # noqa: E402
from mmops.serve.supervisor import Options, Supervisor  # noqa: E402

pytestmark = pytest.mark.timeout(60)
FAST = Options(stop_sigint_s=3, stop_sigterm_s=3, reaper_grace_s=1, liveness_failures=2)


def test_records_round_trip_through_json():
    evs = [
        StateChanged(1, 1700000000.123, 1, State.STARTING, "starting", {"pid": 42, "url": "http://x"}),
        PhaseReached(2, 1700000001.5, 1, "weights", "loading weights", "shard 1/2", (1, 2)),
        StateChanged(
            3, 1700000002.0, 1, State.BACKOFF, "retrying",
            {"cause": {"id": "npu.virtual_memory", "title": "t", "meaning": "m", "fix": "f",
                       "line": "l", "line_no": 7, "retryable": True},
             "change": {"signature": "npu.virtual_memory", "change": "A=B"}, "delay_s": 0.5},
        ),
    ]  # fmt: skip
    for ev in evs:
        back = from_dict(to_dict(ev))
        assert back == ev
    backoff = evs[2]
    assert backoff.cause is not None and backoff.cause.line_no == 7
    assert backoff.change is not None and backoff.change.change == "A=B"
    assert backoff.delay_s == 0.5
    with pytest.raises(ValueError):
        to_dict(LogLines(4, 0.0, 1, 1, ("x",)))


def test_old_records_without_seq_or_kind_still_read():
    ev = from_dict({"time": "2026-11-24T10:15:30.000Z", "state": "READY", "attempt": 2,
                    "reason": "ready", "url": "u"}, default_seq=5)  # fmt: skip
    assert isinstance(ev, StateChanged) and ev.seq == 5 and ev.state == State.READY
    assert from_dict({"state": "NOPE"}) is None and from_dict({"kind": "other"}) is None


def test_fold_tracks_attempts_restarts_changes_and_failure():
    evs = [
        StateChanged(1, 10.0, 1, State.STARTING, "starting", {"pid": 1, "url": "u"}),
        PhaseReached(2, 11.0, 1, "weights", "loading weights"),
        StateChanged(3, 12.0, 1, State.BACKOFF, "b", {"change": {"signature": "s", "change": "X=1"}}),
        StateChanged(4, 13.0, 2, State.STARTING, "restart #1", {"pid": 2}),
        StateChanged(5, 20.0, 2, State.READY, "ready", {"startup_s": 7.0, "model": "m"}),
    ]
    st = fold_all(evs)
    assert (st.state, st.attempt, st.restarts, st.pid, st.model) == (State.READY, 2, 1, 2, "m")
    assert st.phase is None  # a new attempt starts its phases afresh
    assert [c.change for c in st.changes] == ["X=1"]
    assert st.uptime(25.0) == 5.0 and st.startup_s == 7.0
    failed = fold(st, StateChanged(6, 30.0, 2, State.FAILED, "gave up", {"fix": "do x"}))
    assert failed.fix == "do x" and failed.uptime(40.0) is None and failed.last_seq == 6
    assert Status().state == State.STOPPED


def test_live_events_since_then_replay_agrees(tmp_path):
    """A late subscriber gets the history after its seq, then live events; lines arrive in
    batches; the replay of the run folder yields the same state records and status."""
    spec = fake_spec(tmp_path / "rec.jsonl")
    run = Run.create(tmp_path / "runs", "t")
    sup = Supervisor(spec, planner=fake_planner, run_dir=run, options=FAST)

    async def go() -> tuple[list, list]:
        await sup.start()
        assert await sup.wait_for(State.READY) == State.READY
        first = sup.history[0].seq
        late: list = []

        async def listen() -> None:
            async for ev in sup.events(since=first):
                late.append(ev)

        task = asyncio.ensure_future(listen())
        await asyncio.sleep(0.2)
        await sup.stop()
        await asyncio.wait_for(task, 10)
        return late, list(sup.history)

    late, history = asyncio.run(go())
    assert all(ev.seq > history[0].seq for ev in late)
    states = [e.state for e in late if isinstance(e, StateChanged)]
    assert states[-2:] == [State.STOPPING, State.STOPPED]
    seqs = [e.seq for e in late]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    replay = RunReplay(run.path)
    assert [to_dict(e) for e in replay.history] == [to_dict(e) for e in history]
    a, b = replay.snapshot(), sup.snapshot()
    keys = ("state", "attempt", "max_attempts", "restarts", "url", "model", "changes", "cause")
    assert [getattr(a, k) for k in keys] == [getattr(b, k) for k in keys]
    assert a.last_seq == b.last_seq and abs((a.last_time or 0) - (b.last_time or 0)) < 0.01
    chunk = replay.read_log(1, 0, 5)
    assert chunk.lines and chunk.offset == 0 and chunk.next_offset > 0
    with pytest.raises(UsageError):
        asyncio.run(replay.stop())


def test_log_lines_are_batched_not_one_per_read(tmp_path):
    spec = fake_spec(tmp_path / "rec.jsonl", scenario="flood", env={"FAKE_VLLM_FLOOD": "20000"},
                     max_attempts=1)  # fmt: skip
    run = Run.create(tmp_path / "runs", "t")
    sup = Supervisor(spec, planner=fake_planner, run_dir=run, options=FAST)
    batches: list[LogLines] = []

    async def go() -> None:
        async def listen() -> None:
            async for ev in sup.events():
                if isinstance(ev, LogLines):
                    batches.append(ev)

        await sup.start()
        task = asyncio.ensure_future(listen())
        await sup.wait()
        await asyncio.wait_for(task, 10)

    asyncio.run(go())
    total = sum(len(b.lines) for b in batches)
    logged = (run.path / "attempt-1.log").read_text().count("\n")
    assert total == logged >= 20000
    # Numbering is continuous and batches are few (time-batched, not per 64 KiB read).
    assert [b.first_line for b in batches] == [
        1 + sum(len(x.lines) for x in batches[:i]) for i in range(len(batches))
    ]
    assert len(batches) < logged / 100


def test_restart_is_not_a_failure_and_start_after_stop_continues(tmp_path):
    spec = fake_spec(tmp_path / "rec.jsonl")
    sup = Supervisor(spec, planner=fake_planner, run_dir=Run.create(tmp_path / "r", "t"), options=FAST)

    async def go() -> None:
        await sup.start()
        assert await sup.wait_for(State.READY) == State.READY
        await sup.restart()
        await asyncio.sleep(0.1)
        assert await sup.wait_for(State.READY) == State.READY
        assert sup.attempt == 2
        await sup.stop()
        assert sup.state == State.STOPPED
        await sup.start()  # again, after a stop
        assert await sup.wait_for(State.READY) == State.READY
        await sup.stop()

    asyncio.run(go())
    states = [(e.attempt, e.state) for e in sup.transitions]
    assert (1, State.STOPPING) in states and not any(s == State.BACKOFF for _, s in states)
    assert sup.attempt == 3 and sup.snapshot().restarts == 2


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -5, 1e300, True, None, [1]])
def test_parse_time_refuses_what_no_run_could_record(value):
    assert parse_time(value) == 0.0


def test_parse_time_round_trips_iso_and_keeps_epoch_numbers():
    assert parse_time(iso_time(1_764_000_000.25)) == pytest.approx(1_764_000_000.25, abs=1e-3)
    assert parse_time(1_764_000_000) == 1_764_000_000.0


def test_a_note_while_ready_keeps_uptime_and_time_to_ready():
    ready = StateChanged(2, 100.0, 1, State.READY, "ready in 5.0 s", {"startup_s": 5.0})
    note = StateChanged(3, 160.0, 1, State.READY, "recording stopped, the server keeps running")
    st = fold_all([StateChanged(1, 95.0, 1, State.STARTING, "starting", {"pid": 7}), ready, note])
    assert (st.ready_at, st.startup_s, st.reason) == (100.0, 5.0, note.reason)
