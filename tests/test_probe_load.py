"""run_suite / load runs against a real HTTP server on 127.0.0.1: verdicts, load figures, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from mmops.probe import load
from mmops.probe.client import send_chat
from mmops.probe.runner import run_suite, run_suite_async
from mmops.probe.suite import Case, Expect, Suite, TurnSpec, load_suite
from tests.probe_server import ENGINE_DEAD, ProbeServer, free_port

MEDIA = Path(__file__).resolve().parents[1] / "checks" / "media"


def test_tiny_cpu_suite_passes_against_a_healthy_server():
    with ProbeServer() as srv:
        result = run_suite(srv.url, load_suite("tiny-cpu"))
    assert result.ok, [c.verdict for c in result.cases if not c.ok]
    assert result.model == "tiny-qwen2.5-vl"  # from /v1/models
    by = {c.name: c for c in result.cases}
    assert by["image"].prompt_tokens > by["text"].prompt_tokens + 8
    assert by["stream"].ttft_s is not None and by["text"].ttft_s is None
    assert all(c.completion_tokens == 8 and c.finish_reason == "length" for c in result.cases)
    # The server saw exactly the tokens the answers report.
    delta = result.metrics_delta
    assert delta.prompt_tokens == sum(c.prompt_tokens for c in result.cases)
    assert delta.generation_tokens == 8 * len(result.cases)
    # The cases ran one after another.
    assert srv.peak_in_flight == 1


def test_an_image_that_never_reaches_the_model_fails_the_token_check():
    # A "server" that drops media: same answer, but prompt tokens of the text alone.
    suite = load_suite("smoke")
    with ProbeServer() as srv:
        ok = run_suite(srv.url, suite)
        image = suite.case("image")
        text_only = replace(image, turns=(replace(image.turns[0], images=()),), modality="text")
        bad = run_suite(srv.url, replace(suite, cases=(suite.case("text"), text_only)))
    assert ok.ok
    verdict = bad.cases[1].verdict
    assert not bad.ok and verdict.startswith("prompt_tokens 13 not 4+ above case 'text''s 13")


def test_mixed_failures_each_get_one_line_and_the_run_goes_on(tmp_path):
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")

    def case(name, text, **kw):
        return Case(name=name, modality="text", turns=(TurnSpec(text=text, **kw),))

    suite = Suite(
        name="mixed",
        cases=(
            case("good", "fine"),
            case("boom", "please error"),
            Case("media", "image", (TurnSpec(text="x", images=(str(not_image),)),)),
            case(
                "slow",
                "please be slow",
            ),
            case("wrong", "fine again"),
            case("negative", "please error"),
        ),
    )
    suite = replace(suite, cases=(
        *suite.cases[:4],
        replace(suite.cases[4], expect=Expect(contains=("blue",), finish_reason=("length",))),
        replace(suite.cases[5], expect=Expect(status=500)),
    ))  # fmt: skip
    with ProbeServer(rules={"error": "error500", "slow": "slow"}, slow_s=3) as srv:
        result = run_suite(srv.url, suite, timeout=0.5)
    verdicts = {c.name: (c.ok, c.error_kind, c.verdict) for c in result.cases}
    assert verdicts["good"][:2] == (True, None)
    assert verdicts["boom"] == (False, "http_500", f"HTTP 500: {ENGINE_DEAD}")
    assert verdicts["media"][:2] == (False, "media")
    assert "notes.txt: expected an image file" in verdicts["media"][2]
    assert verdicts["slow"] == (False, "timeout", "no complete answer within 0.5 s")
    ok, kind, verdict = verdicts["wrong"]
    assert (ok, kind) == (False, "check")
    assert verdict.startswith("finish_reason 'stop', expected length; answer lacks 'blue': ")
    assert verdicts["negative"][:2] == (True, None)  # expected the 500
    assert all("\n" not in c.verdict for c in result.cases)
    assert (result.passed, result.failed) == (2, 4)


def test_load_keeps_concurrency_bounded_and_reports_percentiles(monkeypatch):
    suite = load_suite("tiny-cpu")
    seen = []
    flight = {"now": 0, "peak": 0}

    async def counted_send_chat(*args, **kwargs):
        flight["now"] += 1
        flight["peak"] = max(flight["peak"], flight["now"])
        try:
            return await send_chat(*args, **kwargs)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(load, "send_chat", counted_send_chat)
    # A first token slow enough that all 8 requests are surely in flight together, even on a
    # loaded 2-core machine where the client's own start-up of each request takes milliseconds.
    with ProbeServer(ttft_s=0.3, itl_s=0.01) as srv:
        result = asyncio.run(
            run_suite_async(
                srv.url, suite, concurrency=8, requests=32,
                progress=lambda done, total, failed: seen.append((done, total, failed)),
            )
        )  # fmt: skip
    assert result.ok, [c.verdict for c in result.cases if not c.ok]
    assert len(result.cases) == 32 and len(srv.requests) == 32
    # Never more than --concurrency in flight, and the client kept up: all 8 reached the server
    # together. (The server's own count may read 9: a handler thread lowers it only after its
    # last write, and the client may have sent the next request on another connection by then.)
    assert flight["peak"] == 8 and srv.peak_in_flight >= 8
    assert all(r["stream"] for r in srv.requests)  # a load streams, like vllm bench serve
    assert [s[0] for s in seen] == list(range(1, 33)) and seen[-1] == (32, 32, 0)
    stats = result.load
    assert (stats.requests, stats.completed, stats.failed) == (32, 32, 0)
    assert stats.ttft.count == 32 and stats.ttft.p(50) >= 0.05
    assert stats.tpot.count == 32 and stats.tpot.p(90) >= 0.009
    assert stats.itl.count == 32 * 7  # 8 token chunks = 7 gaps per request; the role chunk: none
    assert stats.ttfb.count == 32 and stats.ttfb.max <= stats.ttft.max
    assert stats.total_output_tokens == 32 * 8
    assert stats.output_throughput == pytest.approx(256 / stats.duration_s)
    assert result.metrics_delta.generation_tokens == 256
    assert result.metrics_peaks.samples >= 1


def test_load_counts_errors_by_kind():
    suite = load_suite("smoke")
    with ProbeServer(rules={"circle": "error500"}) as srv:
        result = run_suite(srv.url, suite, concurrency=2, requests=6)
    assert result.load.errors_by_kind == {"http_500": 6}
    assert result.load.completed == 0 and not result.ok


def test_connection_refused_fails_every_case_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    result = run_suite(url, load_suite("tiny-cpu"))
    assert not result.ok and len(result.cases) == 7
    assert all(c.error_kind == "connect" for c in result.cases)
    assert result.cases[0].verdict.startswith(f"cannot connect to {url}/v1/models")
    assert result.metrics_error.startswith(f"GET {url}/metrics")


def test_model_given_skips_v1_models_and_stop_ids_are_sent(tmp_path):
    model_dir = tmp_path / "internvl"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(
        '{"architectures": ["InternVLChatModel"], "llm_config": '
        '{"architectures": ["InternLM2ForCausalLM"]}}'
    )
    with ProbeServer(model="given") as srv:
        result = run_suite(srv.url, load_suite("smoke"), model="given", model_path=model_dir)
    assert result.ok
    assert "/v1/models" not in srv.paths
    assert all(r["stop_token_ids"] == [0, 92543, 92542] for r in srv.requests)
