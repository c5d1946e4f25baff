"""The event interface every view uses: typed records, a status fold, and the source protocol.

A view (the `serve` renderer, `mmops logs`, the TUI, a test) holds an :class:`EventSource`: the
live supervisor, a replay of a run folder, or an attached server. It asks for ``snapshot()``
(the status now), ``events(since)`` (history from a sequence number, then live) and
``read_log(attempt, offset, limit)`` (lines by byte offset, then follow), and may ask the
source to ``stop()`` or ``restart()``. This is supervisord's ``getProcessInfo`` /
``tailProcessStdoutLog`` and its event bus, scaled to one server.

Records round-trip through ``events.jsonl``: :func:`to_dict` / :func:`from_dict`. A state
change is written as it always was (``time``, ``state``, ``attempt``, ``reason``, then its
details) plus ``seq``; other kinds carry ``kind``. Log lines are never written there: the
attempt log is their record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mmops.serve.states import State

if TYPE_CHECKING:
    from mmops.serve.logstore import LogChunk

# What a JSON value may be; event details are JSON because they go to events.jsonl as they are.
Json = str | int | float | bool | None | list["Json"] | dict[str, "Json"]


def iso_time(t: float) -> str:
    """Event timestamps: ISO 8601 UTC with milliseconds."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_LATEST = 4_102_444_800.0  # 2100-01-01: later (or inf / nan) is not a time a run has


def parse_time(text: object) -> float:
    """The inverse of :func:`iso_time`; 0.0 for what is not one."""
    if not isinstance(text, str):
        if isinstance(text, bool) or not isinstance(text, (int, float)):
            return 0.0
        # A hand-edited or corrupt record must not overflow the clock arithmetic later.
        return float(text) if 0 <= text < _LATEST else 0.0
    try:
        return (
            datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
            .replace(tzinfo=timezone.utc)
            .timestamp()
        )
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class CauseInfo:
    """Why an attempt failed, as the signature table explains it (see ``supervisor.Cause``)."""

    id: str
    title: str
    meaning: str
    fix: str
    line: str
    line_no: int | None
    retryable: bool
    role: str = "cause"

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> CauseInfo:
        line_no = d.get("line_no")
        return cls(
            id=str(d.get("id", "")),
            title=str(d.get("title", "")),
            meaning=str(d.get("meaning", "")),
            fix=str(d.get("fix", "")),
            line=str(d.get("line", "")),
            line_no=line_no if isinstance(line_no, int) else None,
            retryable=bool(d.get("retryable", False)),
            role=str(d.get("role", "cause")),
        )


@dataclass(frozen=True)
class ChangeInfo:
    """One change made to the launch because of one failure (``remedy.Change`` as recorded)."""

    signature: str
    change: str  # as a person writes it: ``--max-model-len 1920`` or ``NAME=value``

    @classmethod
    def from_json(cls, d: Mapping[str, Json]) -> ChangeInfo:
        return cls(str(d.get("signature", "")), str(d.get("change", "")))


@dataclass(frozen=True)
class Event:
    """Base of every record: its place in the stream, its time and the attempt it belongs to."""

    seq: int
    time: float
    attempt: int


@dataclass(frozen=True)
class StateChanged(Event):
    """The server entered ``state``. ``fields`` are the details recorded with it (argv, pid,
    url, cause, change, fix, ...); the typed properties below read the common ones."""

    state: State
    reason: str
    fields: Mapping[str, Json] = field(default_factory=dict)

    def _str(self, key: str) -> str | None:
        v = self.fields.get(key)
        return None if v is None else str(v)

    @property
    def cause(self) -> CauseInfo | None:
        c = self.fields.get("cause")
        return CauseInfo.from_json(c) if isinstance(c, dict) else None

    @property
    def change(self) -> ChangeInfo | None:
        c = self.fields.get("change")
        return ChangeInfo.from_json(c) if isinstance(c, dict) else None

    @property
    def fixed_by(self) -> list[ChangeInfo]:
        c = self.fields.get("fixed_by")
        return (
            [ChangeInfo.from_json(x) for x in c if isinstance(x, dict)]
            if isinstance(c, list)
            else []
        )

    @property
    def fix(self) -> str | None:
        return self._str("fix")

    @property
    def url(self) -> str | None:
        return self._str("url")

    @property
    def model(self) -> str | None:
        return self._str("model")

    @property
    def log(self) -> str | None:
        return self._str("log")

    @property
    def pid(self) -> int | None:
        v = self.fields.get("pid")
        return v if isinstance(v, int) else None

    @property
    def startup_s(self) -> float | None:
        v = self.fields.get("startup_s")
        return float(v) if isinstance(v, (int, float)) else None

    @property
    def delay_s(self) -> float | None:
        v = self.fields.get("delay_s")
        return float(v) if isinstance(v, (int, float)) else None


@dataclass(frozen=True)
class PhaseReached(Event):
    """The start-up moved forward, as the log shows it (``mmops.diagnose.phases``)."""

    phase: str
    title: str
    detail: str = ""
    progress: tuple[int, int] | None = None


@dataclass(frozen=True)
class LogLines(Event):
    """New lines of the attempt log, batched (one record per ~50 ms, never one per pipe read).

    ``first_line`` is the 1-based number of ``lines[0]`` in ``attempt-N.log``. Live only."""

    first_line: int
    lines: tuple[str, ...]


AnyEvent = StateChanged | PhaseReached | LogLines


def to_dict(ev: AnyEvent) -> dict[str, Json]:
    """The events.jsonl record of an event (log lines have none: raises ValueError)."""
    if isinstance(ev, StateChanged):
        return {
            "seq": ev.seq,
            "time": iso_time(ev.time),
            "state": ev.state.value,
            "attempt": ev.attempt,
            "reason": ev.reason,
            **ev.fields,
        }
    if isinstance(ev, PhaseReached):
        return {
            "seq": ev.seq,
            "time": iso_time(ev.time),
            "kind": "phase",
            "attempt": ev.attempt,
            "phase": ev.phase,
            "title": ev.title,
            "detail": ev.detail,
            "progress": list(ev.progress) if ev.progress else None,
        }
    raise ValueError("log lines are recorded in the attempt log, not in events.jsonl")


_STATE_KEYS = ("seq", "time", "state", "attempt", "reason")


def from_dict(d: Mapping[str, Json], default_seq: int = 0) -> AnyEvent | None:
    """An event from its events.jsonl record; None for a record of an unknown kind or shape.

    Records written before ``seq`` existed get ``default_seq`` (their position in the file)."""
    seq = d.get("seq")
    seq = seq if isinstance(seq, int) else default_seq
    t = parse_time(d.get("time"))
    attempt = d.get("attempt")
    attempt = attempt if isinstance(attempt, int) else 0
    kind = d.get("kind", "state")
    if kind == "phase":
        prog = d.get("progress")
        progress: tuple[int, int] | None = None
        if isinstance(prog, list) and len(prog) == 2:
            done, total = prog
            if isinstance(done, int) and isinstance(total, int):
                progress = (int(done), int(total))
        return PhaseReached(
            seq, t, attempt, str(d.get("phase", "")), str(d.get("title", "")),
            str(d.get("detail", "") or ""), progress,
        )  # fmt: skip
    if kind != "state":
        return None
    try:
        state = State(str(d.get("state")))
    except ValueError:
        return None
    fields = {k: v for k, v in d.items() if k not in _STATE_KEYS}
    return StateChanged(seq, t, attempt, state, str(d.get("reason", "")), fields)


# ------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class Status:
    """The server's status now: what every view's header shows. Built by :func:`fold`."""

    state: State = State.STOPPED
    reason: str = ""
    attempt: int = 0
    max_attempts: int = 0  # 0: unknown (a replay of an old run, an attached server)
    url: str | None = None
    model: str | None = None
    pid: int | None = None
    started_at: float | None = None  # wall time of the first STARTING
    attempt_started_at: float | None = None
    ready_at: float | None = None  # wall time of the last READY, None when not READY
    startup_s: float | None = None  # time to ready of the last attempt that got there
    restarts: int = 0
    changes: tuple[ChangeInfo, ...] = ()
    cause: CauseInfo | None = None  # of the last failed attempt
    fix: str | None = None  # when FAILED
    phase: PhaseReached | None = None  # of the current attempt
    last_seq: int = 0
    last_time: float | None = None

    def uptime(self, now: float) -> float | None:
        """Seconds READY, or None when not serving."""
        return None if self.ready_at is None else max(0.0, now - self.ready_at)


def fold(st: Status, ev: AnyEvent) -> Status:
    """The status after ``ev``: one pure rule, so the live supervisor, a replay and a test agree."""
    st = replace(st, last_seq=max(st.last_seq, ev.seq), last_time=ev.time)
    if isinstance(ev, PhaseReached):
        return replace(st, phase=ev)
    if not isinstance(ev, StateChanged):
        return st
    out = replace(st, state=ev.state, reason=ev.reason, attempt=max(st.attempt, ev.attempt))
    if ev.state == State.STARTING and ev.pid is not None:
        out = replace(
            out,
            pid=ev.pid,
            url=ev.url or st.url,
            started_at=st.started_at or ev.time,
            attempt_started_at=ev.time,
            restarts=st.restarts + (1 if st.attempt_started_at is not None else 0),
            max_attempts=_int(ev.fields.get("max_attempts")) or st.max_attempts,
            phase=None,
            ready_at=None,
        )
    elif ev.state == State.READY and st.state == State.READY:
        pass  # a note while serving (recording stopped, a node watch): uptime goes on
    elif ev.state == State.READY:
        out = replace(
            out, ready_at=ev.time, startup_s=ev.startup_s, url=ev.url or st.url,
            model=ev.model or st.model,
        )  # fmt: skip
    elif ev.state in (State.BACKOFF, State.FAILED, State.UNHEALTHY, State.STOPPED):
        out = replace(out, ready_at=None, pid=None if ev.state != State.UNHEALTHY else st.pid)
    if ev.cause is not None:
        out = replace(out, cause=ev.cause)
    if ev.change is not None:
        out = replace(out, changes=(*st.changes, ev.change))
    if ev.state == State.FAILED:
        out = replace(out, fix=ev.fix)
    elif ev.state == State.STARTING:
        out = replace(out, fix=None)
    return out


def _int(v: Json) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def fold_all(events: Sequence[AnyEvent], st: Status | None = None) -> Status:
    out = st or Status()
    for ev in events:
        out = fold(out, ev)
    return out


class EventBus:
    """The history, status and live subscribers of one event source (supervisor, attach).

    ``subscribe(since)`` replays the history after ``since`` and then waits for live events;
    subscribing before replaying loses nothing in between. ``close()`` ends the subscriptions
    open now (the source may publish again later: a restart)."""

    def __init__(self, status: Status) -> None:
        self.history: list[AnyEvent] = []  # every event but log lines, in order
        self.status = status
        self._seq = 0
        self._queues: list[asyncio.Queue[AnyEvent | None]] = []

    @property
    def watched(self) -> bool:
        return bool(self._queues)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def publish(self, ev: AnyEvent) -> None:
        if not isinstance(ev, LogLines):
            self.history.append(ev)
            self.status = fold(self.status, ev)
        for q in self._queues:
            q.put_nowait(ev)

    def close(self) -> None:
        for q in self._queues:
            q.put_nowait(None)

    async def subscribe(self, since: int, ended: Callable[[], bool]) -> AsyncIterator[AnyEvent]:
        """History with ``seq > since``, then live events until ``close()``; when ``ended()``
        after the history, nothing live follows."""
        queue: asyncio.Queue[AnyEvent | None] = asyncio.Queue()
        self._queues.append(queue)
        try:
            last = since
            for ev in list(self.history):
                if ev.seq > last:
                    last = ev.seq
                    yield ev
            if ended():
                return
            while True:
                item = await queue.get()
                if item is None:
                    return
                if item.seq > last:
                    last = item.seq
                    yield item
        finally:
            self._queues.remove(queue)


class EventSource(Protocol):
    """What a view may ask of a server, whoever runs it."""

    @property
    def can_control(self) -> bool:
        """True when stop/restart act on a process (the live supervisor)."""
        ...

    def snapshot(self) -> Status: ...

    def events(self, since: int = 0) -> AsyncIterator[AnyEvent]:
        """Events with ``seq > since`` (log lines only live), then live ones until the end."""
        ...

    def log_path(self, attempt: int) -> Path | None: ...

    def read_log(self, attempt: int, offset: int = 0, limit: int = 1000) -> LogChunk: ...

    async def stop(self, force: bool = False) -> State | None:
        """Stop the server; the supervisor returns the state it ended in, others None."""
        ...

    async def restart(self) -> None: ...
