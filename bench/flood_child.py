"""A stand-in vLLM server for bench/tui_flood_bench.py: starts, serves, then floods its log.

Like tests/fakes/fake_vllm.py it really binds --port on --host and answers over HTTP
(GET /health 200, GET /v1/models listing --model, GET /metrics with a few vllm: series), and
logs what vLLM logs: the start-up of a real vLLM 0.32 CPU server (the first 114 lines of
tests/fixtures/logs/real-cpu/healthy-start.log, up to "Application startup complete.") and an
access line per request. Unlike the fake it keeps serving after the flood:

- GET /bench/flood starts the flood: ``--rate`` lines/s for ``--seconds`` s on stdout, paced
  against the clock in 5 ms ticks (a pipe that fills up slows it down: the rate achieved is
  what mmops took); the lines are :func:`flood_line` (0, 1, 2, ...), the shapes of a busy
  server's log, so a reader can regenerate them and check the attempt log line by line;
- then one line ``... flood done: N lines in S s`` (N as written), and it idles;
- SIGINT / SIGTERM: the real server's shutdown lines (the fixture's tail), exit 0.

All output goes through one lock straight to fd 1, so lines from the HTTP threads never split
a flood line. Stdlib only: it starts in tens of milliseconds.

    python bench/flood_child.py --model M --host 127.0.0.1 --port P [--rate 50000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURE = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "logs" / "real-cpu"
    / "healthy-start.log"
)  # fmt: skip
STARTUP_LINES = 114  # up to and including "INFO:     Application startup complete."
SHUTDOWN_FROM = "[shutdown] EngineCore: trigger received signal=SIGINT"
DONE = "] flood done: "
TICK_S = 0.005
MAX_BATCH = 5_000  # lines per write when the flood has fallen behind the clock


def _stamp(i: int, rate: int) -> str:
    t = 9 * 3600 + 52 * 60 + i // max(1, rate)  # a pseudo-clock: 11-25 09:52:00 + i / rate s
    return f"11-25 {t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d}"


def flood_line(i: int, rate: int) -> str:
    """Flood line number ``i`` (newline included): a function of (i, rate) only.

    Per 1000 lines: 4 ERROR lines (a traceback), 10 WARNING, about 100 engine stats, 100
    "Received request", the rest uvicorn access lines (shapes from the real-cpu fixture and
    bench/logstore_bench.py). Nothing in it matches the supervisor's engine-dead patterns.
    """
    k = i % 1000
    head = f"(APIServer pid=11056) {{}} {_stamp(i, rate)}"
    if 500 <= k <= 503:
        body = (
            "Error in chat completion stream generator.",
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3.11/site-packages/vllm/entrypoints/openai/serving_chat.py"'
            ", line 1180, in chat_completion_stream_generator",
            "asyncio.exceptions.CancelledError",
        )[k - 500]
        return f"{head.format('ERROR')} [serving_chat.py:1221] {body}\n"
    if k % 100 == 7:
        return (
            f"{head.format('WARNING')} [protocol.py:58] The following fields were present in "
            f"the request but ignored: {{'top_k'}}\n"
        )
    if k % 10 == 3:
        return (
            f"{head.format('INFO')} [loggers.py:335] Engine 000: Avg prompt throughput: "
            f"{(i * 37) % 9000}.{i % 10} tokens/s, Avg generation throughput: {(i * 11) % 3000}.0"
            f" tokens/s, Running: {i % 64} reqs, Waiting: {i % 8} reqs, CPU KV cache usage: "
            f"{i % 100}.0%, Prefix cache hit rate: {(i * 7) % 80}.0%\n"
        )
    if k % 10 == 5:
        return (
            f"{head.format('INFO')} [logger.py:43] Received request chatcmpl-{i:016x}: prompt: "
            "'<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.'"
            f", params: SamplingParams(n=1, temperature=0.{i % 100:02d}, max_tokens=512), "
            "lora_request: None.\n"
        )
    port = 30000 + (i * 7919) % 35000
    return f'INFO:     127.0.0.1:{port} - "POST /v1/chat/completions HTTP/1.1" 200 OK\n'


class Out:
    """stdout, one lock, whole lines."""

    lock = threading.Lock()

    @classmethod
    def write(cls, text: str) -> None:
        data = text.encode()
        with cls.lock:
            while data:
                n = os.write(1, data)
                data = data[n:]


class State:
    model = "model"
    flood = threading.Event()
    stop = threading.Event()
    written = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn: httpx reuses one connection

    def log_message(self, fmt, *args):  # uvicorn's access line
        code = args[1] if len(args) > 1 else ""
        phrase = {"200": " OK", "404": " Not Found"}.get(str(code), "")
        Out.write(
            f'INFO:     127.0.0.1:{self.client_address[1]} - "{self.requestline}" {code}{phrase}\n'
        )

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b"")
        elif self.path == "/v1/models":
            data = {"object": "list", "data": [{"id": State.model, "object": "model"}]}
            self._send(200, json.dumps(data).encode())
        elif self.path == "/metrics":
            n = State.written
            text = (
                "# TYPE vllm:num_requests_running gauge\n"
                f'vllm:num_requests_running{{model_name="{State.model}"}} 3.0\n'
                "# TYPE vllm:num_requests_waiting gauge\n"
                f'vllm:num_requests_waiting{{model_name="{State.model}"}} 0.0\n'
                "# TYPE vllm:kv_cache_usage_perc gauge\n"
                f'vllm:kv_cache_usage_perc{{model_name="{State.model}"}} 0.12\n'
                "# TYPE vllm:prompt_tokens_total counter\n"
                f'vllm:prompt_tokens_total{{model_name="{State.model}"}} {n * 90}.0\n'
                "# TYPE vllm:generation_tokens_total counter\n"
                f'vllm:generation_tokens_total{{model_name="{State.model}"}} {n * 2}.0\n'
            )
            self._send(200, text.encode(), "text/plain; version=0.0.4")
        elif self.path == "/bench/flood":
            State.flood.set()
            self._send(200, b'{"flood": "started"}')
        else:
            self._send(404, b'{"detail": "Not Found"}')


def flood(rate: int, seconds: float) -> None:
    total = int(rate * seconds)
    t0 = time.monotonic()
    written = 0
    while written < total and not State.stop.is_set():
        due = min(total, int((time.monotonic() - t0) * rate) + 1, written + MAX_BATCH)
        if due <= written:
            time.sleep(TICK_S)
            continue
        Out.write("".join(flood_line(i, rate) for i in range(written, due)))
        written = due
        State.written = written
        time.sleep(TICK_S)
    took = time.monotonic() - t0
    Out.write(
        f"(APIServer pid=11056) INFO {_stamp(written, rate)} [flood_child.py:1{DONE}{written} "
        f"lines in {took:.3f} s\n"
    )


def on_stop(signum, frame):
    State.stop.set()
    State.flood.set()  # wake the main thread if it waits for the flood


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tag", help="a marker in the argv, to find this process")
    args, _ = ap.parse_known_args()
    State.model = args.model
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    lines = FIXTURE.read_text().splitlines(keepends=True)
    Out.write("".join(lines[:STARTUP_LINES]))
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    while not State.flood.wait(0.1):
        pass
    if not State.stop.is_set():
        flood(args.rate, args.seconds)
    while not State.stop.wait(0.1):
        pass
    at = next(i for i, line in enumerate(lines) if SHUTDOWN_FROM in line)
    Out.write("".join(lines[at:]))
    os._exit(0)


if __name__ == "__main__":
    main()
