"""Snapshots of the main screen (pytest-textual-snapshot) in STARTING, READY and FAILED, at 80x24
and 120x40. Each screen is a recorded run (events.jsonl + a real vLLM CPU log from
tests/fixtures/logs/real-cpu/) opened read-only, with the app's clock fixed, so the picture is
the same on every machine. Update with `pytest --snapshot-update` after a deliberate change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmops.serve.events import PhaseReached, StateChanged, to_dict
from mmops.serve.replay import RunReplay
from mmops.serve.states import State
from mmops.tui.app import MmopsApp, Target

REAL = Path(__file__).parent / "fixtures" / "logs" / "real-cpu"
T0 = 1764064200.0  # 2025-11-25 09:50 UTC, when the real-cpu logs were captured
URL = "http://127.0.0.1:8000"
pytestmark = pytest.mark.timeout(60)


def recorded_run(tmp_path: Path, state: str) -> Path:
    run = tmp_path / f"20251125T095000Z-{state.lower()}"
    run.mkdir()
    starting = StateChanged(
        1, T0, 1, State.STARTING, "starting",
        {"pid": 11056, "url": URL, "max_attempts": 3, "argv": ["python", "-m", "vllm"]},
    )  # fmt: skip
    evs: list = [starting]
    if state == "FAILED":
        log = (REAL / "kv-cache-too-small.log").read_text()
        cause = {
            "id": "kv.too_small", "title": "KV cache too small for --max-model-len",
            "meaning": "The KV cache cannot hold one request of max_model_len tokens.",
            "fix": "Use --max-model-len 1920 or less, or give the KV cache more memory.",
            "line": "ValueError: ... estimated maximum model length is 1920", "line_no": 80,
            "retryable": False,
        }  # fmt: skip
        evs.append(
            StateChanged(2, T0 + 95, 1, State.FAILED, "KV cache too small; retrying cannot fix this",
                         {"cause": cause, "fix": cause["fix"], "exit": "exit code 1"})  # fmt: skip
        )
    else:
        lines = (REAL / "healthy-start.log").read_text().splitlines(keepends=True)
        evs.append(PhaseReached(2, T0 + 20, 1, "weights", "loading weights", "shard 1/1", (1, 1)))
        if state == "STARTING":
            log = "".join(lines[:53])
        else:
            log = "".join(lines)
            evs.append(PhaseReached(3, T0 + 50, 1, "kv_cache", "allocating the KV cache",
                                    "2,097,152 tokens"))  # fmt: skip
            evs.append(StateChanged(4, T0 + 64, 1, State.READY, "ready in 64.0 s",
                                    {"url": URL, "model": "tiny-qwen2.5-vl", "startup_s": 64.0}))  # fmt: skip
    (run / "attempt-1.log").write_text(log)
    (run / "events.jsonl").write_text("".join(json.dumps(to_dict(e)) + "\n" for e in evs))
    return run


def app_for(run: Path) -> MmopsApp:
    app = MmopsApp(Target("run", RunReplay(run), run.name, poll_devices=False))
    app.clock = lambda: T0 + 125.0
    return app


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(100):
        if app.source.snapshot().state != State.FAILED or app.incident is not None:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.1)


@pytest.mark.parametrize("state", ["STARTING", "READY", "FAILED"])
def test_main_screen_80x24(snap_compare, tmp_path, state):
    assert snap_compare(app_for(recorded_run(tmp_path, state)), terminal_size=(80, 24),
                        run_before=settle)  # fmt: skip


def test_main_screen_120x40_failed(snap_compare, tmp_path):
    assert snap_compare(app_for(recorded_run(tmp_path, "FAILED")), terminal_size=(120, 40),
                        run_before=settle)  # fmt: skip


def test_log_tab_80x24(snap_compare, tmp_path):
    async def logs(pilot) -> None:
        from mmops.tui.widgets.logview import LogView

        await settle(pilot)
        await pilot.press("2")
        view = pilot.app.query_one(LogView)
        for _ in range(100):  # a loaded machine may take a few frames to lay the tab out
            if view.row_count and view.size.height and view.scroll_y == view.max_scroll_y:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)

    assert snap_compare(app_for(recorded_run(tmp_path, "READY")), terminal_size=(80, 24),
                        run_before=logs)  # fmt: skip
