"""`mmops serve` and `mmops logs` as real processes: the CLI runs the fake vLLM through its module
entry point (`python -m vllm.entrypoints.openai.api_server`, tests/fakes/pkg), over real HTTP.
Includes the promise that matters most on a shared NPU box: SIGKILL mmops, and no vLLM process
(API server, engine, even one that left the process group) survives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import FAKE_PKG, REPO, cli_env, free_port, records, tree, wait_gone  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def write_profile(tmp_path: Path, scenario: str, max_attempts: int = 3, **env: str) -> Path:
    """A profile with fast restarts that runs the fake through the module entry point."""
    rec = tmp_path / "rec.jsonl"
    env_lines = "".join(
        f"  {k}: '{v}'\n"
        for k, v in {
            "PYTHONPATH": str(FAKE_PKG),
            "FAKE_VLLM_SCENARIO": scenario,
            "FAKE_VLLM_RECORD": str(rec),
            **env,
        }.items()
    )
    path = tmp_path / "fake.yaml"
    path.write_text(
        f"name: fake\nmodel: fake-model\nvllm_python: {sys.executable}\ndevice: {{kind: cpu}}\n"
        f"serve:\n  port: {free_port()}\n  host: 127.0.0.1\n"
        f"env:\n{env_lines}"
        f"restart: {{max_attempts: {max_attempts}, window_s: 300, backoff_initial_s: 0.05, "
        f"backoff_max_s: 0.1, jitter: 0}}\n"
        f"readiness: {{timeout_s: 20, interval_s: 0.05}}\n"
    )
    return path


def mmops(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=kw.pop("timeout", 45),
        **kw,
    )


def only_run(state: Path) -> Path:
    (run,) = list(state.iterdir())
    return run


def events(run: Path) -> list[dict]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [r for r in recs if "state" in r]  # state changes; phase records have "kind"


def wait_event(state: Path, wanted: str, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state.exists():
            for run in state.iterdir():
                if any(e["state"] == wanted for e in events(run)):
                    return run
        time.sleep(0.05)
    raise AssertionError(f"no {wanted} event within {timeout} s")


def serve_in_background(profile: Path, state: Path, **popen: object) -> subprocess.Popen:
    """`mmops serve -p PROFILE --no-preflight -q` as a child, as a user would start it."""
    argv = [sys.executable, "-m", "mmops", "serve", "-p", str(profile), "--no-preflight", "-q"]
    argv += ["--state-dir", str(state)]
    return subprocess.Popen(argv, env=cli_env(), cwd=REPO, **popen)


def test_smoke_reaches_ready_and_exits_0(tmp_path):
    profile = write_profile(tmp_path, "serve")
    state = tmp_path / "state"
    res = mmops(
        "serve", "--profile", str(profile), "--no-preflight", "--smoke", "--state-dir", str(state)
    )
    assert res.returncode == 0, res.stderr
    assert "smoke PASS: reached READY" in res.stderr
    run = only_run(state)
    assert [e["state"] for e in events(run)] == ["STARTING", "READY", "STOPPING", "STOPPED"]
    plan = json.loads((run / "plan.json").read_text())
    assert plan["argv"][1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert json.loads((run / "preflight.json").read_text()) == {"skipped": True}
    assert "Starting vLLM server on" in (run / "attempt-1.log").read_text()


def test_smoke_of_a_config_error_fails_with_the_fix_and_logs_show_it(tmp_path):
    profile = write_profile(tmp_path, "config_error")
    state = tmp_path / "state"
    res = mmops(
        "serve", "--profile", str(profile), "--no-preflight", "--smoke", "--state-dir", str(state)
    )
    assert res.returncode == 1
    assert "FAILED" in res.stderr and "config.max_len_above_derived" in res.stderr
    assert "fix: " in res.stderr and "4096" in res.stderr
    assert "smoke FAIL" in res.stderr

    errs = mmops("logs", "--state-dir", str(state), "--errors")
    assert errs.returncode == 0
    assert "attempt-1.log:" in errs.stdout and "[config.max_len_above_derived]" in errs.stdout
    assert "fix:" in errs.stdout
    ev = mmops("logs", "--state-dir", str(state), "--events")
    assert "FAILED" in ev.stdout and "cause: config.max_len_above_derived" in ev.stdout
    full = mmops("logs", "--state-dir", str(state), "--attempt", "1")
    assert "User-specified max_model_len (8192)" in full.stdout
    missing = mmops("logs", "--state-dir", str(state), "--attempt", "7")
    assert missing.returncode == 2 and "--attempt 7" in missing.stderr
    listing = mmops("logs", "--state-dir", str(state), "--list")
    assert "FAILED" in listing.stdout


def test_sigterm_to_mmops_is_a_clean_stop(tmp_path):
    profile = write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1")
    state = tmp_path / "state"
    proc = serve_in_background(
        profile, state, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        run = wait_event(state, "READY")
        family = tree(proc.pid)[1:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert [e["state"] for e in events(run)][-1] == "STOPPED"
    assert events(run)[-1]["crash"] is False
    assert len(family) == 3 and wait_gone(family, 5) == []


def test_sigkill_of_mmops_leaves_no_vllm_process(tmp_path):
    # The engine here even calls setsid(): it has left the process group, like a worker that
    # daemonises; the reaper still finds it (subreaper + /proc walk).
    profile = write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="setsid")
    state = tmp_path / "state"
    proc = serve_in_background(profile, state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_event(state, "READY")
        family = tree(proc.pid)[1:]  # reaper, fake API server, fake engine
        engine_pid = records(tmp_path / "rec.jsonl", "engine")[0]["engine_pid"]
        assert engine_pid in {p.pid for p in family}
        assert os.getsid(engine_pid) == engine_pid  # really outside the group
        proc.kill()
        proc.wait(5)
        left = wait_gone(family, 10)
    finally:
        proc.kill()
    assert left == [], [(p.pid, p.name()) for p in left]
    assert (
        not psutil.pid_exists(engine_pid)
        or psutil.Process(engine_pid).status() == psutil.STATUS_ZOMBIE
    )
    # The record stays readable after the kill.
    assert [e["state"] for e in events(run)] == ["STARTING", "READY"]
    listing = mmops("logs", "--state-dir", str(state), "--list")
    assert "(mmops gone)" in listing.stdout


def test_logs_follow_tracks_restarts_and_ends_with_the_run(tmp_path):
    # Each attempt lives 1.5 s, so the follower is attached before attempt 1 ends.
    profile = write_profile(tmp_path, "crash", max_attempts=3, FAKE_VLLM_STARTUP_S="1.5")
    state = tmp_path / "state"
    serve = serve_in_background(
        profile, state, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_event(state, "STARTING")
        follow = mmops("logs", "--state-dir", str(state), "--follow", timeout=30)
        serve.wait(20)
    finally:
        serve.kill()
    assert follow.returncode == 0
    for n in (1, 2, 3):
        assert f"attempt-{n}.log <==" in follow.stdout
    assert follow.stdout.count("HcclAllreduce, error code is 6") == 3
