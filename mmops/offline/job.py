"""One offline run as data: the launch spec, the LLM() arguments, the SamplingParams, the inputs.

The LLM arguments come from the same launch spec as `mmops serve` (profile + vLLM flags on the
command line, the reference's defaults without a profile, Ascend's block size 128 once the
device is known), so `doctor`, `serve` and `offline` judge and run the same values. Flags that
only the OpenAI server knows (--host, --port, --api-key, ...) are dropped, with a note; the
model type adds what vision_language.py sets for it (e.g. InternVL's trust_remote_code) unless
the command line or profile says otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from mmops.launch.preflight import Preflight, preflight
from mmops.launch.spec import LaunchSpec
from mmops.offline.inputs import Inputs
from mmops.offline.models import ModelType

# `vllm serve` flags of the OpenAI front end, not of the engine: LLM() has no such argument.
SERVER_ONLY = frozenset(
    {
        "host",
        "port",
        "api-key",
        "chat-template",
        "chat-template-content-format",
        "response-role",
        "disable-log-requests",
        "enable-log-requests",
        "no-enable-log-requests",
        "enable-auto-tool-choice",
        "tool-call-parser",
        "tool-parser-plugin",
        "uvicorn-log-level",
        "allowed-origins",
        "allowed-methods",
        "allowed-headers",
        "allow-credentials",
        "ssl-keyfile",
        "ssl-certfile",
        "ssl-ca-certs",
        "ssl-cert-reqs",
        "root-path",
        "middleware",
        "lora-modules",
        "disable-fastapi-docs",
        "disable-frontend-multiprocessing",
        "enable-request-id-headers",
        "return-tokens-as-token-ids",
        "max-log-len",
        "api-server-count",
    }
)
# SamplingParams, with the reference's defaults (its 表1; `stream` has no offline meaning).
SAMPLING_DEFAULTS: dict[str, Any] = {
    "max_tokens": 16,
    "top_k": -1,
    "top_p": 1.0,
    "temperature": 1.0,
    "ignore_eos": False,
    "repetition_penalty": 1.0,
    "stop_token_ids": None,
}


@dataclass(frozen=True)
class Job:
    """Everything the child program needs, and what mmops reports about it."""

    spec: LaunchSpec
    model_type: ModelType
    inputs: Inputs
    num_frames: int
    sampling: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        assert self.spec.model is not None
        return self.spec.model

    def engine_args(self) -> tuple[dict[str, Any], list[str]]:
        """LLM() keyword arguments from the launch's vLLM flags, and notes on what was dropped."""
        args: dict[str, Any] = {"model": self.model}
        dropped = []
        for flag, value in self.spec.args.items():
            if flag in SERVER_ONLY:
                dropped.append(f"--{flag}")
                continue
            if flag.startswith("no-") and value is True:  # --no-enable-prefix-caching
                flag, value = flag[3:], False
            args[flag.replace("-", "_")] = _value(flag, value)
        modality = self.inputs.modality
        limits = dict(args.get("limit_mm_per_prompt") or {})
        # main's example: one item of the modality in use, none of the other (saves the memory
        # vLLM would keep for profiling it); what the launch sets wins.
        args["limit_mm_per_prompt"] = {"image": 0, "video": 0, modality: 1, **limits}
        notes = (
            [f"not an engine argument, ignored offline: {', '.join(dropped)}"] if dropped else []
        )
        return args, notes

    def to_child(self) -> dict[str, Any]:
        """The job file's content (read by mmops/offline/child.py)."""
        engine, _ = self.engine_args()
        return {
            "engine": engine,
            "sampling": self.sampling,
            "model_type": self.model_type.to_child(self.inputs.modality),
            "modality": self.inputs.modality,
            "media": [str(p) for p in self.inputs.media],
            "num_frames": self.num_frames,
            "questions": list(self.inputs.questions),
            "requests": [{"question": r.question, "media": r.media} for r in self.inputs.requests],
        }


def _value(flag: str, value: Any) -> Any:
    """A flag's value as LLM() takes it: JSON objects (``--mm-processor-kwargs '{...}'``) as
    dicts, and ``--limit-mm-per-prompt image=1,video=0`` (vLLM before 0.8) too."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError:
                return value
        if flag == "limit-mm-per-prompt" and "=" in text:
            pairs = [p.partition("=") for p in text.split(",")]
            if all(k.strip() and v.strip().isdigit() for k, _, v in pairs):
                return {k.strip(): int(v) for k, _, v in pairs}
    return value


def with_model_defaults(spec: LaunchSpec, mtype: ModelType) -> LaunchSpec:
    """The launch with the flags vision_language.py sets for this model type, where the
    command line and profile set nothing."""
    for flag, value in mtype.engine.items():
        if flag not in spec.args:
            spec = spec.with_arg(flag, value)
    return spec


def sampling_params(given: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams: the reference's defaults, overridden by the flags given (not None)."""
    out = dict(SAMPLING_DEFAULTS)
    out.update({k: v for k, v in given.items() if v is not None})
    if out["stop_token_ids"] is not None:
        out["stop_token_ids"] = [int(i) for i in out["stop_token_ids"]]
    return out


def offline_preflight(spec: LaunchSpec, skip: bool) -> tuple[LaunchSpec, Preflight]:
    """The doctor on this launch, as `serve` runs it (mmops.launch.preflight); an offline engine
    listens on no port, so the port check is reported as skipped instead of judged."""
    spec, pre = preflight(spec, skip)
    report = pre.report
    if report is not None:
        for i, check in enumerate(report.checks):
            if check.id == "host.port":
                report.checks[i] = replace(
                    check, status="skip", summary="offline inference listens on no port",
                    detail="", fix="",
                )  # fmt: skip
    return spec, pre
