"""Child processes that cannot outlive mmops: a reaper between mmops and vLLM.

vLLM is a tree: the API server starts an EngineCore process, which starts workers (one per
TP rank). ``PR_SET_PDEATHSIG`` only covers a direct child, so on its own it would kill the API
server when mmops dies and leave the engine holding NPU/GPU memory. So the direct child of
mmops is this file run as a script, the *reaper*:

- it leads a new session and process group, which vLLM and its children inherit, so a stop
  signals the whole group at once (``killpg``) and Ctrl-C in mmops's terminal never reaches
  vLLM behind mmops's back;
- it sets ``PR_SET_PDEATHSIG`` on itself, then checks that mmops is still its parent (closing
  the race where mmops died before the prctl);
- it sets ``PR_SET_CHILD_SUBREAPER``, so descendants orphaned inside the tree are re-parented
  to it rather than to init, and it can reap and kill them;
- when its parent dies it sends SIGTERM to every descendant (by process group and by walking
  /proc, which also finds any that left the group with setsid), waits ``--grace`` seconds,
  then SIGKILLs what is left;
- when vLLM exits by itself, it gives stragglers the same treatment and exits with vLLM's
  status (128+N when vLLM died of signal N).

Group-wide stop signals from mmops (SIGINT, SIGTERM) reach the reaper too; it ignores them,
because the parent is alive and the vLLM child got the same signal. PDEATHSIG fires when the
*thread* that forked the child exits, not only the process, so the handler always checks
``getppid()`` instead of trusting the signal.

This file doubles as the reaper script, run as ``python -I -S proc.py``: keep its top-level
imports to the few stdlib modules the reaper needs, so it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REAPER_SIGNAL = signal.SIGTERM  # what the kernel sends the reaper when mmops dies
EXIT_SPAWN_FAILED = 127
EXIT_PARENT_GONE = 125
DEFAULT_GRACE_S = 5.0


def _prctl(option: int, arg: int) -> bool:
    """prctl(2) through libc; False where unavailable (not Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reaper_argv(argv: Sequence[str], grace_s: float = DEFAULT_GRACE_S) -> list[str]:
    """The command that runs ``argv`` under a reaper whose parent is this process."""
    return [
        sys.executable,
        "-I",  # isolated: PYTHON* env vars of the vLLM launch must not steer the reaper
        "-S",  # no site import: the reaper needs only the stdlib, and starts faster
        os.path.abspath(__file__),
        "--ppid",
        str(os.getpid()),
        "--grace",
        str(grace_s),
        "--",
        *argv,
    ]


# ------------------------------------------------------------------------ process trees


def _stat_fields(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of pid from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm may hold spaces and parens; fields after the last ')' are fixed.
    rest = data[data.rfind(b")") + 2 :].split()
    if len(rest) < 3 or rest[0] == b"Z":
        return None
    return int(rest[1]), int(rest[2])


def descendants(root: int, pgid: int | None = None) -> list[int]:
    """Live descendants of root (by parent links), plus members of pgid; root excluded."""
    children: dict[int, list[int]] = {}
    in_group: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ppid, group = fields
        children.setdefault(ppid, []).append(pid)
        if pgid is not None and group == pgid:
            in_group.append(pid)
    found: list[int] = []
    seen = {root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    found += [p for p in in_group if p not in seen]
    return found


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ------------------------------------------------------------------------------- reaper


class _ParentGone(Exception):
    pass


def _reap_until(deadline: float, me: int, pgid: int) -> list[int]:
    """Reap children until none of our descendants is alive or the deadline passes."""
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        left = descendants(me, pgid)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def _clean_tree(me: int, grace_s: float) -> None:
    """SIGTERM every descendant, SIGKILL what outlives grace_s, reap them all."""
    pgid = os.getpgrp()
    left = descendants(me, pgid)
    if not left:
        return
    _signal_all(left, signal.SIGTERM)
    left = _reap_until(time.monotonic() + grace_s, me, pgid)
    if left:
        _signal_all(left, signal.SIGKILL)
        _reap_until(time.monotonic() + 5.0, me, pgid)


def reaper_main(argv: Sequence[str]) -> int:
    """Entry point of the reaper script: ``--ppid P --grace S -- cmd...``."""
    args = list(argv)
    try:
        sep = args.index("--")
        opts, cmd = args[:sep], args[sep + 1 :]
        ppid = int(opts[opts.index("--ppid") + 1])
        grace = float(opts[opts.index("--grace") + 1]) if "--grace" in opts else DEFAULT_GRACE_S
    except (ValueError, IndexError):
        sys.stderr.write("mmops reaper: usage: --ppid PID [--grace S] -- COMMAND...\n")
        return 2
    if not cmd:
        sys.stderr.write("mmops reaper: no command\n")
        return 2

    dying = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal dying
        if dying or os.getppid() == ppid:
            return  # a group-wide stop from mmops: the vLLM child got it too
        dying = True
        raise _ParentGone

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    _prctl(PR_SET_PDEATHSIG, REAPER_SIGNAL)
    if os.getppid() != ppid:
        return EXIT_PARENT_GONE  # mmops died before the prctl took effect
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getpgrp() != os.getpid():
        os.setsid()  # normally done by the spawner (start_new_session); make sure

    me = os.getpid()
    status: int | None = None
    handled = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    try:
        # Block our signals across fork: the child must never run the reaper's handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        child = os.fork()
        if child == 0:
            try:
                for sig in handled:
                    signal.signal(sig, signal.SIG_DFL)
                # A stop that arrived meanwhile now acts with its default action, as it would
                # have on vLLM itself.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
                # vLLM's API server dies with the reaper even if the reaper is SIGKILLed alone.
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() != me:
                    os._exit(EXIT_PARENT_GONE)
                os.execvp(cmd[0], cmd)
            except OSError as exc:
                os.write(2, f"mmops reaper: cannot run {cmd[0]}: {exc.strerror}\n".encode())
            finally:
                os._exit(EXIT_SPAWN_FAILED)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        while status is None:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid == child:
                status = st
        _clean_tree(me, grace)  # stragglers of a vLLM that exited (e.g. an EngineCore)
    except _ParentGone:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        _clean_tree(me, grace)
        return EXIT_PARENT_GONE
    if status is None:
        return EXIT_SPAWN_FAILED
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


# ------------------------------------------------------------------------ mmops side


def describe_exit(code: int | None) -> str:
    """Human words for the reaper's exit status."""
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {_signame(-code)}"
    if code > 128 and code - 128 < signal.NSIG:
        return f"killed by {_signame(code - 128)} (exit {code})"
    return f"exit code {code}"


def _signame(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to a process group; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_tree(root: int) -> list[int]:
    """SIGKILL root's group, and every descendant of root even outside the group."""
    victims = descendants(root, root)
    _signal_all([root, *victims], signal.SIGKILL)
    signal_group(root, signal.SIGKILL)
    return victims


if __name__ == "__main__":
    sys.exit(reaper_main(sys.argv[1:]))
