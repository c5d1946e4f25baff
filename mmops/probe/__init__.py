"""Live sample requests against a vLLM server: image, multi-image, video, text, streaming, load.

Public API (imported lazily, so ``import mmops.probe.request`` does not pull in aiohttp):

- :func:`run_suite` / :func:`run_suite_async` -> :class:`SuiteResult` of :class:`CaseResult`
- :class:`ChatRequest`, :class:`Sampling`, :class:`Turn`, :func:`stop_token_ids_for_model`,
  :func:`modality_of`, :func:`sampling_value`
- :func:`load_media`, :class:`MediaError`
- :class:`LoadStats`, :func:`summarize`, :func:`percentile`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the lazy exports below, typed for mypy
    from mmops.probe.client import RequestResult, fetch_model, make_client, send_chat
    from mmops.probe.media import Media, MediaError, load_media
    from mmops.probe.request import (
        ChatRequest,
        Sampling,
        Turn,
        modality_of,
        sampling_value,
        stop_token_ids_for_model,
    )
    from mmops.probe.runner import CaseResult, SuiteResult, check, run_suite, run_suite_async
    from mmops.probe.stats import Distribution, LoadStats, percentile, summarize

_EXPORTS = {
    "run_suite": "mmops.probe.runner",
    "run_suite_async": "mmops.probe.runner",
    "check": "mmops.probe.runner",
    "SuiteResult": "mmops.probe.runner",
    "CaseResult": "mmops.probe.runner",
    "RequestResult": "mmops.probe.client",
    "send_chat": "mmops.probe.client",
    "fetch_model": "mmops.probe.client",
    "make_client": "mmops.probe.client",
    "ChatRequest": "mmops.probe.request",
    "Sampling": "mmops.probe.request",
    "Turn": "mmops.probe.request",
    "stop_token_ids_for_model": "mmops.probe.request",
    "modality_of": "mmops.probe.request",
    "sampling_value": "mmops.probe.request",
    "load_media": "mmops.probe.media",
    "Media": "mmops.probe.media",
    "MediaError": "mmops.probe.media",
    "LoadStats": "mmops.probe.stats",
    "Distribution": "mmops.probe.stats",
    "summarize": "mmops.probe.stats",
    "percentile": "mmops.probe.stats",
}

__all__ = [
    "CaseResult",
    "ChatRequest",
    "Distribution",
    "LoadStats",
    "Media",
    "MediaError",
    "RequestResult",
    "Sampling",
    "SuiteResult",
    "Turn",
    "check",
    "fetch_model",
    "load_media",
    "make_client",
    "modality_of",
    "percentile",
    "run_suite",
    "run_suite_async",
    "sampling_value",
    "send_chat",
    "stop_token_ids_for_model",
    "summarize",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmops.probe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
