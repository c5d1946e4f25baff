"""`mmops serve` on the real vLLM CPU build serving a tiny generated Qwen2.5-VL.

Fixtures (tests/real/conftest.py): ``vllm_python`` (the venv of scripts/vllm_venv.sh) and
``tiny_model`` (random weights, max_position_embeddings 4096). Everything stays on 127.0.0.1.
The doctor is skipped (--no-preflight): its own real-tier tests judge it; here the subject is
the supervisor, with vLLM's real processes, real log lines and real failures.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
# As tests/real/conftest.py: no hub, no telemetry, a 1 GiB CPU KV cache.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}
START_S = 600  # one vLLM start on a loaded, shared 2-core machine, with margin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(OFFLINE_ENV)
    out["PYTHONPATH"] = str(REPO)
    return out


def profile(tmp_path: Path) -> Path:
    """profiles/tiny-cpu.yaml with room for a slow start: on a shared 2-core machine the tiny
    model's start has been seen to pass the profile's 240 s readiness timeout."""
    text = (REPO / "profiles" / "tiny-cpu.yaml").read_text()
    text = text.replace(
        "readiness: {timeout_s: 240, interval_s: 1}",
        f"readiness: {{timeout_s: {START_S}, interval_s: 1}}",
    )
    assert f"timeout_s: {START_S}" in text, "profiles/tiny-cpu.yaml changed its readiness line"
    path = tmp_path / "tiny-cpu.yaml"
    path.write_text(text)
    return path


def serve_argv(python: Path, model: Path, state: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mmops", "serve",
        "--profile", str(profile(state.parent)),
        "--model", str(model),
        "--python", str(python),
        "--port", str(free_port()),
        "--no-preflight",
        "--state-dir", str(state),
        *extra,
    ]  # fmt: skip


def events(state: Path) -> list[dict]:
    runs = sorted(p for p in state.iterdir()) if state.exists() else []
    if not runs:
        return []
    path = runs[-1] / "events.jsonl"
    if not path.exists():
        return []
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]
    return [r for r in recs if "state" in r]  # state changes; phase records have "kind"


def wait_for(state: Path, pred, timeout: float, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in events(state):
            if pred(ev):
                return ev
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(
        f"no matching event; events so far: {[(e['attempt'], e['state'], e['reason']) for e in events(state)]}"
    )


@pytest.mark.timeout(START_S + 200)
def test_smoke_reaches_ready_and_answers_an_image_request(vllm_python, tiny_model, tmp_path):
    state = tmp_path / "state"
    res = subprocess.run(
        serve_argv(vllm_python, tiny_model, state, "--smoke"),
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=START_S + 150,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    assert "smoke PASS: reached READY" in res.stderr
    # The profile's suite ran in full: the image cases answered with image tokens counted.
    assert "ok   image:" in res.stderr, res.stderr[-3000:]
    seq = [e["state"] for e in events(state)]
    assert seq == ["STARTING", "READY", "STOPPING", "STOPPED"], seq
    ready = next(e for e in events(state) if e["state"] == "READY")
    assert ready["sample"] is True  # readiness included one real request
    starting = events(state)[0]
    # vllm-cpu 0.32: the module entry point (its CLI needs a distribution named vllm)
    assert starting["argv"][1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]


@pytest.mark.timeout(START_S)
def test_max_model_len_above_the_model_fails_with_vllms_real_message(
    vllm_python, tiny_model, tmp_path
):
    state = tmp_path / "state"
    res = subprocess.run(
        serve_argv(vllm_python, tiny_model, state, "--smoke", "--max-model-len", "8192"),
        capture_output=True, text=True, env=env(), cwd=REPO, timeout=START_S - 20,
    )  # fmt: skip
    assert res.returncode == 1
    evs = events(state)
    assert [e["state"] for e in evs] == ["STARTING", "FAILED"]  # no blind retry
    cause = evs[-1]["cause"]
    assert cause["id"] == "config.max_len_above_derived"
    assert (
        "User-specified max_model_len (8192) is greater than the derived max_model_len"
        in cause["line"]
    )
    assert "4096" in evs[-1]["fix"]
    assert "fix:" in res.stderr


@pytest.mark.timeout(2 * START_S + 120)
def test_killing_the_engine_core_restarts_the_server(vllm_python, tiny_model, tmp_path):
    state = tmp_path / "state"
    log = (tmp_path / "mmops.err").open("w")
    proc = subprocess.Popen(
        serve_argv(vllm_python, tiny_model, state, "--quiet"),
        stdout=subprocess.DEVNULL, stderr=log, env=env(), cwd=REPO,
    )  # fmt: skip
    try:
        wait_for(state, lambda e: e["state"] == "READY", START_S, proc)
        family = psutil.Process(proc.pid).children(recursive=True)
        engines = [
            p for p in family if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
        ]
        assert engines, [(p.pid, p.name(), p.cmdline()[:3]) for p in family]
        engines[0].send_signal(signal.SIGKILL)
        # The supervisor notices (dead engine behind the API, or the API exiting) and restarts.
        wait_for(state, lambda e: e["attempt"] == 2 and e["state"] == "READY", START_S, proc)
        states = [(e["attempt"], e["state"]) for e in events(state)]
        assert (1, "BACKOFF") in states, states
        assert (
            states.index((1, "READY"))
            < states.index((1, "BACKOFF"))
            < states.index((2, "STARTING"))
        )
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert events(state)[-1]["state"] == "STOPPED"
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


@pytest.mark.timeout(2 * START_S + 100)
def test_kv_cache_too_small_is_fixed_with_vllms_own_estimate(vllm_python, tiny_model, tmp_path):
    """The remedy ladder end to end on real vLLM: a 1 MB KV cache cannot hold one 4096-token
    request; vLLM says 'the estimated maximum model length is 1920'; mmops retries once with
    --max-model-len 1920, the server comes up, and the run says which change made it work."""
    state = tmp_path / "state"
    child_env = env()
    child_env.pop("VLLM_CPU_KVCACHE_SPACE")  # whole GiB only; the explicit byte budget rules here
    argv = [
        sys.executable, "-m", "mmops", "serve",
        "--model", str(tiny_model), "--python", str(vllm_python), "--device", "cpu",
        "--port", str(free_port()), "--no-preflight", "--state-dir", str(state), "--smoke",
        "--max-model-len", "4096", "--kv-cache-memory-bytes", "1M",
        "--max-num-seqs", "4", "--dtype", "bfloat16",
    ]  # fmt: skip
    res = subprocess.run(
        argv, capture_output=True, text=True, env=child_env, cwd=REPO, timeout=2 * START_S
    )
    evs = events(state)
    seq = [(e["attempt"], e["state"]) for e in evs]
    assert res.returncode == 0, (seq, res.stderr[-4000:])
    starts = [e for e in evs if e["state"] == "STARTING"]
    assert len(starts) == 2, seq  # one failure, one remedy, no blind retry
    first, second = starts[0]["argv"], starts[1]["argv"]
    assert first[first.index("--max-model-len") + 1] == "4096"
    assert second[second.index("--max-model-len") + 1] == "1920"  # vLLM's own estimate
    assert any(e["state"] == "READY" and e["attempt"] == 2 for e in evs), seq
    assert "the server came up after the automatic change(s): --max-model-len 1920" in res.stderr
