"""Explain a vLLM / vllm-ascend log the way an on-call engineer would: verdict, cause, fix.

The scan is streaming and bounded in memory. Big chunks of bytes are searched with ONE compiled
regex (``_Prefilter``) built from a literal each signature pattern needs
(``signatures.prefilter_requirements``) plus a few gates (ERROR, exceptions, tracebacks); each
literal enters the regex at its rarest byte in this log, so Python's regex engine skips ahead
with a first-byte set test instead of trying dozens of alternatives at every byte. Only lines
holding a literal are decoded, stripped of prefixes and matched against the table. What is
kept: per finding the first few evidence lines and a count, the markers (start, stop, failed
requests), facts, the first ERROR line and the last exception with the tail of its traceback.

Ranking (``_rank``) looks at a window: after the last ``Application startup complete`` when
the server started, and before a requested stop when one came. The root cause is the first
strong cause in it; a secondary cause (a collective watchdog, often the echo of another rank)
only when there is no strong one; a weak hint (a harmless hub lookup, an aiohttp frame) only
when something else failed. Consequences (EngineDeadError, dead workers, 500s) follow; with no
cause at all, "the engine died" leads. A device fault on a server that went on serving is a
running error, not a crash. An error no signature knows gives the verdict ``unknown`` with the
last exception and the first ERROR line, never a guess.
"""

from __future__ import annotations

import bisect
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import NamedTuple, TypeGuard, TypeVar

from mmops.diagnose.logread import (
    LogLine,
    Source,
    decode,
    iter_lines,
    normalize,
    open_inputs,
    parse_line,
    read_chunks,
)
from mmops.diagnose.phases import PhaseTracker, phase_index
from mmops.diagnose.table import (
    TIERS,
    FindingRole,
    LineMatch,
    Requirement,
    Signature,
    Tier,
    frame_matches,
    framed_positions,
    match_text,
    prefilter_requirements,
    render_fix,
    resolve_remedy,
    tally_positions,
)
from mmops.errors import MmopsError
from mmops.launch.allocator import merge_alloc_conf

VERDICTS = ("started", "requested-stop", "incomplete", "crash", "running-errors", "unknown")
EXIT_CODES = {
    "started": 0,
    "requested-stop": 0,
    "incomplete": 3,  # cut mid-start with no error: not known to be fine
    "crash": 3,
    "running-errors": 3,
    "unknown": 3,
}
# Start-up phases are read from the first this many bytes of each file (or until `ready`): a
# huge serving log that never logged its start would otherwise cost a regex pass over all of it.
PHASE_SCAN_BYTES = 2 * 1024 * 1024  # a start-up log up to `ready` is far smaller
CODE_SCAN_LINES = 200_000  # lines read again for Ascend error codes when nothing else matched
SUSTAINED_4XX = 20  # this many 4xx answers in a window is a pattern, not one client's mistake

MAX_EVIDENCE = 8  # evidence lines kept per finding (the first ones; the count covers all)
MAX_TEXT = 1000  # characters of one evidence line
SAMPLE_BYTES = 1024 * 1024  # of the first chunk, to count bytes for the pre-filter
LITERAL_SAMPLE_BYTES = 256 * 1024  # ... and literals
TRACEBACK_TAIL = 12  # traceback lines kept for the last exception

# Lines worth a look besides signature literals: ERROR lines, exceptions, traceback headers.
_N = TypeVar("_N", int, float)
# An open traceback's process: (source label, pid, process label).
_TbKey = tuple[str, int | None, str | None]
_GATES = ("ERROR", "CRITICAL", "Error", "Exception", "Traceback (most recent call last)")
_EXC = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<exc>[A-Z]\w*(?:Error|Exception|Interrupt))(?::\s|:?$)")
_TB = "Traceback (most recent call last)"
# Facts where a later line overrides an earlier one (a second export, vLLM's own "Set ..." line).
_LAST_WINS = frozenset({"npu_alloc_conf"})
_TS_ANY = re.compile(
    rb"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})|\b(\d{2}-\d{2} \d{2}:\d{2}:\d{2})\b"
)


class Evidence(NamedTuple):
    file: str
    line: int
    text: str

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "text": self.text}


@dataclass
class Finding:
    """One signature seen in the log, with its role in this incident."""

    signature: Signature
    role: FindingRole
    captures: dict[str, str]
    evidence: list[Evidence]
    count: int
    weak: bool
    fix: str
    auto_remedy: str | None

    @property
    def id(self) -> str:
        return self.signature.id

    def to_json(self) -> dict:
        sig = self.signature
        return {
            "id": sig.id,
            "title": sig.title,
            "role": self.role,
            "meaning": sig.meaning,
            "fix": self.fix,
            "auto_remedy": self.auto_remedy,
            "evidence": [e.to_json() for e in self.evidence],
        }


@dataclass
class Incident:
    """What happened: the verdict, findings (cause first, then consequences) and facts."""

    verdict: str
    findings: list[Finding]
    facts: dict

    @property
    def cause(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "findings": [f.to_json() for f in self.findings],
            "facts": self.facts,
        }


# ----------------------------------------------------------------------------- scanner


class _Prefilter:
    """One regex over raw bytes that finds every line holding a literal some pattern needs.

    ``requirements``: per pattern, (signature position, options); each option is a literal set
    one of whose strings every matching line holds. Per pattern the option whose literals are
    rarest in this log is searched for (a candidate line costs a decode and a match; a literal
    in every access-log line would make every line a candidate). The regex enters each literal
    at one "anchor" byte, and the anchors are picked so that their total count in the log is
    small: every position holding an anchor byte costs the regex engine a try, all others are
    skipped by its first-byte set test.
    """

    def __init__(self, requirements: Sequence[Requirement], sample: bytes) -> None:
        reqs = [
            (pos, [tuple(sorted({a.encode("utf-8") for a in opt})) for opt in options])
            for pos, options in requirements
            if options
        ]
        lines_sample = sample[:LITERAL_SAMPLE_BYTES]
        all_bytes = {b for _, options in reqs for opt in options for lit in opt for b in lit}
        freq = {b: sample.count(bytes([b])) + 1 for b in all_bytes}
        occ: dict[bytes, int] = {}
        for _, options in reqs:
            for opt in options:
                for lit in opt:
                    if lit not in occ:
                        occ[lit] = lines_sample.count(lit)

        def spots(lit: bytes) -> bytes:  # anchors leave 3+ bytes to compare
            return lit[: max(1, len(lit) - 2)]

        def cost(opt: tuple[bytes, ...]) -> tuple[int, int]:
            # First the lines it selects (each costs a decode and a match), then how often
            # its best anchor byte occurs (each occurrence costs the regex a try).
            # Literals that enter at the same byte share its tries: count each anchor once.
            anchors = {min(spots(lit), key=lambda b: freq[b]) for lit in opt}
            return sum(occ[lit] for lit in opt), sum(freq[b] for b in anchors)

        # Per pattern: the option that costs least in this log.
        picked = [(pos, min(options, key=cost)) for pos, options in reqs]
        literals: dict[bytes, set[int]] = {}
        for pos, opt in picked:
            for lit in opt:
                literals.setdefault(lit, set()).add(pos)
        # Each literal enters at its rarest byte in this log. (A set-cover that shares anchors
        # between literals looks cheaper but picks common letters that many literals contain;
        # the scan pays for every occurrence of every anchor, so rarity is what counts.)
        chosen = {min(spots(lit), key=lambda b: freq[b]) for lit in literals}
        by_anchor: dict[int, list[tuple[bytes, bytes, frozenset[int]]]] = {}
        for lit, positions in literals.items():
            k = min((i for i in range(len(spots(lit))) if lit[i] in chosen),
                    key=lambda i: (freq[lit[i]], i))  # fmt: skip
            by_anchor.setdefault(lit[k], []).append((lit[k:], lit[:k], frozenset(positions)))
        # One group per anchor byte: at a candidate position the engine tests each anchor once,
        # then only that anchor's few continuations.
        groups = []
        for anchor, entries in sorted(by_anchor.items()):
            rests = sorted({suffix[1:] for suffix, _, _ in entries}, key=len, reverse=True)
            groups.append(
                re.escape(bytes([anchor])) + b"(?:" + b"|".join(re.escape(r) for r in rests) + b")"
            )
        self.regex = re.compile(b"|".join(groups))
        self.by_anchor = by_anchor

    def _at(self, chunk: bytes, p: int) -> set[int] | None:
        """Signature positions of the literals that occur at ``p`` (None: a false alarm)."""
        found: set[int] | None = None
        for suffix, prefix, positions in self.by_anchor[chunk[p]]:
            if chunk.startswith(suffix, p) and (
                not prefix or (p >= len(prefix) and chunk.startswith(prefix, p - len(prefix)))
            ):
                found = (found or set()) | positions
        return found

    def lines(self, chunk: bytes) -> Iterator[tuple[int, int, set[int]]]:
        """(start, end, candidate signature positions) of every line holding a literal."""
        search = self.regex.search
        pos = 0
        n = len(chunk)
        while pos < n:
            m = search(chunk, pos)
            if m is None:
                return
            p = m.start()
            found = self._at(chunk, p)
            if found is None:
                pos = p + 1
                continue
            start = chunk.rfind(b"\n", 0, p) + 1
            end = chunk.find(b"\n", p)
            if end < 0:
                end = n
            # The rest of the line may hold literals of other signatures.
            q = p + 1
            while True:
                m = search(chunk, q, end)
                if m is None:
                    break
                more = self._at(chunk, m.start())
                if more:
                    found |= more
                q = m.start() + 1
            yield start, end, found
            pos = end + 1


@dataclass
class _Acc:
    sig: Signature
    first_seq: int
    tier_seq: dict[str, int]  # tier -> first line number in scan order with that tier
    captures: dict[str, str]
    evidence: list[Evidence] = field(default_factory=list)
    count: int = 0

    @property
    def best_tier(self) -> str:
        return next(t for t in TIERS if t in self.tier_seq)


class _Builder:
    """Collects what the scan finds, within fixed memory. ``seq`` orders lines across files."""

    def __init__(self) -> None:
        self.seq = 0
        self.acc: dict[str, _Acc] = {}
        self.started_seq: int | None = None
        self.started_ev: Evidence | None = None
        self.start_ts: datetime | None = None
        self.first_ts: datetime | None = None
        self.stop_seq: int | None = None
        self.stop_ev: Evidence | None = None
        self.stop_weak_seq: int | None = None
        self.facts: dict = {}
        self.http: dict[str, int] = {}  # "4xx" / "5xx" -> answers
        self.http_first: Evidence | None = None
        self.http_seqs: tuple[int, int] | None = None  # first, last
        self.first_error: Evidence | None = None
        self.error_seqs: tuple[int, int] | None = None  # any ERROR / exception line
        self.unexplained_seqs: tuple[int, int] | None = None  # ... that no signature knows
        self.last_exception: Evidence | None = None
        self.last_traceback: list[str] = []
        self.open_tb: dict[_TbKey, tuple[int, int, int]] = {}  # -> (chunk id, offset, line)
        # Frame matches of a traceback not yet ended, per process: judged by its exception.
        self.pending_frames: dict[_TbKey, list[tuple[list[LineMatch], Evidence, int]]] = {}
        self.lines = 0
        self.bytes = 0
        self.phases = PhaseTracker()
        # Several files (ranks, pods, runs): each one's own start / stop bounds its own lines.
        self.file_firsts: list[int] = []  # the first seq of each source, in scan order
        self.file_labels: list[str] = []
        self.windows: dict[str, list[int | None]] = {}  # label -> [started seq, stop seq]

    def begin_source(self, label: str) -> None:
        self.file_firsts.append(self.seq + 1)
        self.file_labels.append(label)

    def window_of(self, seq: int) -> tuple[int, int | None]:
        """(lo, hi) of the file that holds line ``seq``: after its last start, before its stop."""
        label = self.file_labels[bisect.bisect_right(self.file_firsts, seq) - 1]
        started, stop = self.windows.get(label, (None, None))
        lo = started or 0
        return lo, stop if stop is not None and stop > lo else None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add_match(self, lm: LineMatch, ev: Evidence, seq: int) -> None:
        sig = lm.signature
        if sig.role == "context":
            self._context(sig, lm.captures, ev, seq)
            return
        acc = self.acc.get(sig.id)
        if acc is None:
            acc = self.acc[sig.id] = _Acc(sig, seq, {}, {})
        if lm.tier not in acc.tier_seq:
            acc.tier_seq[lm.tier] = seq
        if lm.tier == acc.best_tier and lm.tier != "weak" and seq == acc.tier_seq[lm.tier]:
            acc.captures = {**acc.captures, **lm.captures}  # the best line's numbers win
        else:
            for k, v in lm.captures.items():
                acc.captures.setdefault(k, v)
        acc.count += 1
        if len(acc.evidence) < MAX_EVIDENCE:
            acc.evidence.append(ev)

    def _context(self, sig: Signature, captures: dict[str, str], ev: Evidence, seq: int) -> None:
        window = self.windows.setdefault(ev.file, [None, None])
        if sig.marker == "started":
            self.started_seq = seq  # the LAST start counts: a restart opens a new window
            self.started_ev = ev
            window[0] = seq
        elif sig.marker == "stop":
            if self.stop_seq is None or (self.started_seq or 0) > self.stop_seq:
                self.stop_seq, self.stop_ev = seq, ev
            if window[1] is None or (window[0] or 0) > window[1]:
                window[1] = seq
        elif sig.marker == "stop_weak":
            if self.stop_weak_seq is None or (self.started_seq or 0) > self.stop_weak_seq:
                self.stop_weak_seq = seq
        elif sig.marker == "request_ok":
            self.http["2xx"] = self.http.get("2xx", 0) + 1
            return
        elif sig.marker == "request_failed":
            status = captures.get("status", "")
            key = f"{status[:1]}xx"
            self.http[key] = self.http.get(key, 0) + 1
            if self.http_first is None:
                self.http_first = ev
            self.http_seqs = (self.http_seqs or (seq, seq))[0], seq
            return
        for k, v in captures.items():
            if k in _LAST_WINS:
                self.facts[k] = v
            else:
                self.facts.setdefault(k, v)

    def add_error(self, ev: Evidence, seq: int, explained: bool) -> None:
        if self.first_error is None:
            self.first_error = ev
        self.error_seqs = (self.error_seqs or (seq, seq))[0], seq
        if not explained:
            self.unexplained_seqs = (self.unexplained_seqs or (seq, seq))[0], seq

    def add_exception(self, ev: Evidence, traceback: list[str]) -> None:
        self.last_exception = ev
        self.last_traceback = traceback

    def hold_frame(self, key: _TbKey, lms: list[LineMatch], ev: Evidence, seq: int) -> None:
        held = self.pending_frames.setdefault(key, [])
        if len(held) < MAX_EVIDENCE:
            held.append((lms, ev, seq))
        if len(self.pending_frames) > 1024:  # bound pathological logs, as open_tb
            self.pending_frames.pop(next(iter(self.pending_frames)))

    def end_traceback(self, key: _TbKey, exception: str | None) -> None:
        """A traceback ended with ``exception`` (None: the log ends inside it). Each of its frame
        lines counts for the first signature (table order) whose ``frame_raises`` fits that
        exception; with no exception, for the first that asks for none."""
        for lms, ev, seq in self.pending_frames.pop(key, ()):
            for lm in lms:
                raises = lm.signature.frame_raises
                if raises is None or (exception is not None and raises.search(exception)):
                    self.add_match(lm, ev, seq)
                    break
            else:
                if exception is None and lms:
                    self.add_match(lms[0], ev, seq)

    def end_scan(self) -> None:
        for key in list(self.pending_frames):
            self.end_traceback(key, None)


def _parse_ts(m: re.Match[bytes]) -> datetime | None:
    try:
        if m.group(1):
            return datetime.strptime(m.group(1).decode().replace("T", " "), "%Y-%m-%d %H:%M:%S")
        return datetime.strptime("2000-" + m.group(2).decode(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _last_ts(chunk: bytes, end: int) -> datetime | None:
    last = None
    for m in _TS_ANY.finditer(chunk, max(0, end - 65536), end):
        last = m
    return _parse_ts(last) if last else None


def _requirements() -> list[Requirement]:
    return [*prefilter_requirements(), *((-1, ((gate,),)) for gate in _GATES)]


class _Scanned(NamedTuple):
    """One line the scan looked at: its number, raw text, message, match and parsed prefixes."""

    lineno: int
    raw: str
    text: str
    match: LineMatch | None
    parsed: LogLine


def _scan(sources: Sequence[Source], builder: _Builder) -> Iterator[_Scanned]:
    """Feed every interesting line of ``sources`` to ``builder``, yielding each as it goes.

    THE scan loop: files, stdin and in-memory lines all come as byte chunks (``read_chunks``).
    ``diagnose_sources`` drains it; ``error_lines`` keeps what it wants, line by line.
    """
    requirements = _requirements()
    tallies = tally_positions()
    # Lines only counted (2xx access lines, most of a serving log) are counted per chunk by one
    # regex, so they never reach Python line by line.
    untallied = [r for r in requirements if r[0] not in tallies]
    prefilter: _Prefilter | None = None
    chunk_id = 0
    for source in sources:
        builder.begin_source(source.label)
        lineno = 0  # lines before the current chunk
        source_bytes = 0
        for chunk in read_chunks(source):
            chunk_id += 1
            builder.bytes += len(chunk)
            if b"\x1b[" in chunk:
                # Colours (a tty's uvicorn colours the status code) would split the literals
                # the pre-filter looks for; lines keep their numbers, evidence its text.
                chunk = _ANSI_BYTES.sub(b"", chunk)
            if prefilter is None:
                prefilter = _Prefilter(untallied, chunk[:SAMPLE_BYTES])
            for rx in tallies.values():
                builder.http["2xx"] = builder.http.get("2xx", 0) + len(rx.findall(chunk))
            if source_bytes < PHASE_SCAN_BYTES and not builder.phases.done:
                piece = chunk[: PHASE_SCAN_BYTES - source_bytes]
                piece = piece[: piece.rfind(b"\n") + 1] if len(piece) < len(chunk) else piece
                builder.phases.feed(piece.decode("utf-8", "replace"))
            source_bytes += len(chunk)
            if builder.first_ts is None:
                m = _TS_ANY.search(chunk, 0, 65536)
                if m:
                    builder.first_ts = _parse_ts(m)
            counted, line_base = 0, lineno
            for start, end, cands in prefilter.lines(chunk):
                line_base += chunk.count(b"\n", counted, start)
                counted = start
                yield _line(builder, source, chunk, chunk_id, start, end, line_base + 1, cands)
            lineno += chunk.count(b"\n")
            if chunk and not chunk.endswith(b"\n"):
                lineno += 1  # the last line of a file without a trailing newline
        builder.lines += lineno


def _line(
    builder: _Builder,
    source: Source,
    chunk: bytes,
    chunk_id: int,
    start: int,
    end: int,
    lineno: int,
    cands: set[int],
) -> _Scanned:
    line_bytes = chunk[start:end]
    known = _SEEN.get(line_bytes)
    if known is not None:
        raw, parsed, lm = known
    else:
        raw = decode(line_bytes)
        parsed = parse_line(raw)
        cands.discard(-1)  # the gates (ERROR, exceptions) belong to no signature
        lm = match_text(parsed.text, cands) if cands else None
        if len(line_bytes) <= _SEEN_LINE:
            if len(_SEEN) >= _SEEN_MAX:
                _SEEN.clear()
            _SEEN[line_bytes] = (raw, parsed, lm)
    text = parsed.text
    ev = Evidence(source.label, lineno, text[:MAX_TEXT])
    seq = builder.next_seq()
    key = (source.label, parsed.pid, parsed.source)
    if lm is None and not cands.isdisjoint(framed_positions()) and (
        key in builder.open_tb or parsed.indent or text.startswith('File "')
    ):
        # A traceback line (a frame, an indented code line, or inside an open traceback: a log
        # may start mid-traceback) may be evidence, judged when its traceback ends. ("Unknown
        # vLLM environment variable detected: VLLM_ENGINE_ITERATION_TIMEOUT_S" is a warning.)
        framed = frame_matches(text)
        if framed:
            builder.hold_frame(key, framed, ev, seq)
    if lm is not None:
        builder.add_match(lm, ev, seq)
        if lm.signature.marker == "started" and builder.start_ts is None:
            builder.start_ts = _last_ts(chunk, end)
    is_context = lm is not None and lm.signature.role == "context"
    if _TB in text:
        if len(builder.open_tb) > 1024:  # one per process is normal; bound pathological logs
            builder.open_tb.clear()
        builder.open_tb[key] = (chunk_id, start, lineno)
    if not is_context and _EXC.match(text):
        builder.add_exception(ev, _traceback(builder, key, chunk, chunk_id, start, end, parsed))
        builder.end_traceback(key, text)
        builder.add_error(ev, seq, explained=lm is not None)
    elif not is_context and text and _is_error_level(parsed, text):
        builder.add_error(ev, seq, explained=lm is not None)
    return _Scanned(lineno, raw, text, lm, parsed)


_ANSI_BYTES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_A_MESSAGE = ("^", "~", 'File "', "Traceback", "The above exception", "During handling")


# Lines that repeat byte for byte (uvicorn lines without a timestamp, CANN error blocks that
# torch_npu prints again for every synchronisation, a server restarted in the same log) are
# parsed and matched once. Bounded: short lines only, cleared when full.
_SEEN: dict[bytes, tuple[str, LogLine, LineMatch | None]] = {}
_SEEN_MAX = 4096
_SEEN_LINE = 512


def _is_error_level(parsed: LogLine, text: str) -> bool:
    """An ERROR line that says something: not a traceback frame, code line or caret line."""
    if parsed.indent or text.startswith(_NOT_A_MESSAGE):
        return False
    return parsed.level in ("ERROR", "CRITICAL") or text.startswith("[ERROR]")


def _traceback(
    builder: _Builder,
    key: _TbKey,
    chunk: bytes,
    chunk_id: int,
    start: int,
    end: int,
    parsed: LogLine,
) -> list[str]:
    """The last lines of the traceback this exception line ends (same process only)."""
    opened = builder.open_tb.pop(key, None)
    if opened is None or opened[0] != chunk_id or start - opened[1] > 256 * 1024:
        return []
    lines = []
    for raw in chunk[opened[1] : end].splitlines():
        p = parse_line(decode(raw))
        if p.pid == parsed.pid and p.source == parsed.source and p.text:
            lines.append(p.text[:MAX_TEXT])
    return lines[:1] + lines[1:][-(TRACEBACK_TAIL - 1) :]


# ----------------------------------------------------------------------------- ranking


def _auto_remedy(sig: Signature, captures: dict[str, str], facts: dict) -> str | None:
    """What `mmops serve` does about this cause by itself (None: it does not retry)."""
    if not sig.retryable:
        return None
    remedy = resolve_remedy(sig, captures)
    if remedy is None:
        if sig.remedy is not None:
            return "retries unchanged (the log lacks the number its remedy needs)"
        return "retries unchanged, with backoff"
    if remedy.kind == "env_merge":
        current = facts.get("npu_alloc_conf") if remedy.name == "PYTORCH_NPU_ALLOC_CONF" else None
        value = merge_alloc_conf(current, remedy.value)
        return f"retries with {remedy.name}={value} (other keys kept)"
    if remedy.kind == "env_set":
        return f"retries with {remedy.name}={remedy.value}"
    return f"retries with {remedy.name} {remedy.value}"


def _finding(acc: _Acc, role: FindingRole, facts: dict) -> Finding:
    return Finding(
        signature=acc.sig,
        role=role,
        captures=acc.captures,
        evidence=acc.evidence,
        count=acc.count,
        weak=acc.best_tier == "weak",
        fix=render_fix(acc.sig, acc.captures, facts),
        auto_remedy=_auto_remedy(acc.sig, acc.captures, facts) if role == "cause" else None,
    )


# Tiers that name a cause on their own; weak hints need another failure beside them.
_FATAL_TIERS: tuple[Tier, ...] = ("strong", "secondary", "frame")


def _rank(b: _Builder, facts: dict) -> tuple[str, list[Finding]]:
    """The verdict and the findings, root cause first. See the module docstring."""
    lo = b.started_seq if b.started_seq is not None else 0
    hi = b.stop_seq if b.stop_seq is not None and b.stop_seq > lo else None

    def inside(seq: int | None) -> TypeGuard[int]:
        if seq is None:
            return False
        if len(b.file_firsts) > 1:
            flo, fhi = b.window_of(seq)
            return seq > flo and (fhi is None or seq < fhi)
        return seq > lo and (hi is None or seq < hi)

    def span_inside(span: tuple[int, int] | None) -> bool:
        return span is not None and span[1] > lo and (hi is None or span[0] < hi)

    causes: dict[str, list[tuple[int, _Acc]]] = {t: [] for t in TIERS}
    taken: set[str] = set()
    for tier in TIERS:
        for a in b.acc.values():
            seq = a.tier_seq.get(tier)
            if a.sig.role == "cause" and a.sig.id not in taken and inside(seq):
                causes[tier].append((seq, a))
                taken.add(a.sig.id)
        causes[tier].sort(key=lambda t: t[0])
    cons = sorted(
        (a for a in b.acc.values() if a.sig.role == "consequence" and inside(a.first_seq)),
        key=lambda a: a.first_seq,
    )
    fatal_cons = [a for a in cons if a.sig.phase != "runtime"]
    runtime_cons = [a for a in cons if a.sig.phase == "runtime"]
    # A few 4xx beside answered requests are a client's mistakes, reported as facts; the server
    # is in trouble when it answers 5xx, rejects at a sustained rate, or answers nobody.
    rejected = b.http.get("4xx", 0)
    requests_failed = span_inside(b.http_seqs) and (
        b.http.get("5xx", 0) > 0 or rejected >= SUSTAINED_4XX or not b.http.get("2xx", 0)
    )
    serving = (
        b.started_seq is not None
        or requests_failed
        or bool(runtime_cons)
        or any(a.sig.phase == "runtime" for tier in causes.values() for _, a in tier)
    )

    def fatal(a: _Acc) -> bool:
        if a.sig.phase == "any":  # a device fault: fatal unless the server went on serving
            return bool(fatal_cons) or not serving
        return a.sig.phase == "startup" or a.sig.fatal

    def build(cause: _Acc, role: FindingRole = "cause") -> list[Finding]:
        out = [_finding(cause, role, facts)]
        rest = [a for tier in _FATAL_TIERS for _, a in causes[tier]] + cons
        for a in sorted(rest, key=lambda a: a.first_seq):
            if a is not cause:
                out.append(_finding(a, "consequence", facts))
        return out

    for tier in _FATAL_TIERS:
        for _, a in causes[tier]:
            if fatal(a):
                if a.sig.stall and not fatal_cons and not span_inside(b.error_seqs):
                    # Start-up is waiting on it (Ray resources) and nothing has failed yet.
                    return "incomplete", build(a)
                return "crash", build(a)
    running = [a for tier in _FATAL_TIERS for _, a in causes[tier]]
    if running:
        if fatal_cons:
            # The engine died, but not of a rejected request: name the death.
            return "crash", build(_top_consequence(fatal_cons), "consequence")
        return "running-errors", build(running[0])
    failed = bool(cons) or requests_failed or span_inside(b.unexplained_seqs)
    if causes["weak"] and failed:
        weak = causes["weak"][0][1]
        if fatal(weak):
            return "crash", build(weak)
        if fatal_cons:
            return "crash", build(_top_consequence(fatal_cons), "consequence")
        return "running-errors", build(weak)
    if fatal_cons:
        return "crash", build(_top_consequence(fatal_cons), "consequence")
    if runtime_cons:
        return "running-errors", build(runtime_cons[0], "consequence")
    if requests_failed:
        return "running-errors", []
    # Nothing the table knows went wrong in the window.
    if hi is not None and not span_inside(b.error_seqs):
        return "requested-stop", []
    if b.started_seq is not None and not span_inside(b.error_seqs):
        if b.stop_weak_seq is not None and b.stop_weak_seq > lo:
            return "requested-stop", []
        return "started", []
    # No error, and the start-up phases say how far it got: the API server up is a start (cut
    # before "Application startup complete."); anything short of it is an incomplete start.
    phase = b.phases.current
    if not span_inside(b.error_seqs):
        if b.stop_weak_seq is not None and b.stop_weak_seq > lo:
            return "requested-stop", []  # stopped during start-up: workers terminated, no error
        if phase is not None:
            started = phase_index(phase.phase) >= phase_index("api")
            return ("started" if started else "incomplete"), []
    return "unknown", []


def _top_consequence(cons: list[_Acc]) -> _Acc:
    """With no cause in the log, 'the engine died' says the most; else the first consequence."""
    return next((a for a in cons if a.sig.id == "engine.dead"), cons[0])


# ----------------------------------------------------------------------------- facts


def _num(text: object, kind: Callable[[str], _N] = int) -> _N | None:
    try:
        return kind(str(text).replace(",", ""))
    except (TypeError, ValueError):
        return None


def _facts(b: _Builder, sources: Sequence[Source]) -> dict:
    raw = b.facts
    facts: dict = {
        "files": [s.label for s in sources],
        "lines": b.lines,
        "bytes": b.bytes,
    }
    phase = b.phases.current
    if phase is not None:
        facts["phase"] = {"id": phase.phase, "title": phase.title, "detail": phase.detail}
    if "vllm_version" in raw:
        facts["vllm_version"] = raw["vllm_version"]
    if "platform" in raw:
        facts["platform"] = raw["platform"]
    if "model" in raw:
        facts["model"] = raw["model"]
    max_len = _num(raw.get("max_model_len")) or _num(raw.get("concurrency_tokens"))
    if max_len:
        facts["max_model_len"] = max_len
    if "kv_cache_tokens" in raw:
        facts["kv_cache_tokens"] = _num(raw["kv_cache_tokens"])
    if "kv_blocks" in raw:
        facts["kv_cache_blocks"] = _num(raw["kv_blocks"])
    if "kv_cache_gib" in raw:
        facts["kv_cache_gib"] = _num(raw["kv_cache_gib"], float)
    if "max_concurrency" in raw:
        facts["max_concurrency"] = _num(raw["max_concurrency"], float)
    for k in ("gpu_memory_utilization", "tensor_parallel_size", "npu_alloc_conf", "port"):
        if k in raw:
            facts[k] = raw[k]
    if b.started_ev is not None:
        facts["started_at"] = {"file": b.started_ev.file, "line": b.started_ev.line}
        if b.first_ts and b.start_ts and (b.first_ts.year == 2000) == (b.start_ts.year == 2000):
            seconds = (b.start_ts - b.first_ts).total_seconds()
            if 0 <= seconds < 86400:
                facts["startup_seconds"] = round(seconds)
    if b.stop_ev is not None:
        facts["stop_requested_at"] = {"file": b.stop_ev.file, "line": b.stop_ev.line}
    for key, n in sorted(b.http.items()):
        facts[f"http_{key}"] = n
    if b.http_first is not None:
        facts["first_failed_request"] = b.http_first.to_json()
    if b.last_exception is not None:
        facts["last_exception"] = b.last_exception.to_json()
        if b.last_traceback:
            facts["last_traceback"] = b.last_traceback
    if b.first_error is not None:
        facts["first_error"] = b.first_error.to_json()
    if b.last_exception is None and b.open_tb:
        # A traceback that never reached its exception line: the log was cut inside it.
        (label, _, _), (_, _, line) = list(b.open_tb.items())[-1]
        facts["open_traceback"] = {"file": label, "line": line}
    return facts


# ----------------------------------------------------------------------------- API


def diagnose_sources(sources: Sequence[Source]) -> Incident:
    """Read ``sources`` as one incident and explain it."""
    builder = _Builder()
    deque(_scan(sources, builder), maxlen=0)
    builder.end_scan()
    if builder.bytes == 0:
        names = ", ".join(s.label for s in sources)
        raise MmopsError(f"{names}: empty, nothing to diagnose")
    facts = _facts(builder, sources)
    verdict, findings = _rank(builder, facts)
    if verdict == "unknown":
        # Nothing the table knows: an Ascend error code of a known family still says what
        # failed (mmops/diagnose/ascend_codes.yaml). A second read, only in this rare case.
        coded = _code_finding(sources)
        if coded is not None:
            return Incident("crash", [coded], facts)
    return Incident(verdict, findings, facts)


def _code_finding(sources: Sequence[Source]) -> Finding | None:
    """The most telling Ascend error code in the first CODE_SCAN_LINES lines, as a finding."""
    from mmops.diagnose.codes import explain_with_line

    for source in sources:
        numbered = list(islice(iter_lines(source), CODE_SCAN_LINES))
        found = explain_with_line(normalize(line) for _, line in numbered)
        if found is None:
            continue
        hit = found.hit
        sig = Signature(
            id=f"ascend_code.{hit.family}",
            title=f"Ascend error {hit.code} ({hit.component})",
            patterns=(),
            meaning=hit.meaning,
            fix=hit.fix,
            retryable=True,  # a code alone does not prove a retry is useless: serve's policy decides
            platform="npu",
        )
        lineno, text = numbered[found.index]
        return Finding(
            signature=sig,
            role="cause",
            captures={"code": hit.code},
            evidence=[Evidence(source.label, lineno, text.strip()[:MAX_TEXT])],
            count=1,
            weak=not hit.exact,  # a family's meaning, not the code's own
            fix=f"{hit.fix} (source: {hit.source})",
            auto_remedy=None,
        )
    return None


def diagnose(paths: Sequence[str], attempt: int | None = None) -> Incident:
    """Diagnose log files ('-' for stdin, a serve run folder for its last or ``attempt`` log)."""
    return diagnose_sources(open_inputs(paths, attempt))


def diagnose_lines(lines: Sequence[str], label: str = "attempt.log") -> Incident:
    """Diagnose lines held in memory (one element per line), as if they were the file ``label``.

    Evidence line numbers count from 1 within ``lines``; no lines raise MmopsError.
    """
    return diagnose_sources([Source.from_lines(label, lines)])


def error_lines(path: str) -> Iterator[tuple[int, str, LineMatch | None]]:
    """Error lines of one log for ``mmops logs --errors`` and the TUI, streaming.

    Yields (line number, raw line, match): lines matching a cause or consequence signature,
    and ERROR-level / exception lines no signature knows (match None). Context lines (startup
    facts, markers) are not errors and are skipped.
    """
    for seen in _scan(open_inputs([path]), _Builder()):
        lm = seen.match
        if lm is not None:
            if lm.signature.role != "context":
                yield seen.lineno, seen.raw, lm
        elif _EXC.match(seen.text) or _is_error_level(seen.parsed, seen.text):
            yield seen.lineno, seen.raw, None
