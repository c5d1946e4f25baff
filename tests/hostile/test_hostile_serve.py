"""`mmops serve` must refuse a launch that cannot work before it starts anything.

A refusal after the preflight is recorded as a run folder (events FAILED, the failure bundle)
with no attempt log, and no process survives; bad flags stop it before any folder exists.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

RUN_FOLDER = ["state", "state/*"]  # XDG_STATE_HOME: mmops/runs/<run>/ and what it holds


def started_nothing(state: Path) -> None:
    """The run folder says FAILED before any attempt, and holds no attempt log."""
    runs = sorted((state / "mmops" / "runs").iterdir())
    assert len(runs) == 1, runs
    assert not list(runs[0].glob("attempt-*.log")), "an attempt was started"
    events = [json.loads(x) for x in (runs[0] / "events.jsonl").read_text().splitlines()]
    assert [e["state"] for e in events] == ["FAILED"] and events[0]["attempt"] == 0


def serve_args(model: Path | str, port: int | str) -> list[str]:
    return [
        "serve", "--model", str(model), "--device", "cpu", "--python", sys.executable,
        "--port", str(port), "--stop-timeout", "1",
    ]  # fmt: skip


def test_serve_port_already_in_use(hostile, model):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        hostile.run(
            serve_args(model, port),
            expect_rc=2,
            max_lines=8,  # run folder, the refusal, the failed check and its fix, the bundle
            mention=["preflight failed; not starting", "FAIL host.port", f"port {port}"],
            allow_new=RUN_FOLDER,
        )
    started_nothing(hostile.state)


def test_serve_model_dir_missing(hostile, launch, tmp_path):
    gone = tmp_path / "no-such-model"
    hostile.run(
        serve_args(gone, launch[-1]),
        expect_rc=2,
        max_lines=8,
        mention=["preflight failed; not starting", "FAIL model.config", f"{gone} does not exist"],
        allow_new=RUN_FOLDER,
    )
    started_nothing(hostile.state)


def test_serve_model_dir_is_a_file(hostile, launch, model):
    hostile.run(
        serve_args(model / "config.json", launch[-1]),
        expect_rc=2,
        max_lines=8,
        mention=["not starting", "FAIL model.config", "is not a directory"],
        allow_new=RUN_FOLDER,
    )
    started_nothing(hostile.state)


def test_serve_truncated_shard(hostile, launch, model):
    shard = sorted(model.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-5])
    hostile.run(
        serve_args(model, launch[-1]),
        expect_rc=2,
        max_lines=9,
        mention=["not starting", "FAIL model.weights", "unreadable", shard.name],
        allow_new=RUN_FOLDER,
    )
    started_nothing(hostile.state)


@pytest.mark.parametrize(
    "python,why",
    [("missing", "no such file"), ("dir", "is a directory"), ("true", "not a Python interpreter")],
)
def test_serve_python_unusable(hostile, launch, model, tmp_path, python, why):
    path = {"missing": tmp_path / "venv" / "bin" / "python", "dir": tmp_path, "true": "/bin/true"}
    args = serve_args(model, launch[-1])
    args[args.index("--python") + 1] = str(path[python])
    hostile.run(args, expect_rc=2, mention=[f"--python {path[python]}", why])
    assert not hostile.state.exists(), "a run folder was made for a launch that cannot start"


@pytest.mark.parametrize(
    "extra,mention",
    [
        (["--max-num-seqs", "0"], ["--max-num-seqs", "at least 1"]),
        (["--gpu-memory-utilization", "2"], ["--gpu-memory-utilization", "at most 1"]),
        (["--stop-timeout", "soon"], ["--stop-timeout", "invalid float value"]),
        (["--profile", "nope"], ["--profile nope", "known:"]),
        (["--env", "=x"], ["--env '=x'", "KEY=VALUE"]),
    ],
    ids=["max-num-seqs-0", "gmu-2", "stop-timeout-text", "profile-nope", "env-no-key"],
)
def test_serve_bad_input_starts_nothing(hostile, launch, model, extra, mention):
    hostile.run([*serve_args(model, launch[-1]), *extra], expect_rc=2, mention=mention)
    assert not hostile.state.exists(), "a run folder was made for bad input"
