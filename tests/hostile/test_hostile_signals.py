"""Signals to `mmops serve` in every state that matters: SIGINT, SIGTERM, SIGHUP (a closed
terminal) and SIGKILL, during start-up, during backoff, while READY and while stopping.

Each case asserts: mmops ends in bounded time; no process of the server's tree survives
(psutil); every line of events.jsonl is whole JSON (no half-written record); and, where mmops
lived to write it (every signal but SIGKILL), the last state change says the run STOPPED. The
server is the fake vLLM (tests/fakes) run through vLLM's module entry point, as in
tests/test_supervisor_cli.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakesupport import tree, wait_gone  # noqa: E402
from test_supervisor_cli import serve_in_background, write_profile  # noqa: E402

pytestmark = pytest.mark.timeout(90)

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP,
           "SIGKILL": signal.SIGKILL}  # fmt: skip
PHASES = ("starting", "backoff", "ready", "stopping")


def _profile(tmp_path: Path, phase: str) -> Path:
    if phase == "starting":
        return write_profile(tmp_path, "serve", FAKE_VLLM_STARTUP_S="30", FAKE_VLLM_ENGINE="1")
    if phase == "backoff":
        path = write_profile(tmp_path, "npu_vm", FAKE_VLLM_VM_ALWAYS="1")
        text = path.read_text().replace(
            "backoff_initial_s: 0.05, backoff_max_s: 0.1", "backoff_initial_s: 30, backoff_max_s: 30"
        )
        path.write_text(text)
        return path
    if phase == "stopping":
        # The server ignores SIGINT and SIGTERM: the stop ladder has to wait, then kill.
        return write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1", FAKE_VLLM_IGNORE="INT,TERM")
    return write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1")


def _records(run: Path) -> list[dict]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]  # raises on a half-written line


def _states(run: Path) -> list[str]:
    return [r["state"] for r in _records(run) if "state" in r]


def _wait(state_dir: Path, wanted: str, timeout: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in state_dir.iterdir() if state_dir.exists() else ():
            try:
                if wanted in _states(run):
                    return run
            except ValueError:
                pass  # a line being written right now; the final check reads it whole
        time.sleep(0.05)
    raise AssertionError(f"no {wanted} within {timeout} s")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_in_each_phase_leaves_nothing_behind(tmp_path, name, phase):
    profile = _profile(tmp_path, phase)
    state = tmp_path / "state"
    proc = serve_in_background(
        profile, state, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    family: list = []
    try:
        wanted = {"starting": "STARTING", "backoff": "BACKOFF", "ready": "READY"}.get(phase, "READY")
        run = _wait(state, wanted)
        if phase == "starting":
            time.sleep(0.5)  # the server process is up and inside its slow start
        family = tree(proc.pid)[1:]
        if phase == "stopping":
            proc.send_signal(signal.SIGTERM)  # the first stop request
            _wait(state, "STOPPING")
            family = family or tree(proc.pid)[1:]
        proc.send_signal(SIGNALS[name])
        _, err = proc.communicate(timeout=45)
    finally:
        proc.kill()
        proc.wait(5)
    left = wait_gone(family, 15)
    assert left == [], [(p.pid, p.name()) for p in left]
    states = _states(run)  # every line whole JSON, even after SIGKILL
    if name != "SIGKILL":
        assert states[-1] == "STOPPED", (states, err[-2000:])
        assert "Traceback" not in err
