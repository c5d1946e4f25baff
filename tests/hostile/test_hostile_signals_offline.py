"""Signals to `mmops offline`: SIGINT, SIGTERM, SIGHUP and SIGKILL while vLLM starts its engine,
while it generates, after its result while it shuts down (finishing), and while mmops stops it
(after a first SIGTERM, against a child that ignores SIGINT and SIGTERM). Offline has no backoff
and no READY: these are its phases.

The child is a stand-in for vLLM's interpreter (put where --python points, in a venv layout
whose metadata says vLLM is installed, as tests/test_offline_cli.py does): it speaks the child
program's marker lines, replays real vLLM CPU log lines (tests/fixtures/logs/real-cpu) and
starts an "EngineCore" that calls setsid(), as a daemonising worker does. Each case asserts:
mmops ends in bounded time with 128+N (N the first signal; 0 when the result was already in);
no process of the child's tree survives (psutil); every JSON file of the run folder is whole,
no temp file is left and the unmasked job file is gone; and, where mmops lived to write it
(every signal but SIGKILL), result.json says how the run ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from fakesupport import REPO, cli_env, tree, wait_gone  # tests/fakes (conftest.py)
from test_offline_cli import standin

from hostile.sigmatrix import SIGNAL_TALLY, SIGNALS, TESTS, SignalCase, torn_json

pytestmark = pytest.mark.timeout(90)
PHASES = ("starting", "generating", "finishing", "stopping")
MARKER = "@@mmops-offline"
LOGS = TESTS / "fixtures" / "logs" / "real-cpu"

# The stand-in child. HOSTILE_PHASE says where it stops to wait; HOSTILE_PIDS is where it
# writes its pid and its engine's once it is there.
CHILD = f"""
import json, os, signal, subprocess, sys, time
job = json.load(open(sys.argv[3])); os.unlink(sys.argv[3])  # as the real child does
phase, logs = os.environ["HOSTILE_PHASE"], os.environ["HOSTILE_LOGS"]
def replay(name, first=0, last=None):
    lines = open(os.path.join(logs, name), errors="replace").read().splitlines()[first:last]
    sys.stdout.write("\\n".join(lines) + "\\n"); sys.stdout.flush()
def on_stop(signum, frame):
    replay("requested-stop-sigint.log", -12)
    engine.kill(); engine.wait()
    os._exit(128 + signum)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN if phase == "stopping" else on_stop)
print("{MARKER} stage preprocess", flush=True)
print("{MARKER} stage engine", flush=True)
engine = subprocess.Popen([sys.executable, "-c",
                           "import os, time; os.setsid(); time.sleep(300)", "EngineCore"])
replay("healthy-start.log", 0, 60)
if phase in ("generating", "finishing"):
    print("{MARKER} stage generate", flush=True)
if phase == "finishing":  # the result is in; vLLM shuts its engine down slowly
    outs = [dict(index=i, question=job["questions"][r["question"]], media=job["media"][r["media"]],
                 prompt="p", prompt_tokens=10, output_tokens=2, text="a red circle",
                 finish_reason="length") for i, r in enumerate(job["requests"])]
    result = dict(vllm_version="0.32.0", stop_token_ids=None, frames=[], outputs=outs, notes=[],
                  timings=dict(preprocess_s=0.01, engine_start_s=1.0, generate_s=0.2))
    print("{MARKER} result " + json.dumps(result), flush=True)
with open(os.environ["HOSTILE_PIDS"] + ".tmp", "w") as fh:
    fh.write("%d %d" % (os.getpid(), engine.pid))
os.replace(os.environ["HOSTILE_PIDS"] + ".tmp", os.environ["HOSTILE_PIDS"])
time.sleep(300)
"""


def _wait_pids(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return [int(p) for p in path.read_text().split()]
        if proc.poll() is not None:
            raise AssertionError(f"mmops ended early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    raise AssertionError("the stand-in child never reached its phase")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", list(SIGNALS))
def test_signal_to_offline_in_each_phase_leaves_nothing_behind(tmp_path, model, name, phase):
    py = standin(tmp_path, CHILD)
    state = tmp_path / "state"
    pids_file = tmp_path / "child.pids"
    env = cli_env(HOSTILE_PHASE=phase, HOSTILE_LOGS=str(LOGS), HOSTILE_PIDS=str(pids_file))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmops", "offline", "--model", str(model), "--python", str(py),
         "--no-preflight", "--state-dir", str(state), "--stop-timeout", "5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    case = SignalCase("offline", name, phase)
    SIGNAL_TALLY.append(case)
    family: list[psutil.Process] = []
    try:
        pids = _wait_pids(pids_file, proc)
        family = tree(proc.pid)[1:]  # the reaper, the child, its EngineCore (setsid: own group)
        assert set(pids) <= {p.pid for p in family}, (pids, family)
        first = SIGNALS[name]
        if phase == "stopping":
            first = signal.SIGTERM
            proc.send_signal(signal.SIGTERM)  # the first stop request: the ladder begins
            time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(SIGNALS[name])
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
        left = wait_gone(family, 15)  # the reaper's grace included
        case.survivors = [f"{p.pid} {p.name()}" for p in left]
    finally:
        proc.kill()
        proc.wait(5)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()  # only what this case started, and only what outlived it
    (run,) = list(state.iterdir())
    case.torn = torn_json(run)
    assert case.survivors == [], case.survivors
    assert case.torn == [], case.torn
    assert not (run / ".job-child.json").exists(), "the unmasked job file outlived the run"
    assert took < 10, took  # a second signal while stopping kills at once
    if name == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        return
    assert "Traceback" not in err, err[-2000:]
    result = json.loads((run / "result.json").read_text())
    assert json.loads(out) == result  # what --json printed is what the folder keeps
    if phase == "finishing":  # the result was in: the run is done, vLLM was only shutting down
        case.ended = "ok"
        assert proc.returncode == 0 and result["ok"] is True, err[-2000:]
        return
    case.ended = f"stopped by {result.get('stopped_by')}"
    assert proc.returncode == 128 + first, err[-2000:]
    expected = signal.Signals(first).name
    assert result["ok"] is False and result["stopped_by"] == expected, result
    assert result["error"] == f"stopped by {expected}" and result["exit_code"] == 128 + first
    assert Path(result["log"]).name == "attempt-1.log"
    assert os.path.getsize(result["log"]) > 0
