"""Is the server up, and is it still alive? Readiness and liveness over HTTP and the process tree.

Ready = ``/health`` answers 200 and ``/v1/models`` lists the served model (then, when the launch
names a suite, one sample request passes: the supervisor adds that). Alive = ``/health`` keeps
answering, no "engine dead" line was logged, and no engine process of the tree has exited while
the API process lives on (vLLM's V1 API server outlives a dead EngineCore:
vllm-project/vllm#42362).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psutil


def make_client(url: str, api_key: str | None, timeout_s: float) -> httpx.AsyncClient:
    """The client that polls our own child on this host."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # verify=False: the probes talk to our own child, and building a verifying SSL context
    # costs ~100 ms of loop time per attempt.
    return httpx.AsyncClient(
        base_url=url, timeout=timeout_s, trust_env=False, verify=False, headers=headers
    )


async def ready_once(client: httpx.AsyncClient, served_model: str | None) -> tuple[bool, str]:
    """One readiness probe: (ok, why not)."""
    try:
        r = await client.get("/health")
        if r.status_code != 200:
            return False, f"/health answered {r.status_code}"
        r = await client.get("/v1/models")
        if r.status_code != 200:
            return False, f"/v1/models answered {r.status_code}"
        ids = [m.get("id") for m in r.json().get("data", []) if isinstance(m, dict)]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return False, f"{type(exc).__name__}"
    if served_model and served_model not in ids:
        return False, f"/v1/models lists {ids}, not {served_model}"
    return True, "ok"


@dataclass(frozen=True)
class Liveness:
    interval_s: float
    failures: int  # consecutive failed /health polls -> unhealthy
    engine_min_age_s: float  # tree processes older than this at READY are watched


async def watch(
    client: httpx.AsyncClient,
    child_pid: int,
    cfg: Liveness,
    alarm: asyncio.Event,
    dead_line: Callable[[], str | None],
    child_alive: Callable[[], bool],
    on_tick: Callable[[], None] = lambda: None,
) -> str:
    """Poll until the server is not alive any more; returns why. ``alarm`` is set by the log
    reader when a line says the engine died, ``dead_line()`` is that line."""
    watched = engine_tree(child_pid, cfg.engine_min_age_s)
    failures = 0
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(alarm.wait(), cfg.interval_s)
        line = dead_line()
        if line is not None:
            return f"engine dead behind a live API: {line}"
        gone = [f"{pid} ({name})" for pid, name in watched.items() if not alive(pid)]
        if gone and child_alive():
            return f"engine process {', '.join(gone)} exited while the API is up"
        for pid, name in engine_tree(child_pid, cfg.engine_min_age_s).items():
            watched.setdefault(pid, name)
        try:
            r = await client.get("/health")
            why = None if r.status_code == 200 else f"/health answered {r.status_code}"
        except httpx.HTTPError as exc:
            why = f"/health: {type(exc).__name__}"
        if why is None:
            failures = 0
        else:
            failures += 1
            if failures >= cfg.failures:
                return f"{why} ({failures} times in a row)"
        on_tick()


def engine_tree(reaper_pid: int, min_age_s: float) -> dict[int, str]:
    """Processes under the API server, old enough to be the engine rather than a helper."""
    try:
        root = psutil.Process(reaper_pid)
        direct = {p.pid for p in root.children()}
        now = time.time()
        out = {}
        for p in root.children(recursive=True):
            if p.pid in direct:
                continue  # the API server: its exit is seen as the attempt's exit
            with contextlib.suppress(psutil.Error):
                if now - p.create_time() >= min_age_s:
                    out[p.pid] = p.name()
        return out
    except Exception:  # noqa: BLE001 - the tree watch is an extra; /health still runs
        return {}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone, or unreadable: either way not a live engine
        return False
