"""Launch and babysit one vLLM server: an explicit state machine driven by asyncio.

States: STOPPED -> STARTING -> READY, and from there UNHEALTHY / BACKOFF / FAILED / STOPPING.
Every transition is an Event (time, state, attempt, reason, fields) handed to the run folder,
to an ``on_event`` callback and to any ``events()`` subscriber; the class prints nothing, so the
CLI and the TUI render the same stream.

- The child runs under the reaper of ``mmops.serve.reaper`` in its own process group: a stop signals
  the group (SIGINT, then SIGTERM, then SIGKILL to the group and every descendant), and no vLLM
  process survives mmops, even a SIGKILLed one.
- Output is read in chunks off the event loop's pipe, written to ``attempt-N.log`` as complete
  lines (secrets masked) and kept as a bounded tail in memory; nothing in that path waits on
  anything but the pipe, so a log flood never delays a state decision.
- Ready = the process is alive, ``/health`` answers 200, ``/v1/models`` lists the model, and
  (when the spec names a suite) one sample request passes. Liveness keeps polling ``/health``,
  watches for the engine dying behind a live API (log line, 5xx health, or an engine process
  of the tree gone) and turns that into UNHEALTHY and a restart.
- A failure is classified by ONE function, :func:`classify_attempt`. A cause that retrying
  cannot fix goes to FAILED with its fix; one with a remedy gets exactly that change on the next
  attempt; others retry with capped, jittered exponential backoff, reset after a healthy
  period, until ``max_attempts`` within ``window_s`` -> FAILED.
- A requested stop is never a crash: whatever the child logs while stopping (vLLM logs
  EngineDeadError on SIGTERM) is not classified.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import psutil

from mmops import redact
from mmops.diagnose.table import Signature, load_signatures, render_fix
from mmops.errors import MmopsError
from mmops.launch.plan import Plan, build_plan
from mmops.launch.spec import LaunchSpec
from mmops.serve import reaper as procmod
from mmops.serve import remedy
from mmops.serve.runs import Run, iso_time


class State(str, Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    READY = "READY"
    UNHEALTHY = "UNHEALTHY"
    BACKOFF = "BACKOFF"
    FAILED = "FAILED"
    STOPPING = "STOPPING"


TERMINAL = frozenset({State.STOPPED, State.FAILED})

# Lines saying the engine is dead while the API process may still answer. Real examples:
#   "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack
#    trace (above) for the root cause." (vllm-project/vllm#42362, vllm 0.20.2)
#   "ERROR 10-30 11:47:32 async_llm_engine.py:56] Engine background task failed"
#    (vllm-project/vllm#9839, V0 engine)
# The patterns of the table's engine.dead signature are added to these.
_ENGINE_DEAD_BUILTIN = (
    r"EngineDeadError",
    r"Engine background task failed",
    r"EngineCore encountered a fatal error",
)


@dataclass(frozen=True)
class Event:
    """One supervisor event. ``fields`` carries the details of this kind of event."""

    time: float
    state: State
    attempt: int
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": iso_time(self.time),
            "state": self.state.value,
            "attempt": self.attempt,
            "reason": self.reason,
            **self.fields,
        }


@dataclass(frozen=True)
class Cause:
    """What a failed attempt's log says went wrong."""

    signature: Signature
    captures: dict[str, str]
    line: str
    line_no: int | None = None  # 1-based line number in the attempt log
    fix_text: str | None = None  # the fix with the log's numbers; default: rendered here
    role: str = "cause"  # or "consequence", when the log shows nothing better

    @property
    def id(self) -> str:
        return self.signature.id

    @property
    def fix(self) -> str:
        return self.fix_text or render_fix(self.signature, self.captures)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.signature.id,
            "title": self.signature.title,
            "role": self.role,
            "meaning": self.signature.meaning,
            "fix": self.fix,
            "retryable": self.signature.retryable,
            "line": self.line,
            "line_no": self.line_no,
            "captures": self.captures,
        }


def classify_attempt(
    lines: Sequence[str], first_line_no: int = 1, label: str = "attempt.log"
) -> Cause | None:
    """Classify an attempt's log: THE one place the supervisor asks why an attempt failed.

    ``lines`` are the attempt's last lines (numbered from ``first_line_no``), up to the moment
    mmops began stopping it. ``mmops.diagnose.scan`` ranks them: the root cause over its
    consequences (EngineDeadError, dead workers), which stand in only when nothing better shows.
    """
    from mmops.diagnose.logread import Source
    from mmops.diagnose.scan import diagnose_sources

    if not lines:
        return None
    # diagnose reads files (its pre-filter scans bytes at C speed); the tail goes through one.
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".log", prefix="mmops-") as fh:
        fh.write("\n".join(lines) + "\n")
        fh.flush()
        try:
            incident = diagnose_sources([Source(label, Path(fh.name))])
        except MmopsError:  # nothing to read
            return None
    finding = incident.cause
    if finding is None:
        return None
    ev = finding.evidence[0] if finding.evidence else None
    return Cause(
        finding.signature,
        dict(finding.captures),
        ev.text.strip() if ev else "",
        (ev.line + first_line_no - 1) if ev else None,
        finding.fix,
        finding.role,
    )


@dataclass(frozen=True)
class Options:
    """Supervisor knobs that are not part of a profile (timeouts of mmops itself)."""

    stop_sigint_s: float = 15.0  # wait after SIGINT before SIGTERM
    stop_sigterm_s: float = 10.0  # wait after SIGTERM before SIGKILL
    reaper_grace_s: float = 5.0  # stragglers after vLLM exits / after mmops dies
    http_timeout_s: float = 5.0
    liveness_interval_s: float | None = None  # default: the profile's readiness interval
    liveness_failures: int = 3  # consecutive failed /health polls -> UNHEALTHY
    engine_min_age_s: float = 3.0  # tree processes older than this at READY are watched
    tail_lines: int = 20000  # lines of each attempt kept in memory for classification
    drain_timeout_s: float = 5.0  # wait for the pipe to close after the child exits


Planner = Callable[[LaunchSpec], Plan]
SuiteProbe = Callable[[str, str | None], Awaitable[tuple[bool, str]]]


@dataclass
class _Outcome:
    kind: str  # exit | unhealthy | timeout | stopped
    reason: str
    returncode: int | None = None
    ready_for_s: float = 0.0
    # Lines the child wrote before mmops began stopping it: what it says after our SIGINT
    # (shutdown noise, EngineDeadError) is our doing, not a cause.
    lines_before_stop: int | None = None


class Supervisor:
    """Runs one server through its life. Drive it with ``start()``, ``stop()``, ``wait()``;
    watch it with ``state``, ``on_event``/``events()`` and ``on_lines``."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        planner: Planner | None = None,
        run: Run | None = None,
        options: Options | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_lines: Callable[[int, list[str]], None] | None = None,
        suite_probe: SuiteProbe | None = None,
        rng: random.Random | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.planner = planner or build_plan
        self.run = run
        self.options = options or Options()
        self.on_event = on_event
        self.on_lines = on_lines
        self.suite_probe = suite_probe if suite_probe is not None else _default_suite_probe(spec)
        self.rng = rng or random.Random()
        self.base_env = dict(os.environ if base_env is None else base_env)

        self.state = State.STOPPED
        self.attempt = 0
        self.events: list[Event] = []
        self.changes: list[remedy.Change] = []  # remedies applied so far, in order
        self.cause: Cause | None = None  # cause of the last failed attempt
        self.ready_count = 0
        self.plan: Plan | None = None
        self.pid: int | None = None  # the attempt's process group (the reaper's pid)

        self._task: asyncio.Task[State] | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._alarm = asyncio.Event()  # set by the reader when the engine is reported dead
        self._dead_line: str | None = None
        self._subscribers: list[asyncio.Queue[Event | None]] = []
        self._waiters: list[tuple[frozenset[State], asyncio.Future[State]]] = []
        self._failures: deque[float] = deque()
        self._level = 0
        self._tail: deque[str] = deque(maxlen=self.options.tail_lines)
        self._lines_total = 0
        self._ready_at: float | None = None
        sigs = load_signatures()
        dead = [p.pattern for s in sigs if s.id == "engine.dead" for p in s.patterns]
        self._dead_re = re.compile("|".join((*_ENGINE_DEAD_BUILTIN, *dead)))

    # ------------------------------------------------------------------ public API

    async def start(self) -> None:
        """Begin supervising (returns at once; watch events or ``wait()``)."""
        if self._task is not None:
            raise RuntimeError("supervisor already started")
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def stop(self, force: bool = False) -> State:
        """Request a stop and wait until STOPPED (or FAILED). ``force`` skips to SIGKILL."""
        self._stop.set()
        if force:
            self._force.set()
        if self._task is None:
            return self.state
        return await asyncio.shield(self._task)

    def request_stop(self, force: bool = False) -> None:
        """Like ``stop`` but returns at once; for signal handlers and key bindings."""
        self._stop.set()
        if force:
            self._force.set()

    async def wait(self) -> State:
        """Wait until supervision ends; returns STOPPED or FAILED."""
        if self._task is None:
            return self.state
        return await asyncio.shield(self._task)

    async def wait_for(self, *states: State) -> State:
        """Wait until the state is one of ``states`` or terminal; returns that state."""
        wanted = frozenset(states) | TERMINAL
        if self.state in wanted and (
            self.state not in TERMINAL or self._task is None or self._task.done()
        ):
            return self.state
        fut: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        self._waiters.append((wanted, fut))
        return await fut

    async def events(self) -> AsyncIterator[Event]:
        """Every event from now on, until supervision ends."""
        if self._task is not None and self._task.done():
            return
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._subscribers.remove(queue)

    @property
    def tail(self) -> list[str]:
        """The last lines of the current (or last) attempt's output, secrets masked."""
        return list(self._tail)

    @property
    def fixed_by(self) -> list[remedy.Change]:
        """The automatic changes in effect, if the server reached READY with them."""
        return list(self.changes) if self.ready_count else []

    # -------------------------------------------------------------------- events

    def _emit(self, state: State, reason: str, **fields: Any) -> Event:
        ev = Event(
            time.time(),
            state,
            self.attempt,
            reason,
            {k: v for k, v in fields.items() if v is not None},
        )
        self.state = state
        self.events.append(ev)
        if self.run is not None:
            self.run.append_event(ev.to_dict())
        if self.on_event is not None:
            self.on_event(ev)
        for q in self._subscribers:
            q.put_nowait(ev)
        for wanted, fut in list(self._waiters):
            if state in wanted and not fut.done():
                fut.set_result(state)
                self._waiters.remove((wanted, fut))
        return ev

    # ------------------------------------------------------------------ main loop

    async def _main(self) -> State:
        try:
            while True:
                self.attempt += 1
                outcome = await self._run_attempt()
                if outcome.kind == "stopped" or self._stop.is_set():
                    self._emit(
                        State.STOPPED,
                        "requested stop",
                        exit=procmod.describe_exit(outcome.returncode),
                        crash=False,
                    )
                    break
                if not await self._after_failure(outcome):
                    break
        except MmopsError as exc:  # a user mistake found while planning an attempt
            if self.pid is not None:
                procmod.kill_tree(self.pid)
            self._emit(State.FAILED, str(exc), fix="Correct the launch and start again.")
        except BaseException as exc:
            if self.pid is not None:
                procmod.kill_tree(self.pid)
            if not isinstance(exc, asyncio.CancelledError):
                self._emit(State.FAILED, f"mmops internal error: {exc!r}", internal=True)
            raise
        finally:
            for q in self._subscribers:
                q.put_nowait(None)
            for _wanted, fut in self._waiters:
                if not fut.done():
                    fut.set_result(self.state)
            self._waiters.clear()
        return self.state

    async def _run_attempt(self) -> _Outcome:
        plan = self.planner(self.spec)
        self.plan = plan
        if self.attempt == 1 and self.run is not None:
            self.run.write_json("plan.json", plan.to_dict())
        env = {**self.spec.child_env(self.base_env), **plan.env}
        redactor = redact.Redactor(redact.secret_values(plan.argv, env))
        log = self.run.open_attempt_log(self.attempt) if self.run is not None else None
        self._tail.clear()
        self._lines_total = 0
        self._dead_line = None
        self._alarm.clear()
        started = time.monotonic()
        try:
            child = await asyncio.create_subprocess_exec(
                *procmod.reaper_argv(plan.argv, self.options.reaper_grace_s),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=plan.cwd,
                start_new_session=True,
            )
        except OSError as exc:  # mmops's own interpreter missing: nothing to supervise
            if log is not None:
                log.close()
            return _Outcome("exit", f"cannot start the reaper: {exc}", returncode=None)
        self.pid = child.pid
        self._emit(
            State.STARTING,
            "starting" if self.attempt == 1 else f"restart #{self.attempt - 1}",
            pid=child.pid,
            argv=redact.mask_argv(plan.argv),
            env=redact.mask_env(plan.env),
            url=plan.url,
            log=str(self.run.attempt_log(self.attempt)) if self.run else None,
            changes=[c.to_dict() for c in self.changes] or None,
            mmops_pid=os.getpid() if self.attempt == 1 else None,
        )
        assert child.stdout is not None
        reader = asyncio.ensure_future(self._read_output(child.stdout, log, redactor))
        exited = asyncio.ensure_future(child.wait())
        health = asyncio.ensure_future(self._health(plan, child, started))
        stop = asyncio.ensure_future(self._stop.wait())
        outcome: _Outcome
        try:
            done, _ = await asyncio.wait(
                {exited, health, stop}, return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                outcome = _Outcome(
                    "exit", procmod.describe_exit(child.returncode), child.returncode
                )
            elif health in done:
                outcome = health.result()
            else:
                outcome = _Outcome("stopped", "requested stop")
            outcome.ready_for_s = self._ready_for(started)
            # The verdict is in: no more probes (an EngineDeadError logged while stopping
            # must not turn a requested stop into UNHEALTHY).
            health.cancel()
            if child.returncode is None:
                outcome.lines_before_stop = self._lines_total
                if outcome.kind == "stopped":
                    self._emit(State.STOPPING, "requested stop", signal="SIGINT")
                await self._terminate(child)
                outcome.returncode = child.returncode
        finally:
            for task in (health, stop):
                task.cancel()
            if child.returncode is None:  # cancelled from outside: leave nothing behind
                procmod.kill_tree(child.pid)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.wait(), 5)
            try:
                await asyncio.wait_for(reader, self.options.drain_timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                reader.cancel()
            if log is not None:
                # No fsync: the kernel holds every line already (a kill of mmops loses
                # nothing), and syncing a big log would stall the loop for no gain.
                log.close()
            self.pid = None
        return outcome

    def _ready_for(self, started: float) -> float:
        ready = self._ready_at
        return time.monotonic() - ready if ready is not None and ready >= started else 0.0

    async def _after_failure(self, outcome: _Outcome) -> bool:
        """Decide what follows a failed attempt. True to start another attempt."""
        opts = self.spec.restart
        now = time.monotonic()
        lines = list(self._tail)
        first = self._lines_total - len(lines) + 1
        if outcome.lines_before_stop is not None:
            lines = lines[: max(0, outcome.lines_before_stop - first + 1)]
        # Classifying a long tail is CPU work: keep it off the loop so events keep flowing.
        label = (
            self.run.attempt_log(self.attempt).name if self.run else f"attempt-{self.attempt}.log"
        )
        cause = await asyncio.to_thread(classify_attempt, lines, first, label)
        self.cause = cause
        if outcome.ready_for_s >= opts.healthy_reset_s:
            self._failures.clear()
            self._level = 0
        self._failures.append(now)
        while self._failures and now - self._failures[0] > opts.window_s:
            self._failures.popleft()
        common: dict[str, Any] = {
            "exit": procmod.describe_exit(outcome.returncode),
            "cause": cause.to_dict() if cause else None,
            "log": str(self.run.attempt_log(self.attempt)) if self.run else None,
        }
        what = _say(outcome, cause)
        # Only a root cause can rule retrying out; a bare consequence (a worker died, the
        # engine failed to start, cause not in sight) falls back to the restart policy.
        if cause is not None and cause.role == "cause" and not cause.signature.retryable:
            self._emit(State.FAILED, f"{what}; retrying cannot fix this", fix=cause.fix, **common)
            return False
        change = None
        if cause is not None and cause.signature.remedy is not None:
            change = remedy.propose(self.spec, cause.signature, cause.captures, self.base_env)
            tried = [c for c in self.changes if c.signature_id == cause.id]
            if change is None and tried:
                self._emit(
                    State.FAILED,
                    f"{what} again after {tried[-1].describe()}; the automatic fix did not help",
                    fix=cause.fix,
                    **common,
                )
                return False
        if len(self._failures) >= opts.max_attempts:
            self._emit(
                State.FAILED,
                f"{what}; gave up after {len(self._failures)} failed attempts within "
                f"{opts.window_s:g} s",
                fix=cause.fix if cause else "Read the attempt logs: `mmops logs --errors`.",
                **common,
            )
            return False
        delay = self._next_delay()
        if change is not None:
            self.spec = change.spec
            self.changes.append(change)
        self._emit(
            State.BACKOFF,
            f"{what}; "
            + (f"retrying with {change.describe()}" if change else "retrying")
            + f" in {delay:.1f} s",
            delay_s=round(delay, 3),
            change=change.to_dict() if change else None,
            **common,
        )
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except asyncio.TimeoutError:
            return True
        self._emit(State.STOPPED, "requested stop (during backoff)", crash=False)
        return False

    def _next_delay(self) -> float:
        """Capped exponential backoff with +/- jitter; the level resets after a healthy period."""
        r = self.spec.restart
        base = min(r.backoff_max_s, r.backoff_initial_s * (2**self._level))
        self._level += 1
        spread = base * r.jitter
        return max(
            0.0, min(r.backoff_max_s * (1 + r.jitter), base + self.rng.uniform(-spread, spread))
        )

    # -------------------------------------------------------------------- output

    async def _read_output(
        self, stream: asyncio.StreamReader, log: Any, redactor: redact.Redactor
    ) -> None:
        """Pipe -> log file (complete lines, masked) + in-memory tail + engine-dead alarm."""
        partial = b""
        max_partial = 1 << 20  # a "line" longer than 1 MiB is written as it is, unsplit
        while True:
            chunk = await stream.read(1 << 16)
            if not chunk:
                break
            data = partial + chunk
            cut = data.rfind(b"\n")
            if cut < 0 and len(data) < max_partial:
                partial = data
                continue
            if cut < 0:
                cut = len(data) - 1
            block, partial = data[: cut + 1], data[cut + 1 :]
            self._ingest(block, log, redactor)
        if partial:
            self._ingest(partial, log, redactor)

    def _ingest(self, block: bytes, log: Any, redactor: redact.Redactor) -> None:
        block = redactor.chunk(block)
        if log is not None:
            log.write(block)
        text = block.decode("utf-8", "replace")
        lines = text.splitlines()
        self._tail.extend(lines)
        self._lines_total += len(lines)
        if self._dead_line is None:
            m = self._dead_re.search(text)
            if m is not None:
                start = text.rfind("\n", 0, m.start()) + 1
                end = text.find("\n", m.end())
                self._dead_line = text[start : end if end >= 0 else len(text)].strip()
                self._alarm.set()
        if self.on_lines is not None and lines:
            self.on_lines(self.attempt, lines)

    # ---------------------------------------------------------------- health checks

    async def _health(
        self, plan: Plan, child: asyncio.subprocess.Process, started: float
    ) -> _Outcome:
        """Readiness, then liveness, until something is wrong; returns why."""
        opts = self.options
        ready_cfg = self.spec.readiness
        headers = {}
        key = self.spec.get("api-key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._ready_at = None
        # verify=False: the probes talk to our own child on this host, and building a verifying
        # SSL context costs ~100 ms of loop time per attempt.
        async with httpx.AsyncClient(
            base_url=plan.url,
            timeout=opts.http_timeout_s,
            trust_env=False,
            verify=False,
            headers=headers,
        ) as client:
            deadline = started + ready_cfg.timeout_s
            last = "no answer yet"
            sample_done = False
            while True:
                if time.monotonic() > deadline:
                    return _Outcome(
                        "timeout", f"not ready after {ready_cfg.timeout_s:g} s ({last})"
                    )
                ok, last = await self._ready_once(client, plan)
                if ok and not sample_done and self.suite_probe is not None:
                    ok, last = await self.suite_probe(plan.url, plan.served_model)
                    sample_done = ok
                if ok:
                    break
                await asyncio.sleep(ready_cfg.interval_s)
            self._ready_at = time.monotonic()
            self.ready_count += 1
            took = self._ready_at - started
            if self.changes:
                fixes = ", ".join(f"{c.describe()} (after {c.signature_id})" for c in self.changes)
                reason = f"ready in {took:.1f} s with the automatic fix {fixes}"
            else:
                reason = f"ready in {took:.1f} s"
            self._emit(
                State.READY,
                reason,
                url=plan.url,
                model=plan.served_model,
                startup_s=round(took, 3),
                fixed_by=[c.to_dict() for c in self.changes] or None,
                sample=sample_done or None,
            )
            return await self._liveness(client, child)

    async def _ready_once(self, client: Any, plan: Plan) -> tuple[bool, str]:
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
        if plan.served_model and plan.served_model not in ids:
            return False, f"/v1/models lists {ids}, not {plan.served_model}"
        return True, "ok"

    async def _liveness(self, client: Any, child: asyncio.subprocess.Process) -> _Outcome:
        opts = self.options
        interval = opts.liveness_interval_s or self.spec.readiness.interval_s
        watched = self._engine_tree(child.pid)
        failures = 0
        healthy_noted = False
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._alarm.wait(), interval)
            if self._dead_line is not None:
                return self._unhealthy(f"engine dead behind a live API: {self._dead_line}")
            gone = [f"{pid} ({name})" for pid, name in watched.items() if not _alive(pid)]
            if gone and child.returncode is None and _alive(child.pid):
                return self._unhealthy(
                    f"engine process {', '.join(gone)} exited while the API is up"
                )
            for pid, name in self._engine_tree(child.pid).items():
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
                if failures >= opts.liveness_failures:
                    return self._unhealthy(f"{why} ({failures} times in a row)")
            if (
                not healthy_noted
                and self._ready_at is not None
                and time.monotonic() - self._ready_at >= self.spec.restart.healthy_reset_s
            ):
                healthy_noted = True
                self._failures.clear()
                self._level = 0

    def _unhealthy(self, reason: str) -> _Outcome:
        self._emit(State.UNHEALTHY, reason)
        return _Outcome("unhealthy", reason)

    def _engine_tree(self, reaper_pid: int) -> dict[int, str]:
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
                    if now - p.create_time() >= self.options.engine_min_age_s:
                        out[p.pid] = p.name()
            return out
        except Exception:  # noqa: BLE001 - the tree watch is an extra; /health still runs
            return {}

    # ------------------------------------------------------------------ stopping

    async def _terminate(self, child: asyncio.subprocess.Process) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the child's group and whole tree."""
        opts = self.options
        pgid = child.pid
        waiter = asyncio.ensure_future(child.wait())
        force = asyncio.ensure_future(self._force.wait())
        try:
            for sig, wait_s in (
                (signal.SIGINT, opts.stop_sigint_s),
                (signal.SIGTERM, opts.stop_sigterm_s),
            ):
                if waiter.done() or force.done():
                    break
                if sig == signal.SIGTERM and self.state == State.STOPPING:
                    self._emit(
                        State.STOPPING,
                        f"still running after {opts.stop_sigint_s:g} s",
                        signal="SIGTERM",
                    )
                procmod.signal_group(pgid, sig)
                await asyncio.wait(
                    {waiter, force}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
            if not waiter.done():
                if self.state == State.STOPPING:
                    self._emit(State.STOPPING, "killing the process group", signal="SIGKILL")
                procmod.kill_tree(pgid)
                await waiter
        finally:
            force.cancel()
            if not waiter.done():
                waiter.cancel()


def _say(outcome: _Outcome, cause: Cause | None) -> str:
    """One phrase for a failed attempt: what went wrong, and what the log blames."""
    blamed = f"{cause.signature.title} ({cause.id})" if cause is not None else None
    if outcome.kind == "exit":
        return blamed or f"server exited ({outcome.reason})"
    return f"{outcome.reason}; the log shows {blamed}" if blamed else outcome.reason


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone, or unreadable: either way not a live engine
        return False


def _default_suite_probe(spec: LaunchSpec) -> SuiteProbe | None:
    """When the spec names a suite: one sample request (its first case) must pass to be READY."""
    if not spec.suite:
        return None
    suite_name = spec.suite

    async def probe(url: str, model: str | None) -> tuple[bool, str]:
        from dataclasses import replace

        from mmops.probe import run_suite_async
        from mmops.probe.suite import load_suite

        suite = load_suite(suite_name)
        first = replace(suite, cases=suite.cases[:1])
        result = await run_suite_async(
            url,
            first,
            model=model,
            api_key=spec.get("api-key"),
            model_path=spec.model,
            metrics=False,
        )
        if result.ok:
            return True, "ok"
        bad = next((c for c in result.cases if not c.ok), None)
        return (
            False,
            f"sample request {bad.name if bad else '?'}: {bad.verdict if bad else 'no case'}",
        )

    return probe
