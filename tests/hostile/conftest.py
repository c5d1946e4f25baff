"""Hostile inputs: every case runs the real `mmops` CLI as a subprocess and is judged by ONE
helper, :meth:`Hostile.run` (the ``hostile`` fixture), which also tallies the outcomes that
``pytest_terminal_summary`` prints at the end of the run:

    hostile: N cases, X clear errors, T tracebacks, H hangs, O orphans

followed by what the cases judged elsewhere report (tally.py): the disks of the state-dir cases,
the signal matrices (``signals: N cases (serve, offline, tui), ... survivors, ... torn records``)
and the secrets leak counter (``secrets: N planted, 0 found in M places``). Cases that must run
in a terminal (tmux) are judged by their own module and added to the same tally.

What every case asserts, whatever the command:

- the documented exit code (2 bad input; `diagnose` 0 / 3 by verdict; `probe` 3 when a request
  failed; `doctor --strict` 1 on warnings; 0 where the input must simply work);
- a clear message: on stderr (``where="stderr"``: at most ``max_lines`` lines once argparse's
  usage synopsis is set aside, and nothing on stdout), or in the report on stdout
  (``where="stdout"``: a failed doctor check, a probe verdict, a diagnose report; stderr at most
  ``max_lines``), holding every string of ``mention`` (the file or flag, and what is valid);
- no ``Traceback`` in stderr (from the first column: `serve` quotes the server's last lines
  indented), nor one through mmops' own files anywhere (a diagnose report quotes the log's
  tracebacks on stdout, which is its job);
- it finished within the timeout (else its whole process group is killed and it counts as a hang);
- nothing lost or left behind: no process carrying the case's marker in its environment (found
  by marker, as reparented grandchildren are no longer our children, and as psutil children of
  this test process), no file left in the case's own TMPDIR, no new file under the case folder
  but those ``allow_new`` names, and no temp-looking file (``*.tmp``, ``.*.tmp``, ``*.part``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# The stand-in vLLM and the helpers of the serve and TUI tests, for every module here.
sys.path[:0] = [str(REPO / "tests" / "fakes"), str(REPO / "tests")]

from hostile.disks import Disks  # noqa: E402
from hostile.tally import DISKS, LEAKS, PLANTED, SIGNAL_TALLY  # noqa: E402

TIMEOUT_S = 20.0
MARKER = "MMOPS_HOSTILE_CASE"
TEMP_GLOBS = ("*.tmp", ".*.tmp", "*.tmp.*", "*.part", "*.partial")
MODEL = "Qwen2.5-VL-7B-Instruct"


@dataclass
class Outcome:
    case: str
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    wall_s: float
    expect_rc: tuple[int, ...]
    hang: bool = False
    traceback: bool = False
    orphans: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def clear_error(self) -> bool:
        """An expected failure, told clearly: every check of the helper held."""
        return not self.problems and 0 not in self.expect_rc

    @property
    def worked(self) -> bool:
        return not self.problems and 0 in self.expect_rc


TALLY: list[Outcome] = []


def message_lines(text: str) -> list[str]:
    """Non-blank lines, without argparse's usage synopsis (it precedes its one-line error)."""
    out: list[str] = []
    in_usage = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        out.append(line)
    return out


def _tree(root: Path) -> set[str]:
    """Every entry under root (files, folders, links), as paths relative to it."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root)
        for name in (*dirnames, *filenames):
            found.add((rel / name).as_posix())
    return found


def _marked(token: str) -> list[psutil.Process]:
    """Live processes whose environment carries this case's marker."""
    hits = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == token and _alive(proc):
                hits.append(proc)
        except (psutil.Error, OSError):
            continue
    return hits


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} {' '.join(proc.cmdline())[:120]}"
    except psutil.Error:
        return f"pid {proc.pid}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hostile:
    """Runs one hostile case in its own folder (``root``): cwd, TMPDIR and state dir inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "cwd"
        self.tmp = root / "tmp"
        self.state = root / "state"
        for d in (self.cwd, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def run(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        expect_rc: int | tuple[int, ...],
        mention: Sequence[str] = (),
        where: str | None = "stderr",
        max_lines: int = 2,
        quiet_stdout: bool | None = None,
        stdin: bytes | None = None,
        close_stdin: bool = False,
        timeout: float = TIMEOUT_S,
        allow_new: Sequence[str] = (),
        env: dict[str, str] | None = None,
        during: Callable[[], None] | None = None,
    ) -> Outcome:
        """Run ``mmops ARGS`` and assert everything the module docstring lists; return the outcome.

        ``where``: "stderr" (an error message), "stdout" (a report naming the problem) or None
        (no message to judge: the input must simply work). ``allow_new``: globs, relative to the
        case folder, of what the command may create (a bundle, a run folder). ``during``: what
        the case does to the world while mmops runs (fill its disk), on a thread of its own.
        ``env`` may add a PYTHONPATH entry (before this checkout's).
        """
        argv = [sys.executable, "-m", "mmops", *map(os.fspath, args)]
        expected = (expect_rc,) if isinstance(expect_rc, int) else tuple(expect_rc)
        token = uuid.uuid4().hex
        extra = dict(env or {})
        child_env = {
            **os.environ,
            **extra,
            MARKER: token,
            "TMPDIR": str(self.tmp),
            "XDG_STATE_HOME": str(self.state),
            "NO_COLOR": "1",
            "PYTHONPATH": os.pathsep.join(
                p
                for p in (extra.get("PYTHONPATH", ""), str(REPO), os.environ.get("PYTHONPATH", ""))
                if p
            ),
        }
        before_files = _tree(self.root)
        before_kids = {p.pid for p in psutil.Process().children(recursive=True)}
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=child_env,
            stdin=None
            if close_stdin
            else (subprocess.PIPE if stdin is not None else subprocess.DEVNULL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a hang is killed with everything it started
            preexec_fn=(lambda: os.close(0)) if close_stdin else None,
        )
        hang = False
        acting = None
        failed: list[BaseException] = []
        if during is not None:

            def act() -> None:
                try:
                    during()
                except BaseException as exc:  # told as a problem of the case, below
                    failed.append(exc)

            acting = threading.Thread(target=act, daemon=True)
            acting.start()
        try:
            out_b, err_b = proc.communicate(input=stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            hang = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for p in _marked(token):  # what left the group (a server's own session) too
                with contextlib.suppress(psutil.Error):
                    p.kill()
            out_b, err_b = proc.communicate(timeout=10)
        if acting is not None:
            acting.join(timeout=30)
        wall = time.monotonic() - t0
        out = out_b.decode("utf-8", "replace")
        err = err_b.decode("utf-8", "replace")
        outcome = Outcome(
            case=os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
            argv=[os.fspath(a) for a in args],
            rc=None if hang else proc.returncode,
            stdout=out,
            stderr=err,
            wall_s=wall,
            expect_rc=expected,
            hang=hang,
        )
        self._judge(outcome, before_kids, token, before_files, allow_new)
        self._judge_message(outcome, mention, where, max_lines, quiet_stdout)
        if failed:
            outcome.problems.append(f"what the case did while mmops ran failed: {failed[0]!r}")
        TALLY.append(outcome)
        assert not outcome.problems, self._report(outcome)
        return outcome

    # -- the checks -------------------------------------------------------------------------

    def _judge(
        self,
        o: Outcome,
        before_kids: set[int],
        token: str,
        before_files: set[str],
        allow_new: Sequence[str],
    ) -> None:
        if o.hang:
            o.problems.append(f"hang: still running after {o.wall_s:.1f} s; killed")
        elif o.rc not in o.expect_rc:
            o.problems.append(f"exit code {o.rc}, expected {' or '.join(map(str, o.expect_rc))}")
        # Python prints an uncaught exception on stderr, from its first column. stdout may quote
        # a log's own traceback (a diagnose report), and serve's stderr the server's last lines,
        # indented: there only mmops' own frames count.
        own_frame = f'File "{REPO / "mmops"}'
        own = any(line.startswith("Traceback") for line in o.stderr.splitlines())
        if own or any(own_frame in text and "Traceback" in text for text in (o.stdout, o.stderr)):
            o.traceback = True
            o.problems.append("a Traceback was printed")
        # Survivors: our own new children, and anything carrying the marker (reparented to init).
        deadline = time.monotonic() + 2.0  # a child may be in the middle of exiting
        while True:
            kids = [
                p
                for p in psutil.Process().children(recursive=True)
                if p.pid not in before_kids and _alive(p)
            ]
            survivors = {p.pid: p for p in (*kids, *_marked(token))}
            if not survivors or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for p in survivors.values():
            o.orphans.append(_describe(p))
            with contextlib.suppress(psutil.Error):
                p.kill()
        if o.orphans:
            o.problems.append(f"processes left behind: {o.orphans}")
        # Files: nothing in TMPDIR, nothing new but what the case allows, no temp-looking file.
        leftovers = sorted(_tree(self.tmp))
        o.leftovers += [f"TMPDIR/{p}" for p in leftovers]
        for rel in sorted(_tree(self.root) - before_files):
            if rel.startswith(("tmp/",)):
                continue
            name = rel.rsplit("/", 1)[-1]
            temp = any(fnmatch.fnmatch(name, g) for g in TEMP_GLOBS)
            allowed = any(fnmatch.fnmatch(rel, g) for g in allow_new)
            if temp or not allowed:
                o.leftovers.append(rel)
        if o.leftovers:
            o.problems.append(f"files left behind: {o.leftovers}")

    def _judge_message(
        self,
        o: Outcome,
        mention: Sequence[str],
        where: str | None,
        max_lines: int,
        quiet_stdout: bool | None,
    ) -> None:
        err_lines = message_lines(o.stderr)
        if where == "stderr":
            if not err_lines:
                o.problems.append("no message on stderr")
            elif len(err_lines) > max_lines:
                o.problems.append(f"stderr message is {len(err_lines)} lines, over {max_lines}")
            if (quiet_stdout is None or quiet_stdout) and o.stdout.strip():
                o.problems.append("stdout is not empty beside an error")
            text = "\n".join(err_lines)
        elif where == "stdout":
            if len(err_lines) > max_lines:
                o.problems.append(f"stderr is {len(err_lines)} lines beside the report")
            text = o.stdout
        else:
            text = o.stdout + o.stderr
        missing = [m for m in mention if m not in text]
        if missing:
            o.problems.append(f"the message does not name {missing}")

    @staticmethod
    def _report(o: Outcome) -> str:
        return (
            f"mmops {' '.join(o.argv)}\n  problems: {'; '.join(o.problems)}\n"
            f"  rc={o.rc} in {o.wall_s:.2f} s\n  stdout: {o.stdout[-1500:]!r}\n"
            f"  stderr: {o.stderr[-1500:]!r}"
        )


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    """The one runner of this suite, in a fresh case folder."""
    return Hostile(tmp_path)


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[Disks]:
    """Small disks (tmpfs, or an injected error where mount is refused) under the case folder;
    every mount is undone after the case."""
    made = Disks(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A well-formed model directory (recorded Qwen2.5-VL-7B files, tiny real safetensors)."""
    from build_model_dir import build_model_dir  # tests/fixtures, on sys.path via tests/conftest

    return build_model_dir(MODEL, tmp_path / "models" / MODEL)


@pytest.fixture
def launch() -> list[str]:
    """Flags that make a good launch pass the doctor on any machine: the CPU backend, a free
    port. Each case adds one hostile input, so its exit code is that input's alone."""
    return ["--device", "cpu", "--port", str(free_port())]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (TALLY or SIGNAL_TALLY or LEAKS):
        return
    tr = terminalreporter
    tr.write_sep("-", "hostile inputs")
    if TALLY:
        _write_tally(tr)
    if DISKS:
        kinds = ", ".join(f"{DISKS.count(k)} on {k}" for k in sorted(set(DISKS)))
        tr.write_line(f"         state-dir cases (read-only, full disk): {kinds}")
    if SIGNAL_TALLY:
        by: dict[str, int] = {}
        for c in SIGNAL_TALLY:
            by[c.command] = by.get(c.command, 0) + 1
        per = ", ".join(f"{cmd} {k}" for cmd, k in by.items())
        survivors = sum(bool(c.survivors) for c in SIGNAL_TALLY)
        torn = sum(bool(c.torn) for c in SIGNAL_TALLY)
        told = sum(c.ended is not None for c in SIGNAL_TALLY if c.signal != "SIGKILL")
        lived = sum(c.signal != "SIGKILL" for c in SIGNAL_TALLY)
        tr.write_line(
            f"signals: {len(SIGNAL_TALLY)} cases ({per}), {survivors} with survivors, "
            f"{torn} with torn records, {told}/{lived} say how they ended where mmops lived"
        )
    if LEAKS:
        found = sum(LEAKS.values())
        tr.write_line(
            f"secrets: {len(PLANTED)} planted, {found} found in {len(LEAKS)} places "
            f"({', '.join(f'{k} {v}' for k, v in LEAKS.items())})"
        )


def _write_tally(tr: pytest.TerminalReporter) -> None:
    n = len(TALLY)
    clear = sum(o.clear_error for o in TALLY)
    worked = sum(o.worked for o in TALLY)
    tracebacks = sum(o.traceback for o in TALLY)
    hangs = sum(o.hang for o in TALLY)
    orphans = sum(bool(o.orphans) for o in TALLY)
    left = sum(bool(o.leftovers) for o in TALLY)
    other = sum(bool(o.problems) for o in TALLY)
    slowest = max(TALLY, key=lambda o: o.wall_s)
    tr.write_line(
        f"hostile: {n} cases, {clear} clear errors, {tracebacks} tracebacks, {hangs} hangs, "
        f"{orphans} orphans"
    )
    tr.write_line(
        f"         {worked} worked as they must, {left} left files behind, {other} with any "
        f"problem (xfail included); slowest {slowest.wall_s:.1f} s ({slowest.case})"
    )
    for o in TALLY:
        if o.problems:
            tr.write_line(f"  {o.case}: {'; '.join(o.problems)[:200]}")
