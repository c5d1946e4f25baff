"""A real HTTP server on 127.0.0.1 that answers the way vLLM 0.32's OpenAI server does.

Not a mocked transport: the probe talks to it over TCP with httpx exactly as to vLLM. Response
bodies copy the shapes recorded from the real vLLM 0.32 CPU build serving the tiny Qwen2.5-VL
(tests/fixtures/probe/real-cpu/, see its README.md): ``/v1/models``, chat completions with
``usage``, SSE chunks (role chunk first, one chunk per token, a usage chunk with empty
``choices``, then ``data: [DONE]``), the nested error body, and the recorded ``/metrics`` text,
whose counters this server keeps up to date.

Behaviour per request: the first ``rules`` entry whose key occurs in the request's last user
text picks it, else ``default``:

- ``ok``            answer normally (stream or not); ``ttft_s``/``itl_s`` pace the stream
- ``error500``      HTTP 500 with vLLM's error body and the EngineDeadError message
- ``truncate``      stream: two chunks, then the socket closes mid-chunked-body
- ``no_done``       stream: every chunk, a clean end, but no ``data: [DONE]``
- ``malformed``     stream: a chunk that is not JSON
- ``stream_error``  stream: 200, one chunk, then a ``data: {"error": ...}`` event
- ``slow``          sleep ``slow_s`` before answering (client timeouts)
- ``trickle``       stream: one SSE comment every 0.2 s, never a token (total-deadline test)
- ``replay``        stream: the recorded real vLLM stream (chat-stream.sse), read by read

Prompt tokens are counted like a VLM would: words of text, a template overhead per message, and
for each image ceil(w/28) * ceil(h/28) tokens read from the image's own header, so a probe whose
image never reached the body sees a small ``prompt_tokens``. An undecodable image gets vLLM's
400. Every request body is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "probe" / "real-cpu"
MODEL = "tiny-qwen2.5-vl"
ANSWER = "A red circle on a white background and nothing else at all here"
TEMPLATE_TOKENS_PER_MESSAGE = 5
VIDEO_TOKENS = 32

# vllm/v1/engine/exceptions.py, EngineDeadError's message (vLLM 0.32).
ENGINE_DEAD = "EngineCore encountered an issue. See stack trace (above) for the root cause."


def vllm_error(message: str, err_type: str, code: int, param: str | None = None) -> dict:
    """vLLM's error body (ErrorResponse{error: ErrorInfo}), as recorded in err-*.json."""
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header; None when it is neither."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return w, h
            i += 2 + length
    return None


class ProbeServer:
    """Start with ``with ProbeServer(...) as srv:``; ``srv.url`` is its base URL."""

    def __init__(
        self,
        *,
        model: str = MODEL,
        default: str = "ok",
        rules: dict[str, str] | None = None,
        ttft_s: float = 0.0,
        itl_s: float = 0.0,
        slow_s: float = 5.0,
        answer: str = ANSWER,
        api_key: str | None = None,
        max_images: int | None = None,
        metrics_body: str | None = None,
    ) -> None:
        self.model = model
        self.default = default
        self.rules = rules or {}
        self.ttft_s = ttft_s
        self.itl_s = itl_s
        self.slow_s = slow_s
        self.answer = answer
        self.api_key = api_key
        self.max_images = max_images
        self.metrics_template = metrics_body or (FIXTURES / "metrics-idle.txt").read_text()
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.finished = {"stop": 0, "length": 0}
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ProbeServer:
        handler = type("Handler", (_Handler,), {"srv": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # slow handlers must not hold up stop()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ProbeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour -------------------------------------------------------------------------------

    def behaviour_for(self, body: dict) -> str:
        text = _last_user_text(body)
        for key, behaviour in self.rules.items():
            if key in text:
                return behaviour
        return self.default

    def metrics_text(self) -> str:
        """The recorded /metrics body with this server's live values written in."""
        with self.lock:
            values = {
                ("vllm:num_requests_running", ""): self.in_flight,
                ("vllm:num_requests_waiting", ""): 0,
                ("vllm:kv_cache_usage_perc", ""): 0.01 * self.in_flight,
                ("vllm:prompt_tokens_total", ""): self.prompt_tokens_total,
                ("vllm:generation_tokens_total", ""): self.generation_tokens_total,
                **{
                    ("vllm:request_success_total", f'finished_reason="{reason}"'): n
                    for reason, n in self.finished.items()
                },
            }
        text = self.metrics_template
        for (name, label), value in values.items():
            text = re.sub(
                rf"^({re.escape(name)}(?:\{{[^}}]*{re.escape(label)}[^}}]*\}})?) \S+$",
                lambda m, v=value: f"{m.group(1)} {float(v)}",
                text,
                flags=re.M,
            )
        return text


def _last_user_text(body: dict) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


class _BadRequest(Exception):
    def __init__(self, status: int, body: dict) -> None:
        self.status = status
        self.body = body


class _Handler(BaseHTTPRequestHandler):
    srv: ProbeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    # -- plumbing ----------------------------------------------------------------------------------

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, obj: Any) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        self._chunk(f"data: {payload}\n\n".encode())

    def _authorized(self) -> bool:
        if self.srv.api_key is None or not self.path.startswith("/v1"):
            return True
        if self.headers.get("authorization") == f"Bearer {self.srv.api_key}":
            return True
        # vLLM's api-key middleware answers exactly this (vllm/entrypoints/openai/api_server.py).
        self._send_json(401, {"error": "Unauthorized"})
        return False

    # -- routes ------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        self.srv.paths.append(self.path)
        if not self._authorized():
            return
        if self.path == "/health":
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            self._send_json(200, _models_body(self.srv.model))
        elif self.path == "/metrics":
            data = self.srv.metrics_text().encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=1.0.0; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._send_json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        self.srv.paths.append(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        if self.path != "/v1/chat/completions":
            self._send_json(404, {"detail": "Not Found"})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, vllm_error("JSON decode error", "BadRequestError", 400))
            return
        srv = self.srv
        with srv.lock:
            srv.requests.append(body)
            srv.headers.append(dict(self.headers))
            srv.in_flight += 1
            srv.peak_in_flight = max(srv.peak_in_flight, srv.in_flight)
        try:
            self._chat(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _chat(self, body: dict) -> None:
        srv = self.srv
        if body.get("model") != srv.model:
            # Recorded from vLLM 0.32: err-model.json.
            message = f"The model `{body.get('model')}` does not exist. Valid aliases: {srv.model}."
            self._send_json(404, vllm_error(message, "NotFoundError", 404, "model"))  # fmt: skip
            return
        behaviour = srv.behaviour_for(body)
        if behaviour == "slow":
            time.sleep(srv.slow_s)
        if behaviour == "error500":
            self._send_json(500, vllm_error(ENGINE_DEAD, "InternalServerError", 500))
            return
        try:
            prompt_tokens = self._count_prompt(body)
        except _BadRequest as exc:
            self._send_json(exc.status, exc.body)
            return
        max_tokens = int(body.get("max_tokens") or 16)
        words = srv.answer.split()
        if body.get("ignore_eos"):
            words = (words * (max_tokens // max(1, len(words)) + 1))[:max_tokens]
        tokens = words[:max_tokens]
        finish = "length" if len(tokens) == max_tokens else "stop"
        with srv.lock:
            srv.prompt_tokens_total += prompt_tokens
            srv.generation_tokens_total += len(tokens)
            srv.finished[finish] += 1
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + len(tokens),
            "completion_tokens": len(tokens),
        }
        if body.get("stream"):
            self._stream(body, behaviour, tokens, finish, usage)
            return
        # Key for key the body recorded in real-cpu/chat-image.json (vLLM 0.32).
        message = {
            "role": "assistant", "content": " ".join(tokens), "refusal": None,
            "annotations": None, "audio": None, "function_call": None, "reasoning": None,
        }  # fmt: skip
        self._send_json(200, {
            "id": "chatcmpl-probe-server", "object": "chat.completion",
            "created": int(time.time()), "model": srv.model,
            "choices": [{
                "index": 0, "message": message, "logprobs": None, "finish_reason": finish,
                "stop_reason": None, "token_ids": None, "routed_experts": None,
            }],
            "service_tier": None, "system_fingerprint": "vllm-0.32.0-0a986d47",
            "usage": {**usage, "prompt_tokens_details": None, "completion_tokens_details": None},
            "prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
            "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None,
        })  # fmt: skip

    def _stream(
        self, body: dict, behaviour: str, tokens: list[str], finish: str, usage: dict
    ) -> None:
        srv = self.srv
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if behaviour == "replay":
            # The recorded vLLM stream, network read by network read, at the recorded pace.
            reads = json.loads((FIXTURES / "chat-stream.timing.json").read_text())
            start = time.perf_counter()
            for at, data in reads:
                time.sleep(max(0.0, at - (time.perf_counter() - start)))
                self._chunk(data.encode())
            self._chunk(b"")
            return
        if behaviour == "trickle":
            for _ in range(100):
                self._chunk(b": keep-alive\n\n")
                time.sleep(0.2)
            return
        created = int(time.time())

        # Chunk shapes as recorded in real-cpu/chat-stream.sse (vLLM 0.32).
        def chunk(delta: dict, finish_reason: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            if finish_reason:
                choice["stop_reason"] = None
            if "role" not in delta:
                choice["token_ids"] = None
            out = {
                "id": "chatcmpl-probe-server", "object": "chat.completion.chunk",
                "created": created, "model": srv.model, "choices": [choice],
            }  # fmt: skip
            if "role" in delta:
                out.update(prompt_token_ids=None, prompt_text=None)
            return out

        time.sleep(srv.ttft_s)
        self._event(chunk({"role": "assistant", "content": ""}))
        for i, tok in enumerate(tokens):
            if behaviour == "truncate" and i == 1:
                self.wfile.write(b'40\r\ndata: {"id": "cut')  # a chunk that never completes
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if behaviour == "malformed" and i == 1:
                self._event("{this is not json")
            if behaviour == "stream_error" and i == 1:
                self._event(vllm_error(ENGINE_DEAD, "InternalServerError", 500))
                self._chunk(b"")
                return
            if i:
                time.sleep(srv.itl_s)
            text = tok if i == 0 else " " + tok
            last = i == len(tokens) - 1
            self._event(chunk({"content": text}, finish if last else None))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({
                "id": "chatcmpl-probe-server", "object": "chat.completion.chunk",
                "created": created, "model": srv.model, "choices": [], "usage": usage,
                "system_fingerprint": "vllm-0.32.0-0a986d47",
            })  # fmt: skip
        if behaviour != "no_done":
            self._event("[DONE]")
        self._chunk(b"")

    def _count_prompt(self, body: dict) -> int:
        images = 0
        total = 0
        for msg in body.get("messages") or []:
            total += TEMPLATE_TOKENS_PER_MESSAGE
            content = msg.get("content")
            if isinstance(content, str):
                total += len(content.split())
                continue
            for part in content or []:
                kind = part.get("type")
                if kind == "text":
                    total += len(part.get("text", "").split())
                elif kind == "image_url":
                    images += 1
                    total += self._image_tokens(part["image_url"]["url"])
                elif kind == "video_url":
                    url = part["video_url"]["url"]
                    data = _decode_data_url(url)
                    if data[4:8] != b"ftyp":
                        raise _BadRequest(400, vllm_error(
                            "Invalid video data", "BadRequestError", 400))  # fmt: skip
                    total += VIDEO_TOKENS
        if self.srv.max_images is not None and images > self.srv.max_images:
            raise _BadRequest(400, vllm_error(
                f"At most {self.srv.max_images} image(s) may be provided in one prompt.",
                "BadRequestError", 400,
            ))  # fmt: skip
        return total

    def _image_tokens(self, url: str) -> int:
        size = image_size(_decode_data_url(url))
        if size is None:
            raise _BadRequest(400, vllm_error(
                "Failed to load image: cannot identify image file <_io.BytesIO object>",
                "BadRequestError",
                400,))  # fmt: skip
        w, h = size
        return max(4, math.ceil(w / 28) * math.ceil(h / 28))


def _decode_data_url(url: str) -> bytes:
    if not url.startswith("data:") or ";base64," not in url:
        raise _BadRequest(400, vllm_error(
            "The URL must be either a HTTP, data or file URL.", "BadRequestError", 400))  # fmt: skip
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except ValueError:
        raise _BadRequest(400, vllm_error(
            "Failed to load image: invalid base64", "BadRequestError", 400)) from None  # fmt: skip


def _models_body(model: str) -> dict:
    return {
        "object": "list",
        "data": [{
            "id": model, "object": "model", "created": int(time.time()), "owned_by": "vllm",
            "root": "/models/tiny", "parent": None, "max_model_len": 2048, "permission": [],
        }],
    }  # fmt: skip
