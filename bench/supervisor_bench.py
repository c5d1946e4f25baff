"""Supervisor benchmark: how fast it decides after a child exits, how many log lines/s it takes.

Runs the real supervisor on real child processes (tests/fakes/fake_vllm.py):

1. decision latency: the child replays a real HCCL failure (vllm-ascend#486) and exits, K times
   in a row; for each attempt, the time from the child's own exit timestamp to the supervisor's
   BACKOFF/FAILED event. It covers the reaper's exit, draining the pipe, classifying the log
   tail against the signature table and the restart-policy decision.
2. ingest: the child prints N numbered lines as fast as it can, then exits; the bench checks
   that the attempt log holds all N in order (nothing dropped), and reports lines/s from the
   first to the last line, and the event loop's worst stall meanwhile (a 10 ms ticker).

    python bench/supervisor_bench.py [--lines 1000000] [--exits 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fakes"))

from fakesupport import fake_planner, fake_spec, records, run_watching_the_loop  # noqa: E402

from mmops.serve.runs import Run  # noqa: E402
from mmops.serve.supervisor import Options, State, Supervisor  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def decision_latency(tmp: Path, exits: int) -> dict:
    rec = tmp / "exits.jsonl"
    spec = fake_spec(rec, "crash", max_attempts=exits)
    run = Run.create(tmp / "runs", "exits")
    sup = Supervisor(spec, planner=fake_planner, run_dir=run, options=Options(reaper_grace_s=0.5))

    async def go() -> State:
        await sup.start()
        return await sup.wait()

    final = asyncio.run(go())
    exit_times = [r["t"] for r in records(rec, "exit")]
    decisions = [e.time for e in sup.transitions if e.state in (State.BACKOFF, State.FAILED)]
    lat_ms = [(d - x) * 1000 for x, d in zip(exit_times, decisions, strict=True)]
    return {
        "attempts": len(lat_ms),
        "final_state": final.value,
        "ms_min": round(min(lat_ms), 1),
        "ms_median": round(statistics.median(lat_ms), 1),
        "ms_p95": round(pct(lat_ms, 0.95), 1),
        "ms_max": round(max(lat_ms), 1),
    }


def ingest(tmp: Path, n: int) -> dict:
    rec = tmp / "flood.jsonl"
    spec = fake_spec(rec, "flood", env={"FAKE_VLLM_FLOOD": str(n)}, max_attempts=1)
    run = Run.create(tmp / "runs", "flood")
    first_last: list[float] = []

    def on_lines(attempt: int, lines: list[str]) -> None:
        now = time.perf_counter()
        if not first_last:
            first_last.append(now)
        if any("Avg prompt throughput: " in line for line in lines[-1:]):
            if len(first_last) == 1:
                first_last.append(now)
            else:
                first_last[1] = now

    sup = Supervisor(
        spec, planner=fake_planner, run_dir=run, options=Options(reaper_grace_s=0.5), on_lines=on_lines
    )
    t0 = time.perf_counter()
    _, lags = run_watching_the_loop(sup)
    total_s = time.perf_counter() - t0
    flood = [
        line
        for line in run.attempt_log(1).read_bytes().splitlines()
        if b"Avg prompt throughput: " in line
    ]
    in_order = len(flood) == n and all(line.endswith(b" %d" % i) for i, line in enumerate(flood))
    span = (first_last[1] - first_last[0]) if len(first_last) == 2 else total_s
    exit_t = records(rec, "exit")[-1]["t"]
    return {
        "lines": n,
        "lines_in_log": len(flood),
        "nothing_dropped": in_order,
        "lines_per_s": round(n / span) if span > 0 else None,
        "log_mib": round(run.attempt_log(1).stat().st_size / 2**20, 1),
        "decision_after_exit_ms": round((sup.transitions[-1].time - exit_t) * 1000, 1),
        "max_loop_stall_ms": round(max(lags) * 1000, 1) if lags else None,
        "wall_s": round(total_s, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--exits", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmops-bench-") as d:
        tmp = Path(d)
        result = {"decision": decision_latency(tmp, args.exits), "ingest": ingest(tmp, args.lines)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        d, i = result["decision"], result["ingest"]
        print(
            f"decision after child exit ({d['attempts']} exits): median {d['ms_median']} ms, "
            f"p95 {d['ms_p95']} ms, max {d['ms_max']} ms"
        )
        print(
            f"ingest: {i['lines_in_log']}/{i['lines']} lines in order={i['nothing_dropped']}, "
            f"{i['lines_per_s']:,} lines/s, {i['log_mib']} MiB, decision {i['decision_after_exit_ms']} ms "
            f"after exit, worst loop stall {i['max_loop_stall_ms']} ms"
        )
    return 0 if result["ingest"]["nothing_dropped"] else 1


if __name__ == "__main__":
    sys.exit(main())
