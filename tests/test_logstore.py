"""Log store: sparse index, random access, appends, truncation/rotation, search, filter, read_range.

Every test works on real files in tmp_path; the reference for "what the lines are" is
``bytes.decode(errors="replace").splitlines()`` of the whole file.
"""

from __future__ import annotations

import os
import random
import re
import threading
import tracemalloc

import pytest

from mmops.errors import UsageError
from mmops.serve import logstore
from mmops.serve.logstore import LINE_CAP, LogChunk, LogStore, read_range

WORDS = [
    b"INFO",
    b"WARNING",
    b"ERROR",
    b"(APIServer pid=11056)",
    b"[loggers.py:335]",
    b"Avg prompt throughput:",
    b"tokens/s,",
    b"GET /v1/models",
    b"caf\xc3\xa9",  # é
    b"\xe4\xb8\xad\xe6\x96\x87",  # 中文
    b"\xf0\x9f\x98\x80",  # an emoji
    b"\xff\xfe",  # invalid UTF-8
    b"\xe2\x82",  # a cut 3-byte sequence
    b"KV cache",
    b"42",
]


def gen_log(rng: random.Random, target: int) -> bytes:
    """Lines of random lengths (0 to ~3 KB), some CRLF, some empty, some invalid UTF-8."""
    out: list[bytes] = []
    size = 0
    n = 0
    while size < target:
        r = rng.random()
        if r < 0.05:
            line = b""
        elif r < 0.08:
            line = b"x" * rng.randrange(1000, 3000)
        else:
            line = b" ".join(rng.choices(WORDS, k=rng.randrange(1, 30))) + b" #%d" % n
        line += b"\r\n" if rng.random() < 0.1 else b"\n"
        out.append(line)
        size += len(line)
        n += 1
    return b"".join(out)


def expected_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[os.PathLike, bytes]:
    data = gen_log(random.Random(1), 3 * 2**20)
    path = tmp_path_factory.mktemp("big") / "attempt-1.log"
    path.write_bytes(data)
    return path, data


def store_of(path, **kw) -> LogStore:
    store = LogStore(path, **kw)
    store.refresh()
    return store


# ----------------------------------------------------------------------------- indexing


@pytest.mark.parametrize("block_bytes", [1 << 16, 777, 1])
def test_random_ranges_equal_splitlines(big, block_bytes):
    path, data = big
    want = expected_lines(data)
    store = LogStore(path, block_bytes=block_bytes)
    assert store.refresh() == len(want)
    assert store.line_count == len(want)
    assert store.tail_offset() == len(data)
    # sparse: about one entry per block, never one per line (1-byte blocks hold one line each)
    if block_bytes > 1:
        assert len(store._starts) <= len(data) // block_bytes + 1 + data.count(b"x" * 1000)
        assert len(store._starts) < len(want) / 4
    rng = random.Random(block_bytes)
    for _ in range(300):
        start = rng.randrange(-5, len(want) + 5)
        count = rng.choice([1, 2, 50, 400, rng.randrange(0, 3000)])
        assert store.lines(start, count) == want[max(start, 0) : max(start + count, 0)]
    assert store.lines(0, len(want) + 10) == want
    for n in (0, 1, len(want) // 2, len(want) - 1, -1):
        assert store.line(n) == want[n]
    with pytest.raises(IndexError):
        store.line(len(want))
    assert store.refresh() == 0


def test_empty_missing_and_unterminated_files(tmp_path):
    path = tmp_path / "attempt-1.log"
    store = LogStore(path)
    assert store.refresh() == 0 and store.line_count == 0 and store.tail_offset() == 0
    assert store.lines(0, 10) == []
    assert store.search("x", 0) is None
    assert store.filter_lines(re.compile(rb"x")) == []
    with pytest.raises(IndexError):
        store.line(0)

    path.write_bytes(b"")  # appears, empty
    assert store.refresh() == 0 and store.line_count == 0

    path.write_bytes(b"first\nsecond")  # the last line has no newline yet
    assert store.refresh() == 1
    assert store.lines(0, 10) == ["first"]
    assert store.tail_offset() == len(b"first\n")
    assert store.generation == 0


def test_crlf_invalid_utf8_and_empty_lines(tmp_path):
    path = tmp_path / "a.log"
    data = b"crlf\r\n\r\n\nbad \xff\xfe end\ncut \xe2\x82\r\nlone\rcr kept\n\xe4\xb8\xad\n"
    path.write_bytes(data)
    store = store_of(path)
    assert store.lines(0, 99) == [
        "crlf",
        "",
        "",
        "bad \ufffd\ufffd end",
        "cut \ufffd",
        "lone\rcr kept",  # tqdm's \r updates stay inside the line
        "中",
    ]


# ----------------------------------------------------------------------------- appends


def test_partial_line_then_its_completion(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"a\nb\npart")
    store = store_of(path)
    assert store.line_count == 2 and store.lines(0, 10) == ["a", "b"]
    assert store.tail_offset() == 4
    with path.open("ab") as fh:
        fh.write(b"ial\r")  # CR arrived, LF not yet
    assert store.refresh() == 0 and store.line_count == 2
    with path.open("ab") as fh:
        fh.write(b"\nnext\n")
    assert store.refresh() == 2
    assert store.lines(0, 10) == ["a", "b", "partial", "next"]
    assert store.line(-1) == "next"
    assert store.tail_offset() == path.stat().st_size


@pytest.mark.parametrize("block_bytes", [1 << 16, 500])
def test_appends_in_random_pieces_while_reading(tmp_path, big, block_bytes):
    """Indexing a file as it grows gives the same lines as indexing it whole."""
    _, full = big
    data = full[: full.index(b"\n", 600_000) + 1]
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    store = LogStore(path, block_bytes=block_bytes)
    rng = random.Random(7)
    written = 0
    total_new = 0
    with path.open("ab", buffering=0) as fh:
        while written < len(data):
            piece = data[written : written + rng.choice([1, 7, 300, 5000, 40_000])]
            fh.write(piece)
            written += len(piece)
            total_new += store.refresh()
            done = data[: data.rfind(b"\n", 0, written) + 1]
            want = expected_lines(done)
            assert store.line_count == len(want) == total_new
            assert store.tail_offset() == len(done)
            # the view follows the tail, and sometimes jumps
            assert store.lines(len(want) - 20, 20) == want[-20:]
            if want and rng.random() < 0.2:
                i = rng.randrange(len(want))
                assert store.lines(i, 30) == want[i : i + 30]
    assert store.lines(0, len(data)) == expected_lines(data)


# ----------------------------------------------------------------------------- long lines


def test_long_lines_are_capped_and_never_held_whole(tmp_path):
    path = tmp_path / "a.log"
    huge = 5 * 2**20 + 3  # longer than one indexing read (4 MiB)
    with path.open("wb") as fh:
        fh.write(b"before\n")
        fh.write(b"\xc3\xa9" * (huge // 2) + b"z\r\n")  # 2-byte characters: cut must not split one
        fh.write(b"y" * (LINE_CAP + 10) + b"\n")
        fh.write(b"after\n")
        fh.write(b"q" * (3 * 2**20))  # an unfinished long last line
    store = LogStore(path)
    tracemalloc.start()
    try:
        assert store.refresh() == 4
        _, peak_index = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        long_line = store.line(1)
        _, peak_line = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_index < 12 * 2**20  # a few reads' worth, not the 8 MiB of lines
    assert peak_line < 2**20
    assert store.line(0) == "before" and store.line(3) == "after"
    assert long_line.startswith("é" * 1000) and "\ufffd" not in long_line
    assert long_line.endswith(" more bytes not shown]")
    shown = long_line[: long_line.index("…")]
    assert len(shown.encode()) <= LINE_CAP
    more = int(long_line.rsplit("[", 1)[1].split()[0].replace(",", ""))
    assert len(shown.encode()) + more == huge // 2 * 2 + 1  # the CR of CRLF is not counted
    assert store.line(2).startswith("y" * 1000) and store.line(2).endswith(
        "[10 more bytes not shown]"
    )
    # search and filter see the shown part of a long line
    assert store.search("after", 0) == 3
    assert store.search("é" * 10, 3, ignore_case=False) == 1
    assert store.filter_lines(re.compile(rb"^y+")) == [2]
    # the unfinished long line completes
    with path.open("ab") as fh:
        fh.write(b"\n")
    assert store.refresh() == 1 and store.line(4).startswith("qqq")
    chunk = read_range(path, 0, 10)
    assert chunk.lines[0] == "before" and chunk.lines[1] == long_line
    assert chunk.lines[2:] == [store.line(2), "after", store.line(4)]
    assert chunk.next_offset == path.stat().st_size


# ----------------------------------------------------------------------------- truncation/rotation


def test_truncation_reindexes_from_zero(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"old line %d\n" % i for i in range(1000)))
    store = store_of(path)
    assert store.line_count == 1000
    assert store.filter_lines(re.compile(rb"line 99")) == [99] + list(range(990, 1000))
    path.write_bytes(b"new 0\nnew 1\n")  # truncated in place, same inode
    assert store.refresh() == 2
    assert store.generation == 1
    assert store.lines(0, 10) == ["new 0", "new 1"]
    assert store.filter_lines(re.compile(rb"line 99")) == []
    assert store.search("new 1", 0) == 1


def test_copytruncate_that_regrew_past_the_old_size(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"old %d\n" % i for i in range(100)))
    store = store_of(path)
    with path.open("r+b") as fh:  # logrotate copytruncate, then the writer went on
        fh.truncate(0)
        fh.write(b"".join(b"fresh line %d\n" % i for i in range(200)))
    assert store.refresh() == 200
    assert store.generation == 1
    assert store.line(0) == "fresh line 0" and store.line(-1) == "fresh line 199"


def test_rotation_by_rename_then_new_file(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\n")
    store = store_of(path)
    os.rename(path, tmp_path / "a.log.1")
    # renamed away, nothing at the path yet: keep what we have, as tail -F does
    assert store.refresh() == 0 and store.lines(0, 5) == ["one", "two"]
    path.write_bytes(b"three\n")
    assert store.refresh() == 1
    assert store.generation == 1
    assert store.lines(0, 5) == ["three"]
    # a rename onto the path (another inode) also starts over
    (tmp_path / "b.log").write_bytes(b"four\nfive\n")
    os.replace(tmp_path / "b.log", path)
    assert store.refresh() == 2 and store.generation == 2
    assert store.lines(0, 5) == ["four", "five"]


# ----------------------------------------------------------------------------- search


def test_search_forward_backward_and_wrap(tmp_path):
    path = tmp_path / "a.log"
    lines = [f"line {i}" for i in range(50)]
    lines[10] = "ERROR first"
    lines[30] = "error second"
    lines[40] = "only here: needle"
    path.write_text("\n".join(lines) + "\n")
    store = store_of(path, block_bytes=64)
    assert store.search("error", 0) == 10
    assert store.search("error", 10) == 30
    assert store.search("error", 30) == 10  # wrapped
    assert store.search("error", 30, ignore_case=False) == 30  # wrapped back to itself
    assert store.search("ERROR", 5, ignore_case=False) == 10
    assert store.search("error", 35, backward=True) == 30
    assert store.search("error", 30, backward=True) == 10
    assert store.search("error", 10, backward=True) == 30  # wrapped
    assert store.search("needle", 40) == 40  # the only match is the start line itself
    assert store.search("needle", 40, backward=True) == 40
    assert store.search("absent", 0) is None
    assert store.search("", 0) is None
    assert store.search("line 4", -1) == 4  # -1: from the top
    assert store.search("line 49", store.line_count, backward=True) == 49  # from the bottom
    assert store.search(r"^line \d$", 5, regex=True) == 6
    assert store.search(r"^line \d$", 5, regex=True, backward=True) == 4
    assert store.search(r"Error \w+$", 0, regex=True) == 10
    assert store.search(r"Error \w+$", 0, regex=True, ignore_case=False) is None
    assert store.search("line 1.", 0) is None  # literal: the dot is a dot
    with pytest.raises(UsageError):
        store.search("(unclosed", 0, regex=True)


@pytest.mark.parametrize("block_bytes", [1 << 16, 900])
def test_search_equals_brute_force(big, block_bytes):
    path, data = big
    want = expected_lines(data)
    store = store_of(path, block_bytes=block_bytes)
    n = len(want)
    rng = random.Random(3)
    needles = ["#1234", "#77 ", "WARNING KV", "kv CACHE error", "#99999999", "café"]
    for _ in range(40):
        needle = rng.choice(needles)
        start = rng.randrange(n)
        backward = rng.random() < 0.5
        step = -1 if backward else 1
        order = [(start + step * (i + 1)) % n for i in range(n)]
        folded = needle.lower()
        hit = next((i for i in order if folded in want[i].lower()), None)
        assert store.search(needle, start, backward=backward) == hit, (needle, start, backward)
        exact = next((i for i in order if needle in want[i]), None)
        assert store.search(needle, start, backward=backward, ignore_case=False) == exact
        rx = re.compile(re.escape(needle), re.I)
        assert store.search(re.escape(needle), start, backward=backward, regex=True) == next(
            (i for i in order if rx.search(want[i])), None
        )


# ----------------------------------------------------------------------------- filter


def test_filter_equals_brute_force_and_is_incremental(tmp_path, big, monkeypatch):
    _, full = big
    path = tmp_path / "a.log"
    cut = full.index(b"\n", 1_000_000) + 1
    path.write_bytes(full[:cut])
    store = store_of(path, block_bytes=4096)
    pattern = re.compile(rb"\b(WARNING|ERROR)\b")

    def brute(data: bytes) -> list[int]:
        return [i for i, s in enumerate(data.split(b"\n")[:-1]) if pattern.search(s)]

    first = store.filter_lines(pattern)
    assert first == brute(full[:cut])
    assert store.filter_lines(pattern) == first  # nothing new: nothing scanned

    scanned: list[tuple[int, int]] = []
    segments = store._segments

    def spy(a, b, backward=False):
        scanned.append((a, b))
        return segments(a, b, backward)

    monkeypatch.setattr(store, "_segments", spy)
    before = store.line_count
    with path.open("ab") as fh:
        fh.write(full[cut : cut + 200_000] + b"WARNING part")  # ends in a partial line
    store.refresh()
    got = store.filter_lines(pattern)
    done = full[cut : cut + 200_000]
    assert got == brute(full[:cut] + done[: done.rfind(b"\n") + 1])
    assert scanned == [(before, store.line_count)]  # only the new lines were scanned
    assert got[: len(first)] == first


PATTERNS = [
    rb"\b(WARNING|ERROR)\b",
    rb"WARNING|ERROR",
    rb"(?i)kv CACHE",
    rb"(?i:error) \xff",
    rb"abc|d",  # no literal of 3+ bytes every match needs: re alone
    rb"^INFO",
    rb"#12\d$",
    rb"#12\d\r$",
    rb"(?:KV cache)+ #\d+",
    rb"(?:foo)?tokens/s, caf",
    rb"[Ee]rror",
    rb"ERROR|ERRNO|ERRATA",
    rb"Avg (prompt|generation) throughput: 42",
    rb"caf\xc3\xa9 \xe4",
    rb"x{1000}",
    rb"(?=WARNING)W",
    rb"(?i)(?-i:WARNING) error",
    # the TUI log view's "warnings and errors only" (mmops/tui/widgets/logview.py)
    rb"\b(?:WARNING|WARN|ERROR|CRITICAL|FATAL)\b|Traceback \(most recent|\w+(?:Error|Exception):",
]


@pytest.mark.parametrize("source", PATTERNS, ids=lambda p: p.decode("latin-1"))
def test_filter_and_regex_search_equal_per_line_brute_force(big, source):
    """Also checks the literal prefilter (bytes.find for the literals a match needs)."""
    path, data = big
    raw = data.split(b"\n")[:-1]
    pattern = re.compile(source)
    want = [i for i, s in enumerate(raw) if pattern.search(s)]
    store = store_of(path, block_bytes=1 << 14)
    assert store.filter_lines(pattern) == want
    if not want:
        return
    n = len(raw)
    rng = random.Random(source)
    text = source.decode("latin-1")
    if b"\\x" in source or re.search(rb"[\x80-\xff]", source):
        return  # search() takes str patterns, encoded as UTF-8
    for _ in range(5):
        start = rng.randrange(n)
        fwd = next((i for i in want if i > start), want[0])
        back = next((i for i in reversed(want) if i < start), want[-1])
        assert store.search(text, start, regex=True, ignore_case=False) == fwd
        assert store.search(text, start, regex=True, ignore_case=False, backward=True) == back


def test_filter_is_per_line_and_takes_str_patterns(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"WARNING a\nINFO WARNING b\nERROR c\r\nINFO d\nWARNING\n")
    store = store_of(path, block_bytes=8)
    # ^ without MULTILINE still anchors at each line, not only at the start of a block
    assert store.filter_lines(re.compile(rb"^(WARNING|ERROR)")) == [0, 2, 4]
    assert store.filter_lines(re.compile(r"warning", re.I)) == [0, 1, 4]
    assert store.filter_lines(re.compile(rb"WARNING$")) == [4]


# ----------------------------------------------------------------------------- read_range


def test_read_range_partial_line_and_chaining(tmp_path):
    path = tmp_path / "attempt-1.log"
    assert read_range(path, 0) == LogChunk([], 0, 0)  # missing file
    assert read_range(path, 17) == LogChunk([], 17, 17)
    path.write_bytes(b"a\r\nbb\nccc")
    chunk = read_range(path, 0)
    assert chunk == LogChunk(["a", "bb"], 0, 6)
    assert read_range(path, chunk.next_offset) == LogChunk([], 6, 6)  # ccc is not complete
    with path.open("ab") as fh:
        fh.write(b"c\nd\n")
    assert read_range(path, 6) == LogChunk(["cccc", "d"], 6, 13)
    assert read_range(path, 0, limit=1) == LogChunk(["a"], 0, 3)
    assert read_range(path, 3, limit=2) == LogChunk(["bb", "cccc"], 3, 11)
    assert read_range(path, 13) == LogChunk([], 13, 13)
    assert read_range(path, 1000) == LogChunk([], 1000, 1000)
    assert read_range(path, 0, limit=0) == LogChunk([], 0, 0)
    with pytest.raises(ValueError):
        read_range(path, -1)


def test_read_range_chains_to_eof_equal_splitlines(big):
    path, data = big
    rng = random.Random(5)
    got: list[str] = []
    offset = 0
    while True:
        chunk = read_range(path, offset, limit=rng.choice([1, 10, 1000, 5000]))
        assert chunk.offset == offset
        if not chunk.lines:
            break
        assert data[chunk.next_offset - 1 : chunk.next_offset] == b"\n"
        got += chunk.lines
        offset = chunk.next_offset
    assert offset == len(data)
    assert got == expected_lines(data)


# ----------------------------------------------------------------------------- threads


def test_reads_while_a_worker_indexes(tmp_path, big):
    """The UI thread may read while a worker runs the first index; it sees a growing prefix."""
    path, data = big
    want = expected_lines(data)
    store = LogStore(path, block_bytes=4096)
    monkey_read = logstore._READ
    logstore._READ = 1 << 16  # publish progress often, so reads interleave with indexing
    try:
        worker = threading.Thread(target=store.refresh)
        worker.start()
        rng = random.Random(9)
        while worker.is_alive():
            n = store.line_count
            if n:
                i = rng.randrange(n)
                got = store.lines(i, 20)  # more lines may be indexed since n was read
                assert len(got) >= min(20, n - i) and got == want[i : i + len(got)]
        worker.join()
    finally:
        logstore._READ = monkey_read
    assert store.line_count == len(want)


def test_filter_in_steps_gives_the_same_lines_as_one_pass(tmp_path):
    path = tmp_path / "steps.log"
    path.write_text("".join(("WARNING x\n" if i % 7 == 0 else f"INFO {i}\n") for i in range(10_000)))
    pattern = re.compile(rb"WARNING")
    whole = LogStore(path)
    whole.refresh()
    stepped = LogStore(path)
    stepped.refresh()
    for upto in range(1_000, 10_000, 1_000):
        part = stepped.filter_lines(pattern, upto)
        assert part and part[-1] < upto  # only lines before the step's end so far
    assert stepped.filter_lines(pattern) == whole.filter_lines(pattern)
    assert len(whole.filter_lines(pattern)) == len(range(0, 10_000, 7))
