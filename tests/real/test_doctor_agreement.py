"""mmops doctor and real vLLM agree: --max-model-len above the model's limit is fatal.

vLLM is the ground truth here: it must refuse the launch with its own message, and doctor must
fail the same launch without starting anything, naming the key and the limit vLLM used.
"""

from __future__ import annotations

import json
import subprocess
import sys

MAX_LEN_ERROR = "is greater than the derived max_model_len"


def test_vllm_rejects_and_doctor_fails_too(vllm_runner, tiny_model):
    rc, out = vllm_runner(tiny_model, "--max-model-len", "8192")
    assert rc != 0, out[-3000:]
    assert MAX_LEN_ERROR in out, out[-3000:]
    assert "max_position_embeddings=4096" in out, out[-3000:]

    doctor = subprocess.run(
        [sys.executable, "-m", "mmops", "doctor", "--model", str(tiny_model)]
        + ["--max-model-len", "8192", "--json", "--check", "model.max_len"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    check = checks["model.max_len"]
    assert check["status"] == "fail", check
    assert "max_position_embeddings" in check["detail"], check
    assert "4096" in check["detail"], check
    assert "4096" in check["fix"], check
    assert "summary" in report


def test_doctor_kv_cache_size_matches_what_vllm_allocated(vllm_server, tiny_model):
    """doctor's KV arithmetic (layers x kv heads x head_dim x 2 x dtype per token) against the
    number the real server logged: `CPU KV cache size: N tokens` for VLLM_CPU_KVCACHE_SPACE=1."""
    import re

    logged = re.search(r"KV cache size: ([\d,]+) tokens", vllm_server.log_path.read_text())
    assert logged, "the server did not log its KV cache size"
    doctor = subprocess.run(
        [sys.executable, "-m", "mmops", "doctor", "--model", str(tiny_model), "--device", "cpu"]
        + ["--max-model-len", "2048", "--env", "VLLM_CPU_KVCACHE_SPACE=1"]
        + ["--json", "--check", "memory.fit"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check = json.loads(doctor.stdout)["checks"][0]
    assert check["status"] == "pass", check
    assert f"~{logged.group(1)} tokens" in check["summary"], (check["summary"], logged.group(0))
