"""Bundles of a FAILED run made by `mmops serve` itself (the fake vLLM through the module entry
point, as tests/test_supervisor_cli.py runs it): serve writes bundle.tar.gz into the run folder
and keeps its exit code; `mmops bundle` of that run holds what the escalation needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fakesupport import REPO, cli_env  # noqa: E402
from test_bundle import ENV_SECRETS, RUN_MEMBERS, read_bundle  # noqa: E402
from test_supervisor_cli import only_run, write_profile  # noqa: E402

import mmops.bundle  # noqa: E402
from mmops.cli import main  # noqa: E402
from mmops.redact import MASK  # noqa: E402

pytestmark = pytest.mark.timeout(90)

ARGV_KEY = "sk-PLANTEDserveArgvKey000001"
PROFILE_VALUE = "profile-secret-PLANTED-0002"
SECRETS = [ARGV_KEY, PROFILE_VALUE, *ENV_SECRETS.values()]


@pytest.fixture(scope="module")
def failed_serve(tmp_path_factory):
    """One `mmops serve` whose server fails twice (npu_vm: the automatic fix does not help),
    with secrets in its profile, its argv and its environment. (result, state dir, run dir)"""
    tmp = tmp_path_factory.mktemp("serve")
    profile = write_profile(tmp, "npu_vm", FAKE_VLLM_VM_ALWAYS="1", OPENAI_API_KEY=PROFILE_VALUE)
    state = tmp / "state"
    res = subprocess.run(
        [sys.executable, "-m", "mmops", "serve", "-p", str(profile), "--no-preflight", "-q",
         "--state-dir", str(state), "--api-key", ARGV_KEY],
        capture_output=True, text=True, env=cli_env(**ENV_SECRETS), cwd=REPO, timeout=60,
    )  # fmt: skip
    return res, state, only_run(state)


def test_failed_serve_writes_a_bundle_and_keeps_its_exit_code(failed_serve):
    res, _, run = failed_serve
    assert res.returncode == 1, res.stderr
    bundle = run / "bundle.tar.gz"
    assert f"mmops: failure bundle: {bundle} (" in res.stderr
    # serve's own report of the failure is all still there, before the bundle line
    assert "FAILED    attempt 2" in res.stderr and "fix: Set PYTORCH_NPU_ALLOC_CONF" in res.stderr
    assert res.stderr.index("record: ") < res.stderr.index("failure bundle: ")
    members = read_bundle(bundle)
    assert RUN_MEMBERS | {"attempt-1.log", "attempt-2.log"} <= set(members)
    assert "**FAILED**" in members["summary.md"].decode()
    for name, data in members.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} leaked into {name}"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_bundle_of_a_failed_run_holds_what_the_escalation_needs(failed_serve, tmp_path, capsys):
    _, state, run = failed_serve
    out = tmp_path / "escalation.tar.gz"

    assert main(["bundle", "--state-dir", str(state), "--lines", "10", "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (")
    members = read_bundle(out)
    assert set(members) == RUN_MEMBERS | {"attempt-1.log", "attempt-2.log"}

    summary = members["summary.md"].decode()
    assert "verdict: **FAILED** at attempt 2 of 3" in summary
    assert "`npu.virtual_memory`" in summary  # the signature matched, per attempt
    remedies = summary.split("## Remedies tried", 1)[1].split("##", 1)[0]
    assert "PYTORCH_NPU_ALLOC_CONF=expandable_segments:False" in remedies
    diagnosis = summary.split("## Diagnosis", 1)[1]
    assert "attempt-2.log, the last failed attempt" in diagnosis
    assert "CRASH: NPU virtual memory (expandable segments) failure [npu.virtual_memory]" in (
        diagnosis
    )

    whole = (run / "attempt-2.log").read_text().splitlines()
    assert len(whole) > 10
    assert members["attempt-2.log"].decode().splitlines() == whole[-10:]
    manifest = members["MANIFEST.txt"].decode()
    assert (
        f"attempt-2.log: cut to its last 10 lines (--lines 10): {len(whole) - 10} earlier lines"
        in manifest
    )
    assert "bundle.tar.gz: an earlier bundle" in manifest
    for name in set(members) - {"MANIFEST.txt"}:
        assert f"  {name} " in manifest, name

    plan = json.loads(members["plan.json"])
    assert plan["argv"][-2:] == ["--api-key", MASK] and plan["env"]["OPENAI_API_KEY"] == MASK
    states = [json.loads(x).get("state") for x in members["events.jsonl"].splitlines()]
    assert [s for s in states if s] == ["STARTING", "BACKOFF", "STARTING", "FAILED"]
    doctor = json.loads(members["doctor.json"])
    assert "the run skipped its preflight" in doctor["summary"]["source"]
    assert json.loads(members["versions.json"])["python"]["examined"] == sys.executable
    for name, data in members.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} leaked into {name}"


def test_a_bundle_that_cannot_be_written_changes_nothing_in_serve(tmp_path, monkeypatch, capsys):
    def broken(*args: object, **kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mmops.bundle, "write_bundle", broken)
    profile = write_profile(tmp_path, "config_error", max_attempts=1)
    state = tmp_path / "state"

    rc = main(["serve", "-p", str(profile), "--no-preflight", "-q", "--state-dir", str(state)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "mmops: no failure bundle: OSError: [Errno 28] No space left on device" in err
    assert "FAILED" in err and "config.max_len_above_derived" in err and "fix: " in err
    assert not (only_run(state) / "bundle.tar.gz").exists()


def test_no_planted_secret_in_the_run_folder_output_or_diagnosis(failed_serve):
    """Secrets planted in argv, profile and environment reach none of what serve leaves:
    its own output, every file of the run folder, and `mmops diagnose` of the run."""
    res, _, run = failed_serve
    diag = subprocess.run(
        [sys.executable, "-m", "mmops", "diagnose", str(run), "--all"],
        capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=60,
    )  # fmt: skip
    places = {"serve stdout": res.stdout, "serve stderr": res.stderr, "diagnose": diag.stdout}
    files = [p for p in run.rglob("*") if p.is_file() and p.suffix != ".gz"]
    assert {"plan.json", "events.jsonl", "attempt-1.log"} <= {p.name for p in files}
    places.update({p.name: p.read_text(errors="replace") for p in files})
    leaks = [(s, where) for where, text in places.items() for s in SECRETS if s in text]
    assert not leaks
    # the key is in the plan, masked (the child alone gets the real value)
    assert MASK in (run / "plan.json").read_text()
