"""Send one chat completion to a vLLM server and time it: the server's time, not the client's.

What vLLM's own benchmark client does, read in ``async_request_openai_chat_completions`` of
``vllm/benchmarks/lib/endpoint_request_func.py`` (https://github.com/vllm-project/vllm at commit
02cfb534), and the session ``vllm/benchmarks/serve.py`` (commit 009e6d4a) gives it:

- the transport is one ``aiohttp.ClientSession`` over a ``TCPConnector`` limited to
  ``--max-concurrency`` with keep-alive, ``ClientTimeout(total=6 h)``, ``trust_env=True``;
- the clock starts (``st = time.perf_counter()``) just before ``session.post``;
- the body is read with ``response.content.iter_any()`` (whatever bytes have arrived), split
  into SSE messages on ``"\\n\\n"``; comments (``:``) and ``[DONE]`` are skipped, and each
  message is stamped with ``time.perf_counter()`` before its ``json.loads``;
- TTFT is the first message whose ``choices`` is non-empty, whatever its delta holds: vLLM's
  server first sends a chunk with only ``{"role": "assistant", "content": ""}``, so its
  benchmark's TTFT stops at that role chunk;
- ITL: one gap per later message with ``choices``, since the previous one;
- latency (E2EL) ends at the last message with ``choices`` ("only token chunks advance the
  request end; the trailing usage chunk carries no token"), not at ``[DONE]``;
- output tokens come from the ``usage`` message (``stream_options.include_usage``).

Definitions here (the ones genai-perf and users mean):

- **TTFB**, time to first byte of the answer: from just before the POST to the network read
  that completed the first SSE ``data:`` event of any kind (a role-only chunk, a usage chunk,
  even ``[DONE]``; comments do not count).
- **TTFT**, time to first token: from just before the POST to the read that completed the first
  chunk carrying generated output: ``choices[0].delta`` with a non-empty ``content``,
  ``reasoning_content`` (or ``reasoning``) or ``tool_calls``. A role-only first chunk stops the
  TTFB clock, not the TTFT clock. In the recorded vLLM 0.32 stream
  (tests/fixtures/probe/real-cpu/chat-stream.timing.json) the role chunk came alone, 5.5 ms
  before the first token; a server that sends the role at once and the token later shows a
  larger difference. A stream in which no delta carries output (every token decoded to "") is
  still an answer, with no TTFT.
- **ITL**: the gaps between consecutive output-bearing chunks (role, finish-only and usage
  chunks add none).
- **latency** (E2EL): from just before the POST to the last chunk with ``choices``, as vLLM
  measures it; that is the last output-bearing chunk or, when a chunk with choices but no output
  follows it (a bare ``finish_reason`` chunk), that one. Not ``[DONE]``, not the usage chunk.
  Non-streamed: until the whole body has been read.
- **TPOT**: ``(latency - TTFT) / (output tokens - 1)``, output tokens from ``usage`` (else the
  number of output-bearing chunks).

Time is taken once per network read, as the bytes arrive (``content.readany()``), and every
event that read completed gets that timestamp. The client keeps its own cost per request small,
so that on a small machine shared with the server it measures the server: aiohttp with its C
HTTP parser, the body pre-encoded (see :mod:`mmops.probe.request`), SSE split on bytes with no
decode (:mod:`mmops.probe.sse`), no cookie jar, one pooled session per run.

Errors never raise: each becomes a :class:`RequestResult` with an ``error_kind`` and a one-line
``error``, so a load run goes on and the summary counts them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mmops.probe.sse import DONE_BYTES, SSEParser

CHAT_PATH = "/v1/chat/completions"

# error_kind values. http errors are "http_<status>".
CONNECT = "connect"
TIMEOUT = "timeout"
TRUNCATED = "truncated"
MALFORMED = "malformed"
STREAM_ERROR = "stream_error"
MEDIA = "media"
CHECK = "check"

#: on_text(piece): each piece of generated text of a stream, as it arrives.
TextSink = Callable[[str], None]

_decode_json = json.JSONDecoder().decode  # str in: skips json.loads' wrapper and encoding sniff
_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "application/json", "Accept": "text/event-stream"}


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
    start: float = 0.0  # time.perf_counter() just before the POST
    latency_s: float | None = None  # to the last chunk with choices (non-stream: whole body)
    ttft_s: float | None = None  # to the first chunk carrying output
    ttfb_s: float | None = None  # to the first SSE data event of any kind
    itl_s: list[float] = field(default_factory=list)  # gaps between output-bearing chunks
    chunks: int = 0  # SSE chunks that carried output (content, reasoning, tool calls): the timed
    choice_chunks: int = 0  # SSE chunks with choices: those, plus role-only and bare finish ones
    last_chunk_at: float = field(default=0.0, repr=False)  # perf_counter of the latest such chunk
    last_output_at: float = field(default=0.0, repr=False)  # ... of the latest output chunk
    response: Any = field(default=None, repr=False)  # the JSON body of a non-streamed answer

    @property
    def output_tokens(self) -> int:
        """Generated tokens: usage when the server sent it, else the output-bearing chunks."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.chunks

    @property
    def tpot_s(self) -> float | None:
        """Time per output token, excluding the first: (latency - TTFT) / (output tokens - 1)."""
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


@functools.lru_cache(maxsize=32)
def _timeout(total: float) -> aiohttp.ClientTimeout:
    # One deadline for the whole exchange, body included (aiohttp's ``total``): a server that
    # trickles a byte every few seconds must still time out.
    return aiohttp.ClientTimeout(total=total, connect=min(total, 10.0))


def make_client(
    *, concurrency: int = 1, api_key: str | None = None, timeout: float = 60.0
) -> aiohttp.ClientSession:
    """One pooled session for a whole run, sized so requests never wait for a connection.

    Call it inside a running event loop (``async with make_client() as client:``).
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    size = max(1, concurrency) + 2  # + /metrics and /v1/models beside the load
    connector = aiohttp.TCPConnector(
        limit=size, limit_per_host=size, keepalive_timeout=60, ttl_dns_cache=300
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers=headers,
        timeout=_timeout(timeout),
        # Unlike `vllm bench serve` (trust_env=True), no proxy from the environment: a proxy
        # between the probe and the server would be timed along with the server.
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # vLLM sets none; skip the per-response parsing
    )


class ProbeHTTPError(Exception):
    """A request that could not be completed; ``kind`` is an error_kind value."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


async def fetch_model(client: aiohttp.ClientSession, url: str) -> str:
    """The first model id of ``/v1/models`` (what `vllm bench serve` uses when none is given)."""
    target = base_url(url) + "/v1/models"
    try:
        async with client.get(target) as resp:
            status = resp.status
            raw = await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ProbeHTTPError(*_transport_error(exc, target)) from None
    if status != 200:
        raise ProbeHTTPError(
            f"http_{status}", f"GET /v1/models: HTTP {status}: {error_message(raw)}", status
        )
    try:
        return str(json.loads(raw)["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProbeHTTPError(
            MALFORMED, f"GET /v1/models: no model id in {_clip(raw.decode('utf-8', 'replace'))}"
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
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    stream: bool,
    timeout: float = 60.0,
    on_text: TextSink | None = None,
) -> RequestResult:
    """POST one encoded chat body; never raises for network or server trouble.

    ``on_text`` receives each piece of generated text of a stream as it arrives.
    """
    result = RequestResult(stream=stream)
    target = base_url(url) + CHAT_PATH
    try:
        await _exchange(client, target, body, result, _timeout(timeout), on_text)
    except asyncio.TimeoutError:  # aiohttp's own timeouts are TimeoutError subclasses too
        _fail(result, TIMEOUT, f"no complete answer within {timeout:g} s")
    except ProbeHTTPError as exc:
        _fail(result, exc.kind, str(exc))
    except aiohttp.ClientError as exc:
        _fail(result, *_transport_error(exc, target, result))
    except Exception as exc:  # the contract: a result, never a raise
        _fail(result, CONNECT, f"{type(exc).__name__}: {_clip(str(exc))}")
    return result


async def _exchange(
    client: aiohttp.ClientSession,
    target: str,
    body: bytes,
    result: RequestResult,
    timeout: aiohttp.ClientTimeout,
    on_text: TextSink | None,
) -> None:
    headers = _SSE if result.stream else _JSON
    result.start = time.perf_counter()
    async with client.post(target, data=body, headers=headers, timeout=timeout) as resp:
        status = result.status = resp.status
        if status >= 300:
            raw = await resp.read()
            raise ProbeHTTPError(f"http_{status}", f"HTTP {status}: {error_message(raw)}")
        if result.stream:
            await _read_stream(resp, result, on_text)
        else:
            raw = await resp.read()
            result.latency_s = time.perf_counter() - result.start
            _read_completion(raw, result)
    result.ok = True


def _read_completion(raw: bytes, result: RequestResult) -> None:
    try:
        data = json.loads(raw)
        result.response = data
        choice = data["choices"][0]
        message = choice.get("message") or {}
        result.content = message.get("content") or ""
        result.finish_reason = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ProbeHTTPError(
            MALFORMED, f"not a chat completion: {_clip(raw.decode('utf-8', 'replace'))}"
        ) from None
    _read_usage(data.get("usage"), result)


async def _read_stream(
    resp: aiohttp.ClientResponse, result: RequestResult, on_text: TextSink | None
) -> None:
    parser = SSEParser()
    feed = parser.feed_bytes
    read = resp.content.readany
    perf_counter = time.perf_counter
    parts: list[str] = []
    done = False
    try:
        while True:
            chunk = await read()
            if not chunk:
                break
            # One timestamp per network read, taken as its bytes arrive; every event the read
            # completed carries it.
            now = perf_counter()
            for data in feed(chunk):
                if _stream_event(data, now, result, parts, on_text):
                    done = True
        for data in parser.flush_bytes():
            if _stream_event(data, perf_counter(), result, parts, on_text):
                done = True
    except aiohttp.ClientPayloadError as exc:
        # The server closed the connection mid-body (e.g. the engine died).
        raise ProbeHTTPError(
            TRUNCATED, f"stream cut after {result.choice_chunks} chunks: {_clip(str(exc))}"
        ) from None
    finally:
        result.content = "".join(parts)
        if result.choice_chunks:
            result.latency_s = result.last_chunk_at - result.start
    if not done:
        raise ProbeHTTPError(
            TRUNCATED, f"stream ended after {result.choice_chunks} chunks without data: [DONE]"
        )
    if not result.choice_chunks:
        raise ProbeHTTPError(MALFORMED, "stream had no chunk with choices (no token to time)")


def _stream_event(
    data: bytes, now: float, result: RequestResult, parts: list[str], on_text: TextSink | None
) -> bool:
    """Apply one SSE data payload to result; True when it was ``[DONE]``."""
    if result.ttfb_s is None:
        result.ttfb_s = now - result.start
    if data == DONE_BYTES or (data[:1] != b"{" and data.strip() == DONE_BYTES):
        return True
    try:
        payload: Any = _decode_json(data.decode("utf-8"))
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise ProbeHTTPError(
            MALFORMED, f"stream chunk is not JSON: {_clip(data.decode('utf-8', 'replace'))}"
        ) from None
    if not isinstance(payload, dict):
        raise ProbeHTTPError(
            MALFORMED, f"stream chunk is not an object: {_clip(data.decode('utf-8', 'replace'))}"
        )
    choices = payload.get("choices")
    if "error" in payload and not choices:
        # vLLM reports a failure after the 200 status as a data event carrying an error body.
        raise ProbeHTTPError(STREAM_ERROR, f"error in stream: {error_message(data)}")
    if choices:
        try:
            choice = choices[0]
            delta = choice.get("delta") or {}
            text = delta.get("content")
            output = bool(
                text
                or delta.get("reasoning_content")
                or delta.get("reasoning")
                or delta.get("tool_calls")
            )
            finish = choice.get("finish_reason")
        except (AttributeError, KeyError, IndexError, TypeError):
            raise ProbeHTTPError(
                MALFORMED,
                f"stream chunk has no usable choices[0].delta: "
                f"{_clip(data.decode('utf-8', 'replace'))}",
            ) from None
        result.choice_chunks += 1
        result.last_chunk_at = now
        if output:
            if result.chunks == 0:
                result.ttft_s = now - result.start
            else:
                result.itl_s.append(now - result.last_output_at)
            result.last_output_at = now
            result.chunks += 1
            if text:
                piece = str(text)
                parts.append(piece)
                if on_text is not None:
                    on_text(piece)
        if finish:
            result.finish_reason = finish
    usage = payload.get("usage")
    if usage:
        _read_usage(usage, result)
    return False


def _read_usage(usage: Any, result: RequestResult) -> None:
    if isinstance(usage, dict):
        try:
            if usage.get("prompt_tokens") is not None:
                result.prompt_tokens = int(usage["prompt_tokens"])
            if usage.get("completion_tokens") is not None:
                result.completion_tokens = int(usage["completion_tokens"])
        except (TypeError, ValueError):
            raise ProbeHTTPError(
                MALFORMED, f"usage is not token counts: {_clip(str(usage))}"
            ) from None


def _transport_error(
    exc: BaseException, target: str, result: RequestResult | None = None
) -> tuple[str, str]:
    if isinstance(exc, asyncio.TimeoutError):
        return TIMEOUT, f"timed out talking to {target}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        why = str(exc.os_error) if exc.os_error is not None else str(exc)
        return CONNECT, f"cannot connect to {target}: {_clip(why) or type(exc).__name__}"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        if result is not None and result.status is not None:
            return TRUNCATED, f"response cut: {_clip(str(exc)) or type(exc).__name__}"
        return CONNECT, f"server closed the connection: {_clip(str(exc)) or type(exc).__name__}"
    return CONNECT, f"{type(exc).__name__}: {_clip(str(exc))}"


def _fail(result: RequestResult, kind: str, message: str) -> None:
    result.ok = False
    result.error_kind = kind
    result.error = message
    if result.latency_s is None and result.start:
        result.latency_s = time.perf_counter() - result.start


def _clip(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
