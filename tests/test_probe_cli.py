"""`mmops probe` end to end: a real subprocess against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.probe_server import ProbeServer, free_port

REPO = Path(__file__).resolve().parents[1]
IMAGE = str(REPO / "checks" / "media" / "red-circle.png")


def mmops(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmops", "probe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def test_default_runs_the_smoke_suite_and_exits_0():
    with ProbeServer() as srv:
        url = srv.url
        out = mmops("--url", url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"probe {url}  model tiny-qwen2.5-vl  suite smoke"
    assert lines[1].startswith("  ok    text   200 length, 13+8 tok, ")
    assert lines[2].startswith("  ok    image  200 length, 77+8 tok, ")
    assert lines[3] == (
        "server saw: +90 prompt tokens, +16 generated tokens, +2 requests finished; "
        "now running 0, waiting 0, KV cache 0.0%"
    )
    assert lines[-1].startswith("2 passed, 0 failed in ")
    assert out.stderr == ""  # no progress line: not a load, and stderr is not a TTY


def test_one_image_request_like_the_reference_script():
    with ProbeServer() as srv:
        out = mmops(
            "--url", srv.url, "--image", IMAGE, "--text", "What is it?", "--max-tokens", "4"
        )
    assert out.returncode == 0, out.stderr
    assert "  ok    image  200 length, 72+4 tok, "  # 64 image + 3 words + 5 in out.stdout
    assert "        answer: 'A red circle on'" in out.stdout
    body = srv.requests[0]
    assert body["messages"][0]["content"][0] == {"type": "text", "text": "What is it?"}
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["top_p"]) == (
        4,
        0.0,
        -1,
        1.0,
    )
    assert "stop_token_ids" not in body


def test_failures_exit_3_with_the_server_message():
    with ProbeServer(default="error500") as srv:
        out = mmops("--url", srv.url, "--text", "hi")
    assert out.returncode == 3
    assert "  FAIL  text  HTTP 500: EngineCore encountered an issue." in out.stdout
    assert out.stdout.splitlines()[-1].startswith("0 passed, 1 failed")


def test_missing_image_is_a_failed_request_not_a_crash(tmp_path):
    with ProbeServer() as srv:
        out = mmops("--url", srv.url, "--image", str(tmp_path / "nope.jpg"))
    assert out.returncode == 3
    assert f"FAIL  image  {tmp_path / 'nope.jpg'}: no such file" in out.stdout
    assert srv.requests == []


def test_bad_input_exits_2_with_one_line():
    cases = [
        (["--url", "127.0.0.1:8000"], "--url 127.0.0.1:8000: must start with http:// or https://"),
        (["--url", "http://x", "--top-p", "2"], "--top-p 2.0: must be in (0, 1]"),
        (["--url", "http://x", "--top-k", "0"], "--top-k 0: must be -1 (off) or an integer >= 1"),
        (["--url", "http://x", "--concurrency", "0"], "--concurrency 0: must be >= 1"),
        (["--url", "http://x", "--suite", "nope"], "--suite nope: no suite of that name"),
        (["--url", "http://x", "--suite", "smoke", "--text", "x"], "--suite cannot be combined"),
        (
            ["--url", "http://x", "--model-path", "/nonexistent"],
            "--model-path /nonexistent: no config.json",
        ),
    ]
    for args, message in cases:
        out = mmops(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.startswith(f"mmops probe: error: {message}"), out.stderr
        assert len(out.stderr.splitlines()) == 1


def test_json_output_and_api_key_from_env_never_printed():
    with ProbeServer(api_key="sk-very-secret") as srv:
        out = mmops("--url", srv.url, "--json", env={"MMOPS_API_KEY": "sk-very-secret"})
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["passed"] == 2 and data["model"] == "tiny-qwen2.5-vl"
    assert data["cases"][1]["prompt_tokens"] == 77
    assert data["metrics"]["delta"]["generation_tokens"] == 16
    assert srv.headers[0]["Authorization"] == "Bearer sk-very-secret"
    assert "sk-very-secret" not in out.stdout + out.stderr


def test_load_prints_one_line_per_request_and_percentiles():
    with ProbeServer(ttft_s=0.02) as srv:
        out = mmops(
            "--url", srv.url, "--suite", "tiny-cpu", "--concurrency", "4", "--requests", "9"
        )
    assert out.returncode == 0, out.stdout
    lines = out.stdout.splitlines()
    assert sum(1 for line in lines if line.startswith("  ok    ")) == 9
    assert any(line.startswith("load: 9/9 answered in ") for line in lines)
    header = next(line for line in lines if line.startswith("  (ms)"))
    assert header.split() == ["(ms)", "mean", "p50", "p90", "p99", "max"]
    assert any(line.split()[0] == "TTFT" for line in lines if line.strip())
    assert srv.peak_in_flight <= 4


def test_connection_refused_exits_3():
    out = mmops("--url", f"http://127.0.0.1:{free_port()}", "--text", "hi", "--timeout", "5")
    assert out.returncode == 3
    assert "FAIL  text  cannot connect to" in out.stdout
    assert "server /metrics: unavailable" in out.stdout


def test_given_sampling_flags_override_the_suite():
    with ProbeServer() as srv:
        out = mmops("--url", srv.url, "--suite", "smoke", "--max-tokens", "3", "--stream")
    assert out.returncode == 0, out.stdout
    assert [r["max_tokens"] for r in srv.requests] == [3, 3]
    assert all(r["stream"] and r["temperature"] == 0.0 for r in srv.requests)  # rest: the suite's
    assert "ttft" in out.stdout


def test_progress_goes_to_stderr_only_on_a_terminal():
    import pty

    master, slave = pty.openpty()
    with ProbeServer() as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "mmops", "probe", "--url", srv.url, "--suite", "smoke",
             "--concurrency", "2", "--requests", "4"],
            stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
    os.close(slave)
    seen = os.read(master, 65536).decode()
    os.close(master)
    assert proc.returncode == 0
    assert "\r  4/4 requests done, 0 failed " in seen
    assert "requests done" not in proc.stdout


def test_oversize_and_non_image_media_are_verdicts(tmp_path):
    video = str(REPO / "checks" / "media" / "moving-dot.mp4")
    with ProbeServer() as srv:
        big = mmops("--url", srv.url, "--video", video, "--max-media-mb", "0.1")
        wrong = mmops("--url", srv.url, "--image", video)
    assert big.returncode == 3 and wrong.returncode == 3
    assert (
        "FAIL  video  " in big.stdout and "MB is over the 0.1 MB limit for one video" in big.stdout
    )
    assert "expected an image file, found a video (video/mp4)" in wrong.stdout
    assert srv.requests == []
