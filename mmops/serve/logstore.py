"""A log store over one append-only file: what a log view reads, never a widget holding lines.

The index is sparse: one ``(byte offset, line number)`` pair per block of about ``block_bytes``,
every block starting at a line start, so a 1 GiB log costs about 16k pairs (256 KiB). Lines are
found by counting newlines with ``bytes.count`` over large reads, which runs at C speed; a
line is read back by reading its block and splitting it, with a small LRU cache of decoded
blocks. Search and filter run over whole blocks as bytes, never line by line: a literal with
bytes.find, a regex with re after bytes.find has found the literals it needs (as grep does).

The model is Textualize/toolong's LogFile (a scanner under the widget), with supervisord's
``tailProcessStdoutLog(offset, length)`` for :func:`read_range`. Unlike toolong it keeps no
per-line offsets, so memory does not grow with the line count.

Rules a reader can rely on:

- a line is complete once its ``\\n`` is written; a trailing partial line is neither counted
  nor returned until then; a ``\\r`` before the ``\\n`` is dropped (CRLF); a ``\\r`` inside a
  line (tqdm progress bars) is kept;
- text is UTF-8 decoded with ``errors="replace"``;
- one returned line holds at most ``line_cap`` bytes (64 KiB) of the original, then a marker
  saying how many bytes were left out; search and filter see only that shown part of a line
  longer than a block, so a hit is always visible;
- if the file is truncated, or the path now names another file (rotation), the next
  :meth:`LogStore.refresh` re-indexes from zero and bumps :attr:`LogStore.generation`.

A store may be shared by a worker thread that calls ``refresh()`` and the UI thread that reads:
each call holds a lock while it touches the file, and ``refresh()`` publishes its progress
after every MiB, so a first index of a large file can be read from while it runs.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmops.errors import UsageError

LINE_CAP = 64 * 1024  # bytes of one line that are returned; the rest becomes a marker
_READ = 1 << 20  # bytes per read when indexing, searching, filtering (fits a CPU's L2)
_RANGE_READ = 1 << 18  # bytes per read in read_range
_CACHE_BLOCKS = 32  # decoded blocks kept (~2 MiB of log text at the default block size)
_FILTERS = 8  # compiled filters whose results are kept up to date
_HEAD = 64  # bytes at the start of the file remembered to notice a truncate-and-regrow

if hasattr(os, "pread"):
    _pread = os.pread
else:  # pragma: no cover - Windows; a seek and a read are enough there

    def _pread(fd: int, n: int, offset: int) -> bytes:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


@dataclass(frozen=True)
class LogChunk:
    """Complete lines read from a byte offset, and where the next read should start."""

    lines: list[str]
    offset: int
    next_offset: int


def _cut_point(raw: bytes, cap: int) -> int:
    """Where to cut a long line at most `cap` bytes in, not inside a UTF-8 character."""
    end = min(cap, len(raw))
    while 0 < end < len(raw) and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return end


def _cut(raw: bytes, total: int, cap: int) -> str:
    """The first `cap` bytes of a line of `total` bytes, then a marker for the rest."""
    end = _cut_point(raw, cap)
    text = raw[:end].decode("utf-8", "replace")
    return f"{text}… [{total - end:,} more bytes not shown]"


def _decode_line(raw: bytes, total: int, cap: int, cr: bool | None = None) -> str:
    """One line's text; `raw` is its first bytes, `total` its length, `cr` if it ends in \\r."""
    if cr is None:  # raw is the whole line
        cr = raw.endswith(b"\r")
    if cr:
        total -= 1
    if total > cap:
        return _cut(raw, total, cap)
    return (raw[:-1] if cr else raw).decode("utf-8", "replace")


def _split_lines(data: bytes, cap: int) -> list[str]:
    """Lines of `data`, which holds whole lines each ending in \\n."""
    if len(data) <= cap:
        # Decoding the block at once equals decoding line by line: no UTF-8 sequence holds a
        # \n byte, so an invalid sequence cut by a newline is replaced the same way.
        lines = data.decode("utf-8", "replace").split("\n")
        lines.pop()
        if b"\r" in data:
            lines = [s[:-1] if s.endswith("\r") else s for s in lines]
        return lines
    parts = data.split(b"\n")
    parts.pop()
    return [_decode_line(p, len(p), cap) for p in parts]


def read_range(path: Path, offset: int, limit: int = 1000, *, line_cap: int = LINE_CAP) -> LogChunk:
    """Up to `limit` complete lines from byte `offset` (supervisord's tailProcessStdoutLog).

    A partial last line is not returned until its newline arrives, so ``next_offset`` always
    lands on a line start and successive calls chain without losing or repeating a line.
    A missing file, or an offset at or past the end, gives an empty chunk at `offset`.
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if limit <= 0:
        return LogChunk([], offset, offset)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return LogChunk([], offset, offset)
    lines: list[str] = []
    done = offset  # just past the last complete line taken
    head = b""  # first bytes of the unfinished line (at most line_cap + 4)
    head_len = 0  # its full length so far
    head_cr = False  # whether its last byte so far is \r
    at = offset
    keep = line_cap + 4
    try:
        while len(lines) < limit:
            data = _pread(fd, _RANGE_READ, at)
            if not data:
                break
            end = data.rfind(b"\n") + 1
            if end:
                pieces = data[:end].split(b"\n")
                pieces.pop()
                pieces = pieces[: limit - len(lines)]
                first = pieces[0]
                used = sum(map(len, pieces)) + len(pieces)
                if head_len:
                    raw = head + first[: keep - len(head)]
                    cr = first.endswith(b"\r") if first else head_cr
                    lines.append(_decode_line(raw, head_len + len(first), line_cap, cr))
                    head, head_len = b"", 0
                else:
                    lines.append(_decode_line(first, len(first), line_cap))
                lines.extend(_decode_line(p, len(p), line_cap) for p in pieces[1:])
                done = at + used
                rest = data[used:] if len(lines) < limit else b""
            else:
                rest = data
            if rest:
                if len(head) < keep:
                    head += rest[: keep - len(head)]
                head_len += len(rest)
                head_cr = rest.endswith(b"\r")
            at += len(data)
    finally:
        os.close(fd)
    return LogChunk(lines, offset, done)


def _nth_line(data: bytes, pos: int, n: int) -> int:
    """Offset of the start of the n-th line after offset `pos` (a line start) in data."""
    for _ in range(n):
        pos = data.index(b"\n", pos) + 1
    return pos


_Find = Callable[[bytes, int, int], int]
_Segment = tuple[bytes, int, int, int]


@dataclass
class _Filter:
    scanner: _Scanner
    next_line: int = 0  # lines before this one have been scanned
    hits: list[int] = field(default_factory=list)


class LogStore:
    """A sparse line index over one append-only log file, with random access and search."""

    def __init__(self, path: Path, *, block_bytes: int = 1 << 16, line_cap: int = LINE_CAP) -> None:
        if block_bytes < 1 or line_cap < 1:
            raise ValueError("block_bytes and line_cap must be positive")
        self.path = Path(path)
        self._block = block_bytes
        self._cap = line_cap
        self._lock = threading.RLock()  # held by every call that reads the file or the index
        self._refresh_lock = threading.Lock()  # one refresh at a time
        self._fd: int | None = None
        self._closer: weakref.finalize | None = None
        self._ident: tuple[int, int] | None = None
        self._generation = 0
        self._clear()

    def _clear(self) -> None:
        self._starts = array("q")  # byte offset of each block's first line
        self._firsts = array("q")  # line number of each block's first line
        self._end = 0  # byte offset just past the last complete line indexed
        self._count = 0
        self._head = b""
        self._cache: OrderedDict[int, tuple[int, list[str]]] = OrderedDict()  # k: (end, lines)
        self._filters: OrderedDict[tuple[object, int], _Filter] = OrderedDict()

    # ------------------------------------------------------------------ state

    @property
    def line_count(self) -> int:
        """Complete lines indexed."""
        return self._count

    @property
    def generation(self) -> int:
        """Bumped each time the file was truncated or replaced and the index started over."""
        return self._generation

    def tail_offset(self) -> int:
        """Byte offset just past the last complete line indexed (where a partial line starts)."""
        return self._end

    def close(self) -> None:
        """Let go of the file; a later refresh() opens it again from scratch."""
        with self._refresh_lock, self._lock:
            self._drop_fd()
            self._clear()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogStore({str(self.path)!r}, lines={self._count}, bytes={self._end})"

    def _drop_fd(self) -> None:
        if self._closer is not None:
            self._closer()  # closes the descriptor once
        self._fd, self._closer, self._ident = None, None, None

    # ------------------------------------------------------------------ indexing

    def _current_fd(self) -> int | None:
        """The descriptor to index from; starts over on rotation or truncation."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            # Renamed away and not yet replaced: keep reading the file we have (as tail -F).
            return self._fd
        if self._fd is None or (st.st_dev, st.st_ino) != self._ident:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return self._fd
            with self._lock:
                had = self._fd is not None
                self._drop_fd()
                if had or self._count:
                    self._restart()
                fst = os.fstat(fd)
                self._fd, self._ident = fd, (fst.st_dev, fst.st_ino)
                self._closer = weakref.finalize(self, os.close, fd)
            return fd
        if self._end and self._changed(self._fd):
            with self._lock:
                self._restart()
        return self._fd

    def _changed(self, fd: int) -> bool:
        """Truncated (shorter than indexed, or regrown with other bytes) since the last look."""
        if os.fstat(fd).st_size < self._end:
            return True
        if _pread(fd, 1, self._end - 1) != b"\n":
            return True
        return bool(self._head) and _pread(fd, len(self._head), 0) != self._head

    def _restart(self) -> None:
        self._clear()
        self._generation += 1

    def refresh(self) -> int:
        """Index what was appended since the last call; return the number of new complete lines."""
        with self._refresh_lock:
            fd = self._current_fd()
            if fd is None:
                return 0
            before = self._count  # 0 if _current_fd() just started over
            size = os.fstat(fd).st_size
            pos = self._end
            while pos < size:
                buf = _pread(fd, min(_READ, size - pos), pos)
                if not buf:
                    break  # truncated while we read; the next refresh starts over
                cut = buf.rfind(b"\n") + 1
                if cut:
                    with self._lock:
                        self._add_lines(buf, pos, cut)
                    pos += cut
                    continue
                if pos + len(buf) >= size:
                    break  # a partial last line: wait for its newline
                nl = self._find_newline(fd, pos + len(buf), size)
                if nl < 0:
                    break
                with self._lock:
                    self._add_long_line(pos, nl + 1)
                pos = nl + 1
            if not self._head and self._end:
                self._head = _pread(fd, min(_HEAD, self._end), 0)
            return self._count - before

    def _add_lines(self, buf: bytes, base: int, cut: int) -> None:
        """Index the whole lines buf[:cut], read from file offset `base`, into blocks."""
        starts, firsts, block = self._starts, self._firsts, self._block
        count, cur = self._count, 0
        while cur < cut:
            used = base + cur - starts[-1] if starts else block
            if used >= block:
                starts.append(base + cur)
                firsts.append(count)
                used = 0
            stop = cur + block - used
            if stop >= cut:
                nl = cut - 1
            else:
                nl = buf.rfind(b"\n", cur, stop)
                if nl < 0:
                    if used:  # the next line does not fit: it starts the next block
                        starts.append(base + cur)
                        firsts.append(count)
                    # A line longer than a block gets a block of its own; that is the only
                    # way a block grows past block_bytes, which _is_long relies on.
                    nl = buf.find(b"\n", cur, cut)
            count += buf.count(b"\n", cur, nl + 1)
            cur = nl + 1
        self._count, self._end = count, base + cut

    def _add_long_line(self, start: int, end: int) -> None:
        """A line longer than one read: a block of its own, never held in memory."""
        self._starts.append(start)
        self._firsts.append(self._count)
        self._count += 1
        self._end = end

    @staticmethod
    def _find_newline(fd: int, offset: int, size: int) -> int:
        while offset < size:
            buf = _pread(fd, min(_READ, size - offset), offset)
            if not buf:
                return -1
            i = buf.find(b"\n")
            if i >= 0:
                return offset + i
            offset += len(buf)
        return -1

    # ------------------------------------------------------------------ reading

    def _span(self, k: int) -> tuple[int, int, int, int]:
        """(start offset, end offset, first line, line count) of block k."""
        start, first = self._starts[k], self._firsts[k]
        if k + 1 < len(self._starts):
            return start, self._starts[k + 1], first, self._firsts[k + 1] - first
        return start, self._end, first, self._count - first

    def _is_long(self, start: int, end: int) -> bool:
        # Only a single line makes a block outgrow block_bytes (see _add_lines).
        return end - start > self._block and end - start > self._cap + 1

    def _long_line(self, start: int, end: int) -> tuple[str, bytes]:
        """A long line's block: its text as shown, and the shown bytes plus \\n for scanning."""
        assert self._fd is not None
        raw = _pread(self._fd, self._cap + 4, start)
        total = end - start - 1
        if _pread(self._fd, 1, end - 2) == b"\r":
            total -= 1
        cut = _cut_point(raw, self._cap)
        return _cut(raw, total, self._cap), raw[:cut] + b"\n"

    def _block_lines(self, k: int) -> list[str]:
        assert self._fd is not None
        start, end, _, n = self._span(k)
        hit = self._cache.get(k)
        if hit is not None and hit[0] == end:
            self._cache.move_to_end(k)
            return hit[1]
        if self._is_long(start, end):
            lines = [self._long_line(start, end)[0]]
        elif hit is not None and hit[0] < end:
            # The last block grew (follow mode): decode only what was appended.
            more = _pread(self._fd, end - hit[0], hit[0])
            lines = hit[1] + _split_lines(more[: more.rfind(b"\n") + 1], self._cap)
        else:
            data = _pread(self._fd, end - start, start)
            lines = _split_lines(data[: data.rfind(b"\n") + 1], self._cap)
        if len(lines) == n:  # else the file changed under us: do not keep it
            self._cache[k] = (end, lines)
            self._cache.move_to_end(k)
            if len(self._cache) > _CACHE_BLOCKS:
                self._cache.popitem(last=False)
        return lines

    def lines(self, start: int, count: int) -> list[str]:
        """Lines [start, start+count) by 0-based number, clipped to the lines indexed."""
        with self._lock:
            stop = min(self._count, start + count)
            start = max(0, start)
            out: list[str] = []
            if start >= stop or self._fd is None:
                return out
            k = bisect_right(self._firsts, start) - 1
            while start < stop:
                _, _, first, n = self._span(k)
                got = self._block_lines(k)
                out.extend(got[start - first : stop - first])
                if len(got) != n:
                    break  # the file changed under us; the next refresh() re-indexes
                start = first + n
                k += 1
            return out

    def line(self, n: int) -> str:
        """Line number n (negative counts from the end, as in a list)."""
        count = self._count
        if n < 0:
            n += count
        if not 0 <= n < count:
            raise IndexError(f"line {n} out of range: {count} lines")
        got = self.lines(n, 1)
        if not got:
            raise IndexError(f"line {n}: the file changed; refresh() first")
        return got[0]

    # ------------------------------------------------------------------ scanning

    def _segments(self, a: int, b: int, backward: bool = False) -> Iterator[_Segment]:
        """Lines [a, b) as (data, lo, hi, number of the line at lo): whole lines in data[lo:hi].

        Consecutive blocks are read together, up to _READ bytes; a long line is a segment of
        its own holding only its shown part, so scanning never holds a huge line.
        """
        a, b = max(a, 0), min(b, self._count)
        if a >= b or self._fd is None:
            return
        ka = bisect_right(self._firsts, a) - 1
        kb = bisect_right(self._firsts, b - 1) - 1
        groups: list[tuple[int, int]] = []  # block ranges [g0, g1]
        k = ka
        while k <= kb:
            g0, base = k, self._starts[k]
            while k <= kb:
                s, e, _, _ = self._span(k)
                long = self._is_long(s, e)
                if k > g0 and (long or e - base > _READ):
                    break
                k += 1
                if long:
                    break
            groups.append((g0, k - 1))
        for g0, g1 in reversed(groups) if backward else groups:
            s0, e0, f0, _ = self._span(g0)
            if g0 == g1 and self._is_long(s0, e0):
                data = self._long_line(s0, e0)[1]
                yield data, 0, len(data), f0
                continue
            _, e1, f1, _ = self._span(g1)
            data = _pread(self._fd, e1 - s0, s0)
            if len(data) < e1 - s0:
                return  # truncated under us; the next refresh() re-indexes
            lo = _nth_line(data, 0, a - f0) if g0 == ka else 0
            hi = _nth_line(data, self._starts[g1] - s0, b - f1) if g1 == kb else len(data)
            yield data, lo, hi, max(a, f0)

    def search(
        self,
        pattern: str,
        start: int,
        *,
        backward: bool = False,
        regex: bool = False,
        ignore_case: bool = True,
    ) -> int | None:
        """Number of the next (or previous) line after (before) `start` that matches.

        Wraps around once, ending at `start` itself; None when no line matches or the pattern
        is empty. Case folding is ASCII only (the text is searched as UTF-8 bytes). A bad
        regex raises UsageError.
        """
        if not pattern:
            return None
        find, rfind = _matcher(pattern, regex=regex, ignore_case=ignore_case)
        with self._lock:
            n = self._count
            if n == 0:
                return None
            start = min(max(start, -1), n)
            # Forward: start+1 .. end, then 0 .. start. Backward: start-1 .. 0, then end .. start.
            if backward:
                hit = self._scan_backward(rfind, 0, start)
                return hit if hit is not None else self._scan_backward(rfind, start, n)
            hit = self._scan_forward(find, start + 1, n)
            return hit if hit is not None else self._scan_forward(find, 0, start + 1)

    def _scan_forward(self, find: _Find, a: int, b: int) -> int | None:
        for data, lo, hi, line in self._segments(a, b):
            i = find(data, lo, hi)
            if i >= 0:
                return line + data.count(b"\n", lo, i)
        return None

    def _scan_backward(self, rfind: _Find, a: int, b: int) -> int | None:
        for data, lo, hi, line in self._segments(a, b, backward=True):
            i = rfind(data, lo, hi)
            if i >= 0:
                return line + data.count(b"\n", lo, i)
        return None

    def filter_lines(
        self, pattern: re.Pattern[bytes] | re.Pattern[str], upto: int | None = None
    ) -> list[int]:
        """Numbers of the lines the pattern matches, ascending.

        The pattern is applied per line (``^`` and ``$`` match at line boundaries); results are
        kept, so a call after refresh() scans only the new lines. A str pattern is applied
        to the UTF-8 bytes. ``upto`` stops the scan at that line (the hits so far): a caller
        in a thread scans a big file in steps, so the GIL is let go between them.
        """
        key = (pattern.pattern, pattern.flags)
        with self._lock:
            f = self._filters.get(key)
            if f is None:
                f = _Filter(_Scanner(_per_line(pattern)))
                self._filters[key] = f
                if len(self._filters) > _FILTERS:
                    self._filters.popitem(last=False)
            self._filters.move_to_end(key)
            hits = f.hits
            end = self._count if upto is None else max(f.next_line, min(upto, self._count))
            for data, lo, hi, line in self._segments(f.next_line, end):
                pos = lo
                for i in f.scanner.all(data, lo, hi):
                    line += data.count(b"\n", pos, i)
                    hits.append(line)
                    pos = i
            f.next_line = end
            return list(hits)


def _per_line(pattern: re.Pattern[bytes] | re.Pattern[str]) -> re.Pattern[bytes]:
    """The pattern as bytes with MULTILINE, so ^ and $ work on each line of a block."""
    src = pattern.pattern
    flags = pattern.flags | re.MULTILINE
    if isinstance(src, str):
        src, flags = src.encode("utf-8"), flags & ~re.UNICODE
    return re.compile(src, flags)


class _Scanner:
    """Finds lines a bytes regex matches in a block of whole lines.

    `re` tries a pattern at every byte (60-90 MiB/s here for ``WARNING|ERROR``), so when every
    match must contain one of a few literals (as GNU grep's "must" strings), those are found
    with bytes.find at C speed and the regex only confirms the lines they are on. Patterns
    are meant to match within one line.
    """

    def __init__(self, rx: re.Pattern[bytes]) -> None:
        self.rx = rx
        self.must, self.fold = _required_literals(rx)

    def _candidates(self, must: list[bytes], data: bytes, lo: int, hi: int) -> dict[int, int]:
        """{line start: line end (its \\n)} of the lines holding one of the ``must`` literals."""
        hay = data.lower() if self.fold else data
        found: dict[int, int] = {}
        for lit in must:
            i = hay.find(lit, lo, hi)
            while i >= 0:
                e = hay.find(b"\n", i, hi)
                e = hi if e < 0 else e
                s = hay.rfind(b"\n", lo, i)
                found[lo if s < 0 else s + 1] = e
                i = hay.find(lit, e + 1, hi)
        return found

    def all(self, data: bytes, lo: int, hi: int) -> Iterator[int]:
        """An offset in each matching line of data[lo:hi], ascending, one per line."""
        search = self.rx.search
        if self.must is not None:
            found = self._candidates(self.must, data, lo, hi)
            for s in sorted(found):
                if search(data, s, found[s]) is not None:
                    yield s
            return
        pos = lo
        while pos < hi:
            m = search(data, pos, hi)
            if m is None or m.start() >= hi:
                return
            yield m.start()
            e = data.find(b"\n", m.start(), hi)
            pos = hi if e < 0 else e + 1

    def first(self, data: bytes, lo: int, hi: int) -> int:
        for i in self.all(data, lo, hi):
            return i
        return -1

    def last(self, data: bytes, lo: int, hi: int) -> int:
        if self.must is not None:
            found = self._candidates(self.must, data, lo, hi)
            for s in sorted(found, reverse=True):
                if self.rx.search(data, s, found[s]) is not None:
                    return s
            return -1
        return max(self.all(data, lo, hi), default=-1)


def _required_literals(rx: re.Pattern[bytes]) -> tuple[list[bytes] | None, bool]:
    """(literals one of which every match contains, or None; whether to compare lower-cased).

    Read from the parsed pattern; anything not understood gives None (scan with re alone).
    """
    if rx.flags & re.LOCALE:
        return None, False
    try:
        tree = _sre_parse.parse(rx.pattern, rx.flags)
    except Exception:  # the parser is private: fall back to plain re
        return None, False
    fold = [bool(tree.state.flags & re.IGNORECASE)]

    def better(a: list[bytes], b: list[bytes] | None) -> bool:
        if b is None:
            return True
        return (min(map(len, a)), -len(a)) > (min(map(len, b)), -len(b))

    def must(items: Any) -> list[bytes] | None:  # a parser SubPattern
        best: list[bytes] | None = None
        run = bytearray()

        def consider(c: list[bytes] | None) -> None:
            nonlocal best
            if c and all(c) and better(c, best):
                best = c

        for op, av in items:
            if op is _sre_parse.LITERAL and av != 10:
                run.append(av)
                continue
            consider([bytes(run)])
            run.clear()
            if op is _sre_parse.SUBPATTERN:
                if (av[1] | av[2]) & re.IGNORECASE:
                    fold[0] = True
                consider(must(av[-1]))
            elif op is _sre_parse.BRANCH:
                alts = [alt for alt in (must(b) for b in av[1]) if alt]
                if len(alts) == len(av[1]):  # every branch needs a literal
                    consider([lit for alt in alts for lit in alt])
            elif op in _REPEATS and av[0] >= 1:
                consider(must(av[2]))
            elif op is _ATOMIC:
                consider(must(av))
        consider([bytes(run)])
        return best

    try:
        lits = must(tree)
    except Exception:
        return None, False
    if not lits or min(map(len, lits)) < 3 or len(lits) > 8:
        return None, False
    if fold[0]:
        lits = [lit.lower() for lit in lits]
    # A line holding "WARNING" holds "WARN": one pass of bytes.find for both.
    lits = sorted({lit for lit in lits if not any(o != lit and o in lit for o in lits)})
    return lits, fold[0]


try:  # the parser behind re: private, stable since 3.5; _required_literals survives its loss
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # Python 3.10
    import sre_parse as _sre_parse

_REPEATS = tuple(
    getattr(_sre_parse, name)
    for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    if hasattr(_sre_parse, name)
)
_ATOMIC = getattr(_sre_parse, "ATOMIC_GROUP", object())


def _matcher(pattern: str, *, regex: bool, ignore_case: bool) -> tuple[_Find, _Find]:
    """(find, rfind) over bytes: an offset in the first/last matching line in [lo, hi), or -1.

    A literal uses bytes.find/rfind (several times faster than re); a case-blind literal
    lower-cases the block first, still faster than re.IGNORECASE.
    """
    if regex:
        flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
        try:
            rx = re.compile(pattern.encode("utf-8"), flags)
        except re.error as e:
            raise UsageError(f"search pattern {pattern!r}: {e}") from None
        scanner = _Scanner(rx)
        return scanner.first, scanner.last
    needle = pattern.encode("utf-8")
    if ignore_case and needle.lower() != needle.upper():
        low = needle.lower()

        def find_folded(data: bytes, lo: int, hi: int) -> int:
            return data.lower().find(low, lo, hi)

        def rfind_folded(data: bytes, lo: int, hi: int) -> int:
            return data.lower().rfind(low, lo, hi)

        return find_folded, rfind_folded

    def find_literal(data: bytes, lo: int, hi: int) -> int:
        return data.find(needle, lo, hi)

    def rfind_literal(data: bytes, lo: int, hi: int) -> int:
        return data.rfind(needle, lo, hi)

    return find_literal, rfind_literal
