"""Launch and babysit one vLLM server: the state machine, driven by asyncio.

States (``serve.states``): STOPPED -> STARTING -> READY, and from there UNHEALTHY / BACKOFF /
FAILED / STOPPING. Every transition is a typed event (``serve.events``) with a sequence number,
written to the run folder, handed to ``on_event`` and to every ``events(since)`` subscriber; the
class prints nothing, so the CLI and the TUI render the same stream. The Supervisor is an
:class:`~mmops.serve.events.EventSource`: ``snapshot()``, ``events(since)``, ``read_log()``,
``stop()``, ``restart()``.

Its parts live beside it: ``child`` (spawn under the reaper, pipe -> attempt log, stop ladder),
``health`` (readiness, liveness), ``policy`` (backoff, window, reset), ``remedy`` (one change
per retry). What it decides here:

- A failure is classified by ONE function, :func:`classify_attempt`. A cause that retrying
  cannot fix goes to FAILED with its fix; one with a remedy gets exactly that change on the next
  attempt; others retry with backoff until the policy gives up -> FAILED.
- A requested stop is never a crash: whatever the child logs while stopping (vLLM logs
  EngineDeadError on SIGTERM) is not classified.
- Output lines are batched for views (one ``LogLines`` per ~50 ms) and watched for the engine
  dying behind a live API and for start-up phases (``diagnose.phases``).
- With ``--distributed-executor-backend ray`` the Ray cluster's nodes join liveness
  (``health.NodeWatch``, one GCS read every ``cluster_interval_s``): a node alive at READY that
  is dead now ends the attempt as the named failure ``ray.node_died`` (the node's address and
  id, the table's meaning and fix), also when the engine died first and its log blames only a
  consequence. Retrying waits until the node is back in the cluster, else FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mmops import redact
from mmops.diagnose.phases import PhaseTracker
from mmops.diagnose.table import FindingRole, Signature, load_signatures, render_fix
from mmops.errors import MmopsError, RecordError
from mmops.launch.plan import Plan, build_plan
from mmops.launch.spec import LaunchSpec
from mmops.serve import health, reaper, remedy
from mmops.serve.child import Child
from mmops.serve.events import (
    AnyEvent,
    EventBus,
    Json,
    LogLines,
    PhaseReached,
    StateChanged,
    Status,
    to_dict,
)
from mmops.serve.logstore import LogChunk, read_range
from mmops.serve.policy import Backoff
from mmops.serve.runs import Run, record_error
from mmops.serve.states import TERMINAL, State

if TYPE_CHECKING:  # mmops.cluster is imported only by a Ray launch
    from mmops.cluster.watch import NodePoll, NodeState

__all__ = ["Cause", "Options", "State", "Supervisor", "classify_attempt"]

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
LINE_BATCH_S = 0.05  # a flood costs a view one update per this many seconds


@dataclass(frozen=True)
class Cause:
    """What a failed attempt's log says went wrong."""

    signature: Signature
    captures: dict[str, str]
    line: str
    line_no: int | None = None  # 1-based line number in the attempt log
    fix_text: str | None = None  # the fix with the log's numbers; default: rendered here
    role: FindingRole = "cause"  # or "consequence", when the log shows nothing better

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
    from mmops.diagnose.scan import diagnose_lines

    if not lines:
        return None
    try:
        incident = diagnose_lines(lines, label)
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
    # --distributed-executor-backend ray: the cluster's nodes (see health.NodeWatch)
    cluster_interval_s: float = 15.0  # one GCS read of the node table per this many seconds
    # After an attempt fails, how long a node may take to show dead in the GCS (Ray marks a
    # node whose raylet vanished dead after missed health checks, measured in
    # docs/multinode.md) while the log blames only a consequence (a dead worker, the engine).
    node_death_grace_s: float = 30.0
    node_recheck_s: float = 2.0  # poll interval during that grace and while waiting for a node
    node_return_s: float = 600.0  # how long a retry waits for a dead node to rejoin


class NodeWatcher(Protocol):
    """What the supervisor needs of a node watch (health.NodeWatch; tests script one)."""

    async def poll(self) -> NodePoll: ...

    async def close(self) -> None: ...


Planner = Callable[[LaunchSpec], Plan]
SuiteProbe = Callable[[str, str | None], Awaitable[tuple[bool, str]]]


@dataclass
class _Outcome:
    kind: str  # exit | unhealthy | timeout | stopped | restart
    reason: str
    returncode: int | None = None
    ready_for_s: float = 0.0
    # Lines the child wrote before mmops began stopping it: what it says after our SIGINT
    # (shutdown noise, EngineDeadError) is our doing, not a cause.
    lines_before_stop: int | None = None
    lost: list[NodeState] = field(default_factory=list)  # Ray nodes found dead (node_lost)


class Supervisor:
    """Runs one server through its life. Drive it with ``start()``, ``stop()``, ``restart()``,
    ``wait()``; watch it with ``snapshot()``, ``events(since)``, ``on_event`` and ``on_lines``."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        planner: Planner | None = None,
        run_dir: Run | None = None,
        options: Options | None = None,
        on_event: Callable[[StateChanged], None] | None = None,
        on_lines: Callable[[int, list[str]], None] | None = None,
        suite_probe: SuiteProbe | None = None,
        rng: random.Random | None = None,
        base_env: Mapping[str, str] | None = None,
        node_watch: Callable[[Plan], NodeWatcher] | None = None,
    ) -> None:
        self.spec = spec
        self.planner = planner or build_plan
        self.run_dir = run_dir
        self.options = options or Options()
        self.on_event = on_event
        self.on_lines = on_lines
        self.suite_probe = suite_probe if suite_probe is not None else _default_suite_probe(spec)
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.node_watch_factory = node_watch or self._default_node_watch

        self.attempt = 0
        self.changes: list[remedy.Change] = []  # remedies applied so far, in order
        self.cause: Cause | None = None  # cause of the last failed attempt
        self.ready_count = 0
        self.plan: Plan | None = None
        self.pid: int | None = None  # the attempt's process group (the reaper's pid)
        # The run folder refused a write (a full disk). The server keeps serving: an on-call
        # tool must not take down a healthy server because its own records have no room. The
        # run says once that recording stopped, and says it again when it ends.
        self.record_error: RecordError | None = None

        self._bus = EventBus(Status(max_attempts=spec.restart.max_attempts))
        self._task: asyncio.Task[State] | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._restart = asyncio.Event()
        self._alarm = asyncio.Event()  # set by the reader when the engine is reported dead
        self._dead_line: str | None = None
        self._waiters: list[tuple[frozenset[State], asyncio.Future[State]]] = []
        self._backoff = Backoff(spec.restart, rng)
        self._tail: deque[str] = deque(maxlen=self.options.tail_lines)
        self._lines_total = 0
        self._pending: list[str] = []
        self._pending_first = 1
        self._flush_handle: asyncio.TimerHandle | None = None
        self._phases = PhaseTracker()
        self._ready_at: float | None = None
        self._watch: NodeWatcher | None = None  # Ray launches: the cluster's node table
        self._warm: asyncio.Future[Any] | None = None  # the watch's first poll (starts it)
        self._baseline: NodePoll | None = None  # the nodes alive at this attempt's READY
        self._watch_error: str | None = None  # the watch's failure last said (said once)
        sigs = load_signatures()
        dead = [p.pattern for s in sigs if s.id == "engine.dead" for p in s.patterns]
        self._dead_re = re.compile("|".join((*_ENGINE_DEAD_BUILTIN, *dead)))

    # ------------------------------------------------------------------ control

    @property
    def state(self) -> State:
        return self._bus.status.state

    @property
    def can_control(self) -> bool:
        return True

    async def start(self) -> None:
        """Begin supervising (returns at once; watch events or ``wait()``). After STOPPED or
        FAILED, starts again with the next attempt number and fresh restart counters."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("supervisor already started")
        if self._task is not None:
            self._stop.clear()
            self._force.clear()
            self._backoff.reset()
            self.record_error = None  # the disk may have room again; the next write tells
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def stop(self, force: bool = False) -> State:
        """Request a stop and wait until STOPPED (or FAILED). ``force`` skips to SIGKILL."""
        self.request_stop(force)
        if self._task is None:
            return self.state
        return await asyncio.shield(self._task)

    def request_stop(self, force: bool = False) -> None:
        """Like ``stop`` but returns at once; for signal handlers and key bindings."""
        self._stop.set()
        if force:
            self._force.set()

    async def restart(self) -> None:
        """Stop the running attempt cleanly and start a fresh one (not counted as a failure);
        when supervision has ended, start again."""
        if self._task is None or self._task.done():
            await self.start()
        else:
            self._restart.set()

    def refuse(self, reason: str, **fields: Json) -> None:
        """Record FAILED without starting (a failed preflight): attempt 0, the same event path."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("supervisor is running")
        self._emit(State.FAILED, reason, **fields)

    def note(self, reason: str, **fields: Json) -> None:
        """Record something that happened to the launch (a fix applied) without a new state."""
        self._emit(self.state, reason, **fields)

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

    # -------------------------------------------------------------- event source

    def snapshot(self) -> Status:
        return self._bus.status

    @property
    def history(self) -> list[AnyEvent]:
        """Every event but log lines, in order."""
        return self._bus.history

    def events(self, since: int = 0) -> AsyncIterator[AnyEvent]:
        """Events with ``seq > since`` from the history, then live ones (log lines included)
        until supervision ends."""
        return self._bus.subscribe(since, lambda: self._task is None or self._task.done())

    def log_path(self, attempt: int) -> Path | None:
        return self.run_dir.attempt_log(attempt) if self.run_dir is not None else None

    def read_log(self, attempt: int, offset: int = 0, limit: int = 1000) -> LogChunk:
        path = self.log_path(attempt)
        if path is None:
            return LogChunk([], offset, offset)
        return read_range(path, offset, limit)

    @property
    def transitions(self) -> list[StateChanged]:
        """The state changes so far, in order (the history without phases)."""
        return [e for e in self.history if isinstance(e, StateChanged)]

    @property
    def tail(self) -> list[str]:
        """The last lines of the current (or last) attempt's output, secrets masked."""
        return list(self._tail)

    @property
    def fixed_by(self) -> list[remedy.Change]:
        """The automatic changes in effect, if the server reached READY with them."""
        return list(self.changes) if self.ready_count else []

    def _next_seq(self) -> int:
        return self._bus.next_seq()

    def _publish(self, ev: AnyEvent) -> None:
        self._bus.publish(ev)
        if self.run_dir is not None and not isinstance(ev, LogLines):
            try:
                self.run_dir.append_event(to_dict(ev))
            except RecordError as exc:
                self._on_record_error(exc)

    def _emit(self, state: State, reason: str, **fields: Any) -> StateChanged:
        details: dict[str, Json] = {k: v for k, v in fields.items() if v is not None}
        ev = StateChanged(self._next_seq(), time.time(), self.attempt, state, reason, details)
        self._publish(ev)
        if self.on_event is not None:
            self.on_event(ev)
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
                if outcome.kind == "restart" and not self._stop.is_set():
                    self._backoff.reset()
                    continue
                if outcome.kind == "stopped" or self._stop.is_set():
                    self._emit_end("requested stop", exit=reaper.describe_exit(outcome.returncode))
                    break
                if not await self._after_failure(outcome):
                    break
        except MmopsError as exc:  # a user mistake found while planning an attempt
            if self.pid is not None:
                reaper.kill_tree(self.pid)
            if isinstance(exc, RecordError):
                self.record_error = self.record_error or exc
                self._emit(State.FAILED, str(exc), fix=exc.fix)
            else:
                self._emit(State.FAILED, str(exc), fix="Correct the launch and start again.")
        except BaseException as exc:
            if self.pid is not None:
                reaper.kill_tree(self.pid)
            if not isinstance(exc, asyncio.CancelledError):
                self._emit(State.FAILED, f"mmops internal error: {exc!r}", internal=True)
            raise
        finally:
            await self._close_watch()
            self._flush_lines()
            self._bus.close()
            for _wanted, fut in self._waiters:
                if not fut.done():
                    fut.set_result(self.state)
            self._waiters.clear()
        return self.state

    async def _run_attempt(self) -> _Outcome:
        plan = self.planner(self.spec)
        self.plan = plan
        if self.attempt == 1 and self.run_dir is not None:
            self.run_dir.write_json("plan.json", plan.to_dict())
        self._baseline = None
        if self._watch is None and is_ray_launch(self.spec):
            self._watch = self.node_watch_factory(plan)
            # Start the helper (`import ray`, ~2 s of CPU) while vLLM loads: READY's poll is
            # then one GCS read.
            self._warm = asyncio.ensure_future(self._watch.poll())
        env = {**self.spec.child_env(self.base_env), **plan.env}
        log = self.run_dir.open_attempt_log(self.attempt) if self.run_dir is not None else None
        self._tail.clear()
        self._lines_total = 0
        self._pending_first = 1
        self._dead_line = None
        self._alarm.clear()
        self._restart.clear()
        self._phases = PhaseTracker()
        started = time.monotonic()
        child = Child(
            plan.argv,
            env,
            plan.cwd,
            log,
            redact.Redactor(redact.secret_values(plan.argv, env)),
            self._on_text,
            self.options.reaper_grace_s,
            self._on_log_error,
        )
        try:
            await child.spawn()
        except OSError as exc:  # mmops's own interpreter missing: nothing to supervise
            child.close_log()
            return _Outcome("exit", f"cannot start the reaper: {exc}", returncode=None)
        self.pid = child.pid
        self._emit(
            State.STARTING,
            "starting" if self.attempt == 1 else f"restart #{self.attempt - 1}",
            pid=child.pid,
            argv=redact.mask_argv(plan.argv),
            env=redact.mask_env(plan.env),
            url=plan.url,
            log=str(self.run_dir.attempt_log(self.attempt)) if self.run_dir else None,
            changes=[c.to_dict() for c in self.changes] or None,
            mmops_pid=os.getpid() if self.attempt == 1 else None,
            max_attempts=self.spec.restart.max_attempts,
        )
        reader = asyncio.ensure_future(child.read_output())
        exited = asyncio.ensure_future(child.wait())
        health_task = asyncio.ensure_future(self._health(plan, child, started))
        stop = asyncio.ensure_future(self._stop.wait())
        restart = asyncio.ensure_future(self._restart.wait())
        outcome: _Outcome
        try:
            done, _ = await asyncio.wait(
                {exited, health_task, stop, restart}, return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                outcome = _Outcome(
                    "exit", reaper.describe_exit(child.returncode), child.returncode
                )
            elif health_task in done:
                outcome = health_task.result()
            elif stop in done:
                outcome = _Outcome("stopped", "requested stop")
            else:
                outcome = _Outcome("restart", "restart requested")
            outcome.ready_for_s = self._ready_for(started)
            # The verdict is in: no more probes (an EngineDeadError logged while stopping
            # must not turn a requested stop into UNHEALTHY).
            health_task.cancel()
            if child.returncode is None:
                outcome.lines_before_stop = self._lines_total
                if outcome.kind in ("stopped", "restart"):
                    self._emit(State.STOPPING, outcome.reason, signal="SIGINT")
                await child.terminate(
                    self.options.stop_sigint_s,
                    self.options.stop_sigterm_s,
                    self._force,
                    self._on_escalate,
                )
                outcome.returncode = child.returncode
        finally:
            for task in (health_task, stop, restart):
                task.cancel()
            if child.returncode is None:  # cancelled from outside: leave nothing behind
                await child.kill()
            try:
                await asyncio.wait_for(reader, self.options.drain_timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                reader.cancel()
            child.close_log()
            self._flush_lines()
            self.pid = None
        return outcome

    def _on_record_error(self, exc: RecordError) -> None:
        """A write to the run folder failed: say so once (on the bus; the disk may take the
        event too if it has room again), and keep the server running."""
        if self.record_error is not None:
            return
        self.record_error = exc
        self._emit(self.state, f"recording stopped, the server keeps running: {exc}", fix=exc.fix)

    def _on_log_error(self, exc: OSError) -> None:
        path = self.run_dir.attempt_log(self.attempt) if self.run_dir else Path("attempt.log")
        self._on_record_error(record_error(path, exc))

    def _emit_end(self, reason: str, **fields: Any) -> None:
        """The end of a stop, noting a run record that stopped early."""
        err = self.record_error
        if err is not None:
            reason = f"{reason}; the run record is incomplete: {err}"
        self._emit(State.STOPPED, reason, **{**fields, "crash": False})

    def _on_escalate(self, sig: str, why: str) -> None:
        if self.state == State.STOPPING:
            self._emit(State.STOPPING, why, signal=sig)

    def _ready_for(self, started: float) -> float:
        ready = self._ready_at
        return time.monotonic() - ready if ready is not None and ready >= started else 0.0

    async def _after_failure(self, outcome: _Outcome) -> bool:
        """Decide what follows a failed attempt. True to start another attempt."""
        opts = self.spec.restart
        lines = list(self._tail)
        first = self._lines_total - len(lines) + 1
        if outcome.lines_before_stop is not None:
            lines = lines[: max(0, outcome.lines_before_stop - first + 1)]
        # Classifying a long tail is CPU work: keep it off the loop so events keep flowing.
        label = (
            self.run_dir.attempt_log(self.attempt).name if self.run_dir else f"attempt-{self.attempt}.log"
        )
        cause = await asyncio.to_thread(classify_attempt, lines, first, label)
        self.cause = cause
        # A Ray launch: a node that died is the cause, whatever the engine logged after it.
        lost = list(outcome.lost)
        if not lost and self._baseline is not None:
            blames_little = (
                cause is None or cause.role == "consequence" or "ray" in cause.signature.tags
            )
            lost = await self._find_lost(wait=blames_little)
        if lost:
            log = str(self.run_dir.attempt_log(self.attempt)) if self.run_dir else None
            said = {"log_cause": cause.to_dict()} if cause is not None else {}
            facts = {"exit": reaper.describe_exit(outcome.returncode), "log": log, **said}
            return await self._node_failure(outcome, lost, facts)
        failures = self._backoff.record_failure(time.monotonic(), outcome.ready_for_s)
        common: dict[str, Any] = {
            "exit": reaper.describe_exit(outcome.returncode),
            "cause": cause.to_dict() if cause else None,
            "log": str(self.run_dir.attempt_log(self.attempt)) if self.run_dir else None,
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
        if self._backoff.exhausted:
            self._emit(
                State.FAILED,
                f"{what}; gave up after {failures} failed attempts within {opts.window_s:g} s",
                fix=cause.fix if cause else "Read the attempt logs: `mmops logs --errors`.",
                **common,
            )
            return False
        delay = self._backoff.next_delay()
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
        stop = asyncio.ensure_future(self._stop.wait())
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            # FIRST_COMPLETED: a stop must not wait out the delay (the default waits for both).
            await asyncio.wait({stop, restart}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            restart.cancel()
        if self._stop.is_set():
            self._emit_end("requested stop (during backoff)")
            return False
        return True

    # -------------------------------------------------------------------- output

    def _on_text(self, text: str) -> None:
        """A block of complete lines from the child: tail, alarms, phases, batched views."""
        # "\n" only: progress bars' lone "\r" must not shift line numbers against the file.
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self._tail.extend(lines)
        self._lines_total += len(lines)
        if self._dead_line is None:
            m = self._dead_re.search(text)
            if m is not None:
                start = text.rfind("\n", 0, m.start()) + 1
                end = text.find("\n", m.end())
                self._dead_line = text[start : end if end >= 0 else len(text)].strip()
                self._alarm.set()
        if self.state == State.STARTING:
            for hit in self._phases.feed(text):
                self._publish(
                    PhaseReached(
                        self._next_seq(), time.time(), self.attempt, hit.phase, hit.title,
                        hit.detail, hit.progress,
                    )  # fmt: skip
                )
        if not lines:
            return
        if self.on_lines is not None:
            self.on_lines(self.attempt, lines)
        if self._bus.watched:
            self._pending.extend(lines)
            if self._flush_handle is None:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(LINE_BATCH_S, self._flush_lines)
        else:
            self._pending_first = self._lines_total + 1

    def _flush_lines(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        batch = tuple(self._pending)
        self._pending.clear()
        first = self._pending_first
        self._pending_first = first + len(batch)
        self._publish(LogLines(self._next_seq(), time.time(), self.attempt, first, batch))

    # ---------------------------------------------------------------- health checks

    async def _health(self, plan: Plan, child: Child, started: float) -> _Outcome:
        """Readiness, then liveness, until something is wrong; returns why."""
        opts = self.options
        ready_cfg = self.spec.readiness
        self._ready_at = None
        async with health.make_client(
            plan.url, self.spec.get("api-key"), opts.http_timeout_s
        ) as client:
            deadline = started + ready_cfg.timeout_s
            last = "no answer yet"
            sample_done = False
            while True:
                if time.monotonic() > deadline:
                    return _Outcome(
                        "timeout", f"not ready after {ready_cfg.timeout_s:g} s ({last})"
                    )
                ok, last = await health.ready_once(client, plan.served_model)
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
            # A Ray launch: the nodes alive at READY are the baseline the watch compares with;
            # said with READY (the helper started with the attempt: one GCS read by now).
            first = asyncio.ensure_future(self._poll_nodes()) if self._watch else None
            if first is not None:
                await asyncio.wait({first}, timeout=2.0)
            answer = _answered(first)
            nodes = self._take_baseline(answer) if answer is not None else None
            baseline = self._baseline.alive if nodes and self._baseline else []
            if nodes:
                reason += f"; {nodes}"
            self._emit(
                State.READY,
                reason,
                url=plan.url,
                model=plan.served_model,
                startup_s=round(took, 3),
                fixed_by=[c.to_dict() for c in self.changes] or None,
                sample=sample_done or None,
                nodes=[n.to_dict() for n in baseline] or None,
            )
            healthy_noted = False

            def tick() -> None:
                nonlocal healthy_noted
                ready = self._ready_at
                if (
                    not healthy_noted
                    and ready is not None
                    and time.monotonic() - ready >= self.spec.restart.healthy_reset_s
                ):
                    healthy_noted = True
                    self._backoff.reset()

            liveness = asyncio.ensure_future(
                health.watch(
                    client,
                    child.pid,
                    health.Liveness(
                        opts.liveness_interval_s or ready_cfg.interval_s,
                        opts.liveness_failures,
                        opts.engine_min_age_s,
                    ),
                    self._alarm,
                    lambda: self._dead_line,
                    lambda: child.returncode is None and health.alive(child.pid),
                    tick,
                )
            )
            watchers: set[asyncio.Future[Any]] = {liveness}
            watch = None
            if self._watch is not None:
                pending = first if first is not None and not first.done() else None
                watch = asyncio.ensure_future(self._watch_nodes(pending))
                watchers.add(watch)
            try:
                done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in watchers:
                    task.cancel()
                if first is not None:
                    first.cancel()
            if watch is not None and watch in done:
                return watch.result()
            why = liveness.result()
            self._emit(State.UNHEALTHY, why)
            return _Outcome("unhealthy", why)

    # ---------------------------------------------------------------- Ray cluster nodes

    def _default_node_watch(self, plan: Plan) -> NodeWatcher:
        return health.NodeWatch(
            plan.python,
            str(plan.ray.get("address") or "auto"),
            {**self.spec.child_env(self.base_env), **plan.env},
        )

    async def _poll_nodes(self) -> NodePoll:
        """One read of the node table; the watch's failures are said once each (a watch that
        cannot read the cluster is no reason to stop a server that serves)."""
        assert self._watch is not None
        if self._warm is not None:
            warm, self._warm = self._warm, None
            with contextlib.suppress(Exception):  # the poll below says what is wrong
                await warm
        poll = await self._watch.poll()
        if not poll.ok and poll.error != self._watch_error:
            self._watch_error = poll.error
            self.note(f"Ray node watch: {poll.error}", cluster_watch=poll.kind)
        elif poll.ok and self._watch_error is not None:
            self._watch_error = None
            self.note("Ray node watch: the cluster answers again", cluster_watch="ok")
        return poll

    def _take_baseline(self, poll: NodePoll) -> str | None:
        """The nodes alive now become the baseline; how to say it (None: no table)."""
        if not poll.ok:
            return None
        self._baseline = poll
        names = ", ".join(n.label for n in poll.alive)
        every = self.options.cluster_interval_s
        return f"watching {len(poll.alive)} Ray node(s) every {every:g} s: {names}"

    async def _watch_nodes(self, first: asyncio.Future[NodePoll] | None = None) -> _Outcome:
        """While READY: every ``cluster_interval_s``, whether a node of the baseline died (the
        baseline is taken here when READY could not wait for it). Returns only for a dead
        node."""
        from mmops.cluster.watch import describe, lost_nodes

        interval = self.options.cluster_interval_s
        if self._baseline is not None:
            await asyncio.sleep(interval)
        while True:
            poll = await (first if first is not None else self._poll_nodes())
            first = None
            if self._baseline is None:
                said = self._take_baseline(poll)
                if said is not None and self._baseline is not None:
                    self.note(said, nodes=[n.to_dict() for n in self._baseline.alive])
            else:
                lost = lost_nodes(self._baseline, poll)
                if lost:
                    why = describe(lost)
                    self._emit(State.UNHEALTHY, why, **_node_fields(lost))
                    return _Outcome("node_lost", why, lost=lost)
            await asyncio.sleep(interval)

    async def _find_lost(self, wait: bool) -> list[NodeState]:
        """After a failed attempt: the baseline's nodes that are dead now; with ``wait``, keep
        looking for ``node_death_grace_s`` (the GCS marks a vanished node dead only after missed
        health checks, while vLLM sees its worker die at once)."""
        from mmops.cluster.watch import head_lost, lost_nodes

        baseline = self._baseline
        if baseline is None or self._watch is None:
            return []
        grace = self.options.node_death_grace_s if wait else 0.0
        deadline = time.monotonic() + grace
        unreachable = 0
        said = False
        while True:
            poll = await self._poll_nodes()
            lost = lost_nodes(baseline, poll)
            if lost:
                return lost
            head = head_lost(baseline, poll)
            unreachable = unreachable + 1 if head is not None else 0
            if head is not None and (unreachable >= 2 or not wait):
                return [head]
            if time.monotonic() >= deadline or self._stop.is_set():
                return []
            if not said:
                said = True
                self.note(
                    f"checking whether a Ray node died (Ray marks a lost node dead after its "
                    f"health checks fail; looking for up to {grace:g} s)"
                )
            await self._sleep_unless_stopped(self.options.node_recheck_s)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({stop}, timeout=seconds)
        finally:
            stop.cancel()

    async def _wait_back(self, lost: list[NodeState]) -> NodeState | None:
        """Poll until every lost node is back (see cluster.watch.is_back), a stop is asked
        for, or ``node_return_s`` passes; the node that stands for the first one, or None."""
        from mmops.cluster.watch import is_back

        baseline = self._baseline
        assert baseline is not None
        deadline = time.monotonic() + self.options.node_return_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            poll = await self._poll_nodes()
            back = [is_back(n, baseline, poll) for n in lost]
            if all(b is not None for b in back):
                return back[0]
            await self._sleep_unless_stopped(self.options.node_recheck_s)
        return None

    async def _close_watch(self) -> None:
        warm, self._warm = self._warm, None
        if warm is not None:
            warm.cancel()
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.close()

    async def _node_failure(
        self, outcome: _Outcome, lost: list[NodeState], common: dict[str, Any]
    ) -> bool:
        """A dead Ray node: the named failure; retry only once it is back. True to retry."""
        from mmops.cluster.watch import SIGNATURE, describe
        from mmops.diagnose.table import by_id

        sig = by_id(SIGNATURE)
        node = lost[0]
        captures = {"node_ip": node.ip} if node.ip else {}
        cause = Cause(sig, captures, describe(lost), None, render_fix(sig, captures), "cause")
        self.cause = cause
        failures = self._backoff.record_failure(time.monotonic(), outcome.ready_for_s)
        common = {**common, "cause": cause.to_dict(), **_node_fields(lost)}
        what = f"{describe(lost)} ({sig.id})"
        if self._backoff.exhausted:
            window = self.spec.restart.window_s
            self._emit(
                State.FAILED,
                f"{what}; gave up after {failures} failed attempts within {window:g} s",
                fix=cause.fix,
                **common,
            )
            return False
        wait_s = self.options.node_return_s
        self._emit(
            State.BACKOFF,
            f"{what}; a retry cannot place vLLM's workers without it: retrying once "
            f"{'it is' if len(lost) == 1 else 'they are'} back in the Ray cluster "
            f"(waiting up to {wait_s:g} s)",
            fix=cause.fix,
            waiting_for=[n.label for n in lost],
            **common,
        )
        back = await self._wait_back(lost)
        if self._stop.is_set():
            self._emit_end(f"requested stop (while waiting for {node.label})")
            return False
        if back is None:
            self._emit(
                State.FAILED,
                f"{what}; not back within {wait_s:g} s, and vLLM cannot start without it",
                fix=cause.fix,
                **common,
            )
            return False
        self.note(f"{back.label} is alive in the Ray cluster again; restarting the server",
                  node_back=back.to_dict())  # fmt: skip
        return True


def _answered(fut: asyncio.Future[NodePoll] | None) -> NodePoll | None:
    """A poll's answer if it has one by now."""
    if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
        return None
    return fut.result()


def is_ray_launch(spec: LaunchSpec) -> bool:
    return str(spec.get("distributed-executor-backend") or "").lower() == "ray"


def _node_fields(lost: list[NodeState]) -> dict[str, Any]:
    """Event details naming dead nodes: ``node`` (the first), ``nodes_lost`` when several."""
    out: dict[str, Any] = {"node": lost[0].to_dict()}
    if len(lost) > 1:
        out["nodes_lost"] = [n.to_dict() for n in lost]
    return out


def _say(outcome: _Outcome, cause: Cause | None) -> str:
    """One phrase for a failed attempt: what went wrong, and what the log blames."""
    blamed = f"{cause.signature.title} ({cause.id})" if cause is not None else None
    if outcome.kind == "exit":
        return blamed or f"server exited ({outcome.reason})"
    return f"{outcome.reason}; the log shows {blamed}" if blamed else outcome.reason


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
