"""mmops.probe.metrics on recorded /metrics bodies: vLLM 0.32 (real) and the V0 shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmops.probe.metrics import MetricsError, diff, parse, scrape
from tests.probe_server import ProbeServer, free_port

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "probe"
REAL = FIXTURES / "real-cpu"


def test_real_vllm_032_idle_metrics():
    snap = parse((REAL / "metrics-idle.txt").read_text())
    assert snap.kv_metric == "vllm:kv_cache_usage_perc"
    assert (snap.running, snap.waiting, snap.kv_cache_usage) == (0, 0, 0)
    assert snap.prompt_tokens_total == 0 and snap.generation_tokens_total == 0
    assert snap.ttft_count == 0
    # Histogram buckets are not summed into the series table.
    assert not any(name.endswith("_bucket") for name in snap.samples)


def test_real_metrics_before_and_after_requests_diff():
    before = parse((REAL / "metrics-idle.txt").read_text())
    after = parse((REAL / "metrics-after.txt").read_text())
    d = diff(before, after)
    # Between the two recordings the session sent 7 chat completions (the chat-*.json bodies and
    # the stream); the server's counters moved by exactly what their usage blocks say.
    bodies = [p for p in sorted(REAL.glob("chat-*.json")) if "timing" not in p.name]
    usages = [json.loads(p.read_text())["usage"] for p in bodies]
    stream = (REAL / "chat-stream.sse").read_text().split("\n\n")
    usages.append(json.loads(stream[-3].removeprefix("data: "))["usage"])
    assert len(usages) == 7
    assert d.prompt_tokens == sum(u["prompt_tokens"] for u in usages) == 433
    assert d.generation_tokens == sum(u["completion_tokens"] for u in usages) == 56
    assert d.requests_succeeded == 7
    assert d.server_ttft_mean_s == pytest.approx(2.459873676300049 / 7)
    assert d.after.running == 0 and d.after.kv_cache_usage == 0


def test_v0_shape_reads_gpu_cache_usage_perc():
    snap = parse((FIXTURES / "v0-metrics.txt").read_text())
    assert snap.kv_metric == "vllm:gpu_cache_usage_perc"
    assert snap.kv_cache_usage == pytest.approx(0.8125)
    assert (snap.running, snap.waiting) == (3, 5)
    assert snap.preemptions_total == 2
    assert snap.prompt_tokens_total == 18231 and snap.generation_tokens_total == 4096


def test_data_parallel_engines_sum_but_kv_takes_the_fullest():
    text = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
        'vllm:num_requests_running{engine="1",model_name="m"} 3.0\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75\n'
    )
    snap = parse(text)
    assert snap.running == 5 and snap.kv_cache_usage == 0.75
    assert snap.waiting is None  # not exported: unknown, not zero


def test_counter_reset_gives_none_not_a_negative_delta():
    a = parse("# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 100.0\n")
    b = parse("# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total 7.0\n")
    assert diff(a, b).prompt_tokens is None
    assert diff(b, a).prompt_tokens == 93


def test_not_prometheus_text_is_one_line_error():
    with pytest.raises(MetricsError, match=r"^/metrics is not Prometheus text: "):
        parse("<html>oops</html>\n")


def test_scrape_over_http_and_failures():
    with ProbeServer() as srv:
        snap = scrape(srv.url + "/v1")  # any form of the base URL
        assert snap.kv_metric == "vllm:kv_cache_usage_perc" and snap.running == 0
        with pytest.raises(MetricsError, match=r"/nothing/metrics: HTTP 404"):
            scrape(srv.url + "/nothing")
    port = free_port()
    with pytest.raises(MetricsError, match=rf"^GET http://127.0.0.1:{port}/metrics: "):
        scrape(f"http://127.0.0.1:{port}")
