"""Running external tools (npu-smi, nvidia-smi) behind one injectable seam.

Detection code never calls ``subprocess`` itself: it takes a ``CommandRunner``. Production
passes ``system_runner``; tests pass a ``ReplayRunner`` that answers from recorded outputs.
A runner never raises for a missing binary or a timeout: those come back in ``error``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class CommandResult:
    """What one command did. ``error`` is set when it did not run to completion.

    ``returncode`` is None when the process never ran ("not found") or was killed on timeout.
    """

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0

    @property
    def output(self) -> str:
        """stdout and stderr together: tools disagree about where their errors go."""
        return "\n".join(part for part in (self.stdout, self.stderr) if part.strip())


class CommandRunner(Protocol):
    def __call__(self, argv: list[str], timeout: float) -> CommandResult: ...


def system_runner(argv: list[str], timeout: float) -> CommandResult:
    """Run ``argv`` without a shell; missing binaries and timeouts become ``error``."""
    args = tuple(argv)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        return CommandResult(args, None, "", "", "not found")
    except PermissionError:
        return CommandResult(args, None, "", "", "permission denied")
    except subprocess.TimeoutExpired as exc:
        return CommandResult(
            args, None, _text(exc.stdout), _text(exc.stderr), f"timed out after {timeout:g}s"
        )
    except OSError as exc:  # e.g. ENOEXEC on a broken binary
        return CommandResult(args, None, "", "", f"could not run: {exc.strerror or exc}")
    return CommandResult(args, proc.returncode, proc.stdout, proc.stderr)


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


@dataclass(frozen=True)
class Recording:
    """A recorded answer: stdout (text or a file), stderr, exit status, or a runner error."""

    stdout: str | Path = ""
    stderr: str = ""
    returncode: int | None = 0
    error: str | None = None


Answer = Recording | CommandResult | Path | str


class ReplayRunner:
    """Answer commands from recordings, for tests.

    Keys are argv prefixes: ``("npu-smi", "info")`` or ``("nvidia-smi", "--query-gpu")``.
    A key element matches an argv element that equals it or starts with it plus ``=``, so
    ``--query-gpu`` matches ``--query-gpu=index,...``. The longest matching key wins. A value is
    a Path (its text is stdout, exit 0), a str (stdout), a ``Recording`` or a ``CommandResult``.
    An unmatched command behaves like a binary that is not installed. Calls are kept in
    ``calls`` so tests can assert what was run.
    """

    def __init__(self, answers: Mapping[Sequence[str], Answer]):
        self._answers = {tuple(key): value for key, value in answers.items()}
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: list[str], timeout: float) -> CommandResult:
        args = tuple(argv)
        self.calls.append(args)
        best: tuple[str, ...] | None = None
        for key in self._answers:
            if _prefix_matches(key, args) and (best is None or len(key) > len(best)):
                best = key
        if best is None:
            return CommandResult(args, None, "", "", "not found")
        answer = self._answers[best]
        if isinstance(answer, CommandResult):
            return CommandResult(
                args, answer.returncode, answer.stdout, answer.stderr, answer.error
            )
        if isinstance(answer, (Path, str)):
            answer = Recording(stdout=answer)
        stdout = answer.stdout
        if isinstance(stdout, Path):
            stdout = stdout.read_text(encoding="utf-8")
        return CommandResult(args, answer.returncode, stdout, answer.stderr, answer.error)


def _prefix_matches(key: tuple[str, ...], argv: tuple[str, ...]) -> bool:
    if len(key) > len(argv):
        return False
    return all(a == k or a.startswith(k + "=") for k, a in zip(key, argv[: len(key)], strict=True))
