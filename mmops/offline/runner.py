"""Run the child program in vLLM's interpreter, under the reaper `serve` uses, and read its result.

The child (mmops/offline/child.py, ``python -u child.py job.json``) is spawned by
``mmops.serve.child.Child``: its own session and process group, with the reaper between mmops and
it, so Ctrl-C in mmops's terminal never reaches vLLM behind mmops's back, a stop signals the
whole tree (SIGINT, then SIGTERM, then SIGKILL), and if mmops dies however it dies, the reaper
kills vLLM and every process it started (EngineCore, workers).

Everything lands in a run folder (``$XDG_STATE_HOME/mmops/offline/<UTC time>-<name>/``, beside
serve's ``runs/``; or ``--state-dir``): ``job.json`` (what the child was asked), ``preflight.json``,
``attempt-1.log`` (the child's whole output, secrets masked; `mmops diagnose` reads it) and,
when mmops lived to see the end, ``result.json`` (what `--json` prints: the report, or how the
run failed or was stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmops import redact
from mmops.offline import child as child_program
from mmops.serve.child import Child
from mmops.serve.runs import Run, record_error, state_root

MARKER = child_program.MARKER
CHILD_PATH = Path(child_program.__file__).resolve()
REAPER_GRACE_S = 5.0
EXIT_GRACE_S = 30.0  # after the result: time for vLLM to shut its engine down by itself


def offline_root(state_dir: str | None) -> Path:
    """Where offline run folders go: --state-dir, else mmops/offline beside serve's runs/."""
    return Path(state_dir).expanduser() if state_dir else state_root().parent / "offline"


@dataclass
class Outcome:
    """How the child ended and what it said."""

    exit_code: int | None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after spawn
    signal: int | None = None  # the signal that made mmops stop it
    wall_s: float = 0.0
    spawn_error: str | None = None
    log_error: OSError | None = None  # the disk refused the log: the child was stopped


class MarkerReader:
    """Collects the child's marker lines from its output; passes on the rest."""

    def __init__(
        self,
        on_stage: Callable[[str], None] = lambda name: None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.on_stage = on_stage
        self.on_line = on_line
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stages: dict[str, float] = {}
        self.started = time.monotonic()
        self.got_result = asyncio.Event()

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith(MARKER + " "):
                self._marker(line[len(MARKER) + 1 :])
            elif self.on_line is not None:
                self.on_line(line)

    def _marker(self, rest: str) -> None:
        kind, _, payload = rest.partition(" ")
        if kind == "stage":
            self.stages[payload] = round(time.monotonic() - self.started, 3)
            self.on_stage(payload)
            return
        try:
            data = json.loads(payload)
        except ValueError:
            data = {"message": payload}
        if kind == "result" and isinstance(data, dict):
            self.result = data
            self.got_result.set()
        elif kind == "error" and isinstance(data, dict):
            self.error = data


class MarkerSafeRedactor(redact.Redactor):
    """Masks the log as serve's does, and keeps marker lines parseable: their JSON is masked
    value by value (mask_json) rather than as text, which could cut an escape in two."""

    def chunk(self, data: bytes) -> bytes:
        if MARKER.encode() not in data:
            return super().chunk(data)
        out = []
        for line in data.splitlines(keepends=True):
            if line.startswith(MARKER.encode()):
                out.append(self._marker_line(line))
            else:
                out.append(super().chunk(line))
        return b"".join(out)

    def _marker_line(self, line: bytes) -> bytes:
        text = line.decode("utf-8", "replace")
        end = "\n" if text.endswith("\n") else ""
        head, _, payload = text.rstrip("\n").partition(" {")
        if not payload:
            return self.line(text).encode()
        try:
            data = json.loads("{" + payload)
        except ValueError:
            return self.line(text).encode()
        masked = redact.mask_json(data, self)
        return f"{head} {json.dumps(masked, ensure_ascii=False)}{end}".encode()


def write_job(run: Run, job: dict[str, Any]) -> Path:
    """The job file the child reads (the real values; job.json's secret-looking values masked
    would change what runs, so the child's file is separate and removed afterwards)."""
    run.write_json("job.json", redact.mask_json(job, redact.Redactor()))
    path = run.path / ".job-child.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(job, fh)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise record_error(path, exc) from None
    return path


def run_child(
    python: str,
    job_path: Path,
    env: dict[str, str],
    log_path: Path,
    secrets: list[str],
    on_stage: Callable[[str], None] = lambda name: None,
    on_line: Callable[[str], None] | None = None,
    stop_s: float = 10.0,
) -> Outcome:
    """Run the child to its end (or until SIGINT/SIGTERM/SIGHUP stop it) and read it."""
    return asyncio.run(_run(python, job_path, env, log_path, secrets, on_stage, on_line, stop_s))


async def _run(
    python: str,
    job_path: Path,
    env: dict[str, str],
    log_path: Path,
    secrets: list[str],
    on_stage: Callable[[str], None],
    on_line: Callable[[str], None] | None,
    stop_s: float,
) -> Outcome:
    reader = MarkerReader(on_stage, on_line)
    argv = [python, "-u", str(CHILD_PATH), str(job_path)]
    try:
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed by Child.close_log
    except OSError as exc:
        raise record_error(log_path, exc) from None
    stop = asyncio.Event()
    force = asyncio.Event()
    proc = Child(
        argv,
        {**env, "PYTHONUNBUFFERED": "1"},
        cwd=None,
        log=log,
        redactor=MarkerSafeRedactor(secrets),
        on_text=reader.feed,
        reaper_grace_s=REAPER_GRACE_S,
        on_log_error=lambda exc: stop.set(),  # a full disk: stop vLLM, say why (log_error)
    )
    t0 = time.monotonic()
    try:
        await proc.spawn()
    except OSError as exc:
        proc.close_log()
        return Outcome(None, spawn_error=f"cannot start {python}: {exc.strerror or exc}")

    loop = asyncio.get_running_loop()
    got: list[int] = []

    def on_signal(signum: int) -> None:
        got.append(signum)
        (force if stop.is_set() else stop).set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    output = asyncio.ensure_future(proc.read_output())
    exited = asyncio.ensure_future(proc.wait())
    stopping = asyncio.ensure_future(stop.wait())
    finished = asyncio.ensure_future(reader.got_result.wait())
    try:
        await asyncio.wait({exited, stopping, finished}, return_when=asyncio.FIRST_COMPLETED)
        if finished.done() and not exited.done() and not stop.is_set():
            # The result is in hand: let vLLM shut its engine down, but not forever.
            await asyncio.wait(
                {exited, stopping}, timeout=EXIT_GRACE_S, return_when=asyncio.FIRST_COMPLETED
            )
        if not exited.done():
            await proc.terminate(stop_s, stop_s, force)
        await exited
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(output, 10)
    finally:
        for task in (stopping, finished):
            task.cancel()
        await proc.kill()
        proc.close_log()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return Outcome(
        exit_code=proc.returncode,
        result=reader.result,
        error=reader.error,
        stages=reader.stages,
        signal=got[0] if got else None,
        wall_s=round(time.monotonic() - t0, 3),
        log_error=proc.log_error,
    )


def echo_line(line: str) -> None:
    """Show one line of vLLM's output on stderr (--verbose); a closed stderr is not an error."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
