"""The header: model, URL, state as a word and a symbol, attempt n of N, uptime, restarts."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from mmops.serve.events import Status
from mmops.serve.states import SYMBOL, State

STATE_STYLE = {
    State.READY: "bold green",
    State.STARTING: "bold yellow",
    State.STOPPING: "bold yellow",
    State.BACKOFF: "bold yellow",
    State.UNHEALTHY: "bold red",
    State.FAILED: "bold red",
    State.STOPPED: "bold",
}


def clock(seconds: float | None) -> str:
    """1:02:03 / 2:03 / 0:05: how long, at a glance."""
    if seconds is None:
        return "-"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class StatusHeader(Static):
    """Two lines that answer "what is it and is it up?"."""

    def __init__(self, mode: str, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.mode = mode  # launch | attach | run
        self.status = Status()
        self.title = ""
        self.url: str | None = None

    def show(self, status: Status, title: str, url: str | None = None) -> None:
        self.status = status
        self.title = title
        self.url = url
        self.refresh_text()

    def refresh_text(self) -> None:
        st = self.status
        now = getattr(self.app, "clock", time.time)()
        line = Text()
        line.append(f" {SYMBOL[st.state]} {st.state.value} ", STATE_STYLE.get(st.state, ""))
        # Attached, the URL is the title: the model is what the server says it serves.
        name = (st.model or "model not known yet") if self.mode == "attach" else self.title
        line.append(f" {name or st.model or '?'}", "bold")
        line.append(f"  {st.url or self.url or ''}")
        if self.mode != "launch":
            line.append(f"  [{self.mode}]", "italic")
        second = Text()
        if st.attempt:
            of = f" of {st.max_attempts}" if st.max_attempts else ""
            second.append(f" attempt {st.attempt}{of}")
        up = st.uptime(now)
        if up is not None:
            second.append(f"  up {clock(up)}")
        elif st.state == State.STARTING and st.attempt_started_at:
            second.append(f"  starting for {clock(now - st.attempt_started_at)}")
        second.append(f"  restarts {st.restarts}")
        if st.reason:
            second.append(f"  {st.reason}", "dim")
        self.update(Text("\n").join([line, second]))
