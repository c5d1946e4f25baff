"""`mmops tui --start` in a real terminal (tmux), ended every way a terminal session ends.

The real CLI runs in a tmux pane 100x30 and starts the stand-in vLLM through the profile's
``vllm_python`` and the module entry point (tests/fakes/pkg), as `mmops serve` tests do. Its
engine child calls setsid(), like a worker that daemonises, so only the reaper can find it.
Whatever ends the screen (a closed terminal, SIGTERM, SIGKILL, q then y), no vLLM process may
outlive it, and the run folder must say how it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import REPO, cli_env, records, tree, wait_gone  # noqa: E402
from test_supervisor_cli import events, wait_event, write_profile  # noqa: E402

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

TMUX_CONF = "set -g remain-on-exit on\nset -g status off\n"


class Pane:
    """`mmops tui` in a detached tmux session on a private socket."""

    def __init__(self, tmp_path: Path, argv: list[str]) -> None:
        self.sock = str(tmp_path / "tmux.sock")
        self.pidfile = tmp_path / "mmops.pid"
        conf = tmp_path / "tmux.conf"
        conf.write_text(TMUX_CONF)
        self.statusfile = tmp_path / "mmops.status"
        inner = tmp_path / "tui.sh"
        # exec: the pid written is the mmops process itself.
        inner.write_text(
            "#!/bin/sh\n"
            f"echo $$ > '{self.pidfile}'\n"
            f"export PYTHONPATH='{REPO}' LANG=C.UTF-8 LC_ALL=C.UTF-8\n"
            f"cd '{REPO}'\n"
            "exec " + " ".join(f"'{a}'" for a in argv) + "\n"
        )
        # The pane's shell waits for mmops in the foreground and writes down its exit status
        # (128+N when signal N ended it).
        wrapper = tmp_path / "pane.sh"
        wrapper.write_text(f"#!/bin/sh\nsh '{inner}'\necho $? > '{self.statusfile}'\n")
        env = cli_env()
        env.pop("TMUX", None)
        self.env = env
        self.tmux("-f", str(conf), "new-session", "-d", "-s", "mm", "-x", "100", "-y", "30",
                  f"sh '{wrapper}'")  # fmt: skip

    def tmux(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-S", self.sock, *args],
            capture_output=True, text=True, env=self.env, timeout=10,
        )  # fmt: skip
        assert res.returncode == 0, (args, res.stderr)
        return res.stdout

    def pid(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.pidfile.read_text().strip() if self.pidfile.exists() else ""
            if text:
                return int(text)
            time.sleep(0.05)
        raise AssertionError("the pane never started mmops")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "mm")

    def wait_screen(self, want: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if want in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{want!r} never on screen; last screen:\n{self.screen()}")

    def exit_status(self, timeout: float = 10.0) -> int:
        """mmops's exit status, as the pane's shell saw it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.statusfile.read_text().strip() if self.statusfile.exists() else ""
            if text:
                return int(text)
            time.sleep(0.05)
        raise AssertionError(f"no exit status; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=10)


def gone(proc: psutil.Process, timeout: float) -> bool:
    return wait_gone([proc], timeout) == []


class Tui:
    """`mmops tui --profile P --start` of the fake in a pane, with its process family."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        profile = write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="setsid")
        self.state = tmp_path / "state"
        argv = [sys.executable, "-m", "mmops", "tui", "--profile", str(profile),
                "--no-preflight", "--start", "--state-dir", str(self.state),
                "--stop-timeout", "3"]  # fmt: skip
        self.pane = Pane(tmp_path, argv)
        self.family: list[psutil.Process] = []
        self.mmops: psutil.Process | None = None

    def wait_ready(self) -> None:
        self.pid = self.pane.pid()
        self.mmops = psutil.Process(self.pid)
        self.run = wait_event(self.state, "READY", 30)
        self.url = json.loads((self.run / "plan.json").read_text())["url"]
        self.family = tree(self.pid)[1:]  # reaper, fake API server, fake engine
        rec = self.tmp_path / "rec.jsonl"
        self.engine_pid = records(rec, "engine")[0]["engine_pid"]
        self.api_pid = records(rec, "start")[0]["pid"]

    def states(self) -> list[str]:
        return [e["state"] for e in events(self.run)]

    def wait_stopped(self, timeout: float) -> list[str]:
        """The run's states once the last one is STOPPED (or as they are after timeout)."""
        deadline = time.monotonic() + timeout
        while self.states()[-1] != "STOPPED" and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.states()

    def close(self) -> None:
        self.pane.close()
        # Only the processes this test started, and only those that outlived it.
        for p in [*self.family, *([self.mmops] if self.mmops else [])]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


@pytest.fixture
def tui(tmp_path):
    """A READY `mmops tui` in tmux; whatever the test does, nothing it started outlives it."""
    t = Tui(tmp_path)
    try:
        t.wait_ready()
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("how", ["sighup", "sigterm", "sigkill", "q-then-y", "kill-session"])
def test_tui_in_a_terminal_leaves_no_vllm_process(tui, how):
    # The header, not the timeline (a capture can catch the screen between the two repaints).
    shown = tui.pane.wait_screen("● READY  fake")
    header = next(line for line in shown.splitlines() if "● READY  fake" in line)
    assert tui.url in header, shown
    assert {tui.engine_pid, tui.api_pid} <= {p.pid for p in tui.family}, tui.family
    assert len(tui.family) == 3 and os.getsid(tui.engine_pid) == tui.engine_pid  # left the group

    if how == "sighup":  # what a terminal sends as it closes
        os.kill(tui.pid, signal.SIGHUP)
    elif how == "sigterm":
        os.kill(tui.pid, signal.SIGTERM)
    elif how == "sigkill":
        os.kill(tui.pid, signal.SIGKILL)
    elif how == "q-then-y":
        tui.pane.tmux("send-keys", "-t", "mm", "q")
        asked = tui.pane.wait_screen("Stop it and quit?", 10)
        assert "The server is READY" in asked
        assert tui.states()[-1] == "READY"  # asking stops nothing
        tui.pane.tmux("send-keys", "-t", "mm", "y")
    else:  # the terminal itself goes away: tmux closes the pty and the kernel hangs up
        tui.pane.tmux("kill-session", "-t", "mm")

    if how != "kill-session":  # (that case has its own test below)
        assert gone(tui.mmops, 20), f"mmops still running after {how}"
        status = tui.pane.exit_status()
        assert status == (128 + signal.SIGKILL if how == "sigkill" else 0), (how, status)
    left = wait_gone(tui.family, 15)
    assert left == [], [(p.pid, p.name(), p.cmdline()[:3]) for p in left]
    if how == "sigkill":
        assert tui.states() == ["STARTING", "READY"]  # nobody left to write the end: the reaper
    else:
        assert tui.wait_stopped(10)[-1] == "STOPPED" and "BACKOFF" not in tui.states()


def test_closing_the_terminal_ends_mmops(tui):
    tui.pane.wait_screen("READY")
    tui.pane.tmux("kill-session", "-t", "mm")
    assert wait_gone(tui.family, 15) == []
    assert tui.wait_stopped(10)[-1] == "STOPPED"
    assert gone(tui.mmops, 6), "mmops still running 6 s after its terminal closed"
