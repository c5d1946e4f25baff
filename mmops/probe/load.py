"""Send many prepared requests with bounded concurrency, and watch the server meanwhile.

The client must never be the bottleneck: bodies are encoded once before the clock starts,
one pooled aiohttp session is sized to the concurrency, and at most ``concurrency`` requests are
in flight (the shape of `vllm bench serve --max-concurrency` with an infinite request rate).
Wall duration runs from just before the first request is sent to the end of the last, as
vLLM's ``benchmark_duration``; throughput figures divide by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp

from mmops.probe.client import RequestResult, TextSink, send_chat
from mmops.probe.metrics import MetricsError, MetricsSnapshot, scrape_async

#: progress(done, total, failed) after each request.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Job:
    """One request to send: a pre-encoded body, or the error that kept it from being built."""

    index: int
    case: str
    body: bytes | None
    stream: bool
    timeout: float
    error: RequestResult | None = None  # set when the request could not be built (media)


@dataclass
class Peaks:
    """Highest values seen on ``/metrics`` while the run was going."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None
    samples: int = 0

    def update(self, snap: MetricsSnapshot) -> None:
        self.samples += 1
        self.running = _max(self.running, snap.running)
        self.waiting = _max(self.waiting, snap.waiting)
        self.kv_cache_usage = _max(self.kv_cache_usage, snap.kv_cache_usage)

    def to_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "waiting": self.waiting,
            "kv_cache_usage": self.kv_cache_usage,
            "samples": self.samples,
        }


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


async def run_jobs(
    client: aiohttp.ClientSession,
    url: str,
    jobs: Sequence[Job],
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
    watch_metrics: bool = False,
    watch_interval_s: float = 1.0,
    on_text: TextSink | None = None,
) -> tuple[list[RequestResult], float, Peaks]:
    """Send ``jobs`` with at most ``concurrency`` in flight; results in job order.

    ``on_text`` receives the generated text of streamed requests as it arrives.

    Returns (results, wall duration of the run in seconds, peaks seen on /metrics).
    """
    results: list[RequestResult | None] = [None] * len(jobs)
    gate = asyncio.Semaphore(max(1, concurrency))
    failed = 0
    done = 0
    peaks = Peaks()

    async def one(job: Job) -> None:
        nonlocal done, failed
        if job.error is not None:
            res = job.error
        else:
            async with gate:
                assert job.body is not None
                res = await send_chat(
                    client, url, job.body, stream=job.stream, timeout=job.timeout, on_text=on_text
                )
        results[job.index] = res
        done += 1
        failed += 0 if res.ok else 1
        if progress is not None:
            progress(done, len(jobs), failed)

    async def watch() -> None:
        while True:
            with contextlib.suppress(MetricsError):
                peaks.update(await scrape_async(client, url))
            await asyncio.sleep(watch_interval_s)

    watcher = asyncio.create_task(watch()) if watch_metrics else None
    start = time.perf_counter()
    try:
        await asyncio.gather(*(one(job) for job in jobs))
    finally:
        duration = time.perf_counter() - start
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return [r for r in results if r is not None], duration, peaks
