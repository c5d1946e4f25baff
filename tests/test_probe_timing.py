"""TTFB, TTFT, ITL, latency and TPOT as mmops.probe.client defines them, over real HTTP.

The stand-in server here (real TCP on 127.0.0.1) plays a script of SSE events with pauses in
between, so a test can put the role chunk and the first token apart the way some servers do.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mmops.probe import client as http
from mmops.probe.request import ChatRequest, Turn

MODEL = "scripted"

# A step: ("sleep", seconds) or ("event", payload) where payload is a dict (sent as JSON) or a
# ready string such as "[DONE]".
Step = tuple[str, Any]


def chunk(delta: dict | None = None, finish: str | None = None, **extra: Any) -> dict:
    """A chat.completion.chunk with one choice, the shape vLLM sends."""
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [choice],
        **extra,
    }


ROLE = chunk({"role": "assistant", "content": ""})
USAGE = {"id": "c1", "object": "chat.completion.chunk", "model": MODEL, "choices": [],
         "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}  # fmt: skip


class ScriptedServer:
    """``with ScriptedServer(steps) as srv:``; every chat request gets the same script."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ScriptedServer:
        steps = self.steps

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                for kind, value in steps:
                    if kind == "sleep":
                        time.sleep(value)
                        continue
                    text = value if isinstance(value, str) else json.dumps(value)
                    data = f"data: {text}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()


def stream(url: str, on_text=None) -> http.RequestResult:
    body = ChatRequest((Turn(text="hi"),), stream=True).encode(MODEL)

    async def go() -> http.RequestResult:
        async with http.make_client() as client:
            return await http.send_chat(client, url, body, stream=True, on_text=on_text)

    return asyncio.run(go())


def test_role_chunk_first_does_not_stop_the_ttft_clock():
    # The role chunk at once, the first token 300 ms later: TTFB reads ~0, TTFT ~300 ms.
    steps: list[Step] = [
        ("event", ROLE),
        ("sleep", 0.3),
        ("event", chunk({"content": "Hello"})),
        ("event", chunk({"content": " world"})),
        ("event", chunk({"content": "!"}, "stop")),
        ("event", USAGE),
        ("event", "[DONE]"),
    ]
    with ScriptedServer(steps) as srv:
        res = stream(srv.url)
    assert res.ok, res.error
    assert res.ttft_s == pytest.approx(0.3, rel=0.10)
    assert res.ttfb_s < 0.1
    assert res.content == "Hello world!" and res.finish_reason == "stop"
    assert (res.choice_chunks, res.chunks, len(res.itl_s)) == (4, 3, 2)


def test_what_counts_as_output_and_where_latency_ends():
    pieces: list[str] = []
    steps: list[Step] = [
        ("event", ROLE),
        ("event", chunk({"content": ""})),  # a token that decoded to nothing: no output
        ("event", chunk({"reasoning_content": "thinking"})),  # the first output: TTFT
        ("event", chunk({"reasoning": "more"})),
        ("event", chunk({"tool_calls": [{"index": 0, "function": {"name": "f"}}]})),
        ("event", chunk({"content": "answer"})),
        ("event", chunk({}, "stop")),  # a bare finish chunk: has choices, carries no output
        ("event", USAGE),
        ("event", "[DONE]"),
    ]
    with ScriptedServer(steps) as srv:
        res = stream(srv.url, on_text=pieces.append)
    assert res.ok, res.error
    assert res.choice_chunks == 7 and res.chunks == 4
    assert len(res.itl_s) == 3  # gaps between the 4 output chunks only
    assert res.content == "answer" and pieces == ["answer"]  # reasoning is not the answer
    assert res.ttfb_s <= res.ttft_s
    # Latency ends at the last chunk with choices (the finish chunk), as vLLM's client measures,
    # which is at or after the last output chunk; never at the usage chunk or [DONE].
    assert res.latency_s == pytest.approx(res.last_chunk_at - res.start)
    assert res.last_chunk_at >= res.last_output_at
    assert res.ttft_s + sum(res.itl_s) == pytest.approx(res.last_output_at - res.start)
    # TPOT = (latency - TTFT) / (output tokens - 1), output tokens from usage.
    assert res.completion_tokens == 3
    assert res.tpot_s == pytest.approx((res.latency_s - res.ttft_s) / 2)


def test_stream_without_any_output_is_an_answer_without_ttft():
    steps: list[Step] = [("event", ROLE), ("event", chunk({}, "stop")), ("event", "[DONE]")]
    with ScriptedServer(steps) as srv:
        res = stream(srv.url)
    assert res.ok and res.content == ""
    assert res.ttfb_s is not None and res.ttft_s is None and res.tpot_s is None
    assert res.latency_s is not None and res.output_tokens == 0


def test_odd_chunk_shapes_become_malformed_results_not_exceptions():
    steps: list[Step] = [("event", ROLE), ("event", {"choices": ["not an object"]})]
    with ScriptedServer(steps) as srv:
        res = stream(srv.url)
    assert not res.ok and res.error_kind == "malformed"
    assert res.error.startswith("stream chunk has no usable choices[0].delta: ")
    assert "\n" not in res.error
