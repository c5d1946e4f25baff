"""`mmops tui`: the on-call screen. It renders what the core says and dispatches keys to it.

Three ways in, one screen: launch (a Session: preflight, supervisor, suite), attach (a server
started elsewhere, watched by URL) and run (a finished run folder, read-only). Every view reads
one :class:`~mmops.serve.events.EventSource`; slow work (preflight, device queries, /metrics,
probes, diagnose) runs in workers so a key is answered at once, even under a log flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static, TabbedContent, TabPane

from mmops.diagnose.scan import Incident
from mmops.errors import MmopsError
from mmops.launch.fixes import LaunchFix, from_check
from mmops.platform.records import PlatformReport
from mmops.serve.attach import AttachSource
from mmops.serve.events import EventSource, LogLines, StateChanged
from mmops.serve.replay import RunReplay
from mmops.serve.session import Session
from mmops.serve.states import TERMINAL, State
from mmops.tui.widgets.devices import DevicesPanel
from mmops.tui.widgets.logview import LogView
from mmops.tui.widgets.preflight import PreflightTable
from mmops.tui.widgets.ray_nodes import RayNodesPanel
from mmops.tui.widgets.server import ServerPanel
from mmops.tui.widgets.service import ServicePanel
from mmops.tui.widgets.status import StatusHeader

if TYPE_CHECKING:
    from mmops.cluster.report import ClusterReport

DEVICE_POLL_S = 2.0
# A Ray launch's node panels come from the doctor's node probe: one task on every node, a few
# seconds of CPU on each (docs/multinode.md), hence a slow refresh (and `d` for one now).
CLUSTER_POLL_S = 120.0
DEVICE_TIMEOUT_S = 5.0
METRICS_POLL_S = 2.0


@dataclass
class Target:
    """What the screen watches. ``session`` only in launch mode."""

    mode: str  # launch | attach | run
    source: EventSource
    title: str
    session: Session | None = None  # launch mode only
    attach: AttachSource | None = None  # attach mode only: polled while the screen is open
    start_now: bool = False
    cpu: bool = False  # the launch runs on the vLLM CPU backend
    poll_devices: bool = True
    detect: Callable[[], PlatformReport] | None = None  # default: platform.detect (tests inject)
    model_path: str | None = None  # attach mode: the model dir, for stop token ids
    suite: str | None = None  # what `p` runs: --suite, else the launch's suite, else smoke
    url: str | None = None  # where the server will answer, before it has started
    # A Ray launch: what reports on its cluster (mmops.cluster.probe_cluster, bound to the
    # launch's python, address and model; tests hand a recorded report). The Devices tab then
    # shows one panel per Ray node instead of this host's devices.
    cluster: Callable[[], ClusterReport] | None = None

    def __post_init__(self) -> None:
        if self.attach is None and isinstance(self.source, AttachSource):
            self.attach = self.source


class Confirm(ModalScreen[bool]):
    """A yes/no question; y / enter = yes, n / escape = no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question)
            with Horizontal():
                yield Button("yes (y)", id="yes", variant="error")
                yield Button("no (n)", id="no")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


HINTS = {
    "launch": "No server yet. Press s to start it.",
    "attach": "Nothing answers at this URL yet (polling /health every 2 s).",
    "run": "This run recorded no state change.",
}

HELP = """\
s start   x stop   r restart   p probe (suite)   c re-run preflight   a apply the fix
/ search  n / N next / previous match   e warnings+errors only   f follow
[ / ] previous / next attempt   1-4 tabs   d probe the Ray nodes again (Ray launches)
? this help   q quit (asks while a server runs)
"""


class MmopsApp(App[int]):
    CSS_PATH = "mmops.tcss"
    TITLE = "mmops"

    BINDINGS = [
        # The first ones show at 80 columns; `?` lists them all.
        Binding("s", "start", "start"),
        Binding("x", "stop", "stop"),
        Binding("r", "restart", "restart"),
        Binding("p", "probe", "probe"),
        Binding("q", "quit_app", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("c", "preflight", "preflight"),
        Binding("a", "apply_fix", "fix"),
        Binding("slash", "search", "search"),
        Binding("n", "next_match(False)", "next", show=False),
        Binding("N", "next_match(True)", "prev", show=False),
        Binding("e", "filter", "errors"),
        Binding("f", "follow", "follow"),
        Binding("left_square_bracket", "attempt(-1)", "attempt-"),
        Binding("right_square_bracket", "attempt(1)", "attempt+"),
        Binding("1", "tab('tab-server')", show=False),
        Binding("2", "tab('tab-logs')", show=False),
        Binding("3", "tab('tab-devices')", show=False),
        Binding("4", "tab('tab-service')", show=False),
        Binding("d", "probe_cluster", "nodes", show=False),
    ]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.source = target.source
        self.attempt_shown = 0  # 0: follow the newest attempt
        self.incident: Incident | None = None
        self.bundle_note: str | None = None  # where a FAILED run's bundle went (or why not)
        self.incident_error: str | None = None
        self.pending_fix: LaunchFix | None = None
        self._probing = False
        self._last_counters: tuple[float, float | None, float | None] | None = None
        self.exit_code = 0
        self.clock = time.time  # tests fix it, so snapshots hold still
        self._seen_seq = 0  # of the last event the screen has taken
        self.device_timeout_s = DEVICE_TIMEOUT_S
        self._stop_signals = 0
        self._cluster_probing = False

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.target.mode, id="status")
        with TabbedContent(id="tabs", initial="tab-server"):
            with TabPane("1 Server", id="tab-server"), Horizontal(id="overview"):
                with VerticalScroll(id="server-box"):
                    yield ServerPanel(id="server", hint=HINTS[self.target.mode])
                with Vertical(id="preflight-box"):
                    yield PreflightTable(id="preflight")
                    yield Static("", id="fix")
            with TabPane("2 Logs", id="tab-logs"), Vertical():
                yield LogView(id="log")
                yield Static("", id="loginfo")
                yield Input(placeholder="search (enter: find, escape: close)", id="search")
            with TabPane("3 Devices", id="tab-devices"), VerticalScroll():
                yield DevicesPanel(id="devices")
                yield RayNodesPanel(id="ray-nodes")
            with TabPane("4 Service", id="tab-service"), VerticalScroll():
                yield ServicePanel(id="service")
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        # A closed terminal (SIGHUP), a kill (SIGTERM) or `kill -INT` (the terminal's Ctrl-C is
        # a key here): stop the server cleanly and leave; a second one kills it at once.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_stop_signal, sig == signal.SIGHUP)
        self.query_one("#search", Input).display = False
        # Preflight belongs to a launch; attached and recorded servers give the room to the rest.
        self.query_one("#preflight-box").display = self.target.session is not None
        self._show_preflight()
        self._refresh_status()
        self.set_interval(1.0, self._tick)
        self.consume_events()
        if self.target.mode == "attach":
            assert self.target.attach is not None
            self.target.attach.start()
        ray = self.target.cluster is not None
        self.query_one(DevicesPanel).display = not ray
        self.query_one(RayNodesPanel).display = ray
        if ray:
            self.action_probe_cluster()
            self.set_interval(CLUSTER_POLL_S, self.action_probe_cluster)
        if self.target.mode != "run":
            self.set_interval(METRICS_POLL_S, self.poll_metrics)
            if self.target.poll_devices and not ray:
                self.poll_devices()
                self.set_interval(DEVICE_POLL_S, self.poll_devices)
        self._open_attempt(self._latest_attempt())
        if self.target.mode == "run" and self.source.snapshot().state == State.FAILED:
            self.run_diagnose()
        if self.target.start_now:
            await self.action_start()

    def _on_stop_signal(self, hangup: bool) -> None:
        self._stop_signals += 1
        self.call_later(self.shutdown, self._stop_signals > 1, hangup)

    def on_resize(self) -> None:
        # 120 columns and up: server and preflight side by side; below, stacked.
        self.set_class(self.size.width >= 120, "-wide")

    # ---------------------------------------------------------------- events

    @work(exclusive=True, group="events")
    async def consume_events(self) -> None:
        # From the last event seen: a restart of this reader (after `s` on a stopped server)
        # must not replay old FAILED events into a second diagnose.
        async for ev in self.source.events(self._seen_seq):
            self._seen_seq = ev.seq
            if isinstance(ev, LogLines):
                if ev.attempt == self._current_attempt():
                    self.query_one(LogView).refresh_store()
                continue
            if isinstance(ev, StateChanged):
                if ev.state == State.STARTING and self.attempt_shown == 0:
                    self._open_attempt(ev.attempt)
                if ev.state == State.FAILED:
                    self.run_diagnose()
                if ev.state == State.STOPPED:
                    self._last_counters = None
            self._refresh_status()
        self._refresh_status()

    def _tick(self) -> None:
        if not self.is_running or not self.screen.is_mounted:
            return  # closing: the widgets may be gone already
        self.query_one(StatusHeader).refresh_text()
        if self.source.snapshot().state == State.STARTING:
            self.query_one(ServerPanel).refresh_text()
        if self.target.mode != "launch":  # another process writes the log
            view = self.query_one(LogView)
            latest = self._latest_attempt()
            if self.attempt_shown == 0 and view.path != self.source.log_path(latest):
                self._open_attempt(latest)  # `serve` restarted it: follow the new attempt
            view.refresh_store()

    def _refresh_status(self) -> None:
        st = self.source.snapshot()
        self.query_one(StatusHeader).show(st, self.target.title, self.target.url)
        transitions = [
            e for e in getattr(self.source, "history", []) if isinstance(e, StateChanged)
        ]
        self.query_one(ServerPanel).show(st, transitions, self.incident, self.incident_error)

    # ---------------------------------------------------------------- logs

    def _attempts(self) -> list[int]:
        if isinstance(self.source, (RunReplay, AttachSource)):
            return list(self.source.attempts())
        n = self.source.snapshot().attempt
        return list(range(1, n + 1)) or [1]

    def _latest_attempt(self) -> int:
        return max(self._attempts() or [1])

    def _current_attempt(self) -> int:
        return self.attempt_shown or self._latest_attempt()

    def _open_attempt(self, attempt: int) -> None:
        view = self.query_one(LogView)
        view.open(self.source.log_path(attempt))
        self.query_one("#loginfo", Static).update(
            f"attempt {attempt}: {view.path.name if view.path else 'no log'}"
        )

    @on(LogView.CursorMoved)
    def explain_line(self, msg: LogView.CursorMoved) -> None:
        info = self.query_one("#loginfo", Static)
        view = self.query_one(LogView)
        head = f"attempt {self._current_attempt()}  line {msg.line_no or '-'}/{view.row_count}"
        head += "  follow" if view.follow else ""
        head += "  [warnings+errors]" if view.errors_only else ""
        if msg.match is not None:
            sig = msg.match.signature
            info.update(f"{head}\n[{sig.id}] {sig.title}: {sig.meaning}")
        else:
            info.update(head)

    # ---------------------------------------------------------------- preflight

    def _show_preflight(self) -> None:
        table = self.query_one(PreflightTable)
        session = self.target.session
        if session is None:
            note = (
                "attached: preflight runs where the server runs"
                if self.target.mode == "attach"
                else "recorded run"
            )
            table.show(None, note)
            self._show_fix()
            return
        table.show(session.preflight.report, "skipped (--no-preflight)")
        self._show_fix()

    def _show_fix(self) -> None:
        box = self.query_one("#fix", Static)
        check = self.query_one(PreflightTable).selected()
        self.pending_fix = None
        if check is None:
            box.update("")
            return
        session = self.target.session
        counts = session.preflight.summary() if session is not None else ""
        text = f"preflight: {counts}\n{check.id}: {check.summary}"
        if check.fix:
            text += f"\nfix: {check.fix}"
        fix = from_check(check.id, check.data) if check.status in ("fail", "warn") else None
        if fix is not None and self.target.session is not None:
            self.pending_fix = fix
            text += f"\npress a to apply: {fix.describe()} (then preflight runs again)"
        box.update(text)

    @on(PreflightTable.RowHighlighted)
    def _row(self) -> None:
        self._show_fix()

    @work(thread=True, exclusive=True, group="preflight")
    def run_preflight(self, fix: LaunchFix | None = None) -> None:
        session = self.target.session
        if session is None:
            return
        self.call_from_thread(self.notify, "preflight running...")
        try:
            if fix is not None:
                spec = fix.apply(session.spec)
                session.recheck(spec, why=f"applied {fix.describe()} (fix of {fix.check_id})")
            else:
                session.recheck()
        except MmopsError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error")
            return
        pre = session.preflight
        self.call_from_thread(self._show_preflight)
        self.call_from_thread(self.notify, f"preflight: {pre.summary()}")

    # ---------------------------------------------------------------- pollers

    @work(exclusive=True, group="devices")
    async def poll_devices(self) -> None:
        if not self.is_running:
            return
        panel = self.query_one(DevicesPanel)
        if self.target.cpu:
            panel.add_sample(None, cpu=True)
            return
        from mmops.platform import detect

        try:
            report = await asyncio.wait_for(
                asyncio.to_thread(self.target.detect or detect), self.device_timeout_s
            )
        except asyncio.TimeoutError:
            panel.add_sample(
                None, f"npu-smi / nvidia-smi did not answer in {self.device_timeout_s:g} s"
            )
            return
        panel.add_sample(report, "; ".join(report.warnings) or None)

    def action_probe_cluster(self) -> None:
        if self.target.cluster is None:
            self.notify("not a Ray launch: no cluster to probe", severity="warning")
            return
        if self._cluster_probing:
            self.notify("the Ray nodes are being probed already")
            return
        self._cluster_probing = True
        self.probe_cluster()

    @work(thread=True, group="cluster")
    def probe_cluster(self) -> None:
        """The node probe (a child in vLLM's interpreter, bounded by its timeout), off the UI
        thread; the panels are redrawn when it answers."""
        from mmops.cluster.view import cluster_view

        probe = self.target.cluster
        assert probe is not None
        view, error = None, None
        try:
            view = cluster_view(probe())
        except Exception as exc:  # noqa: BLE001 - said on the panel, the screen goes on
            error = f"node probe: {type(exc).__name__}: {exc}"
        finally:
            self._cluster_probing = False
        when = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        if self.is_running:
            self.call_from_thread(self.query_one(RayNodesPanel).show, view, error, when)

    @work(exclusive=True, group="metrics")
    async def poll_metrics(self) -> None:
        if not self.is_running:
            return
        st = self.source.snapshot()
        if st.state not in (State.READY, State.UNHEALTHY) or not st.url:
            return
        import httpx

        from mmops.probe.metrics import MetricsError, scrape_async

        panel = self.query_one(ServicePanel)
        try:
            async with httpx.AsyncClient(timeout=3.0, trust_env=False) as client:
                snap = await scrape_async(client, st.url)
        except MetricsError as exc:
            panel.add_metrics(None, (None, None), str(exc))
            return
        now = time.monotonic()
        prev = self._last_counters
        rates: tuple[float | None, float | None] = (None, None)
        if prev is not None and now > prev[0]:
            dt = now - prev[0]
            rates = (
                _rate(prev[1], snap.prompt_tokens_total, dt),
                _rate(prev[2], snap.generation_tokens_total, dt),
            )
        self._last_counters = (now, snap.prompt_tokens_total, snap.generation_tokens_total)
        panel.add_metrics(snap, rates, None)

    @work(exclusive=True, group="probe")
    async def run_probe(self) -> None:
        panel = self.query_one(ServicePanel)
        st = self.source.snapshot()
        self._probing = True
        try:
            from mmops.probe import run_suite_async
            from mmops.probe.suite import load_suite

            def progress(done: int, total: int, failed: int) -> None:
                panel.set_probe(f"running: {done}/{total} done, {failed} failed")

            session = self.target.session
            if session is not None:
                result = await session.run_suite(self.target.suite, progress=progress)
            else:
                api_key = getattr(self.source, "api_key", None)
                model_path = self.target.model_path
                result = await run_suite_async(
                    st.url or "", load_suite(self.target.suite or "smoke"), api_key=api_key, model_path=model_path,
                    progress=progress,
                )  # fmt: skip
            panel.set_probe(
                f"suite {result.suite}: {result.passed}/{len(result.cases)} passed", result.cases
            )
        except MmopsError as exc:
            panel.set_probe(f"probe: {exc}")
        finally:
            self._probing = False

    @work(thread=True, exclusive=True, group="diagnose")
    def run_diagnose(self) -> None:
        from mmops.diagnose.scan import diagnose

        path = self.source.log_path(self._latest_attempt())
        if path is None or not path.exists():
            self.incident, self.incident_error = None, "no attempt log to diagnose"
        else:
            try:
                self.incident, self.incident_error = diagnose([str(path)]), None
            except MmopsError as exc:
                self.incident, self.incident_error = None, str(exc)
        self.call_from_thread(self._refresh_status)
        session = self.target.session
        if self.target.mode == "launch" and session is not None:
            # As `serve` does: a FAILED run leaves its escalation bundle in the run folder.
            from mmops.bundle import failure_bundle

            line = failure_bundle(session.run_dir.path)
            self.bundle_note = line
            self.call_from_thread(self.notify, line, timeout=10)

    # ---------------------------------------------------------------- actions

    def _control(self, what: str) -> bool:
        if self.source.can_control:
            return True
        why = (
            "a recorded run is read-only"
            if self.target.mode == "run"
            else ("attached to a server started elsewhere: mmops will not " + what + " it")
        )
        self.notify(why, severity="warning")
        return False

    async def action_start(self) -> None:
        if not self._control("start"):
            return
        session = self.target.session
        assert session is not None  # a source that can be controlled comes with its session
        st = self.source.snapshot()
        if st.state not in TERMINAL:
            self.notify(f"already {st.state.value}")
            return
        if session.blocked:
            self.notify("preflight failed: apply a fix (a) or re-run it (c) first", severity="error")
            return
        self.incident = self.incident_error = None
        self.attempt_shown = 0
        if st.attempt:
            await self.source.restart()
        else:
            await session.start()
        self.consume_events()

    async def action_stop(self) -> None:
        if not self._control("stop"):
            return
        if self.source.snapshot().state in TERMINAL:
            self.notify("not running")
            return
        self.notify("stopping: SIGINT to the server's group, then SIGTERM, then SIGKILL")
        self.run_worker(self.source.stop(), group="control")

    async def action_restart(self) -> None:
        if not self._control("restart"):
            return
        if self.source.snapshot().state in TERMINAL:
            await self.action_start()
            return
        self.attempt_shown = 0
        await self.source.restart()

    def action_probe(self) -> None:
        st = self.source.snapshot()
        if self.target.mode == "run":
            self.notify("a recorded run is read-only", severity="warning")
            return
        if st.state != State.READY:
            self.notify(f"the server is {st.state.value}: probes need READY", severity="warning")
            return
        if self._probing:
            self.notify("a probe is already running")
            return
        self.query_one(TabbedContent).active = "tab-service"
        self.run_probe()

    def action_preflight(self) -> None:
        if self.target.session is None:
            self.notify("no launch here: preflight runs in launch mode", severity="warning")
            return
        self.query_one(TabbedContent).active = "tab-server"
        self.run_preflight()

    def action_apply_fix(self) -> None:
        fix = self.pending_fix
        if fix is None:
            self.notify("the selected check has no fix that is a launch change", severity="warning")
            return
        if self.source.snapshot().state not in TERMINAL:
            self.notify("stop the server first: a fix changes the next launch", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_preflight(fix)

        self.push_screen(
            Confirm(f"Apply {fix.describe()} to the launch and re-run preflight?"), answer
        )

    def action_search(self) -> None:
        self.query_one(TabbedContent).active = "tab-logs"
        box = self.query_one("#search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, "#search")
    def _search(self, event: Input.Submitted) -> None:
        view = self.query_one(LogView)
        if not view.search(event.value):
            self.notify(f"not found: {event.value}", severity="warning")
        event.input.display = False
        view.focus()

    def on_key(self, event: object) -> None:
        box = self.query_one("#search", Input)
        if getattr(event, "key", None) == "escape" and box.display:
            box.display = False
            self.query_one(LogView).focus()

    def action_next_match(self, backward: bool) -> None:
        view = self.query_one(LogView)
        if not view.search_text:
            self.action_search()
            return
        if not view.search(view.search_text, backward=backward):
            self.notify(f"not found: {view.search_text}", severity="warning")

    def action_filter(self) -> None:
        self.query_one(TabbedContent).active = "tab-logs"
        view = self.query_one(LogView)
        view.errors_only = not view.errors_only
        self.notify("warnings and errors only" if view.errors_only else "all lines")

    def action_follow(self) -> None:
        self.query_one(TabbedContent).active = "tab-logs"
        view = self.query_one(LogView)
        if view.follow:
            view.follow = False
        else:
            view.action_to_end()
        self.notify("follow on" if view.follow else "follow off")

    def action_attempt(self, delta: int) -> None:
        attempts = self._attempts()
        cur = self._current_attempt()
        want = cur + delta
        if want not in attempts:
            self.notify(f"attempts: {', '.join(map(str, attempts)) or 'none'}")
            return
        self.attempt_shown = 0 if want == max(attempts) else want
        self.query_one(TabbedContent).active = "tab-logs"
        self._open_attempt(want)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_help(self) -> None:
        self.notify(HELP, title="keys", timeout=10)

    async def action_quit_app(self) -> None:
        st = self.source.snapshot()
        if self.source.can_control and st.state not in TERMINAL:

            async def answer(yes: bool | None) -> None:
                if yes:
                    await self.shutdown(False)

            self.push_screen(
                Confirm(
                    f"The server is {st.state.value}. Stop it and quit? (serve + --attach keeps one running)"
                ),
                answer,
            )
            return
        await self.shutdown(False)

    async def shutdown(self, force: bool, hangup: bool = False) -> None:
        """Stop the server (the same stop as `serve`), then leave."""
        if self.source.can_control and self.source.snapshot().state not in TERMINAL:
            self.notify("stopping the server...")
            with contextlib.suppress(MmopsError):
                await self.source.stop(force=force)
        if self.target.mode == "attach":
            assert self.target.attach is not None
            await self.target.attach.close()
        if hangup:
            _leave_after_hangup()
        self.exit(self.exit_code)


def _leave_after_hangup(grace_s: float = 2.0) -> None:
    """The terminal is gone: Textual's writer thread may have died on EIO with output queued,
    and its shutdown would then wait for ever. The server is stopped and the run folder is
    complete by now, so send output nowhere and make sure the process ends."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(null, fd)
    timer = threading.Timer(grace_s, os._exit, (0,))
    timer.daemon = True
    timer.start()


def _rate(before: float | None, after: float | None, dt: float) -> float | None:
    if before is None or after is None or dt <= 0:
        return None
    return max(0.0, (after - before) / dt)
