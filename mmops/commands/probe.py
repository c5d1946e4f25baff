"""`mmops probe`: live sample requests against a vLLM server, one verdict per request.

    mmops probe --url http://127.0.0.1:8000                       # the smoke suite
    mmops probe --url U --image a.jpg --text "What is in it?"      # one request, like online_serving.py
    mmops probe --url U --suite qwen2.5-vl --model-path /models/Qwen2.5-VL-7B-Instruct
    mmops probe --url U --suite tiny-cpu --concurrency 8 --requests 32

Exit 0 when every request passed, 3 when any failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO

from mmops.errors import UsageError
from mmops.term import supports_ansi

EXIT_FAILED = 3
API_KEY_ENV = "MMOPS_API_KEY"
# Sampling flags, by their Sampling field name; given ones override a suite's values.
SAMPLING_ARGS = ("max_tokens", "temperature", "top_k", "top_p", "ignore_eos", "repetition_penalty")


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
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
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
        "--image", action="append", default=[], metavar="PATH|URL",
        help="an image; repeat for several images in one turn",
    )  # fmt: skip
    what.add_argument("--video", metavar="PATH|URL", help="a video (mp4, webm, ...)")
    what.add_argument("--text", help="the question (default: a short one fitting the media)")
    what.add_argument(
        "--stream", action="store_true", help="stream the answer (SSE): adds TTFT/ITL"
    )
    samp = p.add_argument_group(
        "sampling: defaults of the reference online_serving.py; "
        "given flags also override a suite's values"
    )
    samp.add_argument("--max-tokens", type=int, help="default 16")
    samp.add_argument("--temperature", type=float, help="default 0 (greedy)")
    samp.add_argument("--top-k", type=int, help="default -1 (off)")
    samp.add_argument("--top-p", type=float, help="default 1.0")
    samp.add_argument("--ignore-eos", action="store_true", default=None)
    samp.add_argument("--repetition-penalty", type=float, help="default 1.0")
    samp.add_argument(
        "--stop-token-ids", type=int, nargs="+", metavar="ID",
        help="stop token ids (default: from --model-path when the model needs them)",
    )  # fmt: skip
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

    _validate(args)
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
    overrides = {k: v for k in SAMPLING_ARGS if (v := getattr(args, k)) is not None}
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
    # The progress line rewrites itself with \r and \x1b[K: only where the terminal takes escapes.
    progress = _Progress(sys.stderr) if is_load and supports_ansi(sys.stderr) else None

    result = asyncio.run(
        run_suite_async(
            args.url,
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
        )
    )
    if progress is not None:
        progress.clear()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        from mmops.probe.report import render

        print(render(result, show_answers=adhoc))
    return 0 if result.ok else EXIT_FAILED


def _validate(args: argparse.Namespace) -> None:
    from mmops.probe.request import sampling_value

    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url {args.url}: must start with http:// or https://")
    for name in SAMPLING_ARGS:
        value = getattr(args, name)
        if value is not None:
            try:
                sampling_value(name, value)
            except ValueError as exc:
                raise UsageError(f"--{name.replace('_', '-')} {value}: {exc}") from None
    rules: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        ("--timeout", args.timeout, lambda v: v > 0, "> 0 seconds"),
        ("--max-media-mb", args.max_media_mb, lambda v: v > 0, "> 0"),
        ("--concurrency", args.concurrency, lambda v: v >= 1, ">= 1"),
        ("--requests", args.requests, lambda v: v >= 1, ">= 1"),
    ]
    for flag, value, ok, valid in rules:
        if value is not None and not ok(value):
            raise UsageError(f"{flag} {value}: must be {valid}")


class _Progress:
    """One self-overwriting stderr line while a load runs (only on an ANSI terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int, failed: int) -> None:
        self.stream.write(f"\r  {done}/{total} requests done, {failed} failed ")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
