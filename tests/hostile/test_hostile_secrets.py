"""The leak counter: distinctive secrets planted everywhere a user puts them (an --api-key on the
command line, HF_TOKEN and OPENAI_API_KEY in the environment, an hf-token flag and a *_TOKEN
variable in a profile) and counted in everything mmops prints, records or packs: `plan` (text
and --json), `serve`'s output and every file of its run folder, `logs` and `diagnose` of that
run, `bundle` (every member), `offline`'s output and run folder, and the TUI's screen (tmux
capture-pane of its Server and Logs tabs). Every count must be 0; the tally is printed at the
end of the run (``secrets: N planted, 0 found in M places``).

The server is the fake vLLM (tests/fakes), which logs its non-default args as vLLM does, api_key
included; the offline child is a stand-in that prints its engine arguments and its environment's
secrets, as a careless vLLM plugin might.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from fakesupport import REPO, cli_env  # tests/fakes (conftest.py)
from test_offline_cli import standin
from test_supervisor_cli import write_profile
from test_tui_signals import Pane

from hostile.tally import LEAKS, PLANTED

pytestmark = pytest.mark.timeout(120)

ARGV_KEY = "argv-key-HOSTILE-4417"  # --api-key on the command line
PROFILE_FLAG = "profile-hf-HOSTILE-4418"  # the profile's serve: hf-token
PROFILE_ENV = "profile-env-HOSTILE-4419"  # the profile's env: MY_SERVICE_TOKEN
HF_TOKEN = "hf_HOSTILEenvTOKEN0000004420"  # the environment's HF_TOKEN
OPENAI_KEY = "openai-env-HOSTILE-4421"  # the environment's OPENAI_API_KEY
SECRETS = [ARGV_KEY, PROFILE_FLAG, PROFILE_ENV, HF_TOKEN, OPENAI_KEY]
ENV = {"HF_TOKEN": HF_TOKEN, "OPENAI_API_KEY": OPENAI_KEY}

# The offline stand-in: says its engine arguments and what its environment holds, then answers.
CHILD = """
import json, os, sys
job = json.load(open(sys.argv[3])); os.unlink(sys.argv[3])
print("INFO [llm.py:1] engine args: %s" % job["engine"], flush=True)
print("INFO [env] HF_TOKEN=%s OPENAI_API_KEY=%s MY_SERVICE_TOKEN=%s" % (
    os.environ.get("HF_TOKEN"), os.environ.get("OPENAI_API_KEY"),
    os.environ.get("MY_SERVICE_TOKEN")), flush=True)
print("@@mmops-offline stage generate", flush=True)
outs = [dict(index=0, question="q", media=job["media"][0], prompt="p", prompt_tokens=1,
             output_tokens=1, text="t", finish_reason="length")]
print("@@mmops-offline result " + json.dumps(dict(vllm_version="0.32.0", stop_token_ids=None,
      frames=[], outputs=outs, notes=[], timings=dict(generate_s=0.1))), flush=True)
"""


def count(text: str) -> int:
    return sum(text.count(s) for s in SECRETS)


def tally(place: str, text: str) -> None:
    LEAKS[place] = LEAKS.get(place, 0) + count(text)


def files_of(folder: Path) -> str:
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.endswith(".tar.gz"):
            parts.append(members_of(path))
        else:
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


def members_of(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        return "\n".join(
            tar.extractfile(m).read().decode(errors="replace")  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        )


def mmops(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", *map(str, args)],
        capture_output=True, text=True, env=cli_env(**ENV), cwd=REPO, timeout=timeout,
    )  # fmt: skip


def planted_profile(tmp_path: Path) -> Path:
    path = write_profile(tmp_path, "serve", FAKE_VLLM_ENGINE="1", MY_SERVICE_TOKEN=PROFILE_ENV)
    text = path.read_text().replace(
        "  host: 127.0.0.1\n", f"  host: 127.0.0.1\n  hf-token: {PROFILE_FLAG}\n"
    )
    path.write_text(text)
    return path


def test_no_planted_secret_reaches_any_output_record_bundle_or_screen(tmp_path, model, monkeypatch):
    PLANTED[:] = SECRETS
    LEAKS.clear()
    profile = planted_profile(tmp_path)
    state = tmp_path / "state"

    # plan, text and JSON
    for fmt in ([], ["--json"]):
        res = mmops("plan", "-p", profile, "--no-preflight", "--api-key", ARGV_KEY, *fmt)
        assert res.returncode == 0, res.stderr
        tally(f"plan{' --json' if fmt else ''}", res.stdout + res.stderr)
    assert "***" in res.stdout  # the key is in the plan, masked

    # serve: READY, then stopped; its output and every file of its run folder
    res = mmops("serve", "-p", profile, "--no-preflight", "--smoke", "--state-dir", state,
                "--api-key", ARGV_KEY)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    tally("serve output", res.stdout + res.stderr)
    (run,) = list(state.iterdir())
    assert "non-default args" in (run / "attempt-1.log").read_text()  # the line that had the key
    tally("serve run folder", files_of(run))

    # logs and diagnose of that run
    for place, args in (
        ("logs", ["logs", "--state-dir", state]),
        ("logs --events", ["logs", "--state-dir", state, "--events"]),
        ("diagnose", ["diagnose", run, "--all"]),
    ):
        res = mmops(*args)
        assert res.returncode in (0, 3), res.stderr
        tally(place, res.stdout + res.stderr)

    # bundle of that run: every member
    out = tmp_path / "escalation.tar.gz"
    res = mmops("bundle", "--state-dir", state, "-o", out)
    assert res.returncode == 0, res.stderr
    tally("bundle", members_of(out) + res.stdout + res.stderr)

    # offline: output, and its run folder
    py = standin(tmp_path, CHILD)
    off = tmp_path / "offline"
    res = mmops("offline", "-p", profile, "--model", model, "--python", py, "--no-preflight",
                "--state-dir", off, "--api-key", ARGV_KEY, "--verbose", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "engine args" in res.stderr  # --verbose echoed the child's lines, masked
    tally("offline output", res.stdout + res.stderr)
    tally("offline run folder", files_of(off))

    # the TUI's screen, READY, on its Server and Logs tabs
    if shutil.which("tmux") is not None:
        for k, v in ENV.items():  # the pane's mmops gets them as a user's shell would
            monkeypatch.setenv(k, v)
        tally("tui screen", tui_screens(tmp_path, profile))

    report = ", ".join(f"{place} {n}" for place, n in LEAKS.items())
    print(f"secrets: {len(SECRETS)} planted, {sum(LEAKS.values())} found: {report}")
    assert not any(LEAKS.values()), LEAKS


def tui_screens(tmp_path: Path, profile: Path) -> str:
    """What the TUI shows of a READY server (Server and Logs tabs), and its run folder."""
    state = tmp_path / "tui-state"
    argv = [sys.executable, "-m", "mmops", "tui", "-p", str(profile), "--no-preflight", "--start",
            "--state-dir", str(state), "--stop-timeout", "3", "--api-key", ARGV_KEY]  # fmt: skip
    (tmp_path / "tui").mkdir()
    pane = Pane(tmp_path / "tui", argv)
    try:
        screens = [pane.wait_screen("READY", 30)]
        for tab in ("2", "1"):
            pane.tmux("send-keys", "-t", "mm", tab)
            time.sleep(1.0)
            screens.append(pane.screen())
        pane.tmux("send-keys", "-t", "mm", "q")
        with contextlib.suppress(AssertionError):
            pane.wait_screen("Stop it and quit?", 5)
            pane.tmux("send-keys", "-t", "mm", "y")
        pane.exit_status(20)
    finally:
        pane.close()
    assert any("non-default args" in s for s in screens), screens[1]
    return "\n".join(screens) + files_of(state)
