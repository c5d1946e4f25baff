"""Run folders: what one `mmops serve` leaves behind, readable while it runs and after a kill.

Layout of ``<root>/<UTC time>-<name>/`` (root: ``--state-dir`` or
``$XDG_STATE_HOME/mmops/runs``, default ``~/.local/state/mmops/runs``)::

    plan.json        the plan of the first attempt (argv, env delta; secrets masked)
    preflight.json   the doctor report, or {"skipped": true}
    attempt-N.log    attempt N's full stdout+stderr, appended line by line, never truncated
    events.jsonl     one JSON object per line: time, state, attempt, reason, plus fields

JSON files are written atomically (temp file + rename), so a reader never sees half of one;
events.jsonl and the logs are append-only, so a kill loses at most the line being written. A
write the disk refuses (read-only, full) is a :class:`~mmops.errors.RecordError` naming the
path and what to do, and leaves no temp file and no torn line behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from mmops.errors import RecordError, UsageError
from mmops.serve.events import Json

_ATTEMPT_RE = re.compile(r"^attempt-(\d+)\.log$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def state_root(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where run folders live: --state-dir, else $XDG_STATE_HOME/mmops/runs."""
    if state_dir:
        return Path(state_dir).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return Path(base) / "mmops" / "runs"


def utc_stamp(t: float | None = None) -> str:
    """Sortable UTC time for folder names: 20261124T101530Z."""
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ"
    )


def record_error(path: Path, exc: OSError) -> RecordError:
    """The one-line error for a run folder the disk will not take, with what to do about it."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.EEXIST:  # mkdir -p over a file: EEXIST says it badly
        why = "not a directory"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space there, or pass --state-dir DIR on another disk"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        fix = "pass --state-dir DIR naming a directory"
    else:
        fix = "pass --state-dir DIR where mmops may write"
    return RecordError(f"cannot write the run record {path}: {why}", fix)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so readers see the old file or the new one, never a torn one; OSError if the
    disk refuses (the temp file removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


@dataclass
class Run:
    """One run folder, open for writing by the serve that owns it."""

    path: Path

    @classmethod
    def create(cls, root: Path, name: str, now: float | None = None) -> Run:
        """A fresh folder named <UTC time>-<name>; never reuses an existing one."""
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, full, or a file in the way
            raise record_error(root, exc) from None
        slug = _UNSAFE.sub("-", name).strip("-.") or "server"
        base = f"{utc_stamp(now)}-{slug}"
        for n in range(1, 1000):
            path = root / (base if n == 1 else f"{base}.{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise record_error(root, exc) from None
            return cls(path)
        raise UsageError(f"--state-dir {root}: cannot create a run folder named {base}")

    def discard_if_empty(self) -> None:
        """Remove the folder if nothing could be written into it (a refused first write)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    def attempt_log(self, attempt: int) -> Path:
        return self.path / f"attempt-{attempt}.log"

    def write_json(self, filename: str, data: object) -> Path:
        """Write ``filename`` atomically; RecordError if the disk refuses."""
        path = self.path / filename
        try:
            write_json_atomic(path, data)
        except OSError as exc:
            raise record_error(path, exc) from None
        return path

    def open_attempt_log(self, attempt: int) -> BinaryIO:
        """Unbuffered append: every write reaches the file at once, and nothing is truncated."""
        path = self.attempt_log(attempt)
        try:
            return open(path, "ab", buffering=0)  # noqa: SIM115 - caller closes
        except OSError as exc:
            raise record_error(path, exc) from None

    def append_event(self, record: Mapping[str, Json]) -> None:
        """Append one whole line to events.jsonl; RecordError if the disk refuses, and then a
        line cut short by a full disk is cut off again, so every line stays whole JSON."""
        data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        path = self.events_path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise record_error(path, exc) from None
        size: int | None = None
        try:
            size = os.fstat(fd).st_size
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        except OSError as exc:
            if size is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            raise record_error(path, exc) from None
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- reading


def list_runs(root: Path) -> list[Path]:
    """Run folders under root, oldest first (names start with a sortable UTC time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].isdigit())


def find_run(ref: str | None, root: Path) -> Path:
    """A run folder from a path, a folder name or a unique prefix/suffix of one; newest if None."""
    if ref:
        direct = Path(ref).expanduser()
        if direct.is_dir() and ((direct / "events.jsonl").exists() or any(attempts(direct))):
            return direct
        if os.sep in ref:  # a path, not a name: say what is wrong with it, not with the root
            what = "not a run folder" if direct.exists() else "no such run folder"
            raise UsageError(f"{ref}: {what} (a run folder has events.jsonl or attempt-N.log)")
    runs = list_runs(root)
    if not runs:
        raise UsageError(
            f"no runs under {root} (start one with `mmops serve`, or pass --state-dir)"
        )
    if not ref:
        return runs[-1]
    hits = [p for p in runs if p.name == ref] or [p for p in runs if ref in p.name]
    if len(hits) == 1 or (hits and hits[-1].name == ref):
        return hits[-1]
    if not hits:
        recent = ", ".join(p.name for p in runs[-5:])
        raise UsageError(f"run {ref!r}: not found under {root} (recent: {recent})")
    raise UsageError(f"run {ref!r} is ambiguous: {', '.join(p.name for p in hits[-5:])}")


def attempts(run_dir: Path) -> list[int]:
    """Attempt numbers with a log in this run folder, ascending."""
    if not run_dir.is_dir():
        return []
    nums = []
    for p in run_dir.iterdir():
        m = _ATTEMPT_RE.match(p.name)
        if m:
            nums.append(int(m.group(1)))
    return sorted(nums)
