"""`mmops tui --attach URL`: the screen over a server it did not start, driven by Textual's pilot.

The servers are real processes answering real HTTP on 127.0.0.1: `mmops serve` of the stand-in
vLLM (tests/fakes/fake_vllm.py) started as a user would, or the fake started bare. The screen
must show them, follow their logs (a run folder found by URL, or a --log-file through rotation
and truncation), run probes against them, and never stop, restart or outlive-kill them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import FAKE, REPO, cli_env, free_port, records, tree, wait_gone  # noqa: E402
from test_supervisor_cli import events, serve_in_background, wait_event, write_profile  # noqa: E402

from mmops.cli import build_parser  # noqa: E402
from mmops.commands.tui import _target  # noqa: E402
from mmops.serve.attach import AttachSource, run_for_url  # noqa: E402
from mmops.serve.events import StateChanged  # noqa: E402
from mmops.serve.states import State  # noqa: E402
from mmops.tui.app import MmopsApp, Target  # noqa: E402
from mmops.tui.widgets.logview import LogView  # noqa: E402
from mmops.tui.widgets.service import ServicePanel  # noqa: E402
from mmops.tui.widgets.status import StatusHeader  # noqa: E402

pytestmark = pytest.mark.timeout(90)
POLL_S = 0.2  # the attach source's poll interval here (2 s by default)


async def until(pilot, cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what or cond}")
        await pilot.pause(0.05)


def text(app: MmopsApp, widget_type: type) -> str:
    return str(app.query_one(widget_type).render())


def notes(app: MmopsApp) -> list[str]:
    return [n.message for n in app._notifications]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def attach_target(*argv: str) -> Target:
    """The Target `mmops tui ARGV` builds: the real parser and the real attach wiring."""
    args, extra = build_parser("tui").parse_known_args(["tui", *argv])
    assert not extra, extra
    target = _target(args)
    assert target.mode == "attach"
    target.source.interval_s = POLL_S  # type: ignore[attr-defined]
    return target


def start_fake(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    """The fake vLLM started bare (not by mmops): a server started elsewhere."""
    with (tmp_path / "fake.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, str(FAKE), "--model", "fake-model", "--port", str(port),
             "--served-model-name", "served-fake"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip


def wait_health(url: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not healthy in {timeout} s")


# --------------------------------------------------------------------------- a served fake


def test_attach_to_mmops_serve_watches_probes_and_never_controls_it(tmp_path):
    profile = write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1")
    state = tmp_path / "state"
    err = (tmp_path / "serve.err").open("w")
    serve = serve_in_background(profile, state, stdout=subprocess.DEVNULL, stderr=err)
    try:
        run = wait_event(state, "READY")
        url = json.loads((run / "plan.json").read_text())["url"]
        assert run_for_url(url, state) == run and run_for_url(url + "/v1", state) == run
        target = attach_target("--attach", url, "--state-dir", str(state))
        source = target.source
        assert isinstance(source, AttachSource) and source.run_dir == run  # found by URL
        family = tree(serve.pid)[1:]  # reaper, fake API server, fake engine
        fake_pid = records(tmp_path / "rec.jsonl", "start")[0]["pid"]
        assert len(family) == 3 and fake_pid in {p.pid for p in family}
        app = MmopsApp(target)

        async def go() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                await until(pilot, lambda: source.snapshot().state == State.READY, what="READY")
                await pilot.pause(0.1)
                header = text(app, StatusHeader)
                assert "● READY" in header and "[attach]" in header and url in header
                assert source.snapshot().model == "fake-model"

                # Logs: the serve's attempt log, found from the run folder, followed.
                await pilot.press("2")
                view = app.query_one(LogView)
                await until(pilot, lambda: view.row_count > 0, what="log lines")
                assert view.path == run / "attempt-1.log"
                assert "attempt 1: attempt-1.log" in str(app.query_one("#loginfo").render())
                lines = [view.store.line(i) for i in range(view.row_count)]
                assert any("Starting vLLM server on" in x for x in lines)

                # Probe: the smoke suite against the attached URL. The fake counts 90 prompt
                # tokens whatever it is sent, so the image case fails its token check.
                await pilot.press("p")
                panel = app.query_one(ServicePanel)
                await until(pilot, lambda: len(panel.cases) == 2, 30, "probe results")
                service = text(app, ServicePanel)
                assert "suite smoke: 1/2 passed" in service and "TTFT" in service
                assert "✓ text" in service and "200 stop, 90+2 tok" in service
                assert "✗ image" in service and "prompt_tokens 90 not 4+ above" in service
                # ...and the probe's requests land in the log the view follows (another
                # process writes it; the view picks them up on its own).
                await until(
                    pilot,
                    lambda: any(
                        "POST /v1/chat/completions" in view.store.line(i)
                        for i in range(view.row_count)
                    ),
                    10,
                    "the probe's requests in the log view",
                )
                assert view.follow and view.cursor == view.row_count - 1

                # Control keys are refused, with a word; the server is not touched.
                for key in ("s", "x", "r"):
                    await pilot.press(key)
                await pilot.pause(0.5)
                said = " ".join(notes(app))
                for verb in ("start", "stop", "restart"):
                    assert f"mmops will not {verb} it" in said, said
                assert alive(fake_pid) and source.snapshot().state == State.READY
                await pilot.press("q")  # no question asked: quitting stops nothing
                await until(pilot, lambda: not app.is_running, 10, "the app to exit")

        asyncio.run(go())
        assert app.return_code == 0
        # The server outlives the screen: same process, still answering, one start only.
        assert serve.poll() is None and alive(fake_pid)
        assert httpx.get(f"{url}/health", timeout=3, trust_env=False).status_code == 200
        assert len(records(tmp_path / "rec.jsonl", "start")) == 1
        assert [e["state"] for e in events(run)] == ["STARTING", "READY"]

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(20) == 0
    finally:
        serve.kill()
        err.close()
    assert [e["state"] for e in events(run)][-1] == "STOPPED"
    assert wait_gone(family, 5) == []


def test_attach_header_names_the_served_model(tmp_path):
    port = free_port()
    fake = start_fake(tmp_path, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_health(url)
        target = attach_target("--attach", url, "--state-dir", str(tmp_path / "state"))
        app = MmopsApp(target)
        seen: list[str] = []

        async def go() -> None:
            async with app.run_test(size=(120, 30)) as pilot:
                src = target.source
                await until(pilot, lambda: src.snapshot().state == State.READY, what="READY")
                await pilot.pause(0.1)
                seen.append(text(app, StatusHeader))
                await pilot.press("q")

        asyncio.run(go())
    finally:
        fake.kill()
        fake.wait()
    assert "served-fake" in seen[0], seen[0]


# --------------------------------------------------------------------------- --log-file

WRITER = r"""
import os, sys
path = sys.argv[1]
fh = open(path, "a", buffering=1)
for cmd in sys.stdin:
    op, *rest = cmd.split()
    if op == "write":
        for i in range(int(rest[0])):
            fh.write(f"{rest[1]}-{i} INFO [engine.py:1] line {i} of {rest[1]}\n")
    elif op == "rotate":  # logrotate's default: rename; the writer keeps its old descriptor
        os.rename(path, path + ".1")
    elif op == "reopen":  # ...until it is told to open the path again
        fh.close()
        fh = open(path, "a", buffering=1)
    elif op == "truncate":  # logrotate's copytruncate: O_APPEND writes restart at 0
        fh.truncate(0)
    fh.flush()
    print("ok", flush=True)
"""


class Writer:
    """A process that owns a log file, as a server's logger does; told what to do on stdin."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def __call__(self, cmd: str) -> None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n"

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(5)


def test_attach_log_file_follows_appends_rotation_and_truncation(tmp_path):
    log = tmp_path / "vllm.log"
    writer = Writer(log)
    try:
        writer("write 5 a")
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the log is the subject
        target = attach_target("--attach", url, "--log-file", str(log))
        assert target.source.run_dir is None and target.source.log_file == log
        app = MmopsApp(target)

        async def go() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("2")
                view = app.query_one(LogView)

                def shows(*want: str) -> Callable[[], bool]:
                    return lambda: (
                        view.row_count == len(want)
                        and [view.store.line(i).split(" ", 1)[0] for i in range(view.row_count)]
                        == list(want)
                    )

                await until(pilot, shows(*(f"a-{i}" for i in range(5))), 10, "the first lines")
                assert view.path == log
                await pilot.pause(0.1)
                screen = "\n".join(str(view.render_line(y).text) for y in range(5))
                # The gutter holds the line number: rows 1..5 show lines a-0..a-4.
                assert re.search(r"^ *1\W+a-0 INFO", screen, re.M), screen
                assert re.search(r"^ *5\W+a-4 INFO", screen, re.M), screen

                writer("write 3 b")  # appended: followed, cursor on the last line
                await until(pilot, lambda: view.row_count == 8, 10, "appended lines")
                assert view.store.line(7).startswith("b-2 ") and view.cursor == 7
                generation = view.store.generation

                # Rotation: renamed away, a last line into the old file, then a new file.
                writer("rotate")
                writer("write 1 late")
                await pilot.pause(1.5)  # a refresh or two while the path names nothing
                writer("reopen")
                writer("write 2 c")
                await until(pilot, shows("c-0", "c-1"), 10, "the new file after rotation")
                assert view.store.generation > generation
                assert (tmp_path / "vllm.log.1").read_text().count("\n") == 9
                assert view.follow and view.cursor == 1

                # Truncation (copytruncate), to fewer lines, then regrown past the old size.
                writer("truncate")
                writer("write 1 d")
                await until(pilot, shows("d-0"), 10, "the truncated file")
                writer("truncate")
                writer("write 3 e")
                await until(pilot, shows("e-0", "e-1", "e-2"), 10, "the regrown file")
                writer("write 1 f")
                await until(pilot, shows("e-0", "e-1", "e-2", "f-0"), 10, "appends after")
                assert app.is_running
                await pilot.press("q")
                await until(pilot, lambda: not app.is_running, 10, "the app to exit")

        asyncio.run(go())
    finally:
        writer.close()


# --------------------------------------------------------------------------- nothing there


def test_attach_to_nothing_listening_shows_stopped_and_keeps_running(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    target = attach_target("--attach", url, "--state-dir", str(tmp_path / "state"))
    assert target.source.run_dir is None  # no run folder serves this URL
    app = MmopsApp(target)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(8 * POLL_S)  # several failed polls
            assert app.is_running
            assert "■ STOPPED" in text(app, StatusHeader)
            await pilot.press("p")  # a probe needs READY: refused, nothing breaks
            await pilot.press("2")
            await pilot.pause(0.2)
            assert "the server is STOPPED: probes need READY" in " ".join(notes(app))
            assert app.query_one(LogView).row_count == 0
            assert "no log" in str(app.query_one("#loginfo").render())
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, 10, "the app to exit")

    asyncio.run(go())
    assert app.return_code == 0


def test_attach_to_nothing_listening_says_why(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    target = attach_target("--attach", url, "--state-dir", str(tmp_path / "state"))
    app = MmopsApp(target)
    header: list[str] = []

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(8 * POLL_S)
            header.append(text(app, StatusHeader))
            await pilot.press("q")

    asyncio.run(go())
    assert "ConnectError" in header[0], header[0]


def test_attach_sees_the_server_turn_unhealthy_then_go_away(tmp_path):
    # The fake's engine dies 1.5 s after it serves: /health answers 503 from then on.
    port = free_port()
    fake = start_fake(tmp_path, port, FAKE_VLLM_DIE="logged", FAKE_VLLM_DIE_AFTER_S="1.5")
    url = f"http://127.0.0.1:{port}"
    try:
        target = attach_target("--attach", url, "--log-file", str(tmp_path / "fake.log"))
        source = target.source
        app = MmopsApp(target)

        async def go() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: source.snapshot().state == State.READY, what="READY")
                await until(pilot, lambda: source.snapshot().state == State.UNHEALTHY, 10)
                await pilot.pause(0.1)
                header = text(app, StatusHeader)
                assert "UNHEALTHY" in header and "/health answered 503" in header
                await pilot.press("2")
                view = app.query_one(LogView)
                await until(
                    pilot,
                    lambda: any(
                        "EngineDeadError" in view.store.line(i) for i in range(view.row_count)
                    ),
                    10,
                    "the engine-dead lines in the log view",
                )
                fake.kill()
                fake.wait()
                await until(pilot, lambda: source.snapshot().state == State.STOPPED, 10)
                await pilot.pause(0.1)
                assert "■ STOPPED" in text(app, StatusHeader)
                assert "ConnectError" in text(app, StatusHeader)
                await pilot.press("q")
                await until(pilot, lambda: not app.is_running, 10, "the app to exit")

        asyncio.run(go())
    finally:
        fake.kill()
        fake.wait()
    seq = [e.state for e in source.history if isinstance(e, StateChanged)]
    assert seq == [State.READY, State.UNHEALTHY, State.STOPPED]


# --------------------------------------------------------------------------- the CLI edge


def mmops_tui(*args: str, headless: bool = True) -> subprocess.CompletedProcess:
    env = cli_env()
    env.pop("MMOPS_TUI_HEADLESS", None)
    if headless:
        env["MMOPS_TUI_HEADLESS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "mmops", "tui", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=REPO, timeout=30,
    )  # fmt: skip


URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--attach", "not-a-url"], "--attach not-a-url: not an http(s) URL"),
        (["--attach", URL, "--profile", "X"], "drop --profile/--model/--start and vLLM flags"),
        (["--attach", URL, "--run", "last"], "--attach and --run: pick one"),
        (["--attach", URL, "--start"], "drop --profile/--model/--start and vLLM flags"),
        (["--attach", URL, "--max-model-len", "4096"], "drop --profile/--model/--start"),
        (["--attach", URL, "--log-file", "."], "--log-file .: is a directory"),
    ],
    ids=["not-a-url", "profile", "run", "start", "vllm-flag", "log-dir"],
)
def test_bad_attach_arguments_are_one_line_errors(tmp_path, argv, says):
    res = mmops_tui(*argv, "--state-dir", str(tmp_path / "state"))
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmops tui: error: "), res.stderr
    assert says in lines[0]


def test_tui_without_a_terminal_refuses_unless_headless(tmp_path):
    res = mmops_tui("--attach", URL, "--state-dir", str(tmp_path / "state"), headless=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        "mmops tui: error: tui needs a terminal (stdout is not a tty); "
        "use `mmops serve` or `mmops logs`"
    ]
