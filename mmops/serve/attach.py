"""A server started elsewhere, as an event source: `mmops tui --attach URL`.

On-call engineers mostly arrive at a server they did not start (`mmops serve` under systemd or
tmux, a container, a colleague's). This source polls ``/health`` and ``/v1/models`` and turns
what it sees into the same state events the supervisor emits (READY, UNHEALTHY, STOPPED when
nothing answers), so every view works unchanged; it never stops or restarts anything. Its log
is a file followed through rotation and truncation (``serve.logstore``), or the newest
``mmops serve`` run folder whose plan serves this URL.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from mmops.errors import UsageError
from mmops.serve import health, runs
from mmops.serve.events import AnyEvent, EventBus, Json, StateChanged, Status
from mmops.serve.logstore import LogChunk, read_range
from mmops.serve.states import State


def run_for_url(url: str, root: Path) -> Path | None:
    """The newest run folder under ``root`` whose plan serves ``url`` (host and port)."""
    want = url.rstrip("/").removesuffix("/v1")
    for path in reversed(runs.list_runs(root)):
        try:
            plan = json.loads((path / "plan.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(plan, dict) and str(plan.get("url", "")).rstrip("/") == want:
            return path
    return None


def check_url(url: str) -> None:
    """A UsageError for an --attach value that cannot name a server (checked before the screen
    opens, not found out as "nothing answers" later)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--attach {url}: not an http(s) URL (e.g. http://127.0.0.1:8000)")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname:
        raise UsageError(f"--attach {url}: no host in it (e.g. http://127.0.0.1:8000)")
    if port == 0:
        raise UsageError(f"--attach {url}: the port must be from 1 to 65535")


class AttachSource:
    """Watch a server by its URL. ``log_file`` or ``run_dir`` (optional) give its output."""

    def __init__(
        self,
        url: str,
        *,
        log_file: Path | None = None,
        run_dir: Path | None = None,
        api_key: str | None = None,
        interval_s: float = 2.0,
        failures: int = 2,
        timeout_s: float = 3.0,
    ) -> None:
        check_url(url)
        self.url = url.rstrip("/").removesuffix("/v1")
        self.log_file = log_file
        self.run_dir = run_dir
        self.api_key = api_key
        self.interval_s = interval_s
        self.failures = failures
        self.timeout_s = timeout_s
        self._bus = EventBus(Status(url=self.url))
        self._task: asyncio.Task[None] | None = None
        self.model: str | None = None

    @property
    def can_control(self) -> bool:
        return False

    def snapshot(self) -> Status:
        return self._bus.status

    @property
    def history(self) -> list[AnyEvent]:
        return self._bus.history

    def attempts(self) -> list[int]:
        if self.run_dir is not None:
            return runs.attempts(self.run_dir) or [1]
        return [1]

    def log_path(self, attempt: int) -> Path | None:
        if self.run_dir is not None:
            return self.run_dir / f"attempt-{attempt}.log"
        return self.log_file

    def read_log(self, attempt: int, offset: int = 0, limit: int = 1000) -> LogChunk:
        path = self.log_path(attempt)
        return read_range(path, offset, limit) if path else LogChunk([], offset, offset)

    async def stop(self, force: bool = False) -> None:
        raise UsageError("attached: this server was started elsewhere; mmops will not stop it")

    async def restart(self) -> None:
        raise UsageError("attached: this server was started elsewhere; mmops will not restart it")

    def _emit(self, state: State, reason: str, **fields: Json) -> None:
        details = {k: v for k, v in fields.items() if v is not None}
        self._bus.publish(StateChanged(self._bus.next_seq(), time.time(), 1, state, reason, details))

    async def poll_once(self, client: httpx.AsyncClient, misses: int) -> int:
        """One look at the server; returns the consecutive misses so far."""
        ok, why = await health.ready_once(client, None)
        if ok:
            if self.model is None:
                try:
                    data = (await client.get("/v1/models")).json().get("data", [])
                    self.model = str(data[0]["id"]) if data else None
                except (httpx.HTTPError, ValueError, KeyError, IndexError, AttributeError):
                    self.model = None
            if self._bus.status.state != State.READY:
                self._emit(State.READY, "answering /health and /v1/models", url=self.url,
                           model=self.model)  # fmt: skip
            return 0
        misses += 1
        if misses >= self.failures:
            state = State.STOPPED if "Connect" in why else State.UNHEALTHY
            if self._bus.status.state != state or not self.history:
                self._emit(state, f"{why} ({misses} times in a row)", url=self.url)
        return misses

    async def run(self) -> None:
        """Poll until cancelled."""
        async with health.make_client(self.url, self.api_key, self.timeout_s) as client:
            misses = 0
            while True:
                misses = await self.poll_once(client, misses)
                await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._bus.close()

    def events(self, since: int = 0) -> AsyncIterator[AnyEvent]:
        return self._bus.subscribe(since, lambda: False)
