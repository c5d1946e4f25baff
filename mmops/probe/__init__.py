"""Live sample requests against a vLLM server: image, multi-image, video, text, streaming, load.

Public API (imported lazily, so ``import mmops.probe.request`` does not pull in httpx):

- :func:`run_suite` / :func:`run_suite_async` -> :class:`SuiteResult` of :class:`CaseResult`
- :class:`ChatRequest`, :class:`Sampling`, :class:`Turn`, :func:`stop_token_ids_for_model`,
  :func:`modality_of`, :func:`sampling_value`
- :func:`load_media`, :class:`MediaError`
- :class:`LoadStats`, :func:`summarize`, :func:`percentile`
"""

from __future__ import annotations

import importlib
from typing import Any

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

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmops.probe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
