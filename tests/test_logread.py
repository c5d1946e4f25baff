"""Reading messy logs: prefixes, ANSI, CRLF, gzip, bad bytes, run folders, bad input.

Prefixed lines are real lines from tests/fixtures/logs/corpus/ (sources in MANIFEST.yaml) or
from /work/shared/notes/failure-signatures.md (sources cited there); the issue each comes
from is named beside it.
"""

from __future__ import annotations

import gzip
import os

import pytest

from mmops.diagnose import logread
from mmops.diagnose.logread import (
    Source,
    iter_lines,
    normalize,
    open_inputs,
    parse_line,
    read_chunks,
)
from mmops.errors import MmopsError


@pytest.mark.parametrize(
    ("raw", "text", "source", "pid", "rank", "level"),
    [
        # vllm-project/vllm-ascend#4678 (corpus 004)
        (
            "(EngineCore_DP0 pid=10516) ERROR 12-03 12:16:41 [core.py:710]         Solution: Close "
            "applications not in use.",
            "Solution: Close applications not in use.",
            "EngineCore_DP0",
            10516,
            0,
            "ERROR",
        ),
        # vllm-project/vllm-ascend#2712 (corpus 014): worker with rank=
        (
            "(VllmWorker rank=1 pid=7226) ERROR 09-03 03:02:37 [multiproc_executor.py:522] "
            "[ERROR] 2025-09-03-03:02:37 (PID:7226, Device:1, RankID:-1) ERR02200 DIST call hccl "
            "api failed.",
            "[ERROR] 2025-09-03-03:02:37 (PID:7226, Device:1, RankID:-1) ERR02200 DIST call hccl "
            "api failed.",
            "VllmWorker rank=1",
            7226,
            1,
            "ERROR",
        ),
        # vllm-project/vllm#56180 (corpus 002)
        (
            "(EngineCore pid=3677484) ERROR 09-10 09:37:41 [multiproc_executor.py:314] Worker proc "
            "VllmWorker-0 died unexpectedly (exit code: None), shutting down executor.",
            "Worker proc VllmWorker-0 died unexpectedly (exit code: None), shutting down executor.",
            "EngineCore",
            3677484,
            None,
            "ERROR",
        ),
        # vllm-project/vllm-ascend#16654: (Worker_TP11_DCP11_EP11 pid=...)
        (
            "(Worker_TP11_DCP11_EP11 pid=2640) ERROR 09-02 05:45:09 [multiproc_executor.py:987]"
            "         The error from device(chipId:5, dieId:1)",
            "The error from device(chipId:5, dieId:1)",
            "Worker_TP11_DCP11_EP11",
            2640,
            11,
            "ERROR",
        ),
        # vllm-project/vllm-ascend#10299: APIServer + uvicorn access line
        (
            '(APIServer pid=9893) INFO:     127.0.0.1:35496 - "POST /v1/chat/completions '
            'HTTP/1.1" 500 Internal Server Error',
            '127.0.0.1:35496 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error',
            "APIServer",
            9893,
            None,
            "INFO",
        ),
        # vllm-project/vllm-ascend#382 (corpus 016): [rankN]: + c10 header
        (
            "[rank1]:[E324 13:00:25.428029551 compiler_depend.ts:574] [Rank 1] Watchdog caught "
            "collective operation timeout",
            "[Rank 1] Watchdog caught collective operation timeout",
            None,
            None,
            1,
            "ERROR",
        ),
        # vllm-project/vllm#6042 (corpus 017): Ray prefix + [rankN]: + old c10 header
        (
            "(RayWorkerWrapper pid=489968) [rank1]:[E ProcessGroupNCCL.cpp:563] [Rank 1] Watchdog",
            "[Rank 1] Watchdog",
            "RayWorkerWrapper",
            489968,
            1,
            "ERROR",
        ),
        # vllm-project/vllm#9839: old vLLM logger header without '['
        (
            "ERROR 10-30 11:47:32 async_llm_engine.py:656] Engine iteration timed out. This should "
            "never happen!",
            "Engine iteration timed out. This should never happen!",
            None,
            None,
            None,
            "ERROR",
        ),
        # QwenLM/Qwen3-VL#1700 (corpus 005): container timestamp with zone name
        (
            "2025-10-24T17:12:08.363548947 +08:00 CST (APIServer pid=1) ERROR 10-24 17:12:08 "
            "[async_llm.py:480] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered "
            "an issue.",
            "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.",
            "APIServer",
            1,
            None,
            "ERROR",
        ),
        # vllm-project/vllm#10439 (corpus 009): docker compose service column
        (
            "vllm-1  | ERROR 11-18 18:07:28 engine.py:366] ValueError: No available memory for the "
            "cache blocks.",
            "ValueError: No available memory for the cache blocks.",
            None,
            None,
            None,
            "ERROR",
        ),
        # vllm-project/vllm-ascend#5135-style nesting (corpus 020): two process prefixes
        (
            "(vLLMHttpServer pid=77054) (Worker_TP3 pid=78100) ERROR 04-20 21:27:00 "
            "[multiproc_executor.py:932]        New capture stream failed, stream_id=1987",
            "New capture stream failed, stream_id=1987",
            "vLLMHttpServer",
            77054,
            None,
            "ERROR",
        ),
        # vllm-project/vllm#2734 (corpus 018): ANSI colours pasted without the ESC byte
        (
            " [36m(RayWorkerVllm pid=5085) [0m [E ProcessGroupNCCL.cpp:475] [Rank 4] Watchdog",
            "[Rank 4] Watchdog",
            "RayWorkerVllm",
            5085,
            None,
            "ERROR",
        ),
        # vllm-ascend#6934 (dev2/211): a dated vLLM format, nested process prefixes
        (
            "(EngineCore_DP0 pid=84074) (Worker_DP0_TP0_EP0 pid=84098) ERROR 2026-03-02 "
            "22:27:34.901 [multiproc_executor.py:863] The above exception was the direct cause",
            "The above exception was the direct cause",
            "EngineCore_DP0",
            84074,
            0,
            "ERROR",
        ),
    ],
)
def test_prefix_styles(raw, text, source, pid, rank, level):
    parsed = parse_line(raw)
    assert parsed.text == text
    assert parsed.source == source
    assert parsed.pid == pid
    assert parsed.rank == rank
    assert parsed.level == level


def test_journald_and_real_ansi_and_crlf():
    # journald short format around a real vLLM line (vllm-project/vllm-ascend#3479)
    line = (
        "Nov 17 11:40:21 node7 vllm[415]: INFO 10-15 16:32:15 [kv_cache_utils.py:1087] "
        "GPU KV cache size: 182,784 tokens\r\n"
    )
    parsed = parse_line(line)
    assert parsed.text == "GPU KV cache size: 182,784 tokens"
    assert parsed.pid == 415 and parsed.level == "INFO"
    colored = (
        "\x1b[1;36m(EngineCore_DP0 pid=1)\x1b[0;0m \x1b[32mINFO\x1b[0m 10-15 16:32:15 [a.py:1] hi\r"
    )
    assert normalize(colored) == "hi"


def test_indent_of_traceback_frames_is_kept():
    # corpus 010: frame lines are indented after the prefix
    parsed = parse_line(
        '(EngineCore pid=90)   File "/x/core.py", line 304, in _initialize_kv_caches'
    )
    assert parsed.indent == 2 and parsed.text.startswith("File ")
    assert parse_line("    raise ValueError(").indent == 4
    assert parse_line("(function empty_cache)").text == "(function empty_cache)"


def _write(path, data: bytes):
    path.write_bytes(data)
    return Source(str(path), path)


def test_gzip_is_detected_by_magic_bytes(tmp_path):
    body = b"".join(f"line {i}\n".encode() for i in range(1000))
    src = _write(tmp_path / "no-gz-suffix.log", gzip.compress(body))
    assert b"".join(read_chunks(src)) == body


def test_corrupt_gzip_is_a_one_line_error(tmp_path):
    src = _write(tmp_path / "bad.gz", gzip.compress(b"hello\n" * 1000)[:40])
    with pytest.raises(MmopsError, match="bad.gz"):
        b"".join(read_chunks(src))


def test_non_utf8_bytes_are_replaced(tmp_path):
    src = _write(tmp_path / "latin.log", b"ok \xff\xfe caf\xe9\r\nsecond\n")
    assert list(iter_lines(src)) == [(1, "ok \ufffd\ufffd caf\ufffd"), (2, "second")]


def test_binary_file_is_refused(tmp_path):
    src = _write(tmp_path / "model.bin", bytes(range(256)) * 64)
    with pytest.raises(MmopsError, match="binary"):
        list(read_chunks(src))


def test_chunks_end_on_line_boundaries(tmp_path):
    lines = [f"{i:05d} ".encode() + b"x" * (i % 37) + b"\n" for i in range(3000)]
    src = _write(tmp_path / "a.log", b"".join(lines) + b"no newline at end")
    chunks = list(read_chunks(src, chunk_bytes=4096))
    assert len(chunks) > 10
    assert all(c.endswith(b"\n") for c in chunks[:-1])
    assert b"".join(chunks) == b"".join(lines) + b"no newline at end"
    assert list(iter_lines(src))[-1] == (3001, "no newline at end")


def test_overlong_line_is_cut_and_counted_once(tmp_path, monkeypatch):
    monkeypatch.setattr(logread, "MAX_LINE_BYTES", 1000)
    src = _write(tmp_path / "long.log", b"first\n" + b"y" * 50_000 + b"\nlast\n")
    got = b"".join(read_chunks(src, chunk_bytes=4096)).splitlines()
    assert got == [b"first", b"y" * 1000, b"last"]


def test_inputs_missing_directory_and_run_folder(tmp_path):
    with pytest.raises(MmopsError, match="nope.log: no such file"):
        open_inputs([str(tmp_path / "nope.log")])
    with pytest.raises(MmopsError, match="no log files in this directory"):
        open_inputs([str(tmp_path)])
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.jsonl").write_text("{}\n")
    for n in (1, 2, 10):
        (run / f"attempt-{n}.log").write_text(f"attempt {n}\n")
    assert [s.path.name for s in open_inputs([str(run)])] == ["attempt-10.log"]
    assert [s.path.name for s in open_inputs([str(run)], attempt=2)] == ["attempt-2.log"]
    with pytest.raises(MmopsError, match="no attempt 3 .attempts: 1, 2, 10."):
        open_inputs([str(run)], attempt=3)
    with pytest.raises(MmopsError, match="--attempt needs a run folder"):
        open_inputs([str(run / "attempt-1.log")], attempt=1)
    (run / "events.jsonl").unlink()  # a run folder copied without its record still reads
    assert [s.path.name for s in open_inputs([str(run)])] == ["attempt-10.log"]
    assert open_inputs([]) == [Source("<stdin>", None)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    f = tmp_path / "secret.log"
    f.write_text("x\n")
    f.chmod(0)
    with pytest.raises(MmopsError, match="not readable"):
        open_inputs([str(f)])


# ----------------------------------------------------------------------------- lines in memory


def test_memory_lines_read_like_the_file_holding_them(tmp_path):
    # Multibyte text, a CR left on a line, an empty line, a tqdm bar that starts with CR.
    lines = [f"{i:05d} caf\u00e9 \u2588" + "x" * (i % 53) for i in range(2000)]
    lines[10] = "ends with a carriage return\r"
    lines[11] = ""
    lines[12] = "\rLoading safetensors checkpoint shards: 100% Completed | 1/1"
    on_disk = _write(tmp_path / "same.log", ("\n".join(lines) + "\n").encode("utf-8"))
    mem = Source.from_lines("attempt.log", lines)
    chunks = list(read_chunks(mem, chunk_bytes=4096))
    assert len(chunks) > 10 and all(c.endswith(b"\n") for c in chunks)
    assert b"".join(chunks) == b"".join(read_chunks(on_disk, chunk_bytes=4096))
    assert list(iter_lines(mem)) == list(iter_lines(on_disk))
    assert mem.label == "attempt.log" and mem.path is None


def test_memory_lines_stay_one_line_each_and_bad_input_is_refused(monkeypatch):
    # An element holding a newline must not shift the numbers of the lines after it.
    src = Source.from_lines("m", ["one", "two\nstill two", "three"])
    assert list(iter_lines(src)) == [(1, "one"), (2, "two still two"), (3, "three")]
    assert list(read_chunks(Source.from_lines("m", []))) == []
    monkeypatch.setattr(logread, "MAX_LINE_BYTES", 1000)
    got = b"".join(read_chunks(Source.from_lines("m", ["a", "y" * 50_000, "b"]), 4096))
    assert got.splitlines() == [b"a", b"y" * 1000, b"b"]
    with pytest.raises(MmopsError, match="m: binary data"):
        list(read_chunks(Source.from_lines("m", ["\x00\x01\x02\x03" * 100])))
