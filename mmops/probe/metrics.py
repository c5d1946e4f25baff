"""Read what a vLLM server says about itself on ``/metrics`` (Prometheus text format).

Parsing is prometheus_client's text parser; this module only picks vLLM's series. Names differ
across releases (shared/notes/failure-signatures.md section 4): KV cache usage is
``vllm:kv_cache_usage_perc`` from 0.9.2 on and ``vllm:gpu_cache_usage_perc`` before (and on
vllm-ascend builds of that age); token counters are ``vllm:prompt_tokens_total`` /
``vllm:generation_tokens_total`` throughout. Series with several label sets (one per engine
under data parallelism, one per model) are summed, except KV cache usage, where the fullest
engine is what matters and the maximum is kept.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mmops.errors import MmopsError

if TYPE_CHECKING:
    import aiohttp

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
REQUEST_SUCCESS = "vllm:request_success_total"
PREEMPTIONS = "vllm:num_preemptions_total"
TTFT_SUM = "vllm:time_to_first_token_seconds_sum"
TTFT_COUNT = "vllm:time_to_first_token_seconds_count"
E2E_SUM = "vllm:e2e_request_latency_seconds_sum"
E2E_COUNT = "vllm:e2e_request_latency_seconds_count"


class MetricsError(MmopsError):
    """``/metrics`` could not be read or parsed."""


@dataclass(frozen=True)
class MetricsSnapshot:
    """vLLM's gauges and counters at one moment; None where the server does not export it."""

    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    request_success_total: float | None = None
    preemptions_total: float | None = None
    ttft_sum: float | None = None
    ttft_count: float | None = None
    e2e_sum: float | None = None
    e2e_count: float | None = None
    kv_metric: str | None = None  # which KV series the server exports
    samples: dict[str, float] = field(default_factory=dict, repr=False)  # every vllm:* sum

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.pop("samples")
        return out


@dataclass(frozen=True)
class MetricsDelta:
    """What the server saw between two snapshots, plus its state at the second one."""

    prompt_tokens: float | None
    generation_tokens: float | None
    requests_succeeded: float | None
    preemptions: float | None
    server_ttft_mean_s: float | None  # mean TTFT the server measured over the window
    server_e2e_mean_s: float | None
    after: MetricsSnapshot

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["after"] = self.after.to_dict()
        return out


def parse(text: str) -> MetricsSnapshot:
    """Parse a ``/metrics`` body; raise :class:`MetricsError` if it is not Prometheus text."""
    sums: dict[str, float] = {}
    maxes: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("vllm:") or sample.name.endswith("_bucket"):
                    continue
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
                maxes[sample.name] = max(maxes.get(sample.name, sample.value), sample.value)
    except ValueError as exc:
        raise MetricsError(f"/metrics is not Prometheus text: {exc}") from None
    kv_name = next((n for n in KV_USAGE if n in maxes), None)
    return MetricsSnapshot(
        running=sums.get(RUNNING),
        waiting=sums.get(WAITING),
        kv_cache_usage=maxes.get(kv_name) if kv_name else None,
        prompt_tokens_total=sums.get(PROMPT_TOKENS),
        generation_tokens_total=sums.get(GENERATION_TOKENS),
        request_success_total=sums.get(REQUEST_SUCCESS),
        preemptions_total=sums.get(PREEMPTIONS),
        ttft_sum=sums.get(TTFT_SUM),
        ttft_count=sums.get(TTFT_COUNT),
        e2e_sum=sums.get(E2E_SUM),
        e2e_count=sums.get(E2E_COUNT),
        kv_metric=kv_name,
        samples=sums,
    )


def diff(before: MetricsSnapshot, after: MetricsSnapshot) -> MetricsDelta:
    """Counter increases from ``before`` to ``after`` (a server restart shows as None)."""

    def delta(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or b < a:  # b < a: counters reset, the server restarted
            return None
        return b - a

    def mean(
        sum_a: float | None, sum_b: float | None, cnt_a: float | None, cnt_b: float | None
    ) -> float | None:
        d_sum, d_cnt = delta(sum_a, sum_b), delta(cnt_a, cnt_b)
        return d_sum / d_cnt if d_sum is not None and d_cnt else None

    return MetricsDelta(
        prompt_tokens=delta(before.prompt_tokens_total, after.prompt_tokens_total),
        generation_tokens=delta(before.generation_tokens_total, after.generation_tokens_total),
        requests_succeeded=delta(before.request_success_total, after.request_success_total),
        preemptions=delta(before.preemptions_total, after.preemptions_total),
        server_ttft_mean_s=mean(
            before.ttft_sum, after.ttft_sum, before.ttft_count, after.ttft_count
        ),
        server_e2e_mean_s=mean(before.e2e_sum, after.e2e_sum, before.e2e_count, after.e2e_count),
        after=after,
    )


def metrics_url(url: str) -> str:
    url = url.rstrip("/")
    if url.endswith("/metrics"):
        return url
    return (url[:-3] if url.endswith("/v1") else url) + "/metrics"


def scrape(url: str, *, timeout: float = 5.0) -> MetricsSnapshot:
    """GET ``<server>/metrics`` and parse it; :class:`MetricsError` with one line on failure."""
    target = metrics_url(url)
    try:
        resp = httpx.get(target, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise MetricsError(f"GET {target}: {str(exc) or type(exc).__name__}") from None
    return _parse_response(target, resp.status_code, resp.text)


async def scrape_async(
    client: aiohttp.ClientSession | httpx.AsyncClient, url: str
) -> MetricsSnapshot:
    """Like :func:`scrape`, on an existing async client: the probe's aiohttp session, or an
    httpx one (the TUI's)."""
    target = metrics_url(url)
    if isinstance(client, httpx.AsyncClient):
        try:
            resp = await client.get(target)
        except httpx.HTTPError as exc:
            raise MetricsError(f"GET {target}: {str(exc) or type(exc).__name__}") from None
        return _parse_response(target, resp.status_code, resp.text)
    import aiohttp

    try:
        async with client.get(target) as aresp:
            status = aresp.status
            text = (await aresp.read()).decode("utf-8", "replace")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not None:
            why = f"cannot connect: {exc.os_error}"
        raise MetricsError(f"GET {target}: {why}") from None
    return _parse_response(target, status, text)


def _parse_response(target: str, status: int, text: str) -> MetricsSnapshot:
    if status != 200:
        raise MetricsError(f"GET {target}: HTTP {status}")
    return parse(text)
