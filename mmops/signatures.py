"""Known failures as data: the one table that serve, logs --errors, diagnose and the TUI read.

The table itself is ``mmops/data/signatures.yaml``; this module loads and validates it and
matches single lines against it. Ranking a whole log into cause and consequences lives in
``mmops.diagnose``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

import yaml

RemedyKind = Literal["env_merge", "env_set", "arg_set"]
Role = Literal["cause", "consequence", "context"]


@dataclass(frozen=True)
class Remedy:
    """One change to the launch that retrying with can fix the failure.

    ``env_merge``: merge ``value`` (``key:val`` pairs) into the comma-separated env var ``name``,
    keeping the user's other keys (PYTORCH_NPU_ALLOC_CONF). ``env_set``: set env var ``name``.
    ``arg_set``: set vLLM flag ``name`` (e.g. ``--max-model-len``). ``value`` may name captures
    of the matching pattern as ``{capture}``.
    """

    kind: RemedyKind
    name: str
    value: str


@dataclass(frozen=True)
class Signature:
    id: str
    title: str
    patterns: tuple[re.Pattern[str], ...]
    meaning: str
    fix: str
    retryable: bool  # can a plain retry (or the remedy) help, or is it a config error?
    role: Role = "cause"
    remedy: Remedy | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class LineMatch:
    signature: Signature
    captures: dict[str, str]


def _parse(raw: dict) -> Signature:
    remedy = raw.get("remedy")
    return Signature(
        id=raw["id"],
        title=raw["title"],
        patterns=tuple(re.compile(p) for p in raw["patterns"]),
        meaning=raw["meaning"],
        fix=raw["fix"],
        retryable=bool(raw.get("retryable", False)),
        role=raw.get("role", "cause"),
        remedy=Remedy(**remedy) if remedy else None,
        tags=tuple(raw.get("tags", ())),
    )


@cache
def load_signatures() -> tuple[Signature, ...]:
    """The packaged signature table, parsed once."""
    text = resources.files("mmops.data").joinpath("signatures.yaml").read_text("utf-8")
    return tuple(_parse(entry) for entry in yaml.safe_load(text)["signatures"])


def match_line(line: str) -> LineMatch | None:
    """The first signature (in table order) whose pattern matches this line, with captures."""
    for sig in load_signatures():
        for pat in sig.patterns:
            m = pat.search(line)
            if m:
                return LineMatch(sig, {k: v for k, v in m.groupdict().items() if v is not None})
    return None
