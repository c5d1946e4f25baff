"""The reaper (mmops/proc.py) on its own: exit status passthrough, stragglers, spawn failure,
and group-wide stop signals that it must ignore while its parent lives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from mmops.serve import reaper as proc

pytestmark = pytest.mark.timeout(30)
PY = sys.executable


def run_reaped(code: str, grace: float = 0.5, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        proc.reaper_argv([PY, "-c", code], grace),
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=20,
        **kw,
    )


def test_exit_code_and_output_pass_through():
    res = run_reaped("import sys; print('hello'); sys.exit(3)")
    assert res.returncode == 3 and res.stdout == "hello\n"
    assert proc.describe_exit(3) == "exit code 3"


def test_death_by_signal_is_128_plus_n():
    res = run_reaped("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert res.returncode == 128 + signal.SIGSEGV
    assert proc.describe_exit(res.returncode) == "killed by SIGSEGV (exit 139)"


def test_unrunnable_command_says_why():
    res = subprocess.run(
        proc.reaper_argv(["/nonexistent/vllm"]), capture_output=True, text=True, timeout=20
    )
    assert res.returncode == proc.EXIT_SPAWN_FAILED
    assert "cannot run /nonexistent/vllm" in res.stderr


def test_stragglers_of_an_exited_server_are_killed(tmp_path):
    # The "API server" starts an "engine" that ignores SIGTERM, then exits: the reaper must not
    # leave the engine behind (it would hold the device), nor hang forever on it.
    pidfile = tmp_path / "engine.pid"
    code = (
        "import subprocess, sys\n"
        "e = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(e.pid))\n"
        "import time; time.sleep(0.3); sys.exit(1)\n"
    )
    t0 = time.monotonic()
    res = run_reaped(code, grace=0.5)
    assert res.returncode == 1
    assert time.monotonic() - t0 < 10
    engine = int(pidfile.read_text())
    assert not psutil.pid_exists(engine) or psutil.Process(engine).status() == psutil.STATUS_ZOMBIE


def test_group_stop_signal_reaches_the_server_and_the_reaper_survives_it():
    child = subprocess.Popen(
        proc.reaper_argv([PY, "-c", "import time; print('up', flush=True); time.sleep(60)"], 0.5),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert child.stdout.readline() == "up\n"
    assert proc.signal_group(child.pid, signal.SIGINT)
    # Python dies of the SIGINT after its KeyboardInterrupt traceback; the reaper, which ignored
    # the group signal, reports that as 128 + SIGINT.
    assert child.wait(10) == 128 + signal.SIGINT
    assert not proc.signal_group(child.pid, signal.SIGINT)  # the group is gone


def test_descendants_finds_processes_that_left_the_group():
    child = subprocess.Popen(
        [
            PY,
            "-c",
            "import subprocess, sys, time; subprocess.Popen(['sleep', '30'], start_new_session=True); time.sleep(30)",
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        found: list[int] = []
        while time.monotonic() < deadline and not found:
            found = proc.descendants(child.pid)
            time.sleep(0.05)
        assert len(found) == 1 and os.getsid(found[0]) == found[0]
    finally:
        victims = proc.kill_tree(child.pid)
        child.wait(5)
    assert found[0] in victims
