"""The supervisor against real child processes (tests/fakes/fake_vllm.py) that replay real
vLLM / vllm-ascend log lines (sources: tests/fakes/lines/SOURCES.yaml), bind real ports and
answer real HTTP on 127.0.0.1. Restarts are fast (50 ms backoff) so the file runs in seconds."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import httpx
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import fake_planner, fake_spec, records, tree, wait_gone  # noqa: E402

from mmops.serve.replay import read_events  # noqa: E402
from mmops.serve.runs import Run  # noqa: E402
from mmops.serve.supervisor import Options, State, Supervisor  # noqa: E402

pytestmark = pytest.mark.timeout(60)

FAST = Options(stop_sigint_s=3, stop_sigterm_s=3, reaper_grace_s=1, liveness_failures=2)


def make(spec, tmp_path: Path, **kw) -> Supervisor:
    run = Run.create(tmp_path / "runs", "test")
    return Supervisor(spec, planner=fake_planner, run_dir=run, options=kw.pop("options", FAST), **kw)


def states(sup: Supervisor) -> list[tuple[int, str]]:
    return [(e.attempt, e.state.value) for e in sup.transitions]


async def _until_ready_then_stop(sup: Supervisor) -> State:
    await sup.start()
    reached = await sup.wait_for(State.READY)
    if reached == State.READY:
        await sup.stop()
    return reached


def run_to_end(sup: Supervisor) -> State:
    """Start the supervisor and wait for its final state (FAILED or STOPPED)."""

    async def go() -> State:
        await sup.start()
        return await sup.wait()

    return asyncio.run(go())


def test_virtual_memory_failure_then_ready_with_expandable_segments_false(tmp_path):
    rec = tmp_path / "rec.jsonl"
    # The user's own allocator keys must survive the remedy.
    spec = fake_spec(
        rec,
        "npu_vm",
        env={"PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:256,expandable_segments:True"},
    )
    sup = make(spec, tmp_path)
    assert asyncio.run(_until_ready_then_stop(sup)) == State.READY

    starts = records(rec, "start")
    assert [s["alloc"] for s in starts] == [
        "max_split_size_mb:256,expandable_segments:True",
        "max_split_size_mb:256,expandable_segments:False",
    ]
    assert states(sup) == [
        (1, "STARTING"),
        (1, "BACKOFF"),
        (2, "STARTING"),
        (2, "READY"),
        (2, "STOPPING"),
        (2, "STOPPED"),
    ]
    backoff = sup.transitions[1]
    assert backoff.fields["cause"]["id"] == "npu.virtual_memory"
    assert (
        backoff.fields["change"]["change"]
        == "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
    )
    ready = sup.transitions[3]
    assert ready.fields["fixed_by"][0]["signature"] == "npu.virtual_memory"
    assert "expandable_segments:False" in ready.reason
    assert [c.describe() for c in sup.fixed_by] == [
        "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
    ]
    # The record says the same, and attempt 1's log holds the real failure line.
    logged = [e for e in read_events(sup.run_dir.path) if "state" in e]
    assert [e["state"] for e in logged] == [s for _, s in states(sup)]
    assert logged[2]["env"]["PYTORCH_NPU_ALLOC_CONF"].endswith("expandable_segments:False")
    log1 = (sup.run_dir.path / "attempt-1.log").read_text()
    assert "error code is 507001" in log1
    assert (
        "Set PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
        in (sup.run_dir.path / "attempt-2.log").read_text()
    )


def test_a_remedy_that_does_not_help_is_not_retried_blindly(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "npu_vm", env={"FAKE_VLLM_VM_ALWAYS": "1"}, max_attempts=5), tmp_path)

    assert run_to_end(sup) == State.FAILED
    assert [s["alloc"] for s in records(rec, "start")] == [None, "expandable_segments:False"]
    assert "the automatic fix did not help" in sup.transitions[-1].reason
    assert sup.fixed_by == []


def test_crash_loop_ends_failed_after_max_attempts(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "crash", max_attempts=3), tmp_path)

    assert run_to_end(sup) == State.FAILED
    assert len(records(rec, "start")) == 3
    assert [s for _, s in states(sup)] == ["STARTING", "BACKOFF"] * 2 + ["STARTING", "FAILED"]
    delays = [e.fields["delay_s"] for e in sup.transitions if e.state == State.BACKOFF]
    assert delays == [0.05, 0.1]  # exponential, no jitter in this policy
    failed = sup.transitions[-1]
    assert "gave up after 3 failed attempts" in failed.reason
    assert failed.fields["cause"]["id"] == "dist.hccl"
    assert failed.fields["fix"]


def test_config_error_fails_at_once_with_the_fix(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "config_error", max_attempts=5), tmp_path)

    assert run_to_end(sup) == State.FAILED
    assert len(records(rec, "start")) == 1  # no blind retry of a config error
    failed = sup.transitions[-1]
    assert failed.fields["cause"]["id"] == "config.max_len_above_derived"
    assert failed.fields["cause"]["line_no"] is not None
    assert "4096" in failed.fields["fix"]
    assert "retrying cannot fix" in failed.reason


def test_kv_cache_too_small_retries_with_vllms_estimate(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "kv", args={"max-model-len": 131072}), tmp_path)
    assert asyncio.run(_until_ready_then_stop(sup)) == State.READY
    assert [s["max_model_len"] for s in records(rec, "start")] == [131072, 5632]
    assert sup.transitions[1].fields["change"]["change"] == "--max-model-len 5632"
    assert sup.spec.max_model_len == 5632


def test_engine_dead_behind_live_api_is_unhealthy_and_restarted(tmp_path):
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(rec, "serve", env={"FAKE_VLLM_DIE": "logged", "FAKE_VLLM_DIE_AFTER_S": "0.3"})
    sup = make(spec, tmp_path)
    api_alive: list[int] = []

    def on_event(ev) -> None:
        if ev.state == State.UNHEALTHY:  # at this moment the API still answers
            with httpx.Client(trust_env=False) as c:
                api_alive.append(c.get(f"http://127.0.0.1:{spec.port}/v1/models").status_code)

    sup.on_event = on_event

    async def go() -> State:
        await sup.start()
        await sup.wait_for(State.UNHEALTHY)
        await sup.wait_for(State.READY)
        return await sup.stop()

    assert asyncio.run(go()) == State.STOPPED
    assert api_alive == [200]
    seq = [s for _, s in states(sup)]
    assert seq[:6] == ["STARTING", "READY", "UNHEALTHY", "BACKOFF", "STARTING", "READY"]
    unhealthy = next(e for e in sup.transitions if e.state == State.UNHEALTHY)
    assert "EngineDeadError" in unhealthy.reason
    assert len(records(rec, "start")) == 2


def test_engine_process_dying_silently_is_caught_by_the_tree_watch(tmp_path):
    # vllm-project/vllm#39863: EngineCore died, the API kept answering its health check.
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(
        rec,
        "serve",
        env={"FAKE_VLLM_ENGINE": "1", "FAKE_VLLM_DIE": "silent", "FAKE_VLLM_DIE_AFTER_S": "0.6"},
    )
    opts = Options(stop_sigint_s=3, stop_sigterm_s=3, reaper_grace_s=1, engine_min_age_s=0.2)
    sup = make(spec, tmp_path, options=opts)

    async def go() -> State:
        await sup.start()
        await sup.wait_for(State.UNHEALTHY)
        await sup.wait_for(State.READY)
        return await sup.stop()

    assert asyncio.run(go()) == State.STOPPED
    unhealthy = next(e for e in sup.transitions if e.state == State.UNHEALTHY)
    died = records(rec, "engine")[0]["engine_pid"]
    assert f"engine process {died}" in unhealthy.reason
    assert len(records(rec, "start")) == 2


def test_requested_stop_is_not_a_crash(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "serve", env={"FAKE_VLLM_ENGINE": "1"}), tmp_path)
    procs: list[psutil.Process] = []

    async def go() -> State:
        await sup.start()
        assert await sup.wait_for(State.READY) == State.READY
        procs.extend(tree(sup.pid))
        return await sup.stop()

    assert asyncio.run(go()) == State.STOPPED
    assert [s for _, s in states(sup)] == ["STARTING", "READY", "STOPPING", "STOPPED"]
    stopped = sup.transitions[-1]
    assert stopped.fields["crash"] is False and stopped.reason == "requested stop"
    assert sup.cause is None
    # vLLM logs EngineDeadError while stopping; it is recorded, and ignored.
    assert "EngineDeadError" in (sup.run_dir.path / "attempt-1.log").read_text()
    assert len(procs) == 3  # reaper, fake API server, its engine
    assert wait_gone(procs, 5) == []


def test_stop_escalates_to_sigterm_then_sigkill_on_the_whole_group(tmp_path):
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(
        rec, "serve", env={"FAKE_VLLM_IGNORE": "INT,TERM", "FAKE_VLLM_ENGINE": "setsid"}
    )
    opts = Options(stop_sigint_s=0.3, stop_sigterm_s=0.3, reaper_grace_s=0.3)
    sup = make(spec, tmp_path, options=opts)
    procs: list[psutil.Process] = []

    async def go() -> State:
        await sup.start()
        await sup.wait_for(State.READY)
        procs.extend(tree(sup.pid))
        return await sup.stop()

    assert asyncio.run(go()) == State.STOPPED
    signals = [e.fields.get("signal") for e in sup.transitions if e.state == State.STOPPING]
    assert signals == ["SIGINT", "SIGTERM", "SIGKILL"]
    assert len(procs) == 3
    assert wait_gone(procs, 5) == []  # the setsid'd engine too


def test_port_in_use_is_classified_with_the_port_holder_fix(tmp_path):
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(rec, "serve", max_attempts=2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", spec.port))
        holder.listen(1)
        sup = make(spec, tmp_path)

        async def go() -> State:
            await sup.start()
            return await sup.wait()

        assert asyncio.run(go()) == State.FAILED
    cause = sup.transitions[-1].fields["cause"]
    assert cause["id"] == "host.port_in_use"
    assert "Address already in use" in cause["line"]  # Python's own OSError text
    assert len(records(rec, "start")) == 2


def test_readiness_timeout_counts_as_a_failed_attempt(tmp_path):
    rec = tmp_path / "rec.jsonl"
    sup = make(fake_spec(rec, "hang", max_attempts=1, ready_timeout_s=2), tmp_path)

    assert run_to_end(sup) == State.FAILED
    assert "not ready after 2 s" in sup.transitions[-1].reason
    assert len(records(rec, "start")) == 1


def test_stop_during_backoff_is_stopped_not_failed(tmp_path):
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(rec, "crash", max_attempts=5)
    from dataclasses import replace

    spec = replace(spec, restart=replace(spec.restart, backoff_initial_s=30, backoff_max_s=30))
    sup = make(spec, tmp_path)

    async def go() -> State:
        await sup.start()
        await sup.wait_for(State.BACKOFF)
        return await sup.stop()

    assert asyncio.run(go()) == State.STOPPED
    assert sup.transitions[-1].fields["crash"] is False


def test_secrets_are_masked_in_logs_and_events(tmp_path):
    rec = tmp_path / "rec.jsonl"
    key = "sk-test-0123456789abcdef"
    sup = make(
        fake_spec(rec, "config_error", args={"api-key": key}, env={"HF_TOKEN": "hf_" + "a" * 30}),
        tmp_path,
    )

    async def go() -> State:
        await sup.start()
        return await sup.wait()

    asyncio.run(go())
    assert records(rec, "start")[0]["argv"].count(key) == 1  # the child got the real key
    written = "".join(p.read_text() for p in sup.run_dir.path.iterdir())
    assert key not in written and "hf_aaaa" not in written
    assert "non-default args: {'api_key': '***'" in (sup.run_dir.path / "attempt-1.log").read_text()
    starting = json.loads((sup.run_dir.path / "events.jsonl").read_text().splitlines()[0])
    assert "***" in starting["argv"] and starting["env"]["HF_TOKEN"] == "***"
