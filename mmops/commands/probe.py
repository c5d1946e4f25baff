"""`mmops probe`: live sample requests against a vLLM server, one verdict per request.

    mmops probe --url http://127.0.0.1:8000                       # the smoke suite
    mmops probe --url U --image a.jpg --text "What is in it?"      # one request, like online_serving.py
    mmops probe --url U --suite qwen2.5-vl --model-path /models/Qwen2.5-VL-7B-Instruct
    mmops probe --url U --suite tiny-cpu --concurrency 8 --requests 32

The flags of the reference request script ``online_serving.py`` work as they are::

    mmops probe --model-path DIR --image-path I --docker-ip H --served-port P --text "..." \
        [--stream 1] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] \
        [--ignore-eos True] [--repetition-penalty R] [--stop-token-ids ID ...]

``--docker-ip``/``--served-port`` name the server as ``http://H:P`` instead of ``--url``;
``--image-path`` is ``--image``; ``--stream``/``--ignore-eos`` take an optional 1/0 or
true/false. The script printed the server's answer (``print(response.json())``); a single
request here shows it in the report's ``answer:`` line, ``--print-response`` prints the server's
JSON body of a non-streamed answer, and with ``--stream`` the text is printed as it arrives.

Exit 0 when every request passed, 3 when any failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TextIO, TypeVar

from mmops.commands import switch
from mmops.commands.sampling import add_sampling_arguments, given_sampling
from mmops.errors import UsageError
from mmops.term import supports_ansi

EXIT_FAILED = 3
API_KEY_ENV = "MMOPS_API_KEY"
# Sampling flags, by their Sampling field name; given ones override a suite's values.
NO_SERVER = "no server given: pass --url, or --docker-ip with --served-port"
T = TypeVar("T")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="send sample image/video/text requests to a server; latency, tokens, load",
        description="Send live sample requests to a vLLM server (image, several images, video, "
        "text, multi-turn, streaming) and check each answer: HTTP status, finish reason, token "
        "counts, expected words, latency. With --concurrency/--requests, a load with TTFT, "
        "TPOT, ITL and E2EL percentiles as `vllm bench serve` defines them. The server's "
        "/metrics is read before and after. Exit 0 all passed, 3 any failed, 2 bad input.",
    )
    server = p.add_argument_group("server (--url, or --docker-ip with --served-port)")
    server.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8000")
    server.add_argument(
        "--docker-ip", metavar="IP", help="server host, as online_serving.py names it"
    )
    server.add_argument(
        "--served-port", metavar="PORT", help="server port; with --docker-ip: http://IP:PORT"
    )
    p.add_argument("--model", help="served model name (default: the first of /v1/models)")
    p.add_argument(
        "--model-path",
        metavar="DIR",
        help="local model directory; InternVL's stop_token_ids are read from it",
    )
    what = p.add_argument_group("what to send (default: the smoke suite)")
    what.add_argument(
        "--suite", metavar="NAME|FILE", help="check suite: a name in checks/ or a file"
    )
    what.add_argument(
        "--image", "--image-path", dest="image", action="append", default=[],
        metavar="PATH|URL", help="an image; repeat for several images in one turn",
    )  # fmt: skip
    what.add_argument("--video", metavar="PATH|URL", help="a video (mp4, webm, ...)")
    what.add_argument("--text", help="the question (default: a short one fitting the media)")
    what.add_argument(
        "--stream", nargs="?", const=True, default=False, type=switch, metavar="1|0",
        help="stream the answer (SSE): adds TTFB/TTFT/ITL; one request's text is printed "
        "as it arrives",
    )  # fmt: skip
    what.add_argument(
        "--print-response", action="store_true",
        help="print the server's JSON answer of each non-streamed request, as online_serving.py",
    )  # fmt: skip
    add_sampling_arguments(
        p,
        title="sampling: defaults of the reference online_serving.py; "
        "given flags also override a suite's values",
        temperature_help="default 0 (greedy)",
        stop_help="stop token ids (default: from --model-path when the model needs them)",
    )
    load = p.add_argument_group("load")
    load.add_argument("--concurrency", type=int, metavar="N", help="requests in flight at once")
    load.add_argument("--requests", type=int, metavar="M", help="requests in all (default: N)")
    p.add_argument(
        "--timeout", type=float,
        help="seconds per request, overriding the suite's timeout_s (default: the suite's, or 60)",
    )  # fmt: skip
    p.add_argument(
        "--max-media-mb", type=float, default=20.0, help="largest local media file (default 20)"
    )
    p.add_argument(
        "--api-key",
        help=f"bearer token for a server started with --api-key (default: ${API_KEY_ENV})",
    )
    p.add_argument("--no-metrics", action="store_true", help="do not read the server's /metrics")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmops.probe.request import Sampling, stop_token_ids_for_model
    from mmops.probe.runner import run_suite_async
    from mmops.probe.suite import adhoc_suite, load_suite

    url = _validate(args)
    adhoc = bool(args.image or args.video or args.text)
    if args.suite and adhoc:
        raise UsageError("--suite cannot be combined with --image/--video/--text")
    stop_ids = tuple(args.stop_token_ids) if args.stop_token_ids else None
    if stop_ids is None and args.model_path:
        try:
            stop_ids = stop_token_ids_for_model(args.model_path)
        except FileNotFoundError:
            raise UsageError(f"--model-path {args.model_path}: no config.json there") from None
        except ValueError as exc:
            raise UsageError(f"--model-path {args.model_path}: config.json: {exc}") from None
    overrides = given_sampling(args)
    if adhoc:
        suite = adhoc_suite(
            text=args.text, images=args.image, video=args.video, sampling=Sampling(**overrides),
            stream=args.stream,
        )  # fmt: skip
    else:
        suite = load_suite(args.suite or "smoke")
        cases = tuple(
            replace(
                c,
                sampling=replace(c.sampling, **overrides),
                stream=c.stream or args.stream,
            )
            for c in suite.cases
        )
        suite = replace(suite, cases=cases)
    if args.timeout is not None:
        suite = replace(suite, cases=tuple(replace(c, timeout_s=args.timeout) for c in suite.cases))
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    is_load = args.concurrency is not None or args.requests is not None
    if args.print_response and (args.json or is_load):
        raise UsageError("--print-response is for single requests, without --json")
    # The progress line rewrites itself with \r and \x1b[K: only where the terminal takes escapes,
    # and never beside --json.
    progress = None
    if is_load and not args.json and supports_ansi(sys.stderr):
        progress = _Progress(sys.stderr, args.requests or args.concurrency)
    # One streamed request: its text goes to stdout as it arrives, as a chat client shows it.
    live = (
        _LiveText(sys.stdout) if adhoc and args.stream and not is_load and not args.json else None
    )

    try:
        result = asyncio.run(
            _with_ticker(
                progress,
                run_suite_async(
                    url,
                    suite,
                    model=args.model,
                    api_key=api_key,
                    timeout=args.timeout or 60.0,
                    stop_token_ids=stop_ids,
                    concurrency=args.concurrency,
                    requests=args.requests,
                    progress=progress,
                    metrics=not args.no_metrics,
                    max_media_bytes=int(args.max_media_mb * 1024 * 1024),
                    on_text=live,
                ),
            )
        )
    finally:
        if progress is not None:
            progress.clear()
    if live is not None:
        live.end()
    if args.print_response:
        for case in result.cases:
            if case.request is not None and case.request.response is not None:
                print(json.dumps(case.request.response, ensure_ascii=False))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        from mmops.probe.report import render

        print(render(result, show_answers=adhoc))
    return 0 if result.ok else EXIT_FAILED


async def _with_ticker(progress: _Progress | None, work: Awaitable[T]) -> T:
    """Await ``work`` while the progress line (if any) redraws itself on its own clock."""
    if progress is None:
        return await work
    ticker = asyncio.create_task(progress.tick_forever())
    try:
        return await work
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


def server_url(args: argparse.Namespace) -> str:
    """``--url``, or ``http://IP:PORT`` from online_serving.py's ``--docker-ip``/``--served-port``."""
    split = args.docker_ip is not None or args.served_port is not None
    if args.url is not None:
        if split:
            raise UsageError(
                "--url and --docker-ip/--served-port both name the server: give one of them"
            )
        return str(args.url)
    if not split:
        raise UsageError(NO_SERVER)
    if args.docker_ip is None or args.served_port is None:
        given, missing = (
            ("--docker-ip", "--served-port") if args.served_port is None else
            ("--served-port", "--docker-ip")
        )  # fmt: skip
        raise UsageError(f"{given} needs {missing} too (or pass --url instead)")
    host = str(args.docker_ip).strip()
    if not host or "/" in host:
        raise UsageError(f"--docker-ip {args.docker_ip!r}: must be a host name or IP address")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    try:
        port = int(args.served_port)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise UsageError(f"--served-port {args.served_port}: must be a port number, 1 to 65535")
    return f"http://{host}:{port}"


def _validate(args: argparse.Namespace) -> str:
    """Check the flags; return the server URL."""
    url = server_url(args)
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url}: must start with http:// or https://")
    try:  # a bad port or host was only a per-request InvalidUrlClientError, exit 3
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if not parts.hostname or parts.port == 0:  # .port raises past 65535
            raise ValueError("needs a host and a port from 1 to 65535")
    except ValueError as exc:
        raise UsageError(f"--url {url}: not a valid server URL ({exc})") from None
    given_sampling(args)
    rules: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        # inf crashed the client; a limit past 1 GiB made a read of a huge file exhaust memory
        ("--timeout", args.timeout, lambda v: 0 < v < math.inf, "> 0 seconds, finite"),
        ("--max-media-mb", args.max_media_mb, lambda v: 0 < v <= 1024, "> 0 and <= 1024"),
        ("--concurrency", args.concurrency, lambda v: v >= 1, ">= 1"),
        ("--requests", args.requests, lambda v: v >= 1, ">= 1"),
    ]
    for flag, value, ok, valid in rules:
        if value is not None and not ok(value):
            raise UsageError(f"{flag} {value}: must be {valid}")
    return url


class _Progress:
    """One self-overwriting stderr line while a load runs (only on an ANSI terminal).

    ``  12/32 requests done, 0 failed  3.1 s  4.2 req/s``: the rate is that of the last
    :attr:`WINDOW_S` seconds. Redrawn at most every :attr:`INTERVAL_S` (the last request is
    always drawn), between completions too (:meth:`tick_forever`), and erased by :meth:`clear`.
    """

    INTERVAL_S = 0.25
    WINDOW_S = 5.0

    def __init__(
        self, stream: TextIO, total: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.total = total
        self.done = 0
        self.failed = 0
        self.finished: deque[float] = deque()  # completion times within the rate window
        self.drawn_at: float | None = None

    def __call__(self, done: int, total: int, failed: int) -> None:
        now = self.clock()
        self.done, self.total, self.failed = done, total, failed
        self.finished.append(now)
        if done >= total or self._due(now):
            self._draw(now)

    def tick(self) -> None:
        now = self.clock()
        if self._due(now):
            self._draw(now)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.INTERVAL_S)
            self.tick()

    def clear(self) -> None:
        if self.drawn_at is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(0.0, now - self.started)
        while self.finished and self.finished[0] < now - self.WINDOW_S:
            self.finished.popleft()
        span = min(self.WINDOW_S, elapsed)
        rate = len(self.finished) / span if span > 0 else 0.0
        return (
            f"  {self.done}/{self.total} requests done, {self.failed} failed  "
            f"{elapsed:.1f} s  {rate:.1f} req/s"
        )

    def _due(self, now: float) -> bool:
        return self.drawn_at is None or now - self.drawn_at >= self.INTERVAL_S

    def _draw(self, now: float) -> None:
        self.drawn_at = now
        self.stream.write(f"\r{self.line(now)}\x1b[K")
        self.stream.flush()


class _LiveText:
    """The text of a streamed answer, written out as it arrives; a line end after it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.wrote = False

    def __call__(self, piece: str) -> None:
        self.stream.write(piece)
        self.stream.flush()
        self.wrote = True

    def end(self) -> None:
        if self.wrote:
            self.stream.write("\n")
            self.stream.flush()
