"""What the signal matrices share: the phases, the record checks, and the tally they report.

Each matrix (serve, offline, the TUI) sends SIGINT, SIGTERM, SIGHUP and SIGKILL to mmops in
each phase that exists for it and records one :class:`~hostile.tally.SignalCase`;
``conftest.py`` prints the count with the hostile tally.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from test_supervisor_cli import write_profile  # tests/, on the path (conftest.py)

from hostile.tally import SIGNAL_TALLY, SignalCase  # noqa: F401 (re-exported for the matrices)

TESTS = Path(__file__).resolve().parents[1]
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP,
           "SIGKILL": signal.SIGKILL}  # fmt: skip
SERVE_PHASES = ("starting", "backoff", "ready", "stopping")


def serve_profile(tmp_path: Path, phase: str, engine: str = "1") -> Path:
    """A profile of the fake vLLM (it replays real vLLM log lines) that holds ``phase``: a slow
    start, a 30 s backoff after a failure, a server that serves, or one that ignores SIGINT and
    SIGTERM so the stop ladder has to wait, then kill. ``engine``: "setsid" for an EngineCore
    child that leaves the process group (only the reaper can find it)."""
    if phase == "starting":
        return write_profile(tmp_path, "serve", FAKE_VLLM_STARTUP_S="30", FAKE_VLLM_ENGINE=engine)
    if phase == "backoff":
        path = write_profile(tmp_path, "npu_vm", FAKE_VLLM_VM_ALWAYS="1")
        text = path.read_text().replace(
            "backoff_initial_s: 0.05, backoff_max_s: 0.1",
            "backoff_initial_s: 30, backoff_max_s: 30",
        )
        path.write_text(text)
        return path
    if phase == "stopping":
        return write_profile(
            tmp_path, "serve", FAKE_VLLM_ENGINE=engine, FAKE_VLLM_IGNORE="INT,TERM"
        )
    return write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE=engine)


def records(path: Path) -> list[dict]:
    """Every line of a .jsonl file as JSON; raises ValueError on a half-written line."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def states(run: Path) -> list[str]:
    return [r["state"] for r in records(run / "events.jsonl") if "state" in r]


def wait_state(root: Path, wanted: str, timeout: float = 30.0) -> Path:
    """The run folder under ``root`` whose events reach ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in root.iterdir() if root.exists() else ():
            try:
                if wanted in states(run):
                    return run
            except ValueError:
                pass  # a line being written right now; the final check reads it whole
        time.sleep(0.05)
    raise AssertionError(f"no {wanted} within {timeout} s")


def torn_json(run: Path) -> list[str]:
    """Files of a run folder that are not whole JSON (every *.json, every line of *.jsonl), and
    temp files a write left behind."""
    bad = []
    for path in sorted(run.iterdir()):
        if path.name.endswith((".tmp", ".part")):
            bad.append(path.name)
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                records(path)
        except ValueError:
            bad.append(path.name)
    return bad
