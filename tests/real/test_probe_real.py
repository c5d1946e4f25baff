"""The probe against the real vLLM CPU build serving the tiny random Qwen2.5-VL (conftest.py).

Proves on a real server what the fast tier proves on tests/probe_server.py: every modality of
the tiny-cpu suite passes, image tokens are counted, streaming timing works, a load of 32
requests at concurrency 8 passes, /metrics parses, and vLLM's error bodies read as one line.
It also checks that the recordings the fast tier replays (tests/fixtures/probe/real-cpu/) still
match what this vLLM sends; MMOPS_RECORD_PROBE_FIXTURES=1 rewrites them from this server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mmops.probe import client as http
from mmops.probe.metrics import parse, scrape
from mmops.probe.runner import run_suite
from mmops.probe.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "probe" / "real-cpu"
# scripts/make_tiny_model.py caps an image at 112x112 pixels = 4x4 tokens after the 2x2 merge.
TINY_IMAGE_TOKENS = 16


@pytest.fixture(scope="module")
def suite_result(vllm_server):
    return run_suite(vllm_server.url, load_suite("tiny-cpu"), timeout=180)


def test_every_modality_passes_the_tiny_cpu_suite(suite_result, vllm_server):
    failed = [f"{c.name}: {c.verdict}" for c in suite_result.cases if not c.ok]
    assert not failed, failed
    assert suite_result.model == vllm_server.model  # found through /v1/models
    names = {c.name for c in suite_result.cases}
    assert {"text", "image", "two-images", "video", "stream", "multi-turn"} <= names


def test_image_tokens_are_counted(suite_result):
    by = {c.name: c for c in suite_result.cases}
    text, image, two = (
        by["text"].prompt_tokens,
        by["image"].prompt_tokens,
        by["two-images"].prompt_tokens,
    )
    # Same question; the image adds its tokens (plus <|vision_start|>/<|vision_end|>).
    assert image - text >= TINY_IMAGE_TOKENS, (text, image)
    assert two - image >= TINY_IMAGE_TOKENS, (image, two)
    assert by["video"].prompt_tokens - text >= TINY_IMAGE_TOKENS


def test_stream_is_timed(suite_result):
    stream = next(c for c in suite_result.cases if c.name == "stream")
    assert stream.stream and stream.ttft_s is not None and stream.ttft_s > 0
    assert stream.latency_s >= stream.ttft_s
    assert stream.tpot_s is not None and stream.tpot_s >= 0
    assert len(stream.request.itl_s) == stream.request.chunks - 1


def test_metrics_of_the_real_server(suite_result, vllm_server):
    snap = scrape(vllm_server.url)
    assert snap.kv_metric == "vllm:kv_cache_usage_perc"
    assert snap.running == 0 and snap.waiting == 0
    assert 0 <= snap.kv_cache_usage <= 1
    assert snap.generation_tokens_total >= 8 * len(suite_result.cases)
    assert snap.prompt_tokens_total >= sum(c.prompt_tokens for c in suite_result.cases)


def test_load_concurrency_8_requests_32_passes(vllm_server, suite_result):
    out = subprocess.run(
        [sys.executable, "-m", "mmops", "probe", "--url", vllm_server.url, "--suite", "tiny-cpu",
         "--concurrency", "8", "--requests", "32", "--timeout", "300", "--json"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    data = json.loads(out.stdout)
    load = data["load"]
    assert (load["requests"], load["completed"], load["failed"]) == (32, 32, 0)
    assert load["errors_by_kind"] == {}
    assert load["ttft_s"]["count"] == 32 and load["tpot_s"]["count"] == 32
    assert load["total_output_tokens"] == 32 * 8
    # The server saw the load: its counters moved by what the answers reported.
    delta = data["metrics"]["delta"]
    assert delta["generation_tokens"] == 32 * 8
    assert delta["prompt_tokens"] == load["total_input_tokens"]
    assert data["metrics"]["peaks"]["samples"] >= 1


def test_real_error_bodies_read_as_one_line(vllm_server):
    with httpx.Client(timeout=120, trust_env=False) as h:
        wrong = h.post(
            vllm_server.url + "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert wrong.status_code == 404
    assert http.error_message(wrong.content) == (
        f"The model `no-such-model` does not exist. Valid aliases: {vllm_server.model}."
    )


def test_recorded_fixtures_match_this_vllm(vllm_server, suite_result):
    """The fast tier replays these recordings; they must still be what vLLM sends."""
    with httpx.Client(timeout=120, trust_env=False) as h:
        metrics_text = h.get(vllm_server.url + "/metrics").text
        wrong = h.post(
            vllm_server.url + "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        )
    if os.environ.get("MMOPS_RECORD_PROBE_FIXTURES") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / "metrics-after.txt").write_text(metrics_text)
        (FIXTURES / "err-model.json").write_bytes(wrong.content)
    recorded = parse((FIXTURES / "metrics-idle.txt").read_text())
    live = parse(metrics_text)
    missing = sorted(set(recorded.samples) - set(live.samples))
    assert not missing, f"recorded /metrics has series this vLLM no longer sends: {missing}"
    assert set(json.loads(wrong.content)) == set(
        json.loads((FIXTURES / "err-model.json").read_text())
    )
