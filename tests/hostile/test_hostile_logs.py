"""`mmops logs` on run folders that are missing, garbage, half-written or not run folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

FAILED = {"seq": 1, "time": "2026-12-04T09:07:32.147Z", "state": "FAILED", "attempt": 1,
          "reason": "server exited (exit code 1)", "fix": "lower --max-model-len"}  # fmt: skip
STARTING = {"seq": 1, "time": "2026-12-04T09:07:30.000Z", "state": "STARTING", "attempt": 1,
            "reason": "starting", "mmops_pid": 999_999_999}  # fmt: skip


def make_run(root: Path, name: str, events: bytes, log: bytes | None = b"INFO hello\n") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "events.jsonl").write_bytes(events)
    if log is not None:
        (run / "attempt-1.log").write_bytes(log)
    return run


def line(rec: dict) -> bytes:
    return json.dumps(rec).encode() + b"\n"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


def test_no_runs_at_all(hostile, tmp_path):
    empty = tmp_path / "nothing-here"
    hostile.run(
        ["logs", "--state-dir", empty],
        expect_rc=2,
        mention=[f"no runs under {empty}", "--state-dir"],
    )


def test_run_name_not_found(hostile, runs):
    make_run(runs, "20260101T000000Z-a", line(FAILED))
    hostile.run(
        ["logs", "--state-dir", runs, "nope"],
        expect_rc=2,
        mention=["run 'nope': not found", "recent: 20260101T000000Z-a"],
    )


def test_run_path_that_does_not_exist(hostile, tmp_path):
    gone = tmp_path / "runs" / "20260101T000000Z-gone"
    hostile.run(["logs", gone], expect_rc=2, mention=[f"{gone}: no such run folder"])


def test_run_path_is_a_file(hostile, tmp_path):
    f = tmp_path / "vllm.log"
    f.write_text("INFO hi\n")
    hostile.run(
        ["logs", f],
        expect_rc=2,
        mention=[f"{f}: not a run folder", "events.jsonl or attempt-N.log"],
    )


def test_run_path_is_a_plain_directory(hostile, tmp_path):
    d = tmp_path / "some-dir"
    d.mkdir()
    hostile.run(["logs", d], expect_rc=2, mention=[f"{d}: not a run folder"])


def test_ambiguous_run_name(hostile, runs):
    make_run(runs, "20260101T000000Z-a", line(FAILED))
    make_run(runs, "20260102T000000Z-b", line(FAILED))
    hostile.run(["logs", "--state-dir", runs, "2026"], expect_rc=2, mention=["'2026' is ambiguous"])


def test_attempt_that_does_not_exist(hostile, runs):
    make_run(runs, "20260101T000000Z-a", line(FAILED))
    hostile.run(
        ["logs", "--state-dir", runs, "a", "--attempt", "9"],
        expect_rc=2,
        mention=["--attempt 9", "has attempts 1"],
    )


def test_attempt_not_a_number(hostile, runs):
    hostile.run(
        ["logs", "--state-dir", runs, "--attempt", "two"],
        expect_rc=2,
        mention=["--attempt", "invalid int value: 'two'"],
    )


def test_garbage_events_are_said_not_hidden(hostile, runs):
    junk = b'\x00\xff garbage\n{"a": 1}\n[1, 2]\n"str"\n{"state": "BOGUS"}\n'
    run = make_run(runs, "20260101T000000Z-junk", junk)
    hostile.run(
        ["logs", "--state-dir", runs, "junk", "--events"],
        expect_rc=0,  # what could be read was printed (nothing): a note, not a failure
        mention=[f"{run / 'events.jsonl'}: 5 line(s) that are no mmops event not shown"],
        max_lines=1,
    )


def test_nul_led_junk_events(hostile, runs):
    # bytes json.loads takes for UTF-16 (a NUL first): a UnicodeDecodeError, not a JSON error
    run = make_run(runs, "20260101T000000Z-nul", b"\x00 garbage\n" + line(FAILED))
    out = hostile.run(
        ["logs", "--state-dir", runs, "nul", "--events"],
        expect_rc=0,
        quiet_stdout=False,
        max_lines=1,
        mention=[f"{run / 'events.jsonl'}: 1 line(s) that are no mmops event not shown"],
    )
    assert "FAILED    attempt 1" in out.stdout


def test_half_written_last_event_line(hostile, runs):
    whole = line(STARTING) + line(FAILED)
    run = make_run(runs, "20260101T000000Z-half", whole + line(FAILED)[:25])
    out = hostile.run(
        ["logs", "--state-dir", runs, "half", "--events"],
        expect_rc=0,
        quiet_stdout=False,
        mention=[f"{run / 'events.jsonl'}: a half-written last line not shown"],
        max_lines=1,
    )
    # Both complete records are printed, nothing of the torn one.
    assert "STARTING" in out.stdout and "FAILED    attempt 1: server exited" in out.stdout
    assert out.stdout.count("\n") == 3  # two events and the fix line


def test_event_with_a_time_out_of_range(hostile, runs):
    rec = {**FAILED, "time": 1e300}
    make_run(runs, "20260101T000000Z-t", line(rec) + line({**FAILED, "time": float("nan")}))
    out = hostile.run(["logs", "--state-dir", runs, "t", "--events"], expect_rc=0, where=None)
    # Both records are shown, and neither time is passed off as a real one.
    assert out.stdout.count("(bad time) FAILED") == 2, out.stdout


def test_event_fields_of_the_wrong_type(hostile, runs):
    rec = {**FAILED, "attempt": "x", "reason": 5, "cause": {"id": [1], "line_no": "x"},
           "change": {"change": [1]}, "fix": {"a": 1}, "mmops_pid": "abc"}  # fmt: skip
    make_run(runs, "20260101T000000Z-w", line(rec))
    out = hostile.run(["logs", "--state-dir", runs, "w", "--events"], expect_rc=0, where=None)
    assert "FAILED" in out.stdout


def test_list_with_garbage_and_torn_runs(hostile, runs):
    make_run(runs, "20260101T000000Z-junk", b"garbage\n")
    make_run(runs, "20260102T000000Z-torn", line(FAILED)[:30])
    make_run(runs, "20260103T000000Z-good", line(FAILED))
    out = hostile.run(["logs", "--state-dir", runs, "--list"], expect_rc=0, where=None)
    assert out.stdout.count("\n") == 3 and "20260103T000000Z-good  FAILED" in out.stdout


def test_attempt_log_binary_garbage(hostile, runs):
    run = make_run(runs, "20260101T000000Z-bin", line(FAILED), log=bytes(range(256)) * 100)
    hostile.run(
        ["logs", "--state-dir", runs, "bin", "--errors"],
        expect_rc=2,
        mention=[f"{run / 'attempt-1.log'}: binary data, not a text log"],
    )


def test_follow_a_garbage_run_ends(hostile, runs):
    make_run(runs, "20260101T000000Z-junk", b"no json here\n")
    out = hostile.run(
        ["logs", "--state-dir", runs, "junk", "--follow"], expect_rc=0, where=None, timeout=10
    )
    assert "INFO hello" in out.stdout


def test_follow_a_run_torn_long_ago_ends(hostile, runs):
    # mmops killed while writing its very first record, an hour ago: no owner to wait for.
    run = make_run(runs, "20260101T000000Z-torn", line(STARTING)[:20])
    old = time.time() - 3600
    os.utime(run / "events.jsonl", (old, old))
    out = hostile.run(
        ["logs", "--state-dir", runs, "torn", "--follow"], expect_rc=0, where=None, timeout=10
    )
    assert "INFO hello" in out.stdout


def test_follow_a_run_whose_mmops_is_gone_ends(hostile, runs):
    make_run(runs, "20260101T000000Z-dead", line(STARTING), log=b"INFO loading\nhalf a li")
    out = hostile.run(
        ["logs", "--state-dir", runs, "dead", "--follow"], expect_rc=0, where=None, timeout=10
    )
    assert out.stdout.rstrip().endswith("half a li")


def test_state_dir_is_a_file(hostile, tmp_path):
    f = tmp_path / "state-file"
    f.write_text("x")
    hostile.run(["logs", "--state-dir", f], expect_rc=2, mention=[f"no runs under {f}"])


def test_unicode_and_spaces_in_state_dir_work(hostile, tmp_path):
    root = tmp_path / "états d'exécution" / "运行 目录"
    make_run(root, "20260101T000000Z-ü", line(FAILED), log=b"INFO \xc3\xa9t\xc3\xa9\n")
    out = hostile.run(["logs", "--state-dir", root, "ü"], expect_rc=0, where=None)
    assert out.stdout == "INFO été\n"
