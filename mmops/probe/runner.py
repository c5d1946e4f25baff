"""Run a check suite against a server: once per case, or as a load of many requests.

This is what `mmops probe` prints, what `mmops serve` takes as its readiness sample and what
the TUI shows. Nothing here raises for server trouble: every problem becomes a failed
:class:`CaseResult` with a one-line verdict, and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import aiohttp

from mmops.probe import client as http
from mmops.probe.load import Job, Peaks, Progress, run_jobs
from mmops.probe.media import DEFAULT_MAX_BYTES, MediaError, load_media
from mmops.probe.metrics import MetricsDelta, MetricsError, MetricsSnapshot, diff, scrape_async
from mmops.probe.request import ChatRequest, Sampling, Turn, stop_token_ids_for_model
from mmops.probe.stats import LoadStats, summarize
from mmops.probe.suite import Case, Expect, Suite

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass
class CaseResult:
    """The outcome of one request of a case, with a one-line verdict."""

    name: str
    ok: bool
    verdict: str
    latency_s: float | None = None
    ttft_s: float | None = None
    ttfb_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int | None = None
    error: str | None = None  # transport/server error, or the failed expectations
    error_kind: str | None = None
    modality: str = ""
    stream: bool = False
    finish_reason: str | None = None
    content: str = ""
    tpot_s: float | None = None
    output_tokens_per_s: float | None = None
    failures: list[str] = field(default_factory=list)
    request: http.RequestResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "request"}
        if self.request is not None:
            out["itl_s"] = self.request.itl_s
        return out


@dataclass
class SuiteResult:
    """All case results of a run plus what the server's ``/metrics`` said before and after."""

    suite: str
    url: str
    model: str | None
    cases: list[CaseResult]
    duration_s: float = 0.0
    concurrency: int = 1
    load: LoadStats | None = None  # set for --concurrency/--requests runs
    metrics_before: MetricsSnapshot | None = None
    metrics_after: MetricsSnapshot | None = None
    metrics_delta: MetricsDelta | None = None
    metrics_peaks: Peaks | None = None
    metrics_error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.cases) and all(c.ok for c in self.cases)

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.ok)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed

    def to_dict(self) -> dict[str, object]:
        return {
            "suite": self.suite,
            "url": self.url,
            "model": self.model,
            "ok": self.ok,
            "passed": self.passed,
            "failed": self.failed,
            "duration_s": self.duration_s,
            "concurrency": self.concurrency,
            "cases": [c.to_dict() for c in self.cases],
            "load": self.load.to_dict() if self.load else None,
            "metrics": {
                "before": self.metrics_before.to_dict() if self.metrics_before else None,
                "after": self.metrics_after.to_dict() if self.metrics_after else None,
                "delta": self.metrics_delta.to_dict() if self.metrics_delta else None,
                "peaks": self.metrics_peaks.to_dict() if self.metrics_peaks else None,
                "error": self.metrics_error,
            },
        }


class SuiteOptions(TypedDict, total=False):
    """The rest of :func:`run_suite_async`'s keywords, as :func:`run_suite` passes them on."""

    model_path: str | Path | None
    stop_token_ids: Sequence[int] | None
    concurrency: int | None
    requests: int | None
    progress: Progress | None
    metrics: bool
    max_media_bytes: int
    on_text: http.TextSink | None


def run_suite(
    url: str,
    suite: Suite,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    **kwargs: Unpack[SuiteOptions],
) -> SuiteResult:
    """Blocking :func:`run_suite_async` (do not call from inside a running event loop)."""
    return asyncio.run(
        run_suite_async(url, suite, model=model, api_key=api_key, timeout=timeout, **kwargs)
    )


async def run_suite_async(
    url: str,
    suite: Suite,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    model_path: str | Path | None = None,
    stop_token_ids: Sequence[int] | None = None,
    concurrency: int | None = None,
    requests: int | None = None,
    progress: Progress | None = None,
    metrics: bool = True,
    max_media_bytes: int = DEFAULT_MAX_BYTES,
    on_text: http.TextSink | None = None,
) -> SuiteResult:
    """Run every case once, in order; or, with ``requests``/``concurrency``, a load.

    A load sends ``requests`` requests (default: ``concurrency``) cycling through the cases,
    at most ``concurrency`` at a time, all streamed (like `vllm bench serve`, so TTFT, TPOT and
    ITL exist for each). ``timeout`` bounds each request unless a case sets ``timeout_s``.
    Stop token ids come from ``stop_token_ids``, else from ``model_path`` (InternVL needs
    them), and apply to cases that set none. ``on_text`` receives the generated text of
    streamed requests as it arrives (meant for a run of one request).
    """
    load = requests is not None or concurrency is not None
    n_conc = max(1, concurrency or 1)
    n_req = (requests if requests is not None else n_conc) if load else len(suite.cases)
    if stop_token_ids is None and model_path is not None:
        # Not a local model directory (a hub id, say): there is nothing to read stop ids from.
        with contextlib.suppress(OSError, ValueError):
            stop_token_ids = stop_token_ids_for_model(model_path)
    result = SuiteResult(suite=suite.name, url=url, model=model, cases=[], concurrency=n_conc)

    async with http.make_client(concurrency=n_conc, api_key=api_key, timeout=timeout) as client:
        if metrics:
            result.metrics_before = await _scrape(client, url, result)
        if result.model is None:
            try:
                result.model = await http.fetch_model(client, url)
            except http.ProbeHTTPError as exc:
                # No model, no request: every case fails with the reason, in one line each.
                err = http.RequestResult(status=exc.status, error_kind=exc.kind, error=str(exc))
                result.cases = [_judge(c, err) for c in suite.cases]
                return result
        bodies = {
            c.name: _prepare(c, result.model, stop_token_ids, load, max_media_bytes)
            for c in suite.cases
        }
        jobs = []
        for i in range(n_req):
            case = suite.cases[i % len(suite.cases)]
            body, error = bodies[case.name]
            jobs.append(
                Job(i, case.name, body, load or case.stream, case.timeout_s or timeout, error)
            )
        started = time.perf_counter()
        responses, duration, peaks = await run_jobs(
            client,
            url,
            jobs,
            concurrency=n_conc if load else 1,
            progress=progress,
            watch_metrics=metrics and load,
            on_text=on_text,
        )
        result.duration_s = duration if load else time.perf_counter() - started
        if metrics:
            result.metrics_after = await _settled_scrape(client, url, result, responses)
            if result.metrics_before and result.metrics_after:
                result.metrics_delta = diff(result.metrics_before, result.metrics_after)
            result.metrics_peaks = peaks if load else None

    by_name = {c.name: c for c in suite.cases}
    first_ok: dict[str, http.RequestResult] = {}
    for job, res in zip(jobs, responses, strict=True):
        if res.ok and job.case not in first_ok:
            first_ok[job.case] = res
    result.cases = [
        _judge(by_name[j.case], r, first_ok) for j, r in zip(jobs, responses, strict=True)
    ]
    if load:
        checks = [http.CHECK for c in result.cases if c.error_kind == http.CHECK]
        result.load = summarize(responses, duration, extra_errors=checks)
    return result


async def _scrape(
    client: aiohttp.ClientSession, url: str, result: SuiteResult
) -> MetricsSnapshot | None:
    try:
        return await scrape_async(client, url)
    except MetricsError as exc:
        result.metrics_error = str(exc)
        return None


async def _settled_scrape(
    client: aiohttp.ClientSession,
    url: str,
    result: SuiteResult,
    responses: Sequence[http.RequestResult],
    *,
    tries: int = 10,
    pause_s: float = 0.2,
) -> MetricsSnapshot | None:
    """The /metrics after a run, once it has counted the tokens the answers reported.

    vLLM's API process records a request's stats when it handles the engine's output batch,
    which can land just after the response went out; reading at once can miss the last one.
    """
    before = result.metrics_before
    generated = sum(r.completion_tokens or 0 for r in responses if r.ok)
    snap = await _scrape(client, url, result)
    for _ in range(tries):
        if (
            snap is None
            or before is None
            or before.generation_tokens_total is None
            or snap.generation_tokens_total is None
            or snap.generation_tokens_total - before.generation_tokens_total >= generated
        ):
            break
        await asyncio.sleep(pause_s)
        snap = await _scrape(client, url, result)
    return snap


def _prepare(
    case: Case, model: str, stop_ids: Sequence[int] | None, force_stream: bool, max_bytes: int
) -> tuple[bytes | None, http.RequestResult | None]:
    """Encode a case's body once; a media problem becomes the case's failed result."""
    try:
        turns = tuple(
            Turn(
                role=t.role,
                text=t.text,
                images=tuple(load_media(ref, "image", max_bytes=max_bytes) for ref in t.images),
                video=load_media(t.video, "video", max_bytes=max_bytes) if t.video else None,
            )
            for t in case.turns
        )
    except MediaError as exc:
        return None, http.RequestResult(error_kind=http.MEDIA, error=str(exc))
    sampling = case.sampling
    if sampling.stop_token_ids is None and stop_ids is not None:
        sampling = Sampling(**{**sampling.__dict__, "stop_token_ids": tuple(stop_ids)})
    req = ChatRequest(turns=turns, sampling=sampling, stream=force_stream or case.stream)
    return req.encode(model), None


def check(
    expect: Expect,
    res: http.RequestResult,
    modality: str = "",
    reference: dict[str, http.RequestResult] | None = None,
) -> list[str]:
    """Expectations ``res`` fails, as short phrases (empty when it passes)."""
    if res.status != expect.status:
        if res.status is None or (not res.ok and expect.status == 200):
            return [res.error or "no answer"]
        why = f": {res.error}" if res.error else ""
        return [f"HTTP {res.status}, expected {expect.status}{why}"]
    if not res.ok:
        return [] if expect.status != 200 else [res.error or "no answer"]
    fails: list[str] = []
    answer = res.content
    if expect.non_empty and not answer.strip():
        fails.append("answer is empty")
    if expect.finish_reason and res.finish_reason not in expect.finish_reason:
        fails.append(
            f"finish_reason {res.finish_reason!r}, expected {' or '.join(expect.finish_reason)}"
        )
    for needle in expect.contains:
        if needle.lower() not in answer.lower():
            fails.append(f"answer lacks {needle!r}: {_quote(answer)}")
    if expect.regex and not re.search(expect.regex, answer):
        fails.append(f"answer does not match /{expect.regex}/: {_quote(answer)}")
    pt = res.prompt_tokens
    if expect.min_prompt_tokens is not None:
        if pt is None:
            fails.append("no usage.prompt_tokens in the answer")
        elif pt < expect.min_prompt_tokens:
            what = f"the {modality}" if modality not in ("", "text", "multi-turn") else "the prompt"
            fails.append(
                f"prompt_tokens {pt} < {expect.min_prompt_tokens}: {what} may not have "
                "reached the model"
            )
    if expect.prompt_tokens_over is not None:
        ref_name, margin = expect.prompt_tokens_over
        ref = (reference or {}).get(ref_name)
        if ref is None or ref.prompt_tokens is None:
            fails.append(f"no prompt_tokens of case {ref_name!r} to compare with")
        elif pt is None or pt < ref.prompt_tokens + margin:
            fails.append(
                f"prompt_tokens {pt} not {margin}+ above case {ref_name!r}'s "
                f"{ref.prompt_tokens}: the media may not have reached the model"
            )
    ct = res.completion_tokens
    if expect.completion_tokens is not None and ct != expect.completion_tokens:
        fails.append(f"completion_tokens {ct}, expected {expect.completion_tokens}")
    if expect.min_completion_tokens is not None and (ct or 0) < expect.min_completion_tokens:
        fails.append(f"completion_tokens {ct} < {expect.min_completion_tokens}")
    if expect.max_latency_s is not None and (res.latency_s or 0) > expect.max_latency_s:
        fails.append(f"latency {res.latency_s:.2f} s > {expect.max_latency_s:g} s")
    if expect.max_ttft_s is not None:
        if res.ttft_s is None:
            fails.append("no TTFT measured (not a stream)")
        elif res.ttft_s > expect.max_ttft_s:
            fails.append(f"TTFT {res.ttft_s:.2f} s > {expect.max_ttft_s:g} s")
    return fails


def _judge(
    case: Case, res: http.RequestResult, reference: dict[str, http.RequestResult] | None = None
) -> CaseResult:
    fails = check(case.expect, res, case.modality, reference)
    ok = not fails
    kind = res.error_kind if not res.ok and fails else (http.CHECK if fails else None)
    if ok:
        verdict = _summary(res) if res.ok else f"HTTP {res.status} as expected: {res.error}"
    elif not res.ok and res.error and fails == [res.error]:
        verdict = res.error
    else:
        verdict = "; ".join(fails) + (f" [{_summary(res)}]" if res.ok else "")
    return CaseResult(
        name=case.name,
        ok=ok,
        verdict=verdict,
        latency_s=res.latency_s,
        ttft_s=res.ttft_s,
        ttfb_s=res.ttfb_s,
        prompt_tokens=res.prompt_tokens,
        completion_tokens=res.completion_tokens,
        status=res.status,
        error=None if ok else "; ".join(fails),
        error_kind=kind,
        modality=case.modality,
        stream=res.stream,
        finish_reason=res.finish_reason,
        content=res.content,
        tpot_s=res.tpot_s,
        output_tokens_per_s=res.output_tokens_per_s,
        failures=fails,
        request=res,
    )


def _summary(res: http.RequestResult) -> str:
    parts = [f"{res.status} {res.finish_reason or '-'}"]
    parts.append(f"{_n(res.prompt_tokens)}+{_n(res.completion_tokens)} tok")
    if res.latency_s is not None:
        parts.append(f"{res.latency_s:.2f} s")
    if res.ttfb_s is not None:
        parts.append(f"ttfb {res.ttfb_s:.2f} s")
    if res.ttft_s is not None:
        parts.append(f"ttft {res.ttft_s:.2f} s")
        if res.tpot_s is not None:
            parts.append(f"tpot {res.tpot_s * 1000:.0f} ms")
    return ", ".join(parts)


def _n(v: int | None) -> str:
    return "?" if v is None else str(v)


def _quote(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")
