"""`mmops serve`: launch vLLM under the supervisor in the foreground, recording a run folder."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import TextIO

from mmops.commands.plan import launch_spec, preflight
from mmops.launch.spec import add_launch_arguments
from mmops.serve.runs import Run, state_root


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="launch and supervise a vLLM server in the foreground",
        description="Run the doctor, then launch vLLM in its own process group and supervise it: "
        "readiness (/health, /v1/models, a sample request), liveness, restarts with backoff, "
        "automatic fixes for known failures. Ctrl-C stops it cleanly (twice: kill at once). "
        "Everything is recorded in a run folder; read it with `mmops logs`.",
    )
    add_launch_arguments(p)
    p.add_argument(
        "--state-dir", metavar="DIR", help="where run folders go (default: XDG state dir)"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="start, wait for READY or FAILED, run the profile's sample suite, stop; "
        "exit 0 only if READY was reached (and the suite passed)",
    )
    p.add_argument("--no-preflight", action="store_true", help="do not run the doctor first")
    p.add_argument("--quiet", "-q", action="store_true", help="do not echo the server's output")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait after SIGINT, and again after SIGTERM, before SIGKILL (default 15)",
    )
    p.set_defaults(func=run, accepts_vllm_flags=True)


def run(args: argparse.Namespace) -> int:
    from mmops.launch.plan import build_plan, default_python, installed_vllm
    from mmops.serve.supervisor import Options, Supervisor

    spec, pre = preflight(launch_spec(args), args.no_preflight)
    run_dir = Run.create(state_root(args.state_dir), spec.name)
    run_dir.write_json("preflight.json", pre.to_dict())
    out = Renderer(sys.stderr, quiet=args.quiet or args.smoke)
    out.note(f"run folder: {run_dir.path}")
    version = installed_vllm(spec.vllm_python or default_python())  # once, not per attempt

    def planner(s):  # noqa: ANN001, ANN202 - LaunchSpec -> Plan
        return build_plan(s, vllm_version=version)

    if pre.failed:
        plan = planner(spec)
        run_dir.write_json("plan.json", plan.to_dict(preflight=pre.to_dict()))
        reason = "preflight failed; not starting"
        run_dir.append_event(
            {
                "time": _now(),
                "state": "FAILED",
                "attempt": 0,
                "reason": reason,
                "preflight": pre.to_dict(),
            }
        )
        out.note(reason + ":")
        print("\n".join(pre.failures()), file=sys.stderr)
        out.note("run `mmops doctor` for every check, or pass --no-preflight to launch anyway")
        return 2
    out.note(f"preflight: {pre.summary()}")
    stop_s = max(0.0, args.stop_timeout)
    sup = Supervisor(
        spec,
        planner=planner,
        run=run_dir,
        options=Options(stop_sigint_s=stop_s, stop_sigterm_s=stop_s),
        on_event=out.event,
        on_lines=out.lines,
    )
    return asyncio.run(_serve(sup, args, out))


async def _serve(sup, args: argparse.Namespace, out: Renderer) -> int:  # noqa: ANN001
    from mmops.serve.supervisor import State

    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            out.note("stopping (SIGINT to the server's group; press Ctrl-C again to kill it now)")
        else:
            out.note("killing the server's process group now")
        sup.request_stop(force=presses > 1)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    await sup.start()
    if not args.smoke:
        final = await sup.wait()
        out.summary(sup)
        return 0 if final == State.STOPPED else 1

    reached = await sup.wait_for(State.READY)
    ok = reached == State.READY
    if ok and sup.spec.suite:
        ok = await _smoke_suite(sup, out)
    await sup.stop()
    out.summary(sup)
    verdict = (
        "PASS: reached READY"
        if reached == State.READY
        else f"FAIL: ended {reached.value} without READY"
    )
    if reached == State.READY and not ok:
        verdict = "FAIL: READY, but the sample suite failed"
    out.note(f"smoke {verdict}")
    return 0 if ok else 1


async def _smoke_suite(sup, out: Renderer) -> bool:  # noqa: ANN001
    from mmops.probe import run_suite_async
    from mmops.probe.suite import load_suite

    spec, plan = sup.spec, sup.plan
    result = await run_suite_async(
        plan.url,
        load_suite(spec.suite),
        model=plan.served_model,
        api_key=spec.get("api-key"),
        model_path=spec.model,
    )
    for case in result.cases:
        out.note(f"  {'ok  ' if case.ok else 'FAIL'} {case.name}: {case.verdict}")
    out.note(f"suite {spec.suite}: {sum(c.ok for c in result.cases)}/{len(result.cases)} passed")
    return bool(result.ok)


def _now() -> str:
    from mmops.serve.runs import iso_time

    return iso_time(time.time())


class Renderer:
    """Turns supervisor events and server output into terminal lines. No logic of its own."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.out_ok = True  # stdout/stderr may close (a pipe to `head`, a dead terminal)

    def _print(self, text: str, stream: TextIO | None = None) -> None:
        # Supervision must go on when nobody reads the terminal any more: the run folder
        # still records everything.
        if not self.out_ok:
            return
        try:
            print(text, file=stream or self.stream, flush=True)
        except (BrokenPipeError, OSError):
            self.out_ok = False

    def note(self, text: str) -> None:
        self._print(f"mmops: {text}")

    def lines(self, attempt: int, lines: list[str]) -> None:
        if not self.quiet:
            self._print("\n".join(lines), sys.stdout)

    def event(self, ev) -> None:  # noqa: ANN001 - supervisor.Event
        f = ev.fields
        clock = time.strftime("%H:%M:%S", time.localtime(ev.time))
        head = f"{clock} {ev.state.value:<9} attempt {ev.attempt}: {ev.reason}"
        extra: list[str] = []
        if ev.state.value == "STARTING":
            extra.append("argv: " + " ".join(f.get("argv", [])))
            if f.get("log"):
                extra.append(f"log: {f['log']}")
        elif ev.state.value == "READY":
            extra.append(f"serving {f.get('model')} at {f.get('url')}")
            for ch in f.get("fixed_by", []) or []:
                extra.append(
                    f"fixed automatically by {ch['change']} (after {ch['signature']}); "
                    f"make it permanent in the profile"
                )
        elif ev.state.value in ("BACKOFF", "FAILED"):
            cause = f.get("cause")
            if f.get("exit"):
                extra.append(f"server: {f['exit']}")
            if cause:
                where = f"line {cause['line_no']}: " if cause.get("line_no") else ""
                extra.append(f"evidence ({where.strip(': ') or 'log'}): {cause['line'][:300]}")
                extra.append(f"meaning: {cause['meaning']}")
            if ev.state.value == "FAILED" and f.get("fix"):
                extra.append(f"fix: {f['fix']}")
        self._print(f"mmops: {head}")
        for line in extra:
            self._print(f"mmops:     {line}")

    def summary(self, sup) -> None:  # noqa: ANN001 - supervisor.Supervisor
        from mmops.serve.supervisor import State

        if sup.state == State.FAILED and self.quiet and sup.tail:
            self.note("last lines of the server's output:")
            for line in sup.tail[-15:]:
                self._print(f"    {line}")
        if sup.fixed_by:
            changes = ", ".join(c.describe() for c in sup.fixed_by)
            self.note(f"the server came up after the automatic change(s): {changes}")
        if sup.run is not None:
            self.note(f"record: {sup.run.path}  (mmops logs {sup.run.name} --errors)")
