"""A run folder as an event source: `mmops logs`, `mmops tui --run` and post-mortems read it.

The same interface as the live supervisor (``serve.events.EventSource``): ``snapshot()`` folds
``events.jsonl``; ``events(since)`` yields its records and, with ``live``, the ones a live
`mmops serve` appends later, until the run ends (a terminal state, or its mmops process gone);
``read_log`` reads attempt logs by byte offset. A replay cannot stop or restart anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NamedTuple

from mmops.errors import UsageError
from mmops.serve import runs
from mmops.serve.events import AnyEvent, StateChanged, Status, fold, from_dict
from mmops.serve.logstore import LogChunk, read_range
from mmops.serve.states import TERMINAL

# Lines that are no event, or a first line left half-written this long, mean no mmops writes
# this run folder (it writes each record at once): following it ends instead of waiting forever.
TORN_STALE_S = 30.0


class LogLine(NamedTuple):
    attempt: int
    line_no: int  # 1-based in attempt-N.log
    text: str


class RunReplay:
    """Read-only view of one run folder (finished, or still written by a live serve)."""

    def __init__(self, path: Path, *, live: bool = False, poll_s: float = 0.2) -> None:
        self.path = path
        self.live = live  # events() waits for what a running serve appends
        self.poll_s = poll_s
        self._offset = 0  # bytes of events.jsonl consumed
        self._count = 0
        self._history: list[AnyEvent] = []
        self._status = Status()
        self._pump()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def can_control(self) -> bool:
        return False

    def _pump(self) -> list[AnyEvent]:
        """Read the complete records appended since the last call (a torn last line waits)."""
        path = self.path / "events.jsonl"
        try:
            with path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1
        self._offset += cut
        new: list[AnyEvent] = []
        for raw in data[:cut].splitlines():
            self._count += 1
            try:
                rec = json.loads(raw)
            except ValueError:  # JSONDecodeError, and UnicodeDecodeError for NUL-led junk
                continue
            ev = from_dict(rec, default_seq=self._count) if isinstance(rec, dict) else None
            if ev is not None:
                new.append(ev)
                self._history.append(ev)
                self._status = fold(self._status, ev)
        return new

    @property
    def history(self) -> list[AnyEvent]:
        return list(self._history)

    @property
    def transitions(self) -> list[StateChanged]:
        return [e for e in self._history if isinstance(e, StateChanged)]

    def snapshot(self) -> Status:
        return self._status

    def attempts(self) -> list[int]:
        return runs.attempts(self.path)

    def log_path(self, attempt: int) -> Path | None:
        return self.path / f"attempt-{attempt}.log"

    def read_log(self, attempt: int, offset: int = 0, limit: int = 1000) -> LogChunk:
        return read_range(self.path / f"attempt-{attempt}.log", offset, limit)

    def over(self) -> bool:
        """True when nothing more will be written: a terminal state, or its mmops is gone."""
        self._pump()
        if self._status.state in TERMINAL and self._history:
            return True
        if not self._history:  # no owner to ask: --follow waited forever on a dead folder
            return self._count > 0 or self._torn_for() > TORN_STALE_S
        return not self.owner_alive()

    def _torn_for(self) -> float:
        """Seconds since events.jsonl, holding no complete record, was last written (0: none)."""
        try:
            st = (self.path / "events.jsonl").stat()
        except OSError:
            return 0.0
        return time.time() - st.st_mtime if st.st_size else 0.0

    def owner_alive(self) -> bool:
        """Is the mmops that writes this run still running?"""
        pid = next(
            (e.fields.get("mmops_pid") for e in self.transitions if e.fields.get("mmops_pid")),
            None,
        )
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def iter_events(self, since: int = 0) -> Iterator[AnyEvent]:
        """The recorded events with ``seq > since`` (no waiting)."""
        self._pump()
        return (e for e in list(self._history) if e.seq > since)

    async def events(self, since: int = 0) -> AsyncIterator[AnyEvent]:
        last = since
        for ev in self.iter_events(since):
            last = max(last, ev.seq)
            yield ev
        while self.live and not self.over():
            await asyncio.sleep(self.poll_s)
            for ev in self._pump():
                if ev.seq > last:
                    last = ev.seq
                    yield ev
        for ev in self._pump():  # what the run wrote between the last look and its end
            if ev.seq > last:
                last = ev.seq
                yield ev

    def follow(self, attempt: int | None = None, poll_s: float = 0.2) -> Iterator[LogLine]:
        """Every line of the attempt log as it is written (of each new attempt in turn when
        ``attempt`` is None), until the run ends. Offsets, not re-reads: each byte once."""
        current = attempt or (self.attempts() or [1])[-1]
        offset = 0
        line_no = 0
        while True:
            chunk = self.read_log(current, offset, limit=10_000)
            if chunk.lines:
                offset = chunk.next_offset
                for text in chunk.lines:
                    line_no += 1
                    yield LogLine(current, line_no, text)
                continue
            newer = [n for n in self.attempts() if n > current]
            if attempt is None and newer:
                yield from self._partial(current, offset, line_no)
                current, offset, line_no = newer[0], 0, 0
                continue
            if self.over():
                # One last read: the run may have written its last lines after our last look.
                if self.read_log(current, offset, limit=1).lines:
                    continue
                yield from self._partial(current, offset, line_no)
                return
            time.sleep(poll_s)

    def _partial(self, attempt: int, offset: int, line_no: int) -> Iterator[LogLine]:
        """A last line without its newline (the server died mid-line), as it is."""
        path = self.log_path(attempt)
        if path is None or not path.exists():
            return
        with path.open("rb") as fh:
            fh.seek(offset)
            rest = fh.read()
        if rest:
            yield LogLine(attempt, line_no + 1, rest.decode("utf-8", "replace"))

    async def stop(self, force: bool = False) -> None:
        raise UsageError(f"{self.name}: a recorded run cannot be stopped (it is a replay)")

    async def restart(self) -> None:
        raise UsageError(f"{self.name}: a recorded run cannot be restarted (it is a replay)")


def read_events(run_dir: Path) -> list[dict[str, object]]:
    """Every complete record of a run folder as written (a torn last line is skipped)."""
    from mmops.serve.events import to_dict

    return [to_dict(e) for e in RunReplay(run_dir).history]  # type: ignore[misc]
