"""Server: start-up progress ("is it stuck?"), time to ready per attempt, the last failure with
its signature, meaning and fix, the remedy the next attempt applies, and when the run ended
FAILED the diagnose report of the last attempt, in place."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from mmops.diagnose.phases import STARTUP_PHASES
from mmops.diagnose.scan import Incident
from mmops.serve.events import StateChanged, Status
from mmops.serve.states import SYMBOL, State
from mmops.tui.widgets.status import clock

TIMELINE = 12  # state changes shown, newest last (UTC, as events.jsonl records them)
_PHASE_INDEX = {pid: i for i, (pid, _title) in enumerate(STARTUP_PHASES)}


class ServerPanel(Static):
    def __init__(self, *, hint: str = "", id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.hint = hint  # what to say while nothing has happened yet
        self.status = Status()
        self.transitions: Sequence[StateChanged] = ()
        self.incident: Incident | None = None
        self.incident_error: str | None = None
        self.note = ""

    def show(
        self,
        status: Status,
        transitions: Sequence[StateChanged],
        incident: Incident | None = None,
        incident_error: str | None = None,
    ) -> None:
        self.status = status
        self.transitions = transitions
        self.incident = incident
        self.incident_error = incident_error
        self.refresh_text()

    def refresh_text(self) -> None:
        st = self.status
        out = Text()
        now = getattr(self.app, "clock", time.time)()
        if st.state == State.STARTING and st.attempt_started_at:
            out.append(
                f"Starting attempt {st.attempt}: {clock(now - st.attempt_started_at)} elapsed\n",
                "bold",
            )
        ph = st.phase
        if ph is not None and st.state in (State.STARTING, State.READY, State.UNHEALTHY):
            # Past ready (serving requests) or READY: every start-up phase is done.
            done_all = ph.phase not in _PHASE_INDEX or st.state != State.STARTING
            n = len(STARTUP_PHASES) if ph.phase not in _PHASE_INDEX else _PHASE_INDEX[ph.phase] + 1
            if ph.phase in _PHASE_INDEX:
                out.append(f"phase {n}/{len(STARTUP_PHASES)}: {ph.title}")
            else:
                out.append(f"{ph.title} (start-up done)")
            if ph.progress:
                i, total = ph.progress
                width = 20
                done = int(width * i / max(1, total))
                out.append(f"  [{'#' * done}{'.' * (width - done)}] {i}/{total}")
            if ph.detail:
                out.append(f"  {ph.detail}")
            out.append(f"  ({clock(now - ph.time)} ago)\n", "dim")
            out.append(" " + " ".join(
                ("✓" if done_all or _PHASE_INDEX[pid] < n - 1 else "›" if pid == ph.phase else "·")
                + pid
                for pid, _ in STARTUP_PHASES
            ) + "\n", "dim")  # fmt: skip
        elif st.state == State.STARTING:
            out.append("phase: waiting for the first start-up line\n")
        readies = [t for t in self.transitions if t.state == State.READY]
        if readies:
            times = ", ".join(
                f"#{t.attempt} {t.startup_s:.1f} s" for t in readies if t.startup_s is not None
            )
            out.append(f"time to ready: {times}\n")
        if st.changes:
            out.append("automatic changes: ", "bold")
            out.append(", ".join(f"{c.change} (after {c.signature})" for c in st.changes) + "\n")
        backoff = next((t for t in reversed(self.transitions) if t.state == State.BACKOFF), None)
        if st.state == State.BACKOFF and backoff is not None:
            nxt = backoff.change
            out.append(f"next attempt in {backoff.delay_s or 0:.1f} s", "yellow")
            out.append(f" with {nxt.change}\n" if nxt else " (same launch)\n")
        if st.cause is not None:
            c = st.cause
            out.append("\nlast failure: ", "bold red")
            out.append(f"{c.title} [{c.id}]\n")
            where = f"line {c.line_no}" if c.line_no else "log"
            out.append(f"  evidence ({where}): {c.line[:200]}\n", "dim")
            out.append(f"  meaning: {c.meaning}\n")
            out.append(f"  fix: {c.fix}\n", "green")
        if st.state == State.FAILED:
            out.append(f"\nFAILED: {st.reason}\n", "bold red")
            if st.fix:
                out.append(f"  fix: {st.fix}\n", "green")
            if self.incident is not None:
                out.append(self._incident_text(self.incident))
            elif self.incident_error:
                out.append(f"  diagnose: {self.incident_error}\n", "dim")
        if self.note:
            out.append(f"\n{self.note}\n", "italic")
        if self.transitions:
            out.append("\ntimeline\n", "bold")
            for ev in self.transitions[-TIMELINE:]:
                stamp = time.strftime("%H:%M:%S", time.gmtime(ev.time))
                out.append(f" {stamp} #{ev.attempt} {SYMBOL[ev.state]} {ev.state.value:<9} ")
                out.append(f"{ev.reason[:120]}\n", "dim")
        if not out.plain.strip():
            out.append(
                "No server yet. Press s to start it." if st.state == State.STOPPED else st.reason
            )
        self.update(out)

    @staticmethod
    def _incident_text(inc: Incident) -> Text:
        out = Text()
        out.append(f"\ndiagnose: {inc.verdict}\n", "bold")
        for f in inc.findings[:3]:
            out.append(f"  {f.role}: {f.signature.title} [{f.id}]\n")
            for ev in f.evidence[:2]:
                out.append(f"    {Path(ev.file).name}:{ev.line}: {ev.text.strip()[:160]}\n", "dim")
            if f.role == "cause":
                out.append(f"    fix: {f.fix}\n", "green")
        return out
