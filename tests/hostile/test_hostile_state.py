"""A state dir (or bundle target) on a read-only disk or a full one, for every command that
writes records: `serve`, `offline`, `tui` (launch mode) and `bundle`. (`probe` writes no
record of its own: its results go to stdout, or to a run folder through `serve --smoke` and the
TUI, which are these.)

The disks are real: a 64 KiB tmpfs mounted under the case folder (``mount -t tmpfs -o
size=64k[,ro]``), read-only, filled to the last byte before the run, or filled by the case
while mmops runs. Where the machine refuses `mount`, the read-only and full cases fall back to
an injected EROFS / ENOSPC (tests/hostile/inject/sitecustomize.py) and the fill-while-running
cases are skipped; the tally says which disks the run had (``state-dir cases: ...``).

Each case asserts, through the one judge (``hostile.run``): a one-line error naming the path and
what to do (a new --state-dir, free space), exit 2 when nothing was started (1 for a serve run
that ended FAILED), no traceback, no process left, no temp file and no half-written JSON.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest
from test_offline_cli import standin
from test_supervisor_cli import write_profile

from hostile.disks import Disk
from hostile.sigmatrix import torn_json
from hostile.tally import DISKS

RUN = ["{d}/state", "{d}/state/*", "{d}/state/*/*", "{d}/filler", "rec.jsonl"]


def allow(disk: Disk) -> list[str]:
    """What a case may leave: on its disk the state dir, a run folder in it, the filler; and
    the fake vLLM's record of its starts (rec.jsonl)."""
    return [g.format(d=disk.path.name) for g in RUN]


def used(disk: Disk) -> Disk:
    DISKS.append(disk.how)
    return disk


def serve(profile: Path, state: Path) -> list[str | Path]:
    return ["serve", "-p", profile, "--no-preflight", "-q", "--state-dir", state,
            "--stop-timeout", "3"]  # fmt: skip


def wait_for_state(root: Path, wanted: str, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for events in root.glob("*/events.jsonl"):
            if f'"state":"{wanted}"' in events.read_text(errors="replace"):
                return events.parent
        time.sleep(0.05)
    raise AssertionError(f"no {wanted} under {root} within {timeout} s")


def nothing_half_written(root: Path) -> None:
    for run in [p for p in root.iterdir() if p.is_dir()] if root.exists() else []:
        assert torn_json(run) == [], run


# ------------------------------------------------------------------------------- serve


def test_serve_on_a_read_only_disk(hostile, disks, tmp_path):
    disk = used(disks.make("readonly"))
    state = disk.path / "state"
    hostile.run(
        serve(write_profile(tmp_path, "serve"), state),
        expect_rc=2,
        mention=[f"cannot write the run record {state}", "Read-only file system",
                 "pass --state-dir DIR where mmops may write"],
        env=disk.env,
    )  # fmt: skip


def test_serve_on_a_full_disk(hostile, disks, tmp_path):
    disk = used(disks.make("full"))
    state = disk.path / "state"
    hostile.run(
        serve(write_profile(tmp_path, "serve"), state),
        expect_rc=2,
        mention=[f"cannot write the run record {state}", "No space left on device",
                 "free space there, or pass --state-dir DIR on another disk"],
        allow_new=allow(disk),
        env=disk.env,
    )  # fmt: skip
    assert not any(state.glob("*")), "a run folder was left for a run that never started"


def test_serve_state_dir_is_a_file(hostile, tmp_path):
    plain = tmp_path / "state-file"
    plain.write_text("x")
    hostile.run(
        serve(write_profile(tmp_path, "serve"), plain),
        expect_rc=2,
        mention=[f"cannot write the run record {plain}: not a directory",
                 "pass --state-dir DIR naming a directory"],
    )  # fmt: skip


def test_serve_whose_disk_fills_while_ready(hostile, disks, tmp_path):
    """The disk fills under a READY server (the case fills it): the server's output can no
    longer be logged, and mmops says so and keeps the server serving (an on-call tool does not
    take down a healthy server because its own records have no room). A later Ctrl-C stops it
    as usual, and the end says the record is incomplete; no server process is left."""
    disk = used(disks.make("small"))
    state = disk.path / "state"
    seen: dict[str, bool] = {}

    def fill_when_ready_then_stop() -> None:
        run = wait_for_state(state, "READY")
        disk.fill()
        time.sleep(8)  # the server logs each health check: a refused write comes within this
        mmops = [
            p for p in psutil.process_iter(["cmdline"])
            if "mmops" in (p.info["cmdline"] or []) and str(state) in (p.info["cmdline"] or [])
        ]  # fmt: skip
        assert len(mmops) == 1, mmops
        seen["serving"] = bool(mmops[0].children(recursive=True))
        seen["events"] = (run / "events.jsonl").exists()
        mmops[0].send_signal(signal.SIGINT)

    out = hostile.run(
        serve(write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1"), state),
        expect_rc=0,
        max_lines=30,  # the run's own story (STARTING, READY, the warning, STOPPING, STOPPED)
        mention=["recording stopped, the server keeps running", "No space left on device",
                 "free space there, or pass --state-dir DIR on another disk", "STOPPED",
                 "the run record is incomplete"],
        allow_new=allow(disk),
        during=fill_when_ready_then_stop,
        timeout=40,
    )  # fmt: skip
    assert seen == {"serving": True, "events": True}, seen
    # Said while it served, before anyone asked it to stop; never a failure of the server.
    err = out.stderr
    assert err.index("recording stopped, the server keeps running") < err.index("STOPPING")
    assert "FAILED" not in err
    nothing_half_written(state)


# ----------------------------------------------------------------------------- offline

# A stand-in for vLLM's interpreter that floods its output (a disk filler) and then waits to
# be stopped, with an "EngineCore" child of its own.
FLOOD = """
import subprocess, sys, time
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "EngineCore"])
print("@@mmops-offline stage engine", flush=True)
line = "INFO 11-25 09:47:48 [loggers.py:128] Engine 000: Avg prompt throughput: %d tokens/s"
for i in range(4000):
    print(line % i)
sys.stdout.flush()
time.sleep(300)
"""


def offline(model: Path, py: Path, state: Path) -> list[str | Path]:
    return ["offline", "--model", model, "--python", py, "--no-preflight", "--state-dir", state,
            "--stop-timeout", "2"]  # fmt: skip


def test_offline_on_a_read_only_disk(hostile, disks, tmp_path, model):
    disk = used(disks.make("readonly"))
    state = disk.path / "offline"
    hostile.run(
        offline(model, standin(tmp_path, FLOOD), state),
        expect_rc=2,
        max_lines=3,  # preflight skipped, vLLM found, then the one error
        mention=[f"mmops offline: error: cannot write the run record {state}",
                 "Read-only file system"],
        env=disk.env,
    )  # fmt: skip


def test_offline_on_a_full_disk(hostile, disks, tmp_path, model):
    disk = used(disks.make("full"))
    state = disk.path / "state"
    hostile.run(
        offline(model, standin(tmp_path, FLOOD), state),
        expect_rc=2,
        max_lines=3,
        mention=[f"mmops offline: error: cannot write the run record {state}",
                 "No space left on device", "free space there"],
        allow_new=allow(disk),
        env=disk.env,
    )  # fmt: skip
    assert not any(state.glob("*")), "a run folder was left for a run that never started"


def test_offline_whose_log_fills_the_disk(hostile, disks, tmp_path, model):
    """vLLM's output fills the disk: mmops stops the child (and its engine) at once rather than
    let it run unrecorded, and says which file could not be written."""
    disk = used(disks.make("small"))
    state = disk.path / "state"
    out = hostile.run(
        offline(model, standin(tmp_path, FLOOD), state),
        expect_rc=2,
        max_lines=6,
        mention=["mmops offline: error: cannot write the run record", "attempt-1.log",
                 "No space left on device", "free space there"],
        allow_new=allow(disk),
        timeout=40,
    )  # fmt: skip
    assert out.stderr.strip().splitlines()[-1].startswith("mmops offline: error: ")
    nothing_half_written(state)
    (run,) = list(state.iterdir())
    assert json.loads((run / "job.json").read_text())["engine"]["model"] == str(model)


def test_offline_state_dir_is_a_file(hostile, tmp_path, model):
    plain = tmp_path / "state-file"
    plain.write_text("x")
    hostile.run(
        offline(model, standin(tmp_path, FLOOD), plain),
        expect_rc=2,
        max_lines=3,
        mention=[f"cannot write the run record {plain}: not a directory"],
    )  # fmt: skip


# --------------------------------------------------------------------------------- tui


def test_tui_launch_on_a_read_only_disk(hostile, disks, tmp_path):
    """Refused before the screen opens: one line, no terminal needed."""
    disk = used(disks.make("readonly"))
    state = disk.path / "state"
    hostile.run(
        ["tui", "-p", write_profile(tmp_path, "serve"), "--no-preflight", "--state-dir", state],
        expect_rc=2,
        mention=[f"mmops tui: error: cannot write the run record {state}", "Read-only"],
        env={"MMOPS_TUI_HEADLESS": "1", **disk.env},
    )


# ------------------------------------------------------------------------------ bundle


def _a_run(root: Path) -> Path:
    run = root / "20260101T000000Z-srv"
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text('{"seq":1,"state":"FAILED","attempt":1,"reason":"x"}\n')
    (run / "attempt-1.log").write_text("INFO hello\n" * 200)
    return run


@pytest.mark.parametrize("kind", ["readonly", "full"])
def test_bundle_onto_a_disk_that_refuses_it(hostile, disks, tmp_path, kind):
    disk = used(disks.make(kind))
    root = tmp_path / "runs"
    _a_run(root)
    target = disk.path / "b.tar.gz"
    why = "Read-only file system" if kind == "readonly" else "No space left on device"
    hostile.run(
        ["bundle", "--state-dir", root, "-o", target],
        expect_rc=2,
        mention=[f"-o {target}: cannot write {target}: {why}", "-o PATH"],
        allow_new=allow(disk),
        env=disk.env,
    )
    assert not target.exists()
