"""Read vLLM logs as they come: files, gzip, stdin, run folders, memory; strip ANSI and prefixes.

Two levels, both streaming:

- ``open_inputs`` + ``read_chunks`` hand out large byte chunks that end on line boundaries, for
  scanners that must go at disk speed (``mmops.diagnose.scan``); ``iter_lines`` gives numbered,
  decoded lines for everything else. ``Source.from_lines`` reads lines already in memory (the
  supervisor's tail of an attempt) through the same path, as if they were a file.
- ``parse_line`` / ``normalize`` take one raw line and peel off what real logs put in front of
  the message: ANSI colours (also the bare ``[36m`` left when a paste lost the escape byte),
  container and journald timestamps, ``docker compose`` service columns, vLLM's process prefixes
  (``(EngineCore_DP0 pid=1)``, ``(VllmWorker TP1 pid=2)``, ``(Worker_TP3 pid=3)``,
  ``(APIServer pid=4)``, Ray's ``(RayWorkerWrapper pid=5, ip=...)``), ``[rank0]:``, c10 and
  vLLM logger headers (``ERROR 03-05 07:15:39 [file.py:123]``), uvicorn's ``INFO:     ``.

Bad input (missing file, a directory that is not a run folder, unreadable or binary data) raises
``MmopsError`` with one line naming the file.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from mmops.errors import MmopsError

CHUNK_BYTES = 8 * 1024 * 1024
# A line that outgrows a chunk (binary junk, a minified blob) is cut here: memory stays bounded.
MAX_LINE_BYTES = 1024 * 1024
STDIN = "-"

_ATTEMPT_RE = re.compile(r"^attempt-(\d+)\.log(?:\.gz)?$")


@dataclass(frozen=True)
class Source:
    """One input: a file on disk, standard input (``path`` None), or lines held in memory."""

    label: str
    path: Path | None
    # In-memory lines (``from_lines``): one element per line, without its newline.
    lines: Sequence[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_lines(cls, label: str, lines: Sequence[str]) -> Source:
        """A source over ``lines``, read like a file holding them; line numbers count from 1."""
        return cls(label, None, lines)


class LogLine(NamedTuple):
    """One log line with its prefixes parsed off. ``text`` is the message that patterns see."""

    text: str
    source: str | None = None  # process label, e.g. "EngineCore_DP0", "VllmWorker TP1"
    pid: int | None = None
    rank: int | None = None
    level: str | None = None  # DEBUG / INFO / WARNING / ERROR / CRITICAL
    ts: str | None = None  # the first timestamp seen, as written
    indent: int = 0  # spaces before the message: traceback frames and code are indented


# ----------------------------------------------------------------------------- inputs


def _run_folder_attempts(folder: Path) -> list[tuple[int, Path]]:
    """The folder's attempt logs with their numbers, in attempt order."""
    found = []
    for entry in folder.iterdir():
        m = _ATTEMPT_RE.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), entry))
    return sorted(found)


LOG_SUFFIXES = (".log", ".txt", ".out", ".err", ".gz")
MAX_FOLDER_LOGS = 256


def _log_files(folder: Path, raw: str) -> list[Path]:
    """The log files directly inside ``folder`` (not hidden), oldest first, so that the last
    word (a crash after an earlier healthy start, or the reverse) comes from the newest file;
    MmopsError when none."""
    try:
        found = sorted(
            (
                p
                for p in folder.iterdir()
                if p.name.endswith(LOG_SUFFIXES) and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: (p.stat().st_mtime, p.name),
        )
    except OSError as exc:
        raise MmopsError(f"{raw}: cannot list the directory ({exc.strerror})") from None
    if not found:
        raise MmopsError(
            f"{raw}: no log files in this directory (looked for {', '.join(LOG_SUFFIXES)} "
            "directly inside), and it is no mmops run folder (attempt-N.log)"
        )
    if len(found) > MAX_FOLDER_LOGS:
        raise MmopsError(
            f"{raw}: {len(found)} log files; name the ones to read (at most {MAX_FOLDER_LOGS})"
        )
    return found


def open_inputs(paths: Sequence[str], attempt: int | None = None) -> list[Source]:
    """Resolve command-line inputs to sources; raise MmopsError naming the first bad one.

    A run folder contributes its last attempt's log, or attempt ``attempt`` when given; any other
    folder, the log files directly inside it (one per rank or pod), oldest first.
    """
    if not paths:
        paths = [STDIN]
    sources: list[Source] = []
    for raw in paths:
        if raw == STDIN:
            sources.append(Source("<stdin>", None))
            continue
        path = Path(raw)
        if path.is_dir():
            attempts = _run_folder_attempts(path)
            if not attempts:
                # A folder of collected logs (one per rank or per pod): read them together.
                if attempt is not None:
                    raise MmopsError(f"--attempt needs a run folder, and {raw} has no attempt-N.log")
                sources += [Source(str(p), p) for p in _log_files(path, raw)]
                continue
            if attempt is None:
                chosen = attempts[-1][1]
            else:
                by_num = dict(attempts)
                if attempt not in by_num:
                    valid = ", ".join(str(n) for n in sorted(by_num))
                    raise MmopsError(f"{raw}: no attempt {attempt} (attempts: {valid})")
                chosen = by_num[attempt]
            sources.append(Source(str(chosen), chosen))
            continue
        if attempt is not None:
            raise MmopsError(f"--attempt needs a run folder, and {raw} is a file")
        if not path.exists():
            raise MmopsError(f"{raw}: no such file")
        if not (path.is_file() or path.is_fifo() or path.is_char_device()):
            # Pipes are fine: `mmops diagnose <(kubectl logs pod)` passes /dev/fd/N.
            raise MmopsError(f"{raw}: not a regular file or pipe")
        if not os.access(path, os.R_OK):
            raise MmopsError(f"{raw}: not readable (permission denied)")
        sources.append(Source(raw, path))
    return sources


def _looks_binary(sample: bytes) -> bool:
    """Like grep: NUL bytes or many control characters mean this is not text."""
    if not sample:
        return False
    if sample.count(b"\x00") > max(1, len(sample) // 1000):
        return True
    ctrl = sum(sample.count(bytes([c])) for c in (*range(1, 8), 11, *range(14, 27), *range(28, 32)))
    return ctrl > len(sample) * 0.10


class _LineStream:
    """``read(n)`` over in-memory lines as the bytes of a file holding them, one per line.

    Encoded a batch at a time, so memory stays at about one chunk whatever the number of lines.
    """

    def __init__(self, lines: Sequence[str]) -> None:
        self._lines = iter(lines)
        self._rest = b""

    def read(self, n: int) -> bytes:
        batch: list[str] = []
        size = len(self._rest)
        if size < n:
            for line in self._lines:
                batch.append(line)
                size += len(line) + 1  # at least one byte per character
                if size >= n:
                    break
        block = self._rest
        if batch:
            text = "\n".join(batch) + "\n"
            if text.count("\n") != len(batch):  # a newline inside an element: keep one per line
                text = "\n".join(line.replace("\n", " ") for line in batch) + "\n"
            block += text.encode("utf-8", "replace")
        self._rest = block[n:]
        return block[:n]

    def close(self) -> None:
        pass


class _Stream(Protocol):
    """What read_chunks reads: a file, stdin, a gzip reader or a _LineStream."""

    def read(self, n: int, /) -> bytes: ...
    def close(self) -> None: ...


def _open_stream(source: Source) -> _Stream:
    if source.lines is not None:
        return _LineStream(source.lines)
    try:
        raw: BinaryIO = sys.stdin.buffer if source.path is None else open(source.path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise MmopsError(f"{source.label}: cannot open ({exc.strerror})") from None
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def read_chunks(source: Source, chunk_bytes: int | None = None) -> Iterator[bytes]:
    """Yield byte chunks of ``source`` that end on a line boundary (the last may not).

    Files, gzip, stdin and in-memory lines alike. gzip is detected by its magic bytes; binary
    data raises MmopsError. Memory stays at about one chunk plus one line (lines beyond
    MAX_LINE_BYTES are cut).
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    stream = _open_stream(source)
    carry = b""
    first = True
    skipping = False  # inside a line that was cut: drop bytes up to its newline
    try:
        while True:
            try:
                block = stream.read(chunk_bytes)
            except (OSError, EOFError, zlib.error) as exc:
                corrupt = isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile))
                kind = "corrupt gzip data" if corrupt else "read error"
                raise MmopsError(f"{source.label}: {kind} ({exc})") from None
            if first:
                first = False
                if _looks_binary(block[:65536]):
                    raise MmopsError(f"{source.label}: binary data, not a text log")
            if not block:
                break
            if skipping:
                nl = block.find(b"\n")
                if nl < 0:
                    continue
                block, skipping = block[nl + 1 :], False
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
            else:
                carry = data[cut + 1 :]
                yield data[: cut + 1]
            if len(carry) > MAX_LINE_BYTES:
                yield carry[:MAX_LINE_BYTES] + b"\n"
                carry, skipping = b"", True
        if carry:
            yield carry
    finally:
        if source.path is not None:
            stream.close()


def decode(raw: bytes) -> str:
    """Bytes of one line to text: invalid UTF-8 replaced, CR/LF dropped."""
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def iter_lines(source: Source) -> Iterator[tuple[int, str]]:
    """Numbered (from 1), decoded lines of ``source``, streaming."""
    lineno = 0
    for chunk in read_chunks(source):
        for raw in chunk.splitlines():
            lineno += 1
            yield lineno, decode(raw)


# ----------------------------------------------------------------------------- prefixes

# Real colour codes, and the bare "[36m" a copy-paste leaves when the ESC byte is lost.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\[(?:\d{1,2}(?:;\d{1,2})*)?m")

# Each is anchored at the start; tried in a loop until none applies.
_ISO_TS = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
    r"(?:\s?(?:Z|[+-]\d{2}:?\d{2}))?)(?:\s+[A-Z]{2,5}(?=\s))?\s+"
)
# journald short format: "Mar 05 07:15:39 host unit[123]: "
_JOURNALD = re.compile(
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) \S+ [\w.@/-]+(?:\[(?P<pid>\d+)\])?: "
)
# docker compose: "vllm-1  | "
_COMPOSE = re.compile(r"^(?P<svc>[A-Za-z0-9][\w.-]*)\s+\| ")
# vLLM / Ray process prefix: "(EngineCore_DP0 pid=123)", "(VllmWorker rank=1 pid=7)",
# "(RayWorkerWrapper pid=5, ip=10.0.0.1)"; the inside is split in Python (no backtracking).
_PROC = re.compile(r"^\((?P<proc>[A-Za-z][^()]{0,160})\)\s?")
_PROC_INNER = re.compile(r"^(?P<src>.*?)\s+pid=(?P<pid>\d+)(?:,.*)?$")
_RANK = re.compile(r"^\[rank(?P<rank>\d+)\]:\s?")
# c10 / glog header: "[W220 02:16:08.680800943 NPUStream.cpp:487] ", "[E ProcessGroupNCCL.cpp:563] "
_C10 = re.compile(r"^\[(?P<lvl>[EWIF])(?:\d{3,4})?(?: [\d:.]+)? [\w./-]+:\d+\]\s?")
# vLLM logger: "ERROR 03-05 07:15:39 [file.py:123] " (old: "INFO 03-05 07:15:39 file.py:123] ";
# with a dated format, as vllm-ascend deployments log (dev2/211): "ERROR 2026-03-02 22:27:34.901 [f.py:1] ")
_VLLM = re.compile(
    r"^(?P<lvl>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL) (?P<ts>(?:\d{4}-)?\d{2}-\d{2} \d{2}:\d{2}:\d{2})"
    r"(?:\.\d+)? \[?[\w./<>-]+:\d+\]\s?"
)
# uvicorn / logging.basicConfig: "INFO:     ", "ERROR:root:"
_UVICORN = re.compile(r"^(?P<lvl>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?:[\w.]+:)?\s*")
# LLaMA-Factory "[WARNING|logging.py:329] 2025-02-20 02:13:18,253 >> "
_BRACKET_LVL = re.compile(
    r"^\[(?P<lvl>DEBUG|INFO|WARNING|ERROR|CRITICAL)\|[\w.]+:\d+\] (?P<ts>[\d-]+ [\d:,.]+) >> "
)
# "2025-02-20 02:13:22 - INFO - name - " (after _ISO_TS took the time: "- INFO - name - ")
_DASH_LVL = re.compile(r"^- (?P<lvl>DEBUG|INFO|WARNING|ERROR|CRITICAL) - [\w.]+ - ")
# Xinference "xinference.api.restful_api 3118895 ERROR    " (after _ISO_TS)
_NAME_PID_LVL = re.compile(r"^[\w.]+ \d+ (?P<lvl>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+")
# DeepSpeed "[2025-02-20 02:13:48,555] [INFO] [logging.py:128:log_dist] "
_DS = re.compile(r"^\[(?P<ts>\d{4}-\d{2}-\d{2} [\d:,.]+)\] \[(?P<lvl>[A-Z]+)\] (?:\[[^\]]*\] )?")

_MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
_C10_LEVEL = {"E": "ERROR", "W": "WARNING", "I": "INFO", "F": "CRITICAL"}
_WORKER_RANK = re.compile(r"(?:TP|rank=|Worker-|DP)(\d+)")

# Which prefix patterns can start with a given first character (a line tries only those).
_BY_FIRST = {
    "(": (_PROC,),
    "[": (_RANK, _C10, _BRACKET_LVL, _DS),
    "-": (_DASH_LVL,),
}
_DIGIT_FIRST = (_ISO_TS, _COMPOSE)
_UPPER_FIRST = (_JOURNALD, _COMPOSE)  # vLLM and uvicorn levels are _FAST's
_LOWER_FIRST = (_COMPOSE, _NAME_PID_LVL)


def _prefixes_for(first: str) -> tuple[re.Pattern[str], ...]:
    found = _BY_FIRST.get(first)
    if found is not None:
        return found
    if first.isdigit():
        return _DIGIT_FIRST
    if first.isupper():
        return _UPPER_FIRST
    if first.isalpha():
        return _LOWER_FIRST
    return ()


def strip_ansi(line: str) -> str:
    """Remove ANSI escape sequences (and bare ``[36m`` remnants)."""
    if "[" not in line:
        return line
    return _ANSI.sub("", line)


# The common vLLM shape in one match: "(Proc pid=1) [rank0]: ERROR 03-05 07:15:39 [f.py:1] "
# or "(Proc pid=1) INFO:     "; anything else goes through the per-prefix patterns above.
_FAST = re.compile(
    r"(?:\((?P<proc>[A-Za-z][^()]{0,160})\)\s?)?(?:\[rank(?P<rank>\d+)\]:\s?)?"
    r"(?:(?P<lvl>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)"
    r"(?: (?P<ts>(?:\d{4}-)?\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.\d+)? \[?[\w./<>-]+:\d+\]\s?|:\s+))?"
)


def parse_line(raw: str) -> LogLine:
    """Split one raw line into its message and what its prefixes say (source, pid, level, time)."""
    body = strip_ansi(raw.rstrip("\r\n"))
    text = body.lstrip()
    lead = len(body) - len(text)
    consumed = False
    source = pid = rank = level = ts = None
    for _ in range(8):  # prefixes nest at most a few deep; bounded in case a regex matches empty
        if not text:
            break
        m = _FAST.match(text)
        if m is not None and m.end():
            groups = m.groupdict()
            proc = groups["proc"]
            if proc is not None:
                inner = _PROC_INNER.match(proc) if "pid=" in proc else None
                if inner is None:  # "(something)" that is not a process prefix: stop here
                    if m.start("proc") == 0 and not (groups["rank"] or groups["lvl"]):
                        break
                    m = None
                else:
                    groups = {**groups, **inner.groupdict()}
        if m is None or not m.end():
            m = None
            for rx in _prefixes_for(text[0]):
                if (rx is _COMPOSE and "| " not in text[:80]) or (
                    rx is _JOURNALD and text[:3] not in _MONTHS
                ):
                    continue
                found = rx.match(text)
                if found is None or not found.end():
                    continue
                groups = found.groupdict()
                if rx is _PROC:
                    inner = _PROC_INNER.match(groups["proc"]) if "pid=" in groups["proc"] else None
                    if inner is None:
                        continue
                    groups = inner.groupdict()
                m = found
                break
            if m is None:
                break
        if groups.get("ts") and ts is None:
            ts = groups["ts"]
        lvl = groups.get("lvl")
        if lvl and level is None:
            level = _C10_LEVEL.get(lvl, "WARNING" if lvl == "WARN" else lvl)
        if groups.get("pid") and pid is None:
            pid = int(groups["pid"])
        if groups.get("src") and source is None:
            source = groups["src"].strip()
            wr = _WORKER_RANK.search(source)
            if wr and rank is None:
                rank = int(wr.group(1))
        if groups.get("rank") and rank is None:
            rank = int(groups["rank"])
        text = text[m.end() :]
        consumed = True
        if m.re is _FAST:
            # After a vLLM / uvicorn header only another (proc), [rank] or c10 header follows.
            rest = text.lstrip()
            if rest[:1] not in ("(", "["):
                break
            text = rest
    stripped = text.strip()
    indent = len(text) - len(text.lstrip()) if consumed else lead
    return LogLine(stripped, source, pid, rank, level, ts, indent)


def normalize(raw: str) -> str:
    """The message of one raw line: ANSI, CRLF and known prefixes removed."""
    return parse_line(raw).text
