"""mmops.probe.client against a real HTTP server on 127.0.0.1 (tests/probe_server.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from mmops.probe import client as http
from mmops.probe.media import load_media
from mmops.probe.request import ChatRequest, Sampling, Turn
from tests.probe_server import ENGINE_DEAD, MODEL, ProbeServer, free_port

IMAGE = "checks/media/red-circle.png"


def body(text: str = "hello there", *, stream: bool = False, images: int = 0, **sampling) -> bytes:
    media = tuple(load_media(IMAGE, "image") for _ in range(images))
    req = ChatRequest((Turn(text=text, images=media),), Sampling(**sampling), stream=stream)
    return req.encode(MODEL)


def send(srv_url: str, data: bytes, *, stream: bool, timeout: float = 10.0, api_key=None):
    async def go():
        async with http.make_client(api_key=api_key, timeout=timeout) as client:
            return await http.send_chat(client, srv_url, data, stream=stream, timeout=timeout)

    return asyncio.run(go())


def test_non_streaming_answer_with_usage():
    with ProbeServer() as srv:
        res = send(srv.url, body(images=1, max_tokens=5), stream=False)
    assert res.ok and res.status == 200 and res.error is None
    assert res.content == "A red circle on a"
    assert res.finish_reason == "length"
    assert res.completion_tokens == 5
    # 224x224 image = 8*8 tokens, plus 2 words and the template.
    assert res.prompt_tokens == 64 + 2 + 5
    assert res.ttft_s is None and res.latency_s > 0
    sent = srv.requests[0]
    assert sent["max_tokens"] == 5 and sent["temperature"] == 0.0 and sent["top_k"] == -1
    assert sent["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,"
    )


def test_stream_timing_definitions():
    # The server waits 0.3 s before the first chunk and 0.1 s between tokens.
    with ProbeServer(ttft_s=0.3, itl_s=0.1) as srv:
        res = send(srv.url, body(stream=True, max_tokens=4, ignore_eos=True), stream=True)
    assert res.ok, res.error
    assert res.content == "A red circle on"
    assert res.completion_tokens == 4 and res.prompt_tokens == 7
    assert res.finish_reason == "length"
    assert 0.3 <= res.ttft_s < 0.6
    assert res.ttfb_s <= res.ttft_s  # the role chunk is the first event
    # Role chunk + 4 token chunks = 5 chunks with choices, 4 of them carry output -> 3 gaps of
    # about 0.1 s each (the role chunk is no token: it adds no gap).
    assert (res.choice_chunks, res.chunks, len(res.itl_s)) == (5, 4, 3)
    assert sum(res.itl_s) == pytest.approx(0.3, abs=0.1)
    # E2EL ends at the last token chunk; TPOT excludes the first token.
    assert res.latency_s == pytest.approx(res.ttft_s + sum(res.itl_s), abs=1e-6)
    assert res.tpot_s == pytest.approx((res.latency_s - res.ttft_s) / 3)
    assert srv.requests[0]["stream_options"] == {"include_usage": True}


def test_500_shows_vllm_error_message():
    with ProbeServer(default="error500") as srv:
        res = send(srv.url, body(), stream=False)
    assert not res.ok and res.status == 500
    assert res.error_kind == "http_500"
    assert res.error == f"HTTP 500: {ENGINE_DEAD}"


def test_unknown_model_is_a_404_with_the_message():
    with ProbeServer() as srv:
        data = ChatRequest((Turn(text="hi"),)).encode("no-such-model")
        res = send(srv.url, data, stream=False)
    assert res.status == 404 and res.error_kind == "http_404"
    assert "The model `no-such-model` does not exist." in res.error


def test_truncated_stream_is_reported():
    with ProbeServer(default="truncate") as srv:
        res = send(srv.url, body(stream=True), stream=True)
    assert not res.ok and res.error_kind == "truncated"
    assert res.error.startswith("stream cut after 2 chunks")
    assert res.ttft_s is not None  # the first chunk did arrive


def test_stream_without_done_is_truncated():
    with ProbeServer(default="no_done") as srv:
        res = send(srv.url, body(stream=True), stream=True)
    assert not res.ok and res.error_kind == "truncated"
    assert "without data: [DONE]" in res.error


def test_malformed_stream_chunk():
    with ProbeServer(default="malformed") as srv:
        res = send(srv.url, body(stream=True), stream=True)
    assert not res.ok and res.error_kind == "malformed"
    assert "stream chunk is not JSON: {this is not json" in res.error


def test_error_event_inside_a_200_stream():
    with ProbeServer(default="stream_error") as srv:
        res = send(srv.url, body(stream=True), stream=True)
    assert res.status == 200 and not res.ok and res.error_kind == "stream_error"
    assert ENGINE_DEAD in res.error


def test_slow_server_times_out():
    with ProbeServer(default="slow", slow_s=3.0) as srv:
        res = send(srv.url, body(), stream=False, timeout=0.5)
    assert not res.ok and res.error_kind == "timeout"
    assert res.error == "no complete answer within 0.5 s"
    assert 0.5 <= res.latency_s < 2.0


def test_trickling_stream_hits_the_total_deadline():
    # A comment every 0.2 s keeps httpx's per-read timeout happy; only a total deadline ends it.
    with ProbeServer(default="trickle") as srv:
        res = send(srv.url, body(stream=True), stream=True, timeout=1.0)
    assert res.error_kind == "timeout" and 1.0 <= res.latency_s < 3.0


def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}"
    res = send(url, body(), stream=False)
    assert not res.ok and res.error_kind == "connect" and res.status is None
    assert res.error.startswith(f"cannot connect to {url}/v1/chat/completions")


def test_api_key_is_sent_as_bearer_and_401_is_explained():
    with ProbeServer(api_key="sk-secret") as srv:
        good = send(srv.url, body(), stream=False, api_key="sk-secret")
        bad = send(srv.url, body(), stream=False, api_key="wrong")
    assert good.ok
    assert bad.status == 401 and bad.error == "HTTP 401: Unauthorized"


def test_fetch_model_and_base_url_forms():
    async def go(url):
        async with http.make_client() as client:
            return await http.fetch_model(client, url)

    with ProbeServer(model="served-name") as srv:
        assert asyncio.run(go(srv.url)) == "served-name"
        assert asyncio.run(go(srv.url + "/v1/")) == "served-name"
    with pytest.raises(http.ProbeHTTPError) as err:
        asyncio.run(go(f"http://127.0.0.1:{free_port()}"))
    assert err.value.kind == "connect"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # vLLM >= 0.9: nested (recorded from vLLM 0.32, tests/fixtures/probe/real-cpu/err-model.json)
        (b'{"error":{"message":"The model `x` does not exist.","type":"NotFoundError",'
         b'"param":"model","code":404}}', "The model `x` does not exist."),
        # vLLM 0.7.2: flat ErrorResponse (vllm/entrypoints/openai/protocol.py at v0.7.2)
        (b'{"object":"error","message":"max_tokens is too large","type":"BadRequestError",'
         b'"param":null,"code":400}', "max_tokens is too large"),
        (b'{"detail":"Not Found"}', "Not Found"),
        (b'{"detail":[{"loc":["body"],"msg":"Field required","type":"missing"}]}',
         "Field required"),
        (b'{"error":"Unauthorized"}', "Unauthorized"),
        (b"<html>bad gateway</html>", "<html>bad gateway</html>"),
        (b"", "(empty body)"),
    ],
)  # fmt: skip
def test_error_message_shapes(raw, expected):
    assert http.error_message(raw) == expected


REAL = Path(__file__).resolve().parent / "fixtures" / "probe" / "real-cpu"


def test_recorded_vllm_stream_replayed_read_by_read():
    reads = json.loads((REAL / "chat-stream.timing.json").read_text())
    with ProbeServer(default="replay") as srv:
        res = send(srv.url, body(stream=True), stream=True)
    assert res.ok, res.error
    assert res.content == "\n" * 8 and res.finish_reason == "length"
    assert (res.prompt_tokens, res.completion_tokens) == (54, 8)
    assert res.choice_chunks == 9  # role chunk + 8 tokens; the usage chunk has no choices
    assert res.chunks == 8 and len(res.itl_s) == 7  # the 8 tokens are timed; the role is not
    assert res.ttft_s >= reads[0][0]
    assert res.tpot_s == pytest.approx((res.latency_s - res.ttft_s) / 7)


def keys(obj):
    """The key structure of a JSON value (dict keys recursively, first list item)."""
    if isinstance(obj, dict):
        return {k: keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [keys(obj[0])] if obj else []
    return None


def test_probe_server_answers_with_the_recorded_vllm_shapes():
    with ProbeServer() as srv, httpx.Client(trust_env=False) as h:
        chat = h.post(srv.url + "/v1/chat/completions", content=body(images=1)).json()
        stream = h.post(srv.url + "/v1/chat/completions", content=body(stream=True)).text
        wrong = h.post(
            srv.url + "/v1/chat/completions",
            content=ChatRequest((Turn(text="x"),)).encode("nope"),
        ).json()
        models = h.get(srv.url + "/v1/models").json()
    assert keys(chat) == keys(json.loads((REAL / "chat-image.json").read_text()))
    assert keys(wrong) == keys(json.loads((REAL / "err-model.json").read_text()))
    assert wrong["error"]["message"] == (
        "The model `nope` does not exist. Valid aliases: tiny-qwen2.5-vl."
    )
    real_models = json.loads((REAL / "models.json").read_text())
    assert set(models["data"][0]) == set(real_models["data"][0])

    def events(text):
        return [e.removeprefix("data: ") for e in text.split("\n\n") if e]

    ours = events(stream)
    real = events((REAL / "chat-stream.sse").read_text())
    assert ours[-1] == real[-1] == "[DONE]"
    # role chunk, a token chunk, the last token chunk, the usage chunk: same keys as vLLM's.
    for i in (0, 1, -3, -2):
        assert keys(json.loads(ours[i])) == keys(json.loads(real[i])), i
