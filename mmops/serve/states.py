"""The supervisor's named states, as supervisord and systemd name theirs."""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    READY = "READY"
    UNHEALTHY = "UNHEALTHY"
    BACKOFF = "BACKOFF"
    FAILED = "FAILED"
    STOPPING = "STOPPING"


TERMINAL = frozenset({State.STOPPED, State.FAILED})

# One symbol per state, so a state reads without colour (NO_COLOR, TERM=dumb, a screenshot).
SYMBOL: dict[State, str] = {
    State.STOPPED: "■",
    State.STARTING: "◔",
    State.READY: "●",
    State.UNHEALTHY: "▲",
    State.BACKOFF: "↻",
    State.FAILED: "✗",
    State.STOPPING: "◌",
}
