"""TUI under a log flood: how fast `mmops tui` answers a key while vLLM floods its log, and
whether the attempt log keeps every line.

Runs the real app (MmopsApp, headless, 120x40, notifications on) in launch mode over the real
Supervisor and a stand-in server (bench/flood_child.py: real HTTP on 127.0.0.1, the start-up of
a real vLLM 0.32 log, then on request --rate lines/s of a busy server's log for --seconds s,
and it keeps serving). After READY it opens the Logs tab, then presses the --keys in turn,
one every ~100 ms:

1. idle: for min(--seconds, 5) s with no flood: the baseline;
2. flood: while the child writes --rate lines/s, until its last line reached mmops.

Each key is sent the way Textual's pilot sends one (a Key event through the driver) and timed
to two points: *handled*, when the app's action for it returned (each action is wrapped on the
app instance), and *on screen*, when the next frame after that was composed (the app's
_display hook; headless, so the terminal write itself is not in it). pilot.press() is not
timed: it waits for the process to go idle (up to 1 s, twice), which a flood never lets it.
An independent 10 ms ticker in the same event loop records how late the loop woke it.

Then it stops the server with the "x" key, regenerates the child's lines and checks the
attempt log holds every one, in order (health/metrics access lines in between are skipped),
and checks that no process of the server's tree is left.

It prints figures, not pass/fail; the exit status is 1 only when lines were dropped, a process
was left behind or the app crashed (then it says on which key and where, stops the server
itself and still checks the log and the processes).

    python bench/tui_flood_bench.py [--rate 50000] [--seconds 10] [--keys e,1,2,f,[,]] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import httpx
import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fakes"))
sys.path.insert(0, str(BENCH))

from fakesupport import free_port, tree, wait_gone  # noqa: E402
from flood_child import DONE, flood_line  # noqa: E402
from textual import events  # noqa: E402

from mmops.launch.plan import Plan  # noqa: E402
from mmops.launch.profile import DeviceRequest, Readiness, RestartPolicy  # noqa: E402
from mmops.launch.spec import LaunchSpec  # noqa: E402
from mmops.serve.session import Session  # noqa: E402
from mmops.serve.states import TERMINAL, State  # noqa: E402
from mmops.serve.supervisor import Options  # noqa: E402
from mmops.tui.app import MmopsApp, Target  # noqa: E402
from mmops.tui.widgets.logview import LogView  # noqa: E402

CHILD = BENCH / "flood_child.py"
MODEL = "flood-model"
KEY_NAMES = {"[": "left_square_bracket", "]": "right_square_bracket", "?": "question_mark"}
# s/x/r/q/p/c/a steer the server or open a dialog; / n N open the search box, which takes the keys.
SAFE_KEYS = ("e", "f", "1", "2", "3", "4", "[", "]", "?")
GAP_S = (0.08, 0.12)  # between one key's frame and the next key: a fast typist
KEY_TIMEOUT_S = 5.0
IDLE_MAX_S = 5.0
OPTIONS = Options(stop_sigint_s=5, stop_sigterm_s=5, reaper_grace_s=1, liveness_interval_s=1.0)
_DONE_RE = re.compile(r"flood done: (\d+) lines in ([\d.]+) s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 0.5), 1),
        "p95_ms": round(pct(ms, 0.95), 1),
        "p99_ms": round(pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
    }


def planner_for(rate: int, seconds: float, tag: str):  # noqa: ANN201 - a Planner
    """A planner like fakesupport.fake_planner, running bench/flood_child.py."""

    def planner(spec: LaunchSpec) -> Plan:
        argv = [
            sys.executable, str(CHILD), "--model", MODEL, "--host", spec.host,
            "--port", str(spec.port), "--rate", str(rate), "--seconds", str(seconds),
            "--tag", tag,
        ]  # fmt: skip
        return Plan(
            argv=argv,
            env=dict(spec.env),
            cwd=str(BENCH),
            python=sys.executable,
            vllm_version=None,
            entry_point="flood_child",
            host=spec.host,
            port=spec.port,
            served_model=MODEL,
        )

    return planner


class AppCrashed(Exception):
    """The app died (its exception comes out of run_test)."""


class KeyProbe:
    """Times one key at a time: sent -> action returned -> next frame composed."""

    def __init__(self, app: MmopsApp) -> None:
        self.app = app
        self.sent = self.handled = self.shown = None
        self.done: asyncio.Future | None = None
        self.last_key: str | None = None
        self.counts: dict[str, int] = {}
        for name in {binding.action.split("(", 1)[0] for binding in app.BINDINGS}:
            self._wrap(name)
        display = app._display

        def hooked(screen, renderable) -> None:  # noqa: ANN001 - Textual's own types
            display(screen, renderable)
            if renderable is not None and self.handled is not None and self.shown is None:
                self.shown = time.perf_counter()
                if self.done is not None and not self.done.done():
                    self.done.set_result(None)

        app._display = hooked  # type: ignore[method-assign]

    def _wrap(self, name: str) -> None:
        original = getattr(self.app, f"action_{name}")

        # wraps: Textual counts the action's parameters through __wrapped__.
        @functools.wraps(original)
        async def action(*args: object) -> None:
            result = original(*args)
            if inspect.isawaitable(result):
                await result
            if self.sent is not None and self.handled is None:
                self.handled = time.perf_counter()

        setattr(self.app, f"action_{name}", action)

    async def press(self, key: str) -> tuple[float | None, float | None]:
        """(seconds to handled, seconds to on screen); None where it did not happen in time."""
        self.handled = self.shown = None
        self.done = asyncio.get_running_loop().create_future()
        # What Pilot.press does for one key, without its wait for an idle process.
        event = events.Key(KEY_NAMES.get(key, key), key if len(key) == 1 else None)
        event.set_sender(self.app)
        self.last_key = key
        self.counts[key] = self.counts.get(key, 0) + 1
        died = asyncio.ensure_future(self.app._exception_event.wait())
        self.sent = time.perf_counter()
        self.app._driver.send_message(event)
        await asyncio.wait(
            {self.done, died}, timeout=KEY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        died.cancel()
        sent, self.sent = self.sent, None
        return (
            None if self.handled is None else self.handled - sent,
            None if self.shown is None else self.shown - sent,
        )


async def until(cond, timeout: float, step: float = 0.02) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def check_log(path: Path, rate: int) -> dict:
    """Compare the attempt log with the lines the child wrote (regenerated)."""
    matched = extra = 0
    done_count = done_s = None
    in_flood = False
    first = flood_line(0, rate).encode()
    with path.open("rb") as fh:
        for line in fh:
            if not in_flood:
                in_flood = line == first
                if not in_flood:
                    continue
            if DONE.encode() in line:
                m = _DONE_RE.search(line.decode())
                if m:
                    done_count, done_s = int(m.group(1)), float(m.group(2))
                break
            if line.startswith(b"INFO:     127.0.0.1:") and b'"GET ' in line:
                continue  # mmops's own /health, /metrics polls, and the bench's trigger
            if line == flood_line(matched, rate).encode():
                matched += 1
            else:
                extra += 1
    wrote = done_count if done_count is not None else 0
    return {
        "child_wrote": done_count,
        "child_s": done_s,
        "in_log_in_order": matched,
        "dropped": wrote - matched,
        "unexpected_lines": extra,
        "log_mib": round(path.stat().st_size / 2**20, 1),
    }


def leftovers(tag: str) -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if tag in cmd and p.pid != os.getpid():
            out.append(f"{p.pid} {' '.join(cmd)[:80]}")
    return out


def crash_info(exc: BaseException, probe: KeyProbe | None) -> dict:
    """What the app died of, where in mmops, and on which key."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/mmops/" in f.filename]
    where = frames[-1] if frames else None
    return {
        "error": f"{type(exc).__name__}: {exc}",
        "at": f"{Path(where.filename).relative_to(REPO)}:{where.lineno} in {where.name}"
        if where
        else None,
        "key": probe.last_key if probe else None,
        "key_press_no": probe.counts.get(probe.last_key) if probe and probe.last_key else None,
        "keys_sent": sum(probe.counts.values()) if probe else 0,
        "traceback": [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames],
    }


async def drive(args: argparse.Namespace, tmp: Path) -> dict:
    tag = f"mmops-flood-bench-{os.getpid()}-{tmp.name}"
    spec = LaunchSpec(
        model=MODEL,
        args={"host": "127.0.0.1", "port": free_port()},
        device=DeviceRequest(kind="cpu"),
        restart=RestartPolicy(max_attempts=1, window_s=300, jitter=0.0),
        readiness=Readiness(timeout_s=30, interval_s=0.1),
    )
    ingest = {"lines": 0, "done_at": None, "done_lines": None}

    def on_lines(attempt: int, lines: list[str]) -> None:
        ingest["lines"] += len(lines)
        if ingest["done_at"] is None and any(DONE in line for line in lines[-10:]):
            ingest["done_at"] = time.perf_counter()
            ingest["done_lines"] = ingest["lines"]

    session = Session.prepare(
        spec,
        skip_preflight=True,
        state_dir=str(tmp / "runs"),
        options=OPTIONS,
        on_lines=on_lines,
        planner=planner_for(args.rate, args.seconds, tag),
        vllm=None,
    )
    sup = session.supervisor
    app = MmopsApp(Target("launch", sup, "flood", session=session, start_now=True, cpu=True))
    keys = args.keys
    rng = random.Random(7)
    lags: list[tuple[float, float]] = []
    behind: list[tuple[float, int]] = []  # (time, lines mmops has that the view has not)
    r: dict = {"rate": args.rate, "seconds": args.seconds, "keys": keys, "ready_s": None,
               "idle": None, "flood": None, "ingest": None, "crash": None}  # fmt: skip
    probe: KeyProbe | None = None
    tick: asyncio.Future | None = None
    procs: list[psutil.Process] = []

    def crashed() -> bool:
        return app._exception is not None

    app_errors: list[tuple[float, BaseException]] = []  # (when, what), as the app saw them
    bench_error: list[tuple[float, BaseException]] = []
    scenario_end: list[float] = []  # when the run was over and run_test began closing the app
    handle = app._handle_exception

    def on_app_error(error: Exception) -> None:
        app_errors.append((time.perf_counter(), error))
        handle(error)

    app._handle_exception = on_app_error  # type: ignore[method-assign]

    async def scenario(pilot) -> None:  # noqa: ANN001 - Textual's Pilot
        nonlocal probe, tick, procs

        view = app.query_one(LogView)

        async def ticker() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                lags.append((now, now - t - 0.01))
                if view.store is not None:
                    behind.append((now, ingest["lines"] - view.store.line_count))

        tick = asyncio.ensure_future(ticker())
        t_start = time.perf_counter()
        if not await until(lambda: sup.state == State.READY, 30):
            raise SystemExit(f"the server did not get READY: {sup.state.value}")
        r["ready_s"] = round(time.perf_counter() - t_start, 2)
        procs = tree(sup.pid) if sup.pid else []
        await pilot.press("2")
        await until(lambda: view.row_count > 0, 10)
        probe = KeyProbe(app)

        async def press_keys(stop) -> list[tuple[str, float | None, float | None]]:  # noqa: ANN001
            got = []
            i = 0
            while not stop() and not crashed():
                key = keys[i % len(keys)]
                i += 1
                handled, shown = await probe.press(key)
                got.append((key, handled, shown))
                await asyncio.sleep(rng.uniform(*GAP_S))
            return got

        idle_s = min(args.seconds, IDLE_MAX_S)
        t0, c0 = time.perf_counter(), os.times()
        idle_keys = await press_keys(lambda: time.perf_counter() - t0 > idle_s)
        r["idle"] = _phase(idle_keys, lags, (t0, time.perf_counter()))
        r["idle"]["mmops_cpu_share"] = _cpu_share(c0, os.times(), time.perf_counter() - t0)
        if crashed():
            raise AppCrashed

        url = sup.plan.url if sup.plan else f"http://127.0.0.1:{spec.port}"
        cpu0 = os.times()
        lines_before = ingest["lines"]
        async with httpx.AsyncClient(trust_env=False) as client:
            t_flood = time.perf_counter()
            await client.get(f"{url}/bench/flood", timeout=5)
        deadline = t_flood + args.seconds * 3 + 10
        flood_keys = await press_keys(
            lambda: ingest["done_at"] is not None or time.perf_counter() > deadline
        )
        flood_win = (t_flood, time.perf_counter())
        cpu1 = os.times()
        r["flood"] = _phase(flood_keys, lags, flood_win)
        if crashed():
            raise AppCrashed
        child_cpu = 0.0
        for p in procs:
            try:
                ct = p.cpu_times()
                child_cpu += ct.user + ct.system
            except psutil.Error:
                pass
        # The view catching up with the last line mmops read.
        read = (ingest["done_lines"] or ingest["lines"]) - lines_before
        done_lines = ingest["done_lines"] or ingest["lines"]
        at_done = time.perf_counter()
        caught = await until(
            lambda: view.store is not None and view.store.line_count >= done_lines, 10, 0.005
        )
        r["ingest"] = {
            "flood_lines_read": read,
            "read_lines_per_s": round(read / ((ingest["done_at"] or flood_win[1]) - t_flood)),
            "mmops_cpu_share": _cpu_share(cpu0, cpu1, flood_win[1] - flood_win[0]),
            "server_tree_cpu_s": round(child_cpu, 1),
            "view_max_behind_lines": max(
                (b for t, b in behind if flood_win[0] <= t <= flood_win[1]), default=0
            ),
            "view_catch_up_ms": round((time.perf_counter() - at_done) * 1000, 1)
            if caught
            else None,
            "view_lines_at_end": view.store.line_count if view.store else 0,
        }
        t_x = time.perf_counter()
        await pilot.press("x")  # stop the way a user does
        await until(lambda: sup.state in TERMINAL or crashed(), 20)
        r["x_to_stopped_s"] = round(time.perf_counter() - t_x, 2)
        if crashed():
            raise AppCrashed

    try:
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            try:
                await scenario(pilot)
                scenario_end.append(time.perf_counter())
            except AppCrashed:
                pass
            except Exception as exc:
                bench_error.append((time.perf_counter(), exc))
                raise
    except Exception:  # noqa: BLE001 - an app error comes out of run_test
        # An app error after a failure of the bench (during the shutdown that follows) is not
        # the app's fault: show the bench's.
        if bench_error and (not app_errors or bench_error[0][0] < app_errors[0][0]):
            raise bench_error[0][1] from None
        if not app_errors:
            raise
    finally:
        if tick is not None:
            tick.cancel()
        t_stop = time.perf_counter()
        if sup.state not in TERMINAL:  # the app died (or the bench did) before the stop key
            await sup.stop()
    if app_errors:
        r["crash"] = crash_info(app_errors[0][1], probe)
        r["crash"]["app_errors"] = len(app_errors)
        r["crash"]["while_closing"] = bool(scenario_end) and app_errors[0][0] > scenario_end[0]
    last = sup.transitions[-1] if sup.transitions else None
    alive = wait_gone(procs, 5)
    log = sup.log_path(1)
    r["stop"] = {
        "state": sup.state.value,
        "reason": last.reason if last else None,
        "exit": last.fields.get("exit") if last else None,
        "by": "the app (x key)" if r.get("x_to_stopped_s") is not None else "the bench",
        "tree_alive_after": [p.pid for p in alive],
        "left_by_tag": leftovers(tag),
        "x_to_stopped_s": r.pop("x_to_stopped_s", None),
        "bench_stop_s": round(time.perf_counter() - t_stop, 2),
    }
    r["log"] = check_log(log, args.rate) if log is not None and log.exists() else {}
    if r["log"].get("child_wrote") and r["log"].get("child_s"):
        r["log"]["child_lines_per_s"] = round(r["log"]["child_wrote"] / r["log"]["child_s"])
    return r


def _cpu_share(before: os.times_result, after: os.times_result, wall: float) -> float:
    used = after.user + after.system - before.user - before.system
    return round(used / wall, 2) if wall > 0 else 0.0


def _phase(samples: list, lags: list[tuple[float, float]], win: tuple[float, float]) -> dict:
    handled = [h for _, h, _ in samples if h is not None]
    shown = [s for _, _, s in samples if s is not None]
    loop = [lag for t, lag in lags if win[0] <= t <= win[1]]
    by_key: dict[str, list[float]] = {}
    for key, _, s in samples:
        if s is not None:
            by_key.setdefault(key, []).append(s)
    return {
        "seconds": round(win[1] - win[0], 1),
        "presses": len(samples),
        "unanswered": sum(1 for _, h, _ in samples if h is None),
        "no_frame": sum(1 for _, h, s in samples if h is not None and s is None),
        "handled": summary(handled),
        "on_screen": summary(shown),
        "on_screen_max_by_key": {k: round(max(v) * 1000, 1) for k, v in by_key.items()},
        "loop_lag": summary(loop),
    }


def ratio(a: dict, b: dict, field: str) -> str:
    if field not in a or field not in b or not b[field]:
        return "n/a"
    return f"x{a[field] / b[field]:.1f}"


def _keys_line(name: str, ph: dict | None) -> str:
    if ph is None:
        return f"{name}: not run (the app crashed before)"
    h, s, lag = ph["handled"], ph["on_screen"], ph["loop_lag"]
    cpu = f", mmops CPU {ph['mmops_cpu_share']:.0%} of a core" if "mmops_cpu_share" in ph else ""
    return (
        f"{name}: {ph['presses']} keys in {ph['seconds']} s ({ph['unanswered']} unanswered in "
        f"{KEY_TIMEOUT_S:g} s, {ph['no_frame']} without a frame{cpu})\n"
        f"  key handled   p50 {h.get('p50_ms')} / p95 {h.get('p95_ms')} / p99 {h.get('p99_ms')}"
        f" / max {h.get('max_ms')} ms\n"
        f"  key on screen p50 {s.get('p50_ms')} / p95 {s.get('p95_ms')} / p99 {s.get('p99_ms')}"
        f" / max {s.get('max_ms')} ms\n"
        f"  loop lag      p50 {lag.get('p50_ms')} / p95 {lag.get('p95_ms')} / p99 "
        f"{lag.get('p99_ms')} / max {lag.get('max_ms')} ms (10 ms ticker, {lag.get('n', 0)} ticks)"
    )


def report(r: dict) -> None:
    idle, flood, ing, st, lg = r["idle"], r["flood"], r["ingest"], r["stop"], r["log"]
    print(
        f"flood: {r['rate']:,} lines/s asked for {r['seconds']:g} s; keys {','.join(r['keys'])} "
        f"in turn, one every ~100 ms; READY after {r['ready_s']} s"
    )
    c = r["crash"]
    if c is not None and c["while_closing"]:
        print(
            f"THE APP CRASHED while closing, after the run: {c['error']} at {c['at']} "
            f"({c['app_errors']} app errors)"
        )
    elif c is not None:
        print(
            f"THE APP CRASHED on key {c['key']!r} (press {c['key_press_no']} of that key, "
            f"{c['keys_sent']} keys sent): {c['error']} at {c['at']} ({c['app_errors']} app "
            f"errors)"
        )
    print(_keys_line("idle ", idle))
    print(_keys_line("flood", flood))
    if idle and flood:
        a, b = flood["on_screen"], idle["on_screen"]
        print(
            f"flood/idle: key on screen p50 {ratio(a, b, 'p50_ms')}, p99 {ratio(a, b, 'p99_ms')}"
            f", max {ratio(a, b, 'max_ms')}; loop lag max "
            f"{ratio(flood['loop_lag'], idle['loop_lag'], 'max_ms')}"
        )
        print(f"flood, slowest on screen per key (ms): {flood['on_screen_max_by_key']}")
    if lg.get("child_wrote") is None:
        print("child: no flood was written")
    else:
        print(
            f"child: wrote {lg['child_wrote']:,} flood lines in {lg['child_s']} s: "
            f"{lg.get('child_lines_per_s', 0):,} lines/s achieved of {r['rate']:,} asked (it "
            f"writes to a pipe: what mmops does not read in time slows the server down)"
        )
    if ing:
        print(
            f"mmops: read {ing['flood_lines_read']:,} lines at {ing['read_lines_per_s']:,} "
            f"lines/s (from the trigger), CPU {ing['mmops_cpu_share']:.0%} of a core during the "
            f"flood; server tree {ing['server_tree_cpu_s']} CPU-s in all"
        )
        print(
            f"log view: at most {ing['view_max_behind_lines']:,} lines behind mmops, caught up "
            f"{ing['view_catch_up_ms']} ms after the last line; {ing['view_lines_at_end']:,} "
            f"lines in its store"
        )
    if lg.get("child_wrote") is not None:
        print(
            f"attempt log ({lg['log_mib']} MiB): {lg['in_log_in_order']:,} of "
            f"{lg['child_wrote']:,} flood lines in order; dropped: {lg['dropped']}; "
            f"unexpected lines: {lg['unexpected_lines']}"
        )
    left = st["tree_alive_after"] + st["left_by_tag"]
    took = st["x_to_stopped_s"] if st["x_to_stopped_s"] is not None else st["bench_stop_s"]
    print(
        f"stop: {st['state']} by {st['by']} in {took} s ({st['reason']}; {st['exit']}); "
        f"server processes left: {len(left)}{' ' + str(left) if left else ''}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=int, default=50_000, help="flood lines/s (default 50000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="flood duration (default 10)")
    ap.add_argument(
        "--keys",
        default="e,1,2,f,[,]",
        help="keys pressed in turn, comma-separated (default e,1,2,f,[,]: filter, server tab, "
        "logs tab, follow, previous / next attempt)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.keys = [k for k in args.keys.split(",") if k]
    wrong = [k for k in args.keys if k not in SAFE_KEYS]
    if not args.keys or wrong:
        ap.error(f"--keys: {wrong or 'none'}; use keys that neither steer the server nor take "
                 f"the focus: {','.join(SAFE_KEYS)}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mmops-tui-flood-") as d:
        result = asyncio.run(drive(args, Path(d)))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    st = result["stop"]
    dropped = result["log"].get("dropped", 0) != 0
    left = st["tree_alive_after"] or st["left_by_tag"]
    return 1 if dropped or left or result["crash"] is not None else 0


if __name__ == "__main__":
    sys.exit(main())
