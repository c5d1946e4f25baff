"""Plain-text report of a probe run: one line per request, then the summary. No logic."""

from __future__ import annotations

from mmops.probe.metrics import MetricsDelta
from mmops.probe.runner import SuiteResult
from mmops.probe.stats import PERCENTILES, Distribution, LoadStats


def render(result: SuiteResult, *, show_answers: bool = False) -> str:
    """The human report `mmops probe` prints."""
    head = f"probe {result.url}  model {result.model or '?'}  suite {result.suite}"
    if result.load is not None:
        head += f"  load: {result.load.requests} requests, concurrency {result.concurrency}"
    lines = [head]
    width = max((len(c.name) for c in result.cases), default=4)
    load = result.load is not None
    for i, case in enumerate(result.cases, 1):
        label = f"{case.name:<{width}}" + (f" #{i:<3}" if load else "")
        lines.append(f"  {'ok  ' if case.ok else 'FAIL'}  {label}  {case.verdict}")
        if show_answers and case.content:
            lines.append(f"        answer: {case.content!r}")
    if result.load is not None:
        lines += _load_lines(result.load)
    lines += _server_lines(result)
    lines.append(f"{result.passed} passed, {result.failed} failed in {result.duration_s:.2f} s")
    return "\n".join(lines)


def _load_lines(stats: LoadStats) -> list[str]:
    lines = [
        f"load: {stats.completed}/{stats.requests} answered in {stats.duration_s:.2f} s: "
        f"{stats.request_throughput:.2f} req/s, output {stats.output_throughput:.1f} tok/s, "
        f"total {stats.total_token_throughput:.1f} tok/s "
        f"({stats.total_input_tokens} prompt + {stats.total_output_tokens} output tokens)"
    ]
    cols = "".join(f"{f'p{q:g}':>9}" for q in PERCENTILES)
    lines.append(f"  {'(ms)':<6}{'mean':>9}{cols}{'max':>9}")
    rows: list[tuple[str, Distribution | None]] = [
        ("TTFB", stats.ttfb),
        ("TTFT", stats.ttft),
        ("TPOT", stats.tpot),
        ("ITL", stats.itl),
        ("E2EL", stats.e2el),
    ]
    for name, dist in rows:
        if dist is None:
            lines.append(f"  {name:<6}{'-':>9}")
            continue
        cells = "".join(f"{dist.p(q) * 1000:>9.1f}" for q in PERCENTILES)
        lines.append(f"  {name:<6}{dist.mean * 1000:>9.1f}{cells}{dist.max * 1000:>9.1f}")
    if stats.errors_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in stats.errors_by_kind.items())
        lines.append(f"errors: {kinds}")
    return lines


def _server_lines(result: SuiteResult) -> list[str]:
    if result.metrics_error:
        return [f"server /metrics: unavailable ({result.metrics_error})"]
    delta: MetricsDelta | None = result.metrics_delta
    if delta is None:
        return []
    parts = []
    if delta.prompt_tokens is not None:
        parts.append(f"+{delta.prompt_tokens:.0f} prompt tokens")
    if delta.generation_tokens is not None:
        parts.append(f"+{delta.generation_tokens:.0f} generated tokens")
    if delta.requests_succeeded is not None:
        parts.append(f"+{delta.requests_succeeded:.0f} requests finished")
    if delta.preemptions:
        parts.append(f"+{delta.preemptions:.0f} preemptions")
    if delta.server_ttft_mean_s is not None:
        parts.append(f"mean TTFT {delta.server_ttft_mean_s:.3f} s")
    after = delta.after
    state = [
        f"running {_num(after.running)}",
        f"waiting {_num(after.waiting)}",
        f"KV cache {_pct(after.kv_cache_usage)}",
    ]
    lines = [f"server saw: {', '.join(parts) or 'no change'}; now {', '.join(state)}"]
    peaks = result.metrics_peaks
    if peaks is not None and peaks.samples:
        lines.append(
            f"server peak during load: running {_num(peaks.running)}, waiting "
            f"{_num(peaks.waiting)}, KV cache {_pct(peaks.kv_cache_usage)} "
            f"({peaks.samples} samples)"
        )
    return lines


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v * 100:.1f}%"
