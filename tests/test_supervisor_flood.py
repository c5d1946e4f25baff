"""A log flood: every line reaches the attempt log in order, and the state machine stays live."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import fake_planner, fake_spec, records, run_watching_the_loop  # noqa: E402

from mmops.serve.runs import Run  # noqa: E402
from mmops.serve.supervisor import Options, State, Supervisor  # noqa: E402

pytestmark = pytest.mark.timeout(60)
N = 200_000


def test_flood_is_ingested_whole_and_the_loop_never_stalls(tmp_path):
    rec = tmp_path / "rec.jsonl"
    spec = fake_spec(rec, "flood", env={"FAKE_VLLM_FLOOD": str(N)}, max_attempts=1)
    run = Run.create(tmp_path / "runs", "flood")
    seen = 0

    def on_lines(attempt: int, lines: list[str]) -> None:
        nonlocal seen
        seen += len(lines)

    sup = Supervisor(
        spec, planner=fake_planner, run_dir=run, options=Options(reaper_grace_s=0.5), on_lines=on_lines
    )
    final, lags = run_watching_the_loop(sup)
    assert final == State.FAILED
    log = (run.path / "attempt-1.log").read_bytes().splitlines()
    flood = [line for line in log if b"Avg prompt throughput: " in line]
    assert len(flood) == N
    assert flood[0].endswith(b" 0") and flood[-1].endswith(f" {N - 1}".encode())
    assert all(line.endswith(b" %d" % i) for i, line in enumerate(flood))  # in order, none lost
    assert seen >= N
    # The decision came promptly after the child's exit, and the loop never blocked for long.
    exit_t = records(rec, "exit")[-1]["t"]
    assert sup.transitions[-1].time - exit_t < 3.0
    assert max(lags) < 1.0  # generous: this machine is shared; a blocking read would be seconds
