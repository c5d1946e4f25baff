"""How much sooner `mmops doctor` says a launch cannot work than vLLM itself does.

Both are asked about the same bad launch: the tiny Qwen2.5-VL (max_position_embeddings 4096)
with --max-model-len 8192. Doctor is timed as a subprocess (median of --runs); vLLM is timed from
spawn to exit (median of --vllm-runs). Needs the vLLM CPU venv (scripts/vllm_venv.sh); without
it the bench says so and exits 0.

    .venv/bin/python bench/doctor_vs_vllm.py [--runs 5] [--vllm-runs 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_MARKER = "is greater than the derived max_model_len"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


def find_vllm_python() -> str | None:
    """MMOPS_VLLM_PYTHON, else the cached venv from scripts/vllm_venv.sh, else None."""
    if env := os.environ.get("MMOPS_VLLM_PYTHON"):
        return env
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_venv.sh"), "--cached"],
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[-1] if out.returncode == 0 and out.stdout.strip() else None


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds from spawn to exit, exit code, and combined output of one run."""
    start = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="doctor runs (median)")
    parser.add_argument("--vllm-runs", type=int, default=1, help="vLLM runs (median)")
    args = parser.parse_args(argv)

    vllm_python = find_vllm_python()
    if not vllm_python:
        print("skipped: no vLLM CPU venv (run scripts/vllm_venv.sh or set MMOPS_VLLM_PYTHON)")
        return 0
    made = subprocess.run(
        [vllm_python, str(REPO / "scripts" / "make_tiny_model.py"), "--cached"],
        capture_output=True,
        text=True,
        check=True,
    )
    model = made.stdout.split()[-1]

    doctor_argv = [sys.executable, "-m", "mmops", "doctor", "--model", model]
    doctor_argv += ["--max-model-len", "8192"]
    doctor = [timed(doctor_argv) for _ in range(args.runs)]
    codes = sorted({rc for _, rc, _ in doctor})
    doctor_s = statistics.median(t for t, _, _ in doctor)
    print(f"mmops doctor: median {doctor_s:.3f} s over {args.runs} runs, exit codes {codes}")

    env = dict(os.environ) | OFFLINE_ENV
    vllm_runs = []
    for _ in range(args.vllm_runs):
        vllm_argv = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        vllm_argv += ["--port", str(free_port()), "--max-model-len", "8192"]
        vllm_runs.append(timed(vllm_argv, env))
    vllm_s = statistics.median(t for t, _, _ in vllm_runs)
    rejected = all(rc != 0 and VLLM_MARKER in out for _, rc, out in vllm_runs)
    print(
        f"vLLM rejecting the launch: median {vllm_s:.3f} s over {args.vllm_runs} runs, "
        f"exit codes {sorted({rc for _, rc, _ in vllm_runs})}, "
        f"{'rejected with' if rejected else 'WITHOUT'} '{VLLM_MARKER}'"
    )
    print(f"ratio vLLM/doctor: {vllm_s / doctor_s:.1f}x")
    return 0 if rejected and codes == [2] else 1


if __name__ == "__main__":
    sys.exit(main())
