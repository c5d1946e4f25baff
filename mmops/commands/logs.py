"""`mmops logs`: read the run folders `mmops serve` leaves, during the run or long after."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from mmops.errors import UsageError
from mmops.serve import runs

TERMINAL_STATES = ("STOPPED", "FAILED")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "logs",
        help="read a serve run: attempt logs, errors, events",
        description="Print the logs of a `mmops serve` run (default: the newest). --errors shows "
        "only lines the failure-signature table recognises, with line numbers and the fix.",
    )
    p.add_argument(
        "run", nargs="?", help="run folder, its name, or part of its name (default: newest)"
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where run folders are (default: XDG state dir)"
    )
    p.add_argument("--attempt", "-a", type=int, metavar="N", help="only attempt N")
    p.add_argument("--errors", "-e", action="store_true", help="only classified lines, with fixes")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing as the run writes")
    p.add_argument("--events", action="store_true", help="print the supervisor's events instead")
    p.add_argument("--list", action="store_true", help="list runs, newest last")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = runs.state_root(args.state_dir)
    out = sys.stdout
    if args.list:
        return list_runs(root, out)
    run_dir = runs.find_run(args.run, root)
    if args.events:
        print_events(run_dir, out)
        return 0
    numbers = runs.attempts(run_dir)
    if args.attempt is not None and args.attempt not in numbers and not args.follow:
        have = ", ".join(map(str, numbers)) or "none"
        raise UsageError(f"--attempt {args.attempt}: {run_dir.name} has attempts {have}")
    if args.follow:
        follow(run_dir, out, attempt=args.attempt, errors=args.errors)
        return 0
    chosen = [args.attempt] if args.attempt is not None else numbers
    if args.errors:
        return print_errors(run_dir, chosen, out)
    for n in chosen:
        if len(chosen) > 1:
            out.write(f"==> {run_dir.name}/attempt-{n}.log <==\n")
        with (run_dir / f"attempt-{n}.log").open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 16), b""):
                out.write(block.decode("utf-8", "replace"))
        out.flush()
    if not chosen:
        out.write(f"{run_dir.name}: no attempt logs (see `mmops logs --events {run_dir.name}`)\n")
    return 0


def list_runs(root: Path, out: TextIO) -> int:
    found = runs.list_runs(root)
    if not found:
        out.write(f"no runs under {root}\n")
        return 0
    for path in found:
        events = runs.read_events(path)
        last = events[-1] if events else {}
        state = last.get("state", "?")
        if state not in TERMINAL_STATES and not _owner_alive(events):
            state += " (mmops gone)"
        n = len(runs.attempts(path))
        out.write(f"{path.name}  {state:<10} attempts={n}  {last.get('reason', '')}\n")
    return 0


def print_events(run_dir: Path, out: TextIO) -> None:
    for ev in runs.read_events(run_dir):
        state = ev.get("state", "?")
        out.write(f"{ev.get('time')} {state:<9} attempt {ev.get('attempt')}: {ev.get('reason')}\n")
        cause = ev.get("cause")
        if cause:
            where = f"line {cause.get('line_no')}"
            out.write(f"    cause: {cause.get('id')} at {where}: {cause.get('line')}\n")
        for key in ("change", "fix"):
            if ev.get(key):
                val = ev[key]["change"] if isinstance(ev[key], dict) else ev[key]
                out.write(f"    {key}: {val}\n")


def classified(path: Path) -> Iterator[tuple[int, str, object]]:
    """(line number, line, LineMatch) for lines the signature table recognises (not context).

    ``diagnose.error_lines`` pre-filters the bytes of the file, so this stays fast on big logs.
    """
    from mmops.diagnose.scan import error_lines

    for no, line, m in error_lines(str(path)):
        if m is not None:
            yield no, line, m


def print_errors(run_dir: Path, chosen: list[int], out: TextIO) -> int:
    from mmops.diagnose.table import render_fix

    fixes: dict[str, str] = {}
    titles: dict[str, str] = {}
    for n in chosen:
        for no, line, m in classified(run_dir / f"attempt-{n}.log"):
            sig = m.signature
            out.write(f"attempt-{n}.log:{no}: [{sig.id}] {line.strip()}\n")
            if sig.role == "cause" and sig.id not in fixes:
                fixes[sig.id] = render_fix(sig, m.captures)
                titles[sig.id] = sig.title
    if not fixes:
        out.write("no known root cause in these logs\n" if chosen else "no attempt logs\n")
        return 0
    out.write("\n")
    for sig_id, fix in fixes.items():
        out.write(f"{sig_id}: {titles[sig_id]}\n    fix: {fix}\n")
    return 0


def _owner_alive(events: list[dict]) -> bool:
    pid = next((e.get("mmops_pid") for e in events if e.get("mmops_pid")), None)
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def _run_over(run_dir: Path) -> bool:
    events = runs.read_events(run_dir)
    if events and events[-1].get("state") in TERMINAL_STATES:
        return True
    return bool(events) and not _owner_alive(events)


def follow(
    run_dir: Path,
    out: TextIO,
    attempt: int | None = None,
    errors: bool = False,
    poll_s: float = 0.2,
) -> None:
    """Print the log as it grows, moving on to each new attempt, until the run ends."""
    from mmops.diagnose.table import match_line

    current = attempt or (runs.attempts(run_dir) or [1])[-1]
    pos = 0
    line_no = 0
    partial = b""
    header_done = False
    while True:
        path = run_dir / f"attempt-{current}.log"
        data = b""
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(pos)
                data = fh.read()
            pos += len(data)
        if data:
            if not header_done and attempt is None:
                out.write(f"==> {run_dir.name}/attempt-{current}.log <==\n")
                header_done = True
            data = partial + data
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            for raw in data[:cut].decode("utf-8", "replace").splitlines():
                line_no += 1
                if not errors:
                    out.write(raw + "\n")
                    continue
                m = match_line(raw)
                if m is not None and m.signature.role != "context":
                    out.write(
                        f"attempt-{current}.log:{line_no}: [{m.signature.id}] {raw.strip()}\n"
                    )
            out.flush()
            continue
        newer = [n for n in runs.attempts(run_dir) if n > current]
        if attempt is None and newer:
            if partial:
                out.write(partial.decode("utf-8", "replace") + "\n")
            current, pos, line_no, partial, header_done = newer[0], 0, 0, b"", False
            continue
        if _run_over(run_dir):
            # One last read: the run may have written its final lines after our last look.
            if path.exists() and path.stat().st_size > pos:
                continue
            if partial:
                out.write(partial.decode("utf-8", "replace") + "\n")
            out.flush()
            return
        time.sleep(poll_s)
