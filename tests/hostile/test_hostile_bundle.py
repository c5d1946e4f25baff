"""`mmops bundle` with outputs it cannot write and runs that do not exist: exit 2 at once, and
no archive, half archive or temp file anywhere."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

FAILED = {"seq": 1, "time": "2026-12-04T09:07:32.147Z", "state": "FAILED", "attempt": 1,
          "reason": "server exited (exit code 1)"}  # fmt: skip


def make_run(root: Path, name: str = "20260101T000000Z-srv", events: bytes | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "events.jsonl").write_bytes(
        json.dumps(FAILED).encode() + b"\n" if events is None else events
    )
    (run / "attempt-1.log").write_text("INFO hello\nERROR boom\n")
    return run


def test_output_in_a_missing_directory(hostile, tmp_path):
    target = tmp_path / "no-such-dir" / "b.tar.gz"
    hostile.run(
        ["bundle", "-o", target],
        expect_rc=2,
        mention=[f"-o {target}", f"directory {target.parent} does not exist"],
    )


def test_output_a_missing_directory_with_a_slash(hostile, tmp_path):
    target = tmp_path / "no-such-dir"
    hostile.run(
        ["bundle", "-o", f"{target}{os.sep}"],
        expect_rc=2,
        mention=[f"-o {target}{os.sep}", "does not exist"],
    )


def test_output_over_a_fifo(hostile, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    hostile.run(["bundle", "-o", fifo], expect_rc=2, mention=[f"-o {fifo}", "not a regular file"])


def test_output_under_a_file(hostile, tmp_path):
    f = tmp_path / "plain-file"
    f.write_text("x")
    hostile.run(["bundle", "-o", f / "b.tar.gz"], expect_rc=2, mention=[f"{f} is not a directory"])


def test_run_that_does_not_exist(hostile, tmp_path):
    root = tmp_path / "runs"
    make_run(root)
    hostile.run(
        ["bundle", "--state-dir", root, "--run", "nope"],
        expect_rc=2,
        mention=["run 'nope': not found", "recent: 20260101T000000Z-srv"],
    )


def test_run_path_that_does_not_exist(hostile, tmp_path):
    gone = tmp_path / "runs" / "20260101T000000Z-gone"
    hostile.run(["bundle", "--run", gone], expect_rc=2, mention=[f"{gone}: no such run folder"])


def test_run_named_with_no_runs_at_all(hostile, tmp_path):
    empty = tmp_path / "empty"
    hostile.run(
        ["bundle", "--state-dir", empty, "--run", "x"],
        expect_rc=2,
        mention=[f"no runs under {empty}"],
    )


@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_bad_lines(hostile, value):
    hostile.run(["bundle", "--lines", value], expect_rc=2, mention=["--lines"])


def test_garbage_run_still_bundles(hostile, tmp_path):
    root = tmp_path / "runs"
    make_run(root, events=b"\x00 garbage\n[1]\n")
    out_file = tmp_path / "out.tar.gz"
    hostile.run(
        ["bundle", "--state-dir", root, "-o", out_file],
        expect_rc=0,
        where=None,
        allow_new=["out.tar.gz"],
    )
    with tarfile.open(out_file) as tar:
        assert any(n.endswith("MANIFEST.txt") for n in tar.getnames())


def test_output_an_existing_directory_with_unicode_and_spaces_works(hostile, tmp_path):
    root = tmp_path / "runs"
    make_run(root)
    dest = tmp_path / "escalation ü 升级"
    dest.mkdir()
    out = hostile.run(
        ["bundle", "--state-dir", root, "-o", dest],
        expect_rc=0,
        where=None,
        allow_new=["escalation ü 升级/mmops-bundle-20260101T000000Z-srv.tar.gz"],
    )
    made = dest / "mmops-bundle-20260101T000000Z-srv.tar.gz"
    assert f"wrote {made}" in out.stdout
    with tarfile.open(made) as tar:
        assert "mmops-bundle-20260101T000000Z-srv/summary.md" in tar.getnames()
