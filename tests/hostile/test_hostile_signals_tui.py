"""Signals to `mmops tui` supervising a server, in a real terminal (tmux): SIGINT, SIGTERM,
SIGHUP and SIGKILL to the TUI process during start-up, during backoff, while READY and while
stopping (after the stop key, `x`, against a server that ignores SIGINT and SIGTERM).

The server is the fake vLLM of the serve matrix (tests/fakes, replaying real vLLM log lines)
with an EngineCore child that calls setsid(), as a daemonising worker does. Each case asserts:
the TUI ends in bounded time; no process of the server's tree survives (psutil); every JSON
file of the run folder and every line of events.jsonl is whole; and, where mmops lived to write
it (every signal but SIGKILL), the last state change says the run STOPPED.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import time

import psutil
import pytest
from fakesupport import tree, wait_gone  # tests/fakes, on the path (conftest.py)
from test_tui_signals import Pane

from hostile.sigmatrix import (
    SERVE_PHASES,
    SIGNAL_TALLY,
    SIGNALS,
    SignalCase,
    serve_profile,
    states,
    torn_json,
    wait_state,
)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]
WANTED = {"starting": "STARTING", "backoff": "BACKOFF", "ready": "READY", "stopping": "READY"}


@pytest.mark.parametrize("phase", SERVE_PHASES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_to_the_tui_in_each_phase_leaves_nothing_behind(tmp_path, name, phase):
    profile = serve_profile(tmp_path, phase, engine="setsid")
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "mmops", "tui", "--profile", str(profile), "--no-preflight",
            "--start", "--state-dir", str(state), "--stop-timeout", "3"]  # fmt: skip
    pane = Pane(tmp_path, argv)
    case = SignalCase("tui", name, phase)
    SIGNAL_TALLY.append(case)
    family: list[psutil.Process] = []
    me: psutil.Process | None = None
    try:
        pid = pane.pid()
        me = psutil.Process(pid)
        run = wait_state(state, WANTED[phase])
        if phase == "starting":
            time.sleep(0.5)  # the server is up and inside its slow start
        family = tree(pid)[1:]
        if phase == "stopping":
            pane.wait_screen("READY")
            pane.tmux("send-keys", "-t", "mm", "x")  # the first stop request: the stop key
            wait_state(state, "STOPPING", 10)
        pane.wait_screen(WANTED[phase] if phase != "stopping" else "STOPPING")
        family = family or tree(pid)[1:]
        assert family or phase == "backoff", "no server process to watch"  # backoff: none runs
        t0 = time.monotonic()
        me.send_signal(SIGNALS[name])
        ended = wait_gone([me], 30) == []
        took = time.monotonic() - t0
        status = pane.exit_status() if ended else None
        screen = "" if ended else pane.screen()
        left = wait_gone(family, 15)  # the reaper's grace included
        case.survivors = [f"{p.pid} {p.name()}" for p in left]
    finally:
        pane.close()
        for p in [*family, *([me] if me else [])]:
            with contextlib.suppress(psutil.Error):
                p.kill()  # only what this case started, and only what outlived it
    assert ended, f"mmops tui still running 30 s after {name}; screen:\n{screen}"
    case.torn = torn_json(run)
    assert case.survivors == [], case.survivors
    assert case.torn == [], case.torn
    seen = states(run)
    case.ended = seen[-1] if seen else None
    if name == "SIGKILL":
        assert status == 128 + signal.SIGKILL
    else:
        assert seen[-1] == "STOPPED", (seen, status, took)
        assert status == 0, (status, seen)
        # Bounded: at most the stop ladder (--stop-timeout 3: SIGINT, SIGTERM, then SIGKILL).
        assert took < 15, took
