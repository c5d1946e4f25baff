"""Signals to `mmops serve` in every state that matters: SIGINT, SIGTERM, SIGHUP (a closed
terminal) and SIGKILL, during start-up, during backoff, while READY and while stopping.

Each case asserts: mmops ends in bounded time; no process of the server's tree survives
(psutil); every line of events.jsonl is whole JSON (no half-written record); and, where mmops
lived to write it (every signal but SIGKILL), the last state change says the run STOPPED. The
server is the fake vLLM (tests/fakes) run through vLLM's module entry point, as in
tests/test_supervisor_cli.py.
"""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
import pytest
from fakesupport import tree, wait_gone  # tests/fakes, on the path (conftest.py)
from test_supervisor_cli import serve_in_background

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

pytestmark = pytest.mark.timeout(90)
WANTED = {"starting": "STARTING", "backoff": "BACKOFF", "ready": "READY", "stopping": "READY"}


@pytest.mark.parametrize("phase", SERVE_PHASES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_in_each_phase_leaves_nothing_behind(tmp_path, name, phase):
    profile = serve_profile(tmp_path, phase)
    state = tmp_path / "state"
    proc = serve_in_background(
        profile, state, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    case = SignalCase("serve", name, phase)
    SIGNAL_TALLY.append(case)
    family: list[psutil.Process] = []
    try:
        run = wait_state(state, WANTED[phase])
        if phase == "starting":
            time.sleep(0.5)  # the server process is up and inside its slow start
        family = tree(proc.pid)[1:]
        if phase == "stopping":
            proc.send_signal(signal.SIGTERM)  # the first stop request
            wait_state(state, "STOPPING")
            family = family or tree(proc.pid)[1:]
        t0 = time.monotonic()
        proc.send_signal(SIGNALS[name])
        _, err = proc.communicate(timeout=45)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait(5)
    left = wait_gone(family, 15)
    case.survivors = [f"{p.pid} {p.name()}" for p in left]
    case.torn = torn_json(run)
    assert case.survivors == [], case.survivors
    assert case.torn == [], case.torn  # every line whole JSON, even after SIGKILL
    seen = states(run)
    case.ended = seen[-1] if seen else None
    if name != "SIGKILL":
        assert seen[-1] == "STOPPED", (seen, err[-2000:])
        assert "Traceback" not in err
        # Bounded: a stop during backoff does not wait out the 30 s delay, and a second stop
        # request while stopping kills at once instead of waiting out the ladder.
        assert took < 10, took
