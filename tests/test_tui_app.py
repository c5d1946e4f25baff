"""`mmops tui` driven by Textual's pilot: every key and every server state, on the real
Supervisor over the stand-in vLLM children the serve tests use (tests/fakes/fake_vllm.py, which
replays real vLLM / vllm-ascend log lines and answers real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import fake_planner, fake_spec  # noqa: E402

from mmops.launch.profile import DeviceRequest  # noqa: E402
from mmops.serve.replay import RunReplay, read_events  # noqa: E402
from mmops.serve.session import Session  # noqa: E402
from mmops.serve.states import State  # noqa: E402
from mmops.serve.supervisor import Options  # noqa: E402
from mmops.tui.app import MmopsApp, Target  # noqa: E402
from mmops.tui.widgets.logview import LogView  # noqa: E402
from mmops.tui.widgets.preflight import PreflightTable  # noqa: E402
from mmops.tui.widgets.server import ServerPanel  # noqa: E402
from mmops.tui.widgets.service import ServicePanel  # noqa: E402
from mmops.tui.widgets.status import StatusHeader  # noqa: E402

pytestmark = pytest.mark.timeout(90)
FAST = Options(stop_sigint_s=3, stop_sigterm_s=3, reaper_grace_s=1, liveness_failures=2)


def launch(tmp_path: Path, scenario: str = "serve", skip: bool = True, **kw) -> Session:
    spec = fake_spec(tmp_path / "rec.jsonl", scenario=scenario, **kw)
    spec = replace(spec, device=DeviceRequest(kind="cpu"))
    return Session.prepare(
        spec,
        skip_preflight=skip,
        state_dir=str(tmp_path / "runs"),
        options=FAST,
        planner=fake_planner,
        vllm=None,
    )


def app_for(session: Session, **kw) -> MmopsApp:
    return MmopsApp(Target("launch", session.supervisor, "fake", session=session, cpu=True, **kw))


async def until(pilot, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


async def filtered(app: MmopsApp) -> None:
    """Wait for the errors filter's first pass (a thread worker of the log view)."""
    pending = [w for w in app.workers if w.group == "filter"]
    if pending:  # an empty list would mean "every worker", the endless event reader included
        await app.workers.wait_for_complete(pending)


def text(app: MmopsApp, widget_type: type) -> str:
    w = app.query_one(widget_type)
    return str(w.render())


def test_virtual_memory_failure_shows_the_remedy_then_ready(tmp_path):
    session = launch(tmp_path, "npu_vm", env={"PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:256"})
    app = app_for(session)
    seen_backoff: list[str] = []

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("s")
            await until(pilot, lambda: session.supervisor.state in (State.BACKOFF, State.READY))
            seen_backoff.append(text(app, ServerPanel))
            await until(pilot, lambda: session.supervisor.state == State.READY)
            await pilot.pause(0.1)
            header = text(app, StatusHeader)
            assert "● READY" in header and "attempt 2 of 3" in header and "restarts 1" in header
            server = text(app, ServerPanel)
            assert "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False" in server
            assert "npu.virtual_memory" in server and "time to ready: #2" in server
            await pilot.press("x")
            await until(pilot, lambda: session.supervisor.state == State.STOPPED)

    asyncio.run(go())
    assert any("npu.virtual_memory" in s or "READY" in s for s in seen_backoff)


def test_stop_restart_start_and_quit_with_confirmation(tmp_path):
    session = launch(tmp_path)
    app = app_for(session, start_now=True)
    sup = session.supervisor

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: sup.state == State.READY)
            await pilot.press("r")  # restart: a new attempt, not a failure
            await until(pilot, lambda: sup.attempt == 2 and sup.state == State.READY)
            await pilot.press("x")
            await until(pilot, lambda: sup.state == State.STOPPED)
            assert "■ STOPPED" in text(app, StatusHeader)
            await pilot.press("s")  # start again after a stop
            await until(pilot, lambda: sup.attempt == 3 and sup.state == State.READY)
            await pilot.press("q")  # a server runs: asks first
            await pilot.pause(0.2)
            await pilot.press("n")
            await pilot.pause(0.2)
            assert sup.state == State.READY and app.is_running
            await pilot.press("q")
            await pilot.pause(0.2)
            await pilot.press("y")
            await until(pilot, lambda: not app.is_running, 20)

    asyncio.run(go())
    assert sup.state == State.STOPPED
    states = [e["state"] for e in read_events(session.run_dir.path) if "state" in e]
    assert states[-1] == "STOPPED" and "BACKOFF" not in states


def test_config_error_fails_and_shows_the_diagnose_report(tmp_path):
    session = launch(tmp_path, "config_error")
    app = app_for(session, start_now=True)

    async def go() -> None:
        async with app.run_test(size=(100, 40)) as pilot:
            await until(pilot, lambda: session.supervisor.state == State.FAILED)
            await until(pilot, lambda: app.incident is not None, 20)
            await pilot.pause(0.1)
            server = text(app, ServerPanel)
            assert "FAILED" in server and "diagnose:" in server and "fix:" in server
            assert "✗ FAILED" in text(app, StatusHeader)
            # As serve does, the FAILED run leaves its escalation bundle in the run folder.
            await until(pilot, lambda: app.bundle_note is not None, 20)
            bundle = session.run_dir.path / "bundle.tar.gz"
            assert app.bundle_note.startswith("failure bundle: ") and bundle.is_file()
            await pilot.press("p")  # probes need READY: refused with a word, nothing breaks
            await pilot.pause(0.1)
            assert app.is_running

    asyncio.run(go())


def test_log_keys_search_filter_follow_and_attempts(tmp_path):
    session = launch(tmp_path, "npu_vm")
    app = app_for(session, start_now=True)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: session.supervisor.state == State.READY)
            view = app.query_one(LogView)
            await pilot.press("2")
            await until(pilot, lambda: view.row_count > 0)
            assert view.path is not None and view.path.name == "attempt-2.log"
            await pilot.press("left_square_bracket")  # the failed attempt
            await pilot.pause(0.1)
            assert view.path.name == "attempt-1.log"
            await pilot.press("slash")
            await pilot.press(*"sdma error")
            await pilot.press("enter")
            await pilot.pause(0.1)
            hit = view.store.line(view.line_no(view.cursor))
            assert "sdma error" in hit and not view.follow
            info = str(app.query_one("#loginfo").render())
            assert "npu.virtual_memory" in info  # the signature's meaning beside the line
            first = view.cursor
            await pilot.press("n")
            await pilot.pause(0.05)
            await pilot.press("N")
            await pilot.pause(0.05)
            assert view.cursor == first
            await pilot.press("e")  # warnings and errors only
            await filtered(app)  # the first pass runs in a thread
            await pilot.pause(0.1)
            assert view.errors_only and 0 < view.row_count < view.store.line_count
            await pilot.press("e")
            await pilot.press("f")  # follow back on: cursor at the end
            await pilot.pause(0.1)
            assert view.follow and view.cursor == view.row_count - 1
            await pilot.press("right_square_bracket")
            await pilot.pause(0.1)
            assert view.path.name == "attempt-2.log"
            await pilot.press("question_mark")
            await pilot.press("x")
            await until(pilot, lambda: session.supervisor.state == State.STOPPED)

    asyncio.run(go())


def test_probe_key_runs_the_suite_and_shows_ttft(tmp_path):
    session = launch(tmp_path)
    app = app_for(session, start_now=True)

    async def go() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: session.supervisor.state == State.READY)
            await pilot.press("p")
            panel = app.query_one(ServicePanel)
            await until(pilot, lambda: bool(panel.cases), 30)
            out = text(app, ServicePanel)
            assert "TTFT" in out and "suite smoke" in out
            await pilot.press("x")
            await until(pilot, lambda: session.supervisor.state == State.STOPPED)

    asyncio.run(go())
    assert (session.run_dir.path / "probe.json").exists()


def test_apply_fix_changes_the_launch_and_reruns_preflight(tmp_path, model_dir):
    model = model_dir("Qwen2.5-VL-7B-Instruct")
    spec = fake_spec(tmp_path / "rec.jsonl", args={"max-model-len": 1_000_000})
    spec = replace(spec, model=str(model), device=DeviceRequest(kind="cpu"))
    session = Session.prepare(
        spec, state_dir=str(tmp_path / "runs"), options=FAST, planner=fake_planner, vllm=None
    )
    assert session.blocked
    app = app_for(session)

    async def go() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(PreflightTable)
            await pilot.press("s")  # refused: the preflight failed
            await pilot.pause(0.2)
            row = [c.id for c in table.report.checks].index("model.max_len")
            table.move_cursor(row=row)
            await pilot.pause(0.1)
            assert app.pending_fix is not None
            assert app.pending_fix.describe() == "--max-model-len 128000"
            await pilot.press("a")
            await pilot.pause(0.1)
            await pilot.press("y")
            await until(pilot, lambda: session.spec.max_model_len == 128000, 20)
            await until(pilot, lambda: table.report.get("model.max_len").status == "pass", 20)
            await pilot.press("c")  # re-run preflight on a key
            await pilot.pause(0.5)

    asyncio.run(go())
    notes = [e for e in read_events(session.run_dir.path) if e.get("launch_change")]
    assert notes and "--max-model-len 128000" in notes[-1]["launch_change"]


def test_run_mode_is_read_only_post_mortem(tmp_path):
    session = launch(tmp_path, "config_error")

    async def serve() -> None:
        await session.start()
        await session.supervisor.wait()

    asyncio.run(serve())
    replay = RunReplay(session.run_dir.path)
    app = MmopsApp(Target("run", replay, replay.name, poll_devices=False))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.incident is not None, 20)
            await pilot.press("s")
            await pilot.press("x")
            await pilot.press("r")
            await pilot.press("p")
            await pilot.pause(0.1)
            assert "✗ FAILED" in text(app, StatusHeader) and "[run]" in text(app, StatusHeader)
            await pilot.press("2")
            await pilot.pause(0.1)
            assert app.query_one(LogView).row_count > 0
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, 10)

    asyncio.run(go())


NPU = Path(__file__).parent / "fixtures" / "npu-smi"


def test_devices_from_recorded_npu_smi_and_a_hung_query(tmp_path):
    """The device tab renders real recorded `npu-smi info` output (8 x 910B3) with sparklines;
    a query that hangs is timed out and said so while the screen keeps answering keys."""
    import threading

    from mmops.platform import ReplayRunner, detect
    from mmops.tui.widgets.devices import DevicesPanel

    (tmp_path / "dev").mkdir()
    for i in range(8):
        (tmp_path / "dev" / f"davinci{i}").touch()
    runner = ReplayRunner({("npu-smi", "info"): NPU / "910b3-x8-idle.txt"})
    session = launch(tmp_path)
    app = MmopsApp(Target("launch", session.supervisor, "fake", session=session,
                          detect=lambda: detect(runner, env={}, dev_root=tmp_path / "dev")))  # fmt: skip

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            panel = app.query_one(DevicesPanel)
            await until(pilot, lambda: panel.report is not None and len(panel.mem) == 8)
            await pilot.press("3")
            await pilot.pause(0.1)
            out = text(app, DevicesPanel)
            assert out.count("ascend ") == 8 and "GiB" in out and "mem  ▁" in out

    asyncio.run(go())

    release = threading.Event()
    hung = MmopsApp(Target("launch", session.supervisor, "fake", session=session,
                           detect=lambda: release.wait(30) and None))  # fmt: skip
    hung.device_timeout_s = 0.3

    async def go_hung() -> None:
        async with hung.run_test(size=(100, 30)) as pilot:
            panel = hung.query_one(DevicesPanel)
            await until(pilot, lambda: panel.error is not None, 10)
            assert "did not answer in 0.3 s" in panel.error
            await pilot.press("2")  # the screen still answers
            await pilot.pause(0.05)
            assert hung.query_one("#tabs").active == "tab-logs"
        release.set()

    asyncio.run(go_hung())


def test_errors_filter_toggles_many_times_and_keeps_the_cursor_line(tmp_path):
    """Each toggle maps the cursor from the old view to the new one (rows vs line numbers)."""
    session = launch(tmp_path, "npu_vm")
    app = app_for(session, start_now=True)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: session.supervisor.state == State.READY)
            view = app.query_one(LogView)
            await pilot.press("2", "left_square_bracket")
            await pilot.pause(0.1)
            assert view.search("sdma error")
            line = view.line_no(view.cursor)
            for _ in range(5):
                await pilot.press("e")
                await filtered(app)
                await pilot.pause(0.05)
                assert view.errors_only
                kept = view.line_no(view.cursor)
                assert kept >= line  # the first kept line at or after the cursor's
                await pilot.press("e")
                await pilot.pause(0.05)
                assert not view.errors_only and view.line_no(view.cursor) == kept
            # CANN's EH codes (no level header) count as errors.
            await pilot.press("e")
            await filtered(app)
            await pilot.pause(0.05)
            kept_lines = [view.store.line(view.line_no(r)) for r in range(view.row_count)]
            assert any(x.startswith("EH9999") for x in kept_lines)
            await pilot.press("x")
            await until(pilot, lambda: session.supervisor.state == State.STOPPED)

    asyncio.run(go())
