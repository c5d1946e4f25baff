"""Run folders: naming, atomic JSON, append-only events that survive a torn write, lookup."""

from __future__ import annotations

import json
import os

import pytest

from mmops.errors import UsageError
from mmops.serve import runs
from mmops.serve.replay import read_events


def test_state_root_xdg_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert runs.state_root() == tmp_path / "xdg" / "mmops" / "runs"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runs.state_root() == tmp_path / "home" / ".local" / "state" / "mmops" / "runs"
    assert runs.state_root(tmp_path / "d") == tmp_path / "d"


def test_create_names_by_utc_time_and_never_reuses(tmp_path):
    t = 1795000000.0  # 2026-11-18T...Z
    a = runs.Run.create(tmp_path, "qwen2.5-vl 7b/profile", now=t)
    b = runs.Run.create(tmp_path, "qwen2.5-vl 7b/profile", now=t)
    assert a.name == f"{runs.utc_stamp(t)}-qwen2.5-vl-7b-profile"
    assert b.name == a.name + ".2" and a.path != b.path
    assert runs.list_runs(tmp_path) == [a.path, b.path]


def test_write_json_atomic_leaves_no_temp_files(tmp_path):
    run = runs.Run.create(tmp_path, "x")
    run.write_json("plan.json", {"argv": ["a"]})
    run.write_json("plan.json", {"argv": ["b"]})
    assert json.loads((run.path / "plan.json").read_text()) == {"argv": ["b"]}
    assert sorted(p.name for p in run.path.iterdir()) == ["plan.json"]


def test_events_append_and_a_torn_last_line_is_skipped(tmp_path):
    run = runs.Run.create(tmp_path, "x")
    run.append_event({"time": "t1", "state": "STARTING", "attempt": 1, "reason": "starting"})
    run.append_event({"time": "t2", "state": "READY", "attempt": 1, "reason": "ready"})
    with run.events_path.open("a") as fh:  # mmops SIGKILLed mid-write
        fh.write('{"time": "t3", "state": "BACK')
    assert [e["state"] for e in read_events(run.path)] == ["STARTING", "READY"]


def test_attempt_log_is_append_only(tmp_path):
    run = runs.Run.create(tmp_path, "x")
    with run.open_attempt_log(1) as fh:
        fh.write(b"first\n")
    with run.open_attempt_log(1) as fh:
        fh.write(b"second\n")
    assert run.attempt_log(1).read_bytes() == b"first\nsecond\n"
    (run.path / "attempt-10.log").write_bytes(b"")
    (run.path / "attempt-2.log").write_bytes(b"")
    assert runs.attempts(run.path) == [1, 2, 10]


def test_find_run(tmp_path):
    with pytest.raises(UsageError, match="no runs under"):
        runs.find_run(None, tmp_path)
    a = runs.Run.create(tmp_path, "alpha", now=1795000000)
    b = runs.Run.create(tmp_path, "beta", now=1795000100)
    assert runs.find_run(None, tmp_path) == b.path  # newest
    assert runs.find_run("alpha", tmp_path) == a.path
    assert runs.find_run(b.name, tmp_path) == b.path
    with pytest.raises(UsageError, match="not found"):
        runs.find_run("gamma", tmp_path)
    runs.Run.create(tmp_path, "alpha2", now=1795000200)
    with pytest.raises(UsageError, match="ambiguous"):
        runs.find_run("alph", tmp_path)


def test_find_run_accepts_a_path_with_a_record(tmp_path):
    run = runs.Run.create(tmp_path / "a", "x")
    run.append_event({"state": "STOPPED"})
    assert runs.find_run(os.fspath(run.path), tmp_path / "nothing-here") == run.path
