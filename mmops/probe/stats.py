"""Latency and throughput figures of a load run, aggregated the way `vllm bench serve` does.

Aggregation follows ``calculate_metrics`` in vLLM's ``vllm/benchmarks/serve.py`` (read at commit
009e6d4a of https://github.com/vllm-project/vllm):

- only successful requests count toward the figures; failures are counted apart, by kind;
- TTFB, TTFT and E2EL: one value per request;
- TPOT: ``(latency - TTFT) / (output tokens - 1)`` per request with more than one output token,
  so the first token is excluded;
- ITL: every gap of every request, pooled;
- percentiles: ``np.percentile`` (linear interpolation between closest ranks);
- request throughput = completed / duration; output throughput = sum of output tokens /
  duration; total token throughput = (input + output tokens) / duration, where duration is the
  wall time of the whole run, from just before the first request to the end of the last.

What one request's TTFB, TTFT, ITL and latency are is defined in :mod:`mmops.probe.client`.
Two differ from vLLM's client on purpose: TTFT stops at the first chunk carrying output, where
vLLM's stops at the first chunk with ``choices`` (the role-only chunk on a vLLM server: that is
mmops' TTFB), and ITL has gaps between output-bearing chunks only.

Pure Python: numpy is not a dependency of mmops.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mmops.probe.client import RequestResult

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(values: Sequence[float], q: float) -> float:
    """``numpy.percentile(values, q)`` with the default 'linear' method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Distribution:
    """Summary of one figure, in seconds."""

    count: int
    mean: float
    median: float
    std: float  # population std, as np.std
    min: float
    max: float
    percentiles: dict[float, float]

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        if not values:
            return None
        return cls(
            count=len(values),
            mean=statistics.fmean(values),
            median=percentile(values, 50.0),  # the one percentile rule, as np.median
            std=statistics.pstdev(values),
            min=min(values),
            max=max(values),
            percentiles={q: percentile(values, q) for q in PERCENTILES},
        )

    def p(self, q: float) -> float:
        return self.percentiles[q]

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "count": self.count,
            "mean": self.mean,
            "median": self.median,
            "std": self.std,
            "min": self.min,
            "max": self.max,
        }
        out.update({f"p{q:g}": v for q, v in self.percentiles.items()})
        return out


@dataclass(frozen=True)
class LoadStats:
    """Figures of a run: per-request distributions, throughput, and failures by kind."""

    requests: int
    completed: int
    failed: int
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    ttft: Distribution | None
    tpot: Distribution | None
    itl: Distribution | None
    e2el: Distribution | None
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    ttfb: Distribution | None = None

    @property
    def request_throughput(self) -> float:
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def output_throughput(self) -> float:
        return self.total_output_tokens / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def total_token_throughput(self) -> float:
        total = self.total_input_tokens + self.total_output_tokens
        return total / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "duration_s": self.duration_s,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "total_token_throughput": self.total_token_throughput,
            "ttfb_s": self.ttfb.to_dict() if self.ttfb else None,
            "ttft_s": self.ttft.to_dict() if self.ttft else None,
            "tpot_s": self.tpot.to_dict() if self.tpot else None,
            "itl_s": self.itl.to_dict() if self.itl else None,
            "e2el_s": self.e2el.to_dict() if self.e2el else None,
            "errors_by_kind": dict(self.errors_by_kind),
        }


def summarize(
    results: Sequence[RequestResult],
    duration_s: float,
    *,
    extra_errors: Sequence[str] = (),
) -> LoadStats:
    """Aggregate request results of one run that took ``duration_s`` of wall time.

    ``extra_errors`` are error kinds of requests that answered but failed a check; they are
    counted by kind without removing the request from the latency figures (vLLM did serve it).
    """
    done = [r for r in results if r.ok]
    ttfts = [r.ttft_s for r in done if r.ttft_s is not None]
    ttfbs = [r.ttfb_s for r in done if r.ttfb_s is not None]
    tpots = [t for r in done if (t := r.tpot_s) is not None]
    itls = [gap for r in done for gap in r.itl_s]
    e2els = [r.latency_s for r in done if r.latency_s is not None]
    errors = Counter(r.error_kind or "unknown" for r in results if not r.ok)
    errors.update(extra_errors)
    return LoadStats(
        requests=len(results),
        completed=len(done),
        failed=len(results) - len(done),
        duration_s=duration_s,
        total_input_tokens=sum(r.prompt_tokens or 0 for r in done),
        total_output_tokens=sum(r.output_tokens for r in done),
        ttft=Distribution.of(ttfts),
        tpot=Distribution.of(tpots),
        itl=Distribution.of(itls),
        e2el=Distribution.of(e2els),
        errors_by_kind=dict(sorted(errors.items())),
        ttfb=Distribution.of(ttfbs),
    )
