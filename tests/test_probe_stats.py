"""mmops.probe.stats: the figures `vllm bench serve` reports, computed the same way."""

from __future__ import annotations

import statistics

import pytest

from mmops.probe.client import RequestResult
from mmops.probe.stats import Distribution, percentile, summarize


def test_percentile_is_numpys_linear_method():
    values = [0.9, 0.1, 0.5, 0.3, 0.7, 2.0, 0.2]
    # statistics.quantiles(method="inclusive") is the same R-7 / numpy 'linear' definition.
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q in (1, 10, 25, 50, 75, 90, 99):
        assert percentile(values, q) == pytest.approx(cuts[q - 1])
    assert percentile(values, 0) == 0.1 and percentile(values, 100) == 2.0
    # Hand-checked: sorted [0.1,0.2,0.3,0.5,0.7,0.9,2.0], p90 at rank 5.4 -> 0.9 + 0.4*1.1
    assert percentile(values, 90) == pytest.approx(1.34)
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)


def req(ttft, itl, tokens, prompt=10, ok=True, kind=None):
    r = RequestResult(ok=ok, stream=True, status=200 if ok else None, error_kind=kind)
    if ok:
        r.ttft_s = ttft
        r.itl_s = list(itl)
        r.latency_s = ttft + sum(itl)
        r.completion_tokens = tokens
        r.prompt_tokens = prompt
    return r


def test_tpot_excludes_the_first_token():
    r = req(0.5, [0.1, 0.1, 0.1], tokens=4)
    assert r.tpot_s == pytest.approx(0.1)  # (0.8 - 0.5) / (4 - 1)
    assert req(0.5, [], tokens=1).tpot_s is None  # one token: no TPOT, as in vLLM


def test_summarize_pools_itl_and_counts_failures_by_kind():
    results = [
        req(0.2, [0.1, 0.1], tokens=3, prompt=20),
        req(0.4, [0.2, 0.2, 0.2], tokens=4, prompt=30),
        req(0, [], 0, ok=False, kind="timeout"),
        req(0, [], 0, ok=False, kind="http_500"),
        req(0, [], 0, ok=False, kind="http_500"),
    ]
    s = summarize(results, duration_s=2.0, extra_errors=["check"])
    assert (s.requests, s.completed, s.failed) == (5, 2, 3)
    assert s.errors_by_kind == {"check": 1, "http_500": 2, "timeout": 1}
    assert s.ttft.count == 2 and s.ttft.mean == pytest.approx(0.3)
    assert s.itl.count == 5 and s.itl.max == pytest.approx(0.2)  # every gap of every request
    assert s.tpot.mean == pytest.approx((0.1 + 0.2) / 2)
    assert s.e2el.max == pytest.approx(1.0)
    assert s.request_throughput == pytest.approx(1.0)  # 2 completed / 2 s
    assert s.output_throughput == pytest.approx(3.5)  # 7 tokens / 2 s
    assert s.total_token_throughput == pytest.approx((50 + 7) / 2)
    d = s.to_dict()
    assert d["ttft_s"]["p99"] == pytest.approx(percentile([0.2, 0.4], 99))


def test_distribution_uses_population_std_like_numpy():
    d = Distribution.of([1.0, 2.0, 3.0, 4.0])
    assert d.std == pytest.approx(1.118033988749895)  # np.std([1,2,3,4])
    assert d.median == 2.5 and d.p(50) == 2.5
    assert Distribution.of([]) is None


@pytest.mark.parametrize("values", [[0.3], [0.1, 0.7], [0.5, 0.1, 0.9], [0.1, 0.2, 0.25, 0.9]])
def test_median_is_the_50th_percentile_of_the_one_rule(values):
    d = Distribution.of(values)
    assert d.median == d.p(50) == percentile(values, 50)
