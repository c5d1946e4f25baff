"""`mmops diagnose` on inputs that are no log: exit 2 and one line naming the input, in bounded
time; on logs that are odd but text, a report with its verdict (0 started / requested-stop,
3 crash / unknown), never a hang or a traceback."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "real-cpu"


def test_empty_file(hostile, tmp_path):
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: empty, nothing to diagnose"])


def test_binary_file(hostile, tmp_path):
    log = tmp_path / "weights.bin"
    log.write_bytes(bytes(range(256)) * 400)
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: binary data, not a text log"])


def test_a_directory_with_no_logs_and_no_run(hostile, tmp_path):
    (tmp_path / "notes.md").write_text("not a log\n")
    hostile.run(
        ["diagnose", tmp_path],
        expect_rc=2,
        mention=[f"{tmp_path}: no log files in this directory", ".log, .txt", "attempt-N.log"],
    )


def test_dev_zero_stops_at_once(hostile):
    # An endless device: the first chunk is NUL bytes, so it is refused as binary, not read on.
    out = hostile.run(
        ["diagnose", "/dev/zero"], expect_rc=2, mention=["/dev/zero: binary data"], timeout=10
    )
    assert out.wall_s < 10


def test_dev_urandom_stops_at_once(hostile):
    hostile.run(
        ["diagnose", "/dev/urandom"], expect_rc=2, mention=["/dev/urandom: binary data"], timeout=10
    )


def test_dev_null_is_empty(hostile):
    hostile.run(["diagnose", "/dev/null"], expect_rc=2, mention=["/dev/null: empty"])


def test_corrupt_gzip(hostile, tmp_path):
    log = tmp_path / "vllm.log.gz"
    log.write_bytes(b"\x1f\x8b\x08\x00" + b"not deflate data at all" * 10)
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: corrupt gzip data"])


def test_truncated_gzip(hostile, tmp_path):
    log = tmp_path / "vllm.log.gz"
    log.write_bytes(gzip.compress((LOGS / "healthy-start.log").read_bytes())[:300])
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: corrupt gzip data"])


def test_gzip_of_binary_data(hostile, tmp_path):
    log = tmp_path / "core.gz"
    log.write_bytes(gzip.compress(bytes(1 << 20)))
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: binary data"])


def test_one_10_mb_line_is_read_in_bounded_time(hostile, tmp_path):
    log = tmp_path / "one-line.log"
    log.write_bytes(b"ERROR " + b"x" * 10_000_000 + b"\n")
    out = hostile.run(
        ["diagnose", log],
        expect_rc=3,  # unknown: nothing to explain, said as a verdict
        where="stdout",
        max_lines=0,
        mention=["UNKNOWN", "read 1 line"],
    )
    assert out.wall_s < 15 and len(out.stdout) < 20_000  # the line is not echoed whole


def test_a_10_mb_line_without_newline_among_real_lines(hostile, tmp_path):
    log = tmp_path / "mixed.log"
    log.write_bytes((LOGS / "kv-cache-too-small.log").read_bytes() + b"y" * 10_000_000)
    out = hostile.run(
        ["diagnose", log], expect_rc=3, where="stdout", max_lines=0, mention=["CRASH"]
    )
    assert len(out.stdout) < 20_000


def test_stdin_devnull(hostile):
    hostile.run(["diagnose", "-"], expect_rc=2, mention=["<stdin>: empty, nothing to diagnose"])


def test_stdin_closed(hostile):
    hostile.run(
        ["diagnose", "-"], close_stdin=True, expect_rc=2, mention=["standard input is closed"]
    )


def test_stdin_binary(hostile):
    hostile.run(
        ["diagnose"], stdin=b"\x00\x01\x02" * 10_000, expect_rc=2, mention=["<stdin>: binary data"]
    )


def test_missing_file(hostile, tmp_path):
    gone = tmp_path / "gone.log"
    hostile.run(["diagnose", gone], expect_rc=2, mention=[f"{gone}: no such file"])


def test_missing_file_among_good_ones(hostile, tmp_path):
    gone = tmp_path / "rank1.log"
    hostile.run(
        ["diagnose", LOGS / "healthy-start.log", gone],
        expect_rc=2,
        mention=[f"{gone}: no such file"],
    )


def test_attempt_on_a_file(hostile):
    log = LOGS / "healthy-start.log"
    hostile.run(
        ["diagnose", "--attempt", "2", log],
        expect_rc=2,
        mention=["--attempt needs a run folder", str(log)],
    )


def test_attempt_not_a_number(hostile):
    hostile.run(
        ["diagnose", "--attempt", "last", "x.log"],
        expect_rc=2,
        mention=["--attempt", "invalid int value: 'last'"],
    )


def test_run_folder_without_that_attempt(hostile, tmp_path):
    run = tmp_path / "20260101T000000Z-x"
    run.mkdir()
    (run / "events.jsonl").write_text("")
    (run / "attempt-1.log").write_bytes((LOGS / "healthy-start.log").read_bytes())
    hostile.run(
        ["diagnose", "--attempt", "7", run],
        expect_rc=2,
        mention=[f"{run}: no attempt 7", "attempts: 1"],
    )


def test_unknown_flag(hostile):
    hostile.run(
        ["diagnose", "--verbose", "x.log"],
        expect_rc=2,
        mention=["unrecognized arguments: --verbose"],
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root here: chmod 000 does not stop root")
def test_unreadable_file(hostile, tmp_path):
    log = tmp_path / "secret.log"
    log.write_text("INFO hi\n")
    log.chmod(0)
    hostile.run(["diagnose", log], expect_rc=2, mention=[f"{log}: not readable"])


def test_unicode_and_spaces_in_the_path_work(hostile, tmp_path):
    log = tmp_path / "журнал с пробелами" / "vLLM 日志 é.log"
    log.parent.mkdir()
    log.write_bytes((LOGS / "healthy-start.log").read_bytes())
    out = hostile.run(["diagnose", "--json", log], expect_rc=0, where=None)
    # The recorded start ends with a Ctrl-C: exit 0, and the odd path named as it is.
    assert json.loads(out.stdout)["verdict"] == "requested-stop" and str(log) in out.stdout
