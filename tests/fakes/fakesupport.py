"""Helpers for tests that supervise tests/fakes/fake_vllm.py: planner, ports, records, processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

import psutil

from mmops.launch import flags as vllm_flags
from mmops.launch.plan import Plan
from mmops.launch.profile import Readiness, RestartPolicy
from mmops.launch.spec import LaunchSpec

FAKES = Path(__file__).resolve().parent
FAKE = FAKES / "fake_vllm.py"
FAKE_PKG = FAKES / "pkg"  # `python -m vllm.entrypoints.openai.api_server` -> the fake
REPO = FAKES.parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_planner(spec: LaunchSpec) -> Plan:
    """Plan that runs the fake with the spec's flags and env, as build_plan would run vLLM."""
    argv = [sys.executable, str(FAKE), "--model", str(spec.model), *vllm_flags.to_argv(spec.args)]
    return Plan(
        argv=argv,
        env=dict(spec.env),
        cwd=str(FAKES),
        python=sys.executable,
        vllm_version=None,
        entry_point="fake",
        host=spec.host,
        port=spec.port,
        served_model=spec.served_name,
    )


def fake_spec(
    record: Path,
    scenario: str = "serve",
    args: dict | None = None,
    env: dict | None = None,
    max_attempts: int = 3,
    ready_timeout_s: float = 15.0,
) -> LaunchSpec:
    """A launch of the fake on a free port with fast restarts (no jitter: exact delays)."""
    return LaunchSpec(
        model="fake-model",
        args={"host": "127.0.0.1", "port": free_port(), **(args or {})},
        env={"FAKE_VLLM_SCENARIO": scenario, "FAKE_VLLM_RECORD": str(record), **(env or {})},
        restart=RestartPolicy(
            max_attempts=max_attempts,
            window_s=300,
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
            jitter=0.0,
            healthy_reset_s=300,
        ),
        readiness=Readiness(timeout_s=ready_timeout_s, interval_s=0.05),
    )


def records(path: Path, event: str | None = None) -> list[dict]:
    """The fake's JSON records (one per start/exit/engine event)."""
    if not path.exists():
        return []
    out = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in out if event is None or r.get("event") == event]


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_gone(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """Processes still alive (not zombies) after timeout."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for `python -m mmops` subprocesses: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_watching_the_loop(sup) -> tuple[object, list[float]]:  # noqa: ANN001 - a Supervisor
    """Run ``sup`` to its end while a 10 ms ticker records how late the event loop woke it:
    (final state, lags in seconds). A blocking read anywhere shows up as a long lag."""
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    async def go():  # noqa: ANN202
        tick = asyncio.ensure_future(ticker())
        await sup.start()
        final = await sup.wait()
        tick.cancel()
        return final

    return asyncio.run(go()), lags
