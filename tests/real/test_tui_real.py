"""`mmops tui` in a real terminal on the real vLLM CPU build: tmux runs it, keys go in with
send-keys and the screen is read with capture-pane, as a person would use it.

start -> READY -> probe (a TTFT on screen) -> stop -> quit, and no vLLM process left.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_serve_real import START_S, env, free_port, profile

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-t", session, "-p")


def wait_screen(session: str, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen(session)
        if needle in text:
            return text
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} not on screen after {timeout:.0f} s:\n{text}")


def vllm_processes(port: int) -> list[psutil.Process]:
    """The vLLM API servers on ``port`` (the session's shared server of conftest runs too)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "vllm.entrypoints.openai.api_server" in cmd and str(port) in cmd:
            out.append(p)
    return out


def tui_processes(state: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "tui" in cmd and str(state) in cmd:
            out.append(p)
    return out


def last_state(state: Path) -> str | None:
    runs = sorted(state.iterdir()) if state.exists() else []
    if not runs or not (runs[-1] / "events.jsonl").exists():
        return None
    recs = [json.loads(x) for x in (runs[-1] / "events.jsonl").read_text().splitlines()]
    states = [r["state"] for r in recs if "state" in r]
    return states[-1] if states else None


@pytest.mark.timeout(START_S + 300)
def test_tui_start_ready_probe_stop_quit_in_tmux(vllm_python, tiny_model, tmp_path):
    port = free_port()
    state = tmp_path / "state"
    argv = [
        sys.executable, "-m", "mmops", "tui",
        "--profile", str(profile(tmp_path)), "--model", str(tiny_model),
        "--python", str(vllm_python), "--port", str(port), "--state-dir", str(state),
    ]  # fmt: skip
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env().items() if k.isidentifier())
    session = f"mmops-tui-{tmp_path.name}"
    cmd = f"cd {shlex.quote(str(REPO))} && env {envs} {shlex.join(argv)}; sleep 5"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd)
    try:
        first = wait_screen(session, "■ STOPPED", 60)
        assert "✓  model.config" in first  # the preflight ran as the screen opened
        tmux("send-keys", "-t", session, "s")
        wait_screen(session, "STARTING", 60)
        assert vllm_processes(port), "the server did not start under the TUI"
        # "Is it stuck?": the start-up phase shows while vLLM loads.
        wait_screen(session, "phase ", START_S)
        ready = wait_screen(session, "● READY", START_S)
        assert "time to ready: #1" in ready
        tmux("send-keys", "-t", session, "p")
        probed = wait_screen(session, "passed", 240)
        assert "TTFT" in probed and "stream" in probed
        stream_line = next(x for x in probed.splitlines() if " stream " in x)
        assert " ms" in stream_line.split("TTFT", 1)[1].split("latency", 1)[0], stream_line
        tmux("send-keys", "-t", session, "x")
        wait_screen(session, "■ STOPPED", 120)
        assert last_state(state) == "STOPPED"
        tmux("send-keys", "-t", session, "q")  # stopped: quits without asking
        deadline = time.monotonic() + 20
        while tui_processes(state) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tui_processes(state) == []
    finally:
        tmux("kill-session", "-t", session)
    deadline = time.monotonic() + 15
    while vllm_processes(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert vllm_processes(port) == []
