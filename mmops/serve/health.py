"""Is the server up, and is it still alive? Readiness and liveness over HTTP and the process tree.

Ready = ``/health`` answers 200 and ``/v1/models`` lists the served model (then, when the launch
names a suite, one sample request passes: the supervisor adds that). Alive = ``/health`` keeps
answering, no "engine dead" line was logged, and no engine process of the tree has exited while
the API process lives on (vLLM's V1 API server outlives a dead EngineCore:
vllm-project/vllm#42362). With ``--distributed-executor-backend ray``, alive also means every
Ray node that was alive at READY still is (:class:`NodeWatch`, polled by the supervisor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import psutil

if TYPE_CHECKING:  # mmops.cluster is imported only by a Ray launch
    from mmops.cluster.watch import NodePoll


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


# ------------------------------------------------------------------------- Ray cluster nodes


class NodeWatch:
    """The Ray cluster's node table, read by one long-lived helper in vLLM's interpreter
    (mmops/cluster/node_watch.py: one GCS RPC per poll, no driver, no task).

    ``poll()`` never raises and never waits longer than ``start_timeout_s`` (the first, which
    starts the helper: ``import ray``) or ``poll_timeout_s``; a helper that does not answer in
    time is killed and started again at the next poll, no sooner than ``restart_after_s`` after
    a failed start. The helper runs under the reaper in its own session: ``close()`` ends it,
    and it ends by itself when its stdin closes or mmops dies.
    """

    def __init__(
        self,
        python: str,
        address: str,
        env: Mapping[str, str] | None = None,
        *,
        start_timeout_s: float = 30.0,
        poll_timeout_s: float = 5.0,
        restart_after_s: float = 60.0,
        argv: Sequence[str] | None = None,
    ) -> None:
        from mmops.cluster import node_watch

        self.address = address
        self.argv = list(argv) if argv is not None else [
            python, "-u", node_watch.__file__, "--address", address,
            "--timeout", f"{poll_timeout_s:g}",
        ]  # fmt: skip
        # The helper is no driver: the server's job config is not its business.
        self.env = {k: v for k, v in (env or {}).items() if k != "RAY_JOB_CONFIG_JSON_ENV_VAR"}
        self.start_timeout_s = start_timeout_s
        self.poll_timeout_s = poll_timeout_s
        self.restart_after_s = restart_after_s
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: dict[str, object] | None = None  # the helper's first line
        self._lock = asyncio.Lock()
        self._failed: NodePoll | None = None  # the last failed start, repeated until retried
        self._retry_at = 0.0
        self._said = ""  # its last line that was not JSON (a Ray warning, a traceback)
        self._unanswered = 0  # polls sent whose answer is not read yet

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def poll(self) -> NodePoll:
        """The node table now, or why not."""
        from mmops.cluster.watch import NodePoll

        async with self._lock:
            if self.proc is None or self.proc.returncode is not None or self.ready is None:
                await self._kill()  # one whose start was cancelled half-way
                failed = await self._start()
                if failed is not None:
                    return failed
            proc = self.proc
            assert proc is not None and proc.stdin is not None
            try:
                # A poll cancelled half-way left its answer in the pipe: read it first.
                while self._unanswered:
                    await asyncio.wait_for(self._read(), self.poll_timeout_s)
                    self._unanswered -= 1
                proc.stdin.write(b"poll\n")
                self._unanswered += 1
                await asyncio.wait_for(proc.stdin.drain(), self.poll_timeout_s)
                doc = await asyncio.wait_for(self._read(), self.poll_timeout_s)
                self._unanswered -= 1
            except asyncio.TimeoutError:
                await self._kill()
                return NodePoll(
                    error=f"the Ray GCS at {self.address} gave no node table within "
                    f"{self.poll_timeout_s:g} s",
                    kind="timeout",
                )
            except (EOFError, OSError, ValueError) as exc:  # ValueError: a line over the limit
                await self._kill()
                return NodePoll(error=f"the node watch exited ({self._why(exc)})", kind="probe")
            return NodePoll.from_json(doc)

    async def _start(self) -> NodePoll | None:
        import time as _time

        from mmops.cluster.watch import NodePoll
        from mmops.serve import reaper

        if self._failed is not None and _time.monotonic() < self._retry_at:
            return self._failed
        self._said = ""
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *reaper.reaper_argv(self.argv, 2.0),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env or None,
                start_new_session=True,
                limit=1 << 24,  # one line holds the whole node table (~250 bytes a node)
            )
        except OSError as exc:
            why = f"cannot start the node watch: {exc}"
            return self._start_failed(NodePoll(error=why, kind="probe"))
        try:
            line = await asyncio.wait_for(self._read(), self.start_timeout_s)
        except asyncio.TimeoutError:
            await self._kill()
            why = f"the node watch did not connect within {self.start_timeout_s:g} s"
            return self._start_failed(NodePoll(error=why, kind="timeout"))
        except (EOFError, OSError, ValueError) as exc:
            await self._kill()
            return self._start_failed(
                NodePoll(error=f"the node watch exited ({self._why(exc)})", kind="probe")
            )
        first = NodePoll.from_json(line)
        if not first.ok:
            await self._kill()
            return self._start_failed(first)
        with contextlib.suppress(ValueError):
            self.ready = json.loads(line)
        self._failed = None
        return None

    def _start_failed(self, why: NodePoll) -> NodePoll:
        import time as _time

        self._failed = why
        self._retry_at = _time.monotonic() + self.restart_after_s
        return why

    def _why(self, exc: BaseException) -> str:
        return self._said[-300:] or type(exc).__name__

    async def _read(self) -> str:
        """The helper's next JSON line; its other lines are remembered (the last one)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                raise EOFError("end of output")
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("{"):
                return line
            if line:
                self._said = line

    async def _kill(self) -> None:
        from mmops.serve import reaper

        proc, self.proc = self.proc, None
        self.ready = None
        self._unanswered = 0
        if proc is None:
            return
        if proc.returncode is None:
            reaper.kill_tree(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)

    async def close(self) -> None:
        """End the helper: its stdin closes (it exits), else it is killed."""
        async with self._lock:
            proc = self.proc
            if proc is None:
                return
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.close()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), 3)
            await self._kill()
