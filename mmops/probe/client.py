"""Send one chat completion to a vLLM server and time it the way `vllm bench serve` does.

Timing follows ``async_request_openai_chat_completions`` in vLLM's
``vllm/benchmarks/lib/endpoint_request_func.py`` (read at commit 02cfb534 of
https://github.com/vllm-project/vllm):

- the clock starts just before the POST;
- TTFT is the arrival of the first SSE chunk that has ``choices`` (vLLM's first chunk carries the
  assistant role and is sent once the first token exists);
- each later chunk with ``choices`` adds one inter-token latency (ITL) since the previous one;
- end-to-end latency ends at the last chunk with ``choices``, not at ``[DONE]`` or the usage chunk;
- output tokens come from the ``usage`` chunk (``stream_options.include_usage``).

Errors never raise: each becomes a :class:`RequestResult` with an ``error_kind`` and a one-line
``error``, so a load run goes on and the summary counts them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mmops.probe.sse import DONE, SSEParser

# httpcore asks sniffio which event loop it runs on at every connection-pool step. anyio >= 4
# no longer installs sniffio, and then each ask is a failed import that searches sys.path:
# about 3 ms of CPU per streamed request, measured here, taken from the server it measures on a
# small machine. A None entry in sys.modules makes that import fail at once, as it would anyway.
try:
    import sniffio  # noqa: F401
except ImportError:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]  # typeshed has no None in sys.modules

CHAT_PATH = "/v1/chat/completions"

# error_kind values. http errors are "http_<status>".
CONNECT = "connect"
TIMEOUT = "timeout"
TRUNCATED = "truncated"
MALFORMED = "malformed"
STREAM_ERROR = "stream_error"
MEDIA = "media"
CHECK = "check"


@dataclass
class RequestResult:
    """What one request produced. ``ok`` means vLLM answered a usable completion (HTTP 2xx)."""

    ok: bool = False
    stream: bool = False
    status: int | None = None
    error_kind: str | None = None
    error: str | None = None
    content: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    start: float = 0.0  # time.perf_counter() when the request was sent
    latency_s: float | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    chunks: int = 0  # SSE chunks that carried choices
    last_chunk_at: float = field(default=0.0, repr=False)  # perf_counter of the latest such chunk

    @property
    def output_tokens(self) -> int:
        """Generated tokens: usage when the server sent it, else the number of stream chunks."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.chunks

    @property
    def tpot_s(self) -> float | None:
        """Time per output token, excluding the first: (E2EL - TTFT) / (output tokens - 1)."""
        n = self.output_tokens
        if self.ttft_s is None or self.latency_s is None or n <= 1:
            return None
        return (self.latency_s - self.ttft_s) / (n - 1)

    @property
    def output_tokens_per_s(self) -> float | None:
        if not self.latency_s or not self.output_tokens:
            return None
        return self.output_tokens / self.latency_s


def base_url(url: str) -> str:
    """``http://h:p``, ``http://h:p/`` and ``http://h:p/v1`` all mean the server at ``http://h:p``."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def make_client(
    *, concurrency: int = 1, api_key: str | None = None, timeout: float = 60.0
) -> httpx.AsyncClient:
    """One pooled client for a whole run, sized so requests never wait for a connection."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    size = max(1, concurrency) + 2  # + /metrics and /v1/models beside the load
    return httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        # Like `vllm bench serve` (aiohttp's default): no proxy from the environment; a proxy
        # between the probe and the server would time the proxy.
        trust_env=False,
    )


class ProbeHTTPError(Exception):
    """A request that could not be completed; ``kind`` is an error_kind value."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


async def fetch_model(client: httpx.AsyncClient, url: str) -> str:
    """The first model id of ``/v1/models`` (what `vllm bench serve` uses when none is given)."""
    target = base_url(url) + "/v1/models"
    try:
        resp = await client.get(target)
    except httpx.HTTPError as exc:
        raise ProbeHTTPError(*_transport_error(exc, target)) from None
    if resp.status_code != 200:
        raise ProbeHTTPError(
            f"http_{resp.status_code}",
            f"GET /v1/models: HTTP {resp.status_code}: {error_message(resp.content)}",
            resp.status_code,
        )
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProbeHTTPError(
            MALFORMED, f"GET /v1/models: no model id in {_clip(resp.text)}"
        ) from None


def error_message(body: bytes) -> str:
    """One line from a vLLM error body.

    vLLM >= 0.9 nests it, ``{"error": {"message", "type", "param", "code"}}``
    (``ErrorResponse``/``ErrorInfo`` in vllm/entrypoints/openai/protocol.py); older releases,
    0.7.2 among them, send it flat, ``{"object": "error", "message", "type", "param", "code"}``.
    FastAPI's own errors (unknown route, validation) use ``{"detail": ...}``.
    """
    try:
        data = json.loads(body)
    except ValueError:
        return _clip(body.decode("utf-8", "replace")) or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return _clip(str(err["message"]))
        if isinstance(err, str):
            return _clip(err)
        if data.get("message"):
            return _clip(str(data["message"]))
        detail = data.get("detail")
        if isinstance(detail, list):
            return _clip(
                "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
            )
        if detail:
            return _clip(str(detail))
    return _clip(json.dumps(data))


async def send_chat(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    stream: bool,
    timeout: float = 60.0,
) -> RequestResult:
    """POST one encoded chat body; never raises for network or server trouble."""
    result = RequestResult(stream=stream)
    target = base_url(url) + CHAT_PATH
    result.start = time.perf_counter()
    try:
        # One deadline for the whole exchange: httpx's timeouts are per read, and a server that
        # trickles a byte every few seconds would otherwise never time out.
        await asyncio.wait_for(_exchange(client, target, body, result), timeout)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        _fail(result, TIMEOUT, f"no complete answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        _fail(result, *_transport_error(exc, target, result))
    except ProbeHTTPError as exc:
        _fail(result, exc.kind, str(exc))
    return result


async def _exchange(
    client: httpx.AsyncClient, target: str, body: bytes, result: RequestResult
) -> None:
    headers = {"Content-Type": "application/json"}
    if result.stream:
        headers["Accept"] = "text/event-stream"
    async with client.stream("POST", target, content=body, headers=headers) as resp:
        result.status = resp.status_code
        if resp.status_code >= 300:
            raw = await resp.aread()
            raise ProbeHTTPError(
                f"http_{resp.status_code}", f"HTTP {resp.status_code}: {error_message(raw)}"
            )
        if result.stream:
            await _read_stream(resp, result)
        else:
            raw = await resp.aread()
            result.latency_s = time.perf_counter() - result.start
            _read_completion(raw, result)
    result.ok = True


def _read_completion(raw: bytes, result: RequestResult) -> None:
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ProbeHTTPError(
            MALFORMED, f"not a chat completion: {_clip(raw.decode('utf-8', 'replace'))}"
        ) from None
    result.content = message.get("content") or ""
    result.finish_reason = choice.get("finish_reason")
    _read_usage(data.get("usage"), result)


async def _read_stream(resp: httpx.Response, result: RequestResult) -> None:
    parser = SSEParser()
    done = False
    try:
        async for chunk in resp.aiter_raw():
            # One timestamp per network read, as vLLM's benchmark client takes one per message
            # right after the read that completed it.
            now = time.perf_counter()
            for data in parser.feed(chunk):
                done = _stream_event(data, now, result) or done
    except httpx.RemoteProtocolError as exc:
        # The server closed the connection mid-body (e.g. the engine died).
        raise ProbeHTTPError(
            TRUNCATED, f"stream cut after {result.chunks} chunks: {_clip(str(exc))}"
        ) from None
    finally:
        if result.chunks:
            result.latency_s = result.last_chunk_at - result.start
    for data in parser.flush():
        done = _stream_event(data, time.perf_counter(), result) or done
    if result.chunks:
        result.latency_s = result.last_chunk_at - result.start
    if not done:
        raise ProbeHTTPError(
            TRUNCATED, f"stream ended after {result.chunks} chunks without data: [DONE]"
        )
    if not result.chunks:
        raise ProbeHTTPError(MALFORMED, "stream had no chunk with choices (no token to time)")


def _stream_event(data: str, now: float, result: RequestResult) -> bool:
    """Apply one SSE data payload to result; True when it was ``[DONE]``."""
    if data.strip() == DONE:
        return True
    try:
        payload: Any = json.loads(data)
    except ValueError:
        raise ProbeHTTPError(MALFORMED, f"stream chunk is not JSON: {_clip(data)}") from None
    if not isinstance(payload, dict):
        raise ProbeHTTPError(MALFORMED, f"stream chunk is not an object: {_clip(data)}")
    if "error" in payload and not payload.get("choices"):
        # vLLM reports a failure after the 200 status as a data event carrying an error body.
        raise ProbeHTTPError(STREAM_ERROR, f"error in stream: {error_message(data.encode())}")
    choices = payload.get("choices")
    if choices:
        choice = choices[0]
        if result.chunks == 0:
            result.ttft_s = now - result.start
        else:
            result.itl_s.append(now - result.last_chunk_at)
        result.last_chunk_at = now
        result.chunks += 1
        delta = choice.get("delta") or {}
        result.content += delta.get("content") or ""
        if choice.get("finish_reason"):
            result.finish_reason = choice["finish_reason"]
    _read_usage(payload.get("usage"), result)
    return False


def _read_usage(usage: Any, result: RequestResult) -> None:
    if isinstance(usage, dict):
        if usage.get("prompt_tokens") is not None:
            result.prompt_tokens = int(usage["prompt_tokens"])
        if usage.get("completion_tokens") is not None:
            result.completion_tokens = int(usage["completion_tokens"])


def _transport_error(
    exc: httpx.HTTPError, target: str, result: RequestResult | None = None
) -> tuple[str, str]:
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT, f"timed out talking to {target}"
    if isinstance(exc, httpx.ConnectError):
        return CONNECT, f"cannot connect to {target}: {_clip(str(exc)) or type(exc).__name__}"
    if isinstance(exc, httpx.RemoteProtocolError):
        if result is not None and result.status is not None:
            return TRUNCATED, f"response cut: {_clip(str(exc))}"
        return CONNECT, f"server closed the connection: {_clip(str(exc))}"
    return CONNECT, f"{type(exc).__name__}: {_clip(str(exc))}"


def _fail(result: RequestResult, kind: str, message: str) -> None:
    result.ok = False
    result.error_kind = kind
    result.error = message
    if result.latency_s is None:
        result.latency_s = time.perf_counter() - result.start


def _clip(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
