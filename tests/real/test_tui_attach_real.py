"""`mmops tui --attach URL` over `mmops serve` of the real vLLM CPU build (tiny Qwen2.5-VL).

One server for the module, started as a user would (`mmops serve --profile tiny-cpu`-like, in
the background, as tests/real/test_serve_real.py does); the screen attaches to it by URL, finds
its run folder, follows its real log, probes it, and leaves it running when it quits.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from test_serve_real import REPO, START_S, env, events, serve_argv, wait_for

from mmops.cli import build_parser
from mmops.commands.tui import _target
from mmops.serve.attach import AttachSource
from mmops.serve.states import State
from mmops.tui.app import MmopsApp, Target
from mmops.tui.widgets.logview import LogView
from mmops.tui.widgets.service import ServicePanel
from mmops.tui.widgets.status import StatusHeader

SERVED = "tiny-qwen2.5-vl"
PROBE_S = 300  # the smoke suite on 2 loaded cores: two requests, one with an image


@dataclass
class Served:
    proc: subprocess.Popen
    state: Path
    run: Path
    url: str
    family: list[psutil.Process]


@pytest.fixture(scope="module")
def served(vllm_python, tiny_model, tmp_path_factory) -> Iterator[Served]:
    """`mmops serve` of the tiny model, READY; stopped with SIGTERM after the module."""
    tmp = tmp_path_factory.mktemp("attach-real")
    state = tmp / "state"
    err = (tmp / "mmops.err").open("w")
    proc = subprocess.Popen(
        serve_argv(vllm_python, tiny_model, state, "--quiet"),
        stdout=subprocess.DEVNULL, stderr=err, env=env(), cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(state, lambda e: e["state"] == "READY", START_S, proc)
        (run,) = list(state.iterdir())
        url = json.loads((run / "plan.json").read_text())["url"]
        family = psutil.Process(proc.pid).children(recursive=True)
        yield Served(proc, state, run, url, family)
        assert proc.poll() is None, "mmops serve exited while the screen was attached"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert [e["state"] for e in events(state)][-1] == "STOPPED"
        _, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        err.close()


def attach(served: Served, *more: str) -> Target:
    argv = ["tui", "--attach", served.url, "--state-dir", str(served.state), *more]
    args, extra = build_parser("tui").parse_known_args(argv)
    assert not extra
    target = _target(args)
    assert isinstance(target.source, AttachSource) and target.source.run_dir == served.run
    target.source.interval_s = 0.5
    return target


async def until(pilot, cond: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await pilot.pause(0.1)


@pytest.mark.timeout(START_S + PROBE_S + 120)
def test_attach_to_real_vllm_reads_logs_probes_and_leaves_it_running(served):
    target = attach(served)
    source = target.source
    app = MmopsApp(target)
    seen: dict[str, object] = {}

    async def go() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await until(pilot, lambda: source.snapshot().state == State.READY, 30, "READY")
            await pilot.pause(0.1)
            seen["header"] = str(app.query_one(StatusHeader).render())
            await pilot.press("2")
            view = app.query_one(LogView)
            await until(pilot, lambda: view.row_count > 0, 10, "log lines")
            seen["path"] = view.path
            seen["lines"] = [view.store.line(i) for i in range(view.row_count)]
            await pilot.press("p")
            service = app.query_one(ServicePanel)
            await until(pilot, lambda: "passed" in service.probe_note, PROBE_S, "verdicts")
            seen["service"] = str(service.render())
            await pilot.press("x")  # refused: mmops did not start this server
            await pilot.pause(0.3)
            seen["notes"] = [n.message for n in app._notifications]
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, 10, "the app to exit")

    asyncio.run(go())
    assert "● READY" in seen["header"] and "[attach]" in seen["header"]
    assert source.snapshot().model == SERVED
    assert seen["path"] == served.run / "attempt-1.log"
    assert any("Application startup complete" in line for line in seen["lines"])  # uvicorn's
    service = seen["service"]
    assert "suite smoke: 2/2 passed" in service, service
    assert "✓ text" in service and "✓ image" in service
    assert "attached to a server started elsewhere: mmops will not stop it" in seen["notes"]
    # Quitting the screen left the server as it was.
    assert served.proc.poll() is None and all(p.is_running() for p in served.family)
    assert httpx.get(f"{served.url}/health", timeout=10, trust_env=False).status_code == 200
    assert [e["state"] for e in events(served.state)] == ["STARTING", "READY"]


@pytest.mark.timeout(START_S + PROBE_S + 120)
def test_attach_probe_shows_the_ttft_of_the_stream_case(served):
    # The profile's suite has a streaming case; smoke (the default when attached) does not.
    target = attach(served, "--suite", "tiny-cpu")
    app = MmopsApp(target)
    shown: list[str] = []
    cases: dict = {}

    async def go() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            src = target.source
            await until(pilot, lambda: src.snapshot().state == State.READY, 30, "READY")
            await pilot.press("p")
            service = app.query_one(ServicePanel)
            await until(pilot, lambda: "passed" in service.probe_note, PROBE_S, "verdicts")
            shown.append(str(service.render()))
            cases.update(service.cases)
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, 10, "the app to exit")

    asyncio.run(go())
    assert "stream" in cases, sorted(cases)
    assert cases["stream"].ttft_s is not None
    assert re.search(r"stream\s+TTFT\s+\d+ ms", shown[0]), shown[0]
