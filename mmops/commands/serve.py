"""`mmops serve`: launch vLLM under the supervisor in the foreground, recording a run folder."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

from mmops.commands.doctor import add_ray_arguments, ray_launch
from mmops.launch.spec import add_launch_arguments
from mmops.serve.states import State

if TYPE_CHECKING:
    from mmops.serve.events import StateChanged
    from mmops.serve.session import Session
    from mmops.serve.supervisor import Supervisor


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
    add_ray_arguments(p)
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
    from mmops.launch.preflight import launch_spec
    from mmops.serve.session import Session
    from mmops.serve.supervisor import Options

    stop_s = max(0.0, args.stop_timeout)
    out = Renderer(sys.stderr, quiet=args.quiet or args.smoke)
    spec, ray_timeout = ray_launch(args, launch_spec(args))
    session = Session.prepare(
        spec,
        skip_preflight=args.no_preflight,
        ray_timeout=ray_timeout,
        state_dir=args.state_dir,
        options=Options(stop_sigint_s=stop_s, stop_sigterm_s=stop_s),
        on_event=out.event,
        on_lines=out.lines,
    )
    out.quiet_events = session.blocked  # the refusal is told below, in full
    out.note(f"run folder: {session.run_dir.path}")
    if session.blocked:
        asyncio.run(session.start())  # records FAILED, starts nothing
        out.note("preflight failed; not starting:")
        print("\n".join(session.preflight.failures()), file=sys.stderr)
        out.note("run `mmops doctor` for every check, or pass --no-preflight to launch anyway")
        failure_bundle(session, out)
        return 2
    out.note(f"preflight: {session.preflight.summary()}")
    code = asyncio.run(_serve(session, args.smoke, out))
    failure_bundle(session, out)
    return code


def failure_bundle(session: Session, out: Renderer) -> None:
    """A run that ended FAILED leaves bundle.tar.gz (`mmops bundle`) in its folder for the
    escalation; serve's exit code and its own report of the failure stay as they are."""
    if session.supervisor.state != State.FAILED:
        return
    from mmops.bundle import failure_bundle as write_failure_bundle

    out.note(write_failure_bundle(session.run_dir.path))


async def _serve(session: Session, smoke: bool, out: Renderer) -> int:
    sup = session.supervisor
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
    if not smoke:
        await session.start()
        final = await sup.wait()
        out.summary(sup)
        return 0 if final == State.STOPPED else 1

    result = await session.smoke()
    if result.suite is not None:
        for case in result.suite.cases:
            out.note(f"  {'ok  ' if case.ok else 'FAIL'} {case.name}: {case.verdict}")
        passed = sum(c.ok for c in result.suite.cases)
        out.note(f"suite {sup.spec.suite}: {passed}/{len(result.suite.cases)} passed")
    out.summary(sup)
    if result.reached != State.READY:
        verdict = f"FAIL: ended {result.reached.value} without READY"
    elif not result.ok:
        verdict = "FAIL: READY, but the sample suite failed"
    else:
        verdict = "PASS: reached READY"
    out.note(f"smoke {verdict}")
    return 0 if result.ok else 1


class Renderer:
    """Turns supervisor events and server output into terminal lines. No logic of its own."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.out_ok = True  # stdout/stderr may close (a pipe to `head`, a dead terminal)
        self.quiet_events = False

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

    def event(self, ev: StateChanged) -> None:
        if self.quiet_events:
            return
        clock = time.strftime("%H:%M:%S", time.localtime(ev.time))
        head = f"{clock} {ev.state.value:<9} attempt {ev.attempt}: {ev.reason}"
        extra: list[str] = []
        if ev.state == State.STARTING:
            argv = ev.fields.get("argv")
            extra.append("argv: " + " ".join(map(str, argv if isinstance(argv, list) else [])))
            if ev.log:
                extra.append(f"log: {ev.log}")
        elif ev.state == State.READY:
            if ev.url:  # not on a note made while READY (the Ray node watch's)
                extra.append(f"serving {ev.model} at {ev.url}")
            for ch in ev.fixed_by:
                extra.append(
                    f"fixed automatically by {ch.change} (after {ch.signature}); "
                    f"make it permanent in the profile"
                )
        elif ev.state in (State.BACKOFF, State.FAILED):
            cause = ev.cause
            if ev.fields.get("exit"):
                extra.append(f"server: {ev.fields['exit']}")
            if cause:
                where = f"line {cause.line_no}" if cause.line_no else "log"
                if ev.fields.get("node"):  # a dead Ray node: the GCS said it, not the log
                    where = "Ray GCS"
                extra.append(f"evidence ({where}): {cause.line[:300]}")
                extra.append(f"meaning: {cause.meaning}")
            # A dead Ray node needs a person before any retry can work: its fix shows at once.
            if ev.fix and (ev.state == State.FAILED or ev.fields.get("node")):
                extra.append(f"fix: {ev.fix}")
        self._print(f"mmops: {head}")
        for line in extra:
            self._print(f"mmops:     {line}")

    def summary(self, sup: Supervisor) -> None:
        if sup.state == State.FAILED and self.quiet and sup.tail:
            self.note("last lines of the server's output:")
            for line in sup.tail[-15:]:
                self._print(f"    {line}")
        if sup.fixed_by:
            changes = ", ".join(c.describe() for c in sup.fixed_by)
            self.note(f"the server came up after the automatic change(s): {changes}")
        if sup.run_dir is not None:
            self.note(f"record: {sup.run_dir.path}  (mmops logs {sup.run_dir.name} --errors)")
