"""`mmops tui` with bad flags, bad URLs, bad run folders and a launch that cannot work.

What is refused before the screen opens needs no terminal: those cases run the CLI with
``MMOPS_TUI_HEADLESS=1`` (past the "needs a terminal" check) through the one judge,
``hostile.run``, and expect one line naming the flag or file and what is valid, exit 2, and no
run folder. What the screen itself must survive (a torn run record, a server nobody answers
for, a launch whose preflight fails) runs in a real terminal (tmux, as tests/test_tui_signals.py
does): the screen opens, shows the trouble without a traceback, and `q` leaves with exit 0 and
no process behind; those cases are judged here and counted in the same tally.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from fakesupport import free_port, tree, wait_gone  # tests/fakes (conftest.py)
from test_supervisor_cli import write_profile
from test_tui_signals import Pane

from hostile.conftest import MARKER, TALLY, Outcome, _marked

HEADLESS = {"MMOPS_TUI_HEADLESS": "1"}
URL = "http://127.0.0.1:9"


def a_run(root: Path, name: str = "20260101T000000Z-srv") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text(
        '{"seq":1,"time":"2026-01-01T00:00:00.000Z","state":"STARTING","attempt":1,"reason":"x"}\n'
    )
    (run / "attempt-1.log").write_text("INFO hello\n")
    return run


# ------------------------------------------------------------- refused before the screen


@pytest.mark.parametrize(
    "args,mention",
    [
        (["--attach", URL, "--run", "last"], ["--attach and --run: pick one"]),
        (["--attach", URL, "--profile", "tiny-cpu"], ["drop --profile/--model/--start"]),
        (["--attach", URL, "--max-model-len", "4096"], ["drop --profile/--model/--start"]),
        (["--attach", "ftp://host"], ["--attach ftp://host: not an http(s) URL"]),
        (["--attach", "http://"], ["--attach http://: no host in it"]),
        (["--attach", "http://127.0.0.1:99999"], ["port must be from 1 to 65535"]),
        (["--attach", "http://127.0.0.1:0"], ["port must be from 1 to 65535"]),
        (["--attach", URL, "--log-file", "/no/such/vllm.log"],
         ["--log-file /no/such/vllm.log: no such file", "the server's log file"]),
        (["--attach", URL, "--log-file", "/"], ["--log-file /: is a directory"]),
        (["--attach", URL, "--model-path", "/no/such/model"],
         ["--model-path /no/such/model: not a directory", "or leave it out"]),
        (["--suite", "nope", "--attach", URL], ["--suite nope: no suite of that name",
                                               "available: "]),
        (["--profile", "nope"], ["--profile nope: no such file or profile name", "known: "]),
        (["--model", "/m", "--device", "cpu", "--stop-timeout", "soon"],
         ["--stop-timeout", "invalid float value: 'soon'"]),
        (["--model", "/m", "--device", "cpu", "--env", "=x"], ["--env '=x'", "KEY=VALUE"]),
        (["--model", "/m", "--device", "cpu", "--port", "70000"],
         ["--port must be from 1 to 65535"]),
        (["--model", "/m", "--device", "cpu", "--python", "/no/such/python"],
         ["--python /no/such/python: no such file"]),
        (["--device", "cpu"], ["no model: pass --model DIR or a --profile"]),
    ],
    ids=["attach-and-run", "attach-profile", "attach-vllm-flag", "attach-ftp", "attach-no-host",
         "attach-port-99999", "attach-port-0", "log-file-missing", "log-file-dir",
         "model-path-missing", "suite-nope", "profile-nope", "stop-timeout-text", "env-no-key",
         "port-70000", "python-missing", "no-model"],
)  # fmt: skip
def test_tui_refuses_before_the_screen(hostile, args, mention):
    hostile.run(["tui", *args], expect_rc=2, mention=mention, env=HEADLESS)
    assert not hostile.state.exists(), "a run folder was made for a launch refused at once"


def test_tui_without_a_terminal(hostile):
    hostile.run(
        ["tui", "--attach", URL],
        expect_rc=2,
        mention=["tui needs a terminal (stdout is not a tty)", "mmops serve", "mmops logs"],
    )


def test_tui_run_with_no_runs_at_all(hostile, tmp_path):
    empty = tmp_path / "empty"
    hostile.run(
        ["tui", "--run", "last", "--state-dir", empty],
        expect_rc=2,
        mention=[f"no runs under {empty}", "--state-dir"],
        env=HEADLESS,
    )


def test_tui_run_that_does_not_exist(hostile, tmp_path):
    a_run(tmp_path / "runs")
    hostile.run(
        ["tui", "--run", "nope", "--state-dir", tmp_path / "runs"],
        expect_rc=2,
        mention=["run 'nope': not found", "recent: 20260101T000000Z-srv"],
        env=HEADLESS,
    )


def test_tui_run_path_that_is_no_run_folder(hostile, tmp_path):
    hostile.run(
        ["tui", "--run", f"{tmp_path}{os.sep}"],
        expect_rc=2,
        mention=[f"{tmp_path}{os.sep}: not a run folder", "events.jsonl or attempt-N.log"],
        env=HEADLESS,
    )


def test_tui_state_dir_is_a_file(hostile, tmp_path, model):
    plain = tmp_path / "state-file"
    plain.write_text("x")
    hostile.run(
        ["tui", "--model", model, "--device", "cpu", "--no-preflight", "--state-dir", plain],
        expect_rc=2,
        mention=[f"cannot write the run record {plain}: not a directory", "--state-dir DIR"],
        env=HEADLESS,
    )


# ----------------------------------------------------------- what the screen must survive

pytestmark_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def on_screen(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    shows: list[str],
) -> tuple[str, Outcome]:
    """`mmops tui ARGS` in tmux: wait until the screen shows every string of ``shows``, press
    q (and y if asked), and judge: exit 0 within 15 s, no traceback on screen, nothing left
    running (found by the case's marker in the environment). Returns the screen and outcome."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(MARKER, token)  # the pane's processes inherit it
    argv = [sys.executable, "-m", "mmops", "tui", *args]
    pane = Pane(tmp_path, argv)
    o = Outcome(
        case=os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
        argv=["tui", *args], rc=None, stdout="", stderr="", wall_s=0.0, expect_rc=(0,),
    )  # fmt: skip
    t0 = time.monotonic()
    shown = ""
    family: list[psutil.Process] = []
    try:
        pid = pane.pid()
        for want in shows:
            shown = pane.wait_screen(want, 20)
        family = tree(pid)
        pane.tmux("send-keys", "-t", "mm", "q")
        with contextlib.suppress(AssertionError):
            if "Stop it and quit?" in pane.wait_screen("Stop it and quit?", 1):
                pane.tmux("send-keys", "-t", "mm", "y")
        if wait_gone(family[:1], 15):
            o.hang = True
            o.problems.append("still running 15 s after q")
            os.kill(pid, signal.SIGKILL)
        else:
            o.rc = pane.exit_status()
    except AssertionError as exc:
        o.problems.append(str(exc)[:300])
    finally:
        o.wall_s = time.monotonic() - t0
        o.stdout = shown
        pane.close()
        deadline = time.monotonic() + 5  # a closed pane hangs up on what still runs in it
        while _marked(token) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = wait_gone(family, 5) + _marked(token)
        for p in left:
            with contextlib.suppress(psutil.Error):
                o.orphans.append(f"pid {p.pid} {p.name()}")
                p.kill()
        if o.orphans:
            o.problems.append(f"processes left behind: {o.orphans}")
        if "Traceback" in shown:
            o.traceback = True
            o.problems.append("a Traceback on screen")
        if o.rc not in (0, None) or (o.rc is None and not o.hang and not o.problems):
            o.problems.append(f"exit status {o.rc}, expected 0")
        TALLY.append(o)
    assert not o.problems, (o.problems, shown)
    return shown, o


@pytestmark_tmux
def test_tui_opens_a_torn_run_record(tmp_path, monkeypatch):
    """A run folder as a kill or a full disk may leave it: a last line cut in half, a log of
    binary junk. The post-mortem screen opens on what is whole."""
    run = a_run(tmp_path / "runs")
    with (run / "events.jsonl").open("a") as fh:
        fh.write('{"seq":2,"time":"2026-01-01T00:00:01.000Z","state":"REA')  # torn
    (run / "attempt-1.log").write_bytes(b"INFO hello\n\x00\xff\xfe binary \x1b[31m junk\n" * 50)
    (run / "plan.json").write_text('{"argv": ["vllm", "serve"')  # torn too
    on_screen(tmp_path, monkeypatch, ["--run", str(run)], ["STARTING"])


@pytestmark_tmux
def test_tui_opens_an_offline_run_folder(tmp_path, monkeypatch):
    """An offline run folder has no events.jsonl: it opens as a run that recorded no state
    change, its log readable."""
    run = tmp_path / "offline" / "20260101T000000Z-offline-m"
    run.mkdir(parents=True)
    (run / "attempt-1.log").write_text("INFO 11-25 09:47:48 [core.py:1] engine up\n")
    (run / "result.json").write_text(json.dumps({"ok": False, "error": "stopped by SIGTERM"}))
    on_screen(tmp_path, monkeypatch, ["--run", str(run)], ["STOPPED", "offline-m"])


@pytestmark_tmux
def test_tui_attached_to_a_port_nobody_answers(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"
    on_screen(tmp_path, monkeypatch, ["--attach", url], ["STOPPED", url])


@pytestmark_tmux
def test_tui_launch_whose_preflight_fails_starts_nothing(tmp_path, monkeypatch):
    """--start with a model dir that does not exist: the screen shows the failed check, no
    server is started, and the run folder keeps the failed preflight (the TUI waits for a fix,
    so nothing else is recorded)."""
    gone = tmp_path / "no-such-model"
    state = tmp_path / "state"
    on_screen(
        tmp_path,
        monkeypatch,
        ["--model", str(gone), "--device", "cpu", "--start", "--state-dir", str(state),
         "--python", sys.executable],
        ["model.config"],
    )  # fmt: skip
    (run,) = list(state.iterdir())
    assert not list(run.glob("attempt-*.log")), "a server was started"
    assert json.loads((run / "preflight.json").read_text())["summary"]["ok"] is False


@pytestmark_tmux
def test_tui_launch_of_a_server_that_crashes_at_once(tmp_path, monkeypatch):
    """A server that fails with a configuration error: FAILED with the fix on screen, the
    failure bundle written, and q leaves at once."""
    profile = write_profile(tmp_path, "config_error", max_attempts=1)
    state = tmp_path / "state"
    on_screen(
        tmp_path,
        monkeypatch,
        ["--profile", str(profile), "--no-preflight", "--start", "--state-dir", str(state)],
        ["FAILED"],
    )
    (run,) = list(state.iterdir())
    assert [json.loads(x)["state"] for x in (run / "events.jsonl").read_text().splitlines()
            if '"state"' in x][-1] == "FAILED"  # fmt: skip
