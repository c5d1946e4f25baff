"""`mmops logs`: read the run folders `mmops serve` leaves, during the run or long after."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mmops.errors import UsageError
from mmops.serve import runs
from mmops.serve.events import iso_time
from mmops.serve.replay import RunReplay
from mmops.serve.states import TERMINAL

if TYPE_CHECKING:
    from mmops.diagnose.table import LineMatch


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
        replay = RunReplay(path)
        st = replay.snapshot()
        state = st.state.value if replay.history else "?"
        if replay.history and st.state not in TERMINAL and not replay.owner_alive():
            state += " (mmops gone)"
        n = len(replay.attempts())
        out.write(f"{path.name}  {state:<10} attempts={n}  {st.reason}\n")
    return 0


def print_events(run_dir: Path, out: TextIO) -> None:
    replay = RunReplay(run_dir)
    for ev in replay.transitions:
        out.write(f"{_when(ev.time)} {ev.state.value:<9} attempt {ev.attempt}: {ev.reason}\n")
        cause = ev.cause
        if cause:
            out.write(f"    cause: {cause.id} at line {cause.line_no}: {cause.line}\n")
        if ev.change:
            out.write(f"    change: {ev.change.change}\n")
        if ev.fix:
            out.write(f"    fix: {ev.fix}\n")
    _note_unshown(run_dir, len(replay.history))


def _when(t: float) -> str:
    """The event's time; a hand-edited or corrupt one (1e300, NaN) crashed iso_time, and
    events.parse_time now reads it as 0.0: no event of a run is from 1970."""
    if not t > 0:
        return "(bad time)"
    try:
        return iso_time(t)
    except (OverflowError, ValueError, OSError):
        return f"(bad time {t!r})"


def _note_unshown(run_dir: Path, events: int) -> None:
    """Junk or a half-written last line in events.jsonl were skipped without a word: say so."""
    try:
        lines = (run_dir / "events.jsonl").read_bytes().split(b"\n")
    except OSError:
        return
    torn = lines.pop() != b""  # no newline at the end: mmops was killed mid-write
    junk = sum(1 for line in lines if line.strip()) - events
    said = [f"{junk} line(s) that are no mmops event"] if junk > 0 else []
    said += ["a half-written last line"] if torn else []
    if said:
        print(f"mmops logs: {run_dir / 'events.jsonl'}: {' and '.join(said)} not shown",
              file=sys.stderr)  # fmt: skip


def classified(path: Path) -> Iterator[tuple[int, str, LineMatch]]:
    """(line number, line, LineMatch) for lines the signature table recognises (not context).

    ``error_lines`` pre-filters the bytes of the file, so this stays fast on big logs.
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


def follow(
    run_dir: Path,
    out: TextIO,
    attempt: int | None = None,
    errors: bool = False,
    poll_s: float = 0.2,
) -> None:
    """Print the log as it grows, moving on to each new attempt, until the run ends."""
    from mmops.diagnose.table import match_line

    shown = None
    for line in RunReplay(run_dir).follow(attempt, poll_s):
        if attempt is None and line.attempt != shown:
            out.write(f"==> {run_dir.name}/attempt-{line.attempt}.log <==\n")
            shown = line.attempt
        if not errors:
            out.write(line.text + "\n")
        else:
            m = match_line(line.text)
            if m is not None and m.signature.role != "context":
                out.write(f"attempt-{line.attempt}.log:{line.line_no}: [{m.signature.id}] "
                          f"{line.text.strip()}\n")  # fmt: skip
        out.flush()
