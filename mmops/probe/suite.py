"""Check suites: sample requests with expectations, kept as YAML in ``checks/``.

A suite file::

    name: smoke                      # optional, defaults to the file name
    description: what it proves      # optional
    defaults:                        # optional, applied to every case, each case may override
      sampling: {max_tokens: 8}
      stream: false
      timeout_s: 60
      expect: {status: 200}
    cases:
      - name: image                  # unique; letters, digits, ._-
        modality: image              # text | image | multi-image | video | multi-turn
        prompt: What colour is the circle?
        images: [media/red-circle.png]   # paths relative to the suite file, or http(s)/data: URLs
        video: media/moving-dot.mp4
        turns:                       # instead of prompt/images/video, for multi-turn
          - {role: user, text: ..., images: [...]}
          - {role: assistant, text: ...}
        stream: true
        sampling: {max_tokens, temperature, top_k, top_p, ignore_eos, repetition_penalty,
                   stop_token_ids}
        timeout_s: 30
        expect:
          status: 200                # default 200; another status makes a negative test
          non_empty: true
          finish_reason: [stop, length]
          contains: [red]            # every string must appear, case-insensitive
          regex: '(?i)\\bred\\b'     # Python re.search
          min_prompt_tokens: 64      # usage.prompt_tokens: proves the media reached the model
          prompt_tokens_over: {case: text, min: 16}   # more prompt tokens than an earlier case
          completion_tokens: 8       # exact (deterministic with ignore_eos)
          min_completion_tokens: 1
          max_latency_s: 30
          max_ttft_s: 10

Where a bare name (``smoke``, ``tiny-cpu``) is looked up, in order: each directory of
``$MMOPS_CHECKS_DIR`` (os.pathsep-separated), then ``checks/`` of the source tree mmops runs
from. Anything with a ``/`` or a ``.yaml``/``.yml`` suffix is a path. A bad file raises
:class:`SuiteError` with one line naming the file, the case and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn

import yaml

from mmops.errors import SuiteError
from mmops.probe.request import Sampling

MODALITIES = ("text", "image", "multi-image", "video", "multi-turn")
ROLES = ("user", "assistant", "system")
REPO_CHECKS = Path(__file__).resolve().parents[2] / "checks"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TurnSpec:
    """One message of a case; media are resolved paths or URLs, loaded only at send time."""

    role: str = "user"
    text: str = ""
    images: tuple[str, ...] = ()
    video: str | None = None


@dataclass(frozen=True)
class Expect:
    """What a case's answer must satisfy."""

    status: int = 200
    non_empty: bool = False
    finish_reason: tuple[str, ...] | None = None
    contains: tuple[str, ...] = ()
    regex: str | None = None
    min_prompt_tokens: int | None = None
    prompt_tokens_over: tuple[str, int] | None = None  # (earlier case name, margin)
    completion_tokens: int | None = None
    min_completion_tokens: int | None = None
    max_latency_s: float | None = None
    max_ttft_s: float | None = None


@dataclass(frozen=True)
class Case:
    """One sample request and its expectations."""

    name: str
    modality: str
    turns: tuple[TurnSpec, ...]
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    timeout_s: float | None = None
    expect: Expect = field(default_factory=Expect)


@dataclass(frozen=True)
class Suite:
    """A named list of cases, loaded from ``path`` (None for one built in code)."""

    name: str
    cases: tuple[Case, ...]
    description: str = ""
    path: Path | None = None

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise KeyError(name)


def adhoc_suite(
    *,
    text: str | None = None,
    images: Sequence[str] = (),
    video: str | None = None,
    sampling: Sampling | None = None,
    stream: bool = False,
) -> Suite:
    """A one-case suite from command-line flags (`mmops probe --image ... --text ...`).

    Media are not checked here: a missing or wrong file becomes that request's failed verdict.
    The only expectation is HTTP 200, as the reference script printed whatever came back.
    """
    turn = TurnSpec(text="", images=tuple(images), video=video)
    modality = modality_of((turn,))
    default_text = {
        "text": "Say hello in one short sentence.",
        "video": "Describe this video in one sentence.",
        "multi-image": "Describe these images in one sentence.",
    }.get(modality, "Describe this image in one sentence.")
    turn = TurnSpec(text=text or default_text, images=tuple(images), video=video)
    case = Case(
        name=modality, modality=modality, turns=(turn,), sampling=sampling or Sampling(),
        stream=stream,
    )  # fmt: skip
    return Suite(name="adhoc", cases=(case,), description="from the command line")


def modality_of(turns: tuple[TurnSpec, ...]) -> str:
    """The modality a list of turns amounts to (what `modality:` must say)."""
    if sum(1 for t in turns if t.role == "user") > 1:
        return "multi-turn"
    if any(t.video for t in turns):
        return "video"
    images = sum(len(t.images) for t in turns)
    return "multi-image" if images > 1 else "image" if images else "text"


def suite_dirs() -> list[Path]:
    """Directories searched for a bare suite name, in order."""
    dirs = [Path(p) for p in os.environ.get("MMOPS_CHECKS_DIR", "").split(os.pathsep) if p]
    return [*dirs, REPO_CHECKS]


def available_suites() -> list[str]:
    names: dict[str, None] = {}
    for d in suite_dirs():
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            names[p.stem] = None
    return list(names)


def resolve_suite(path_or_name: str | Path) -> Path:
    """The file a ``--suite`` value names; :class:`SuiteError` if there is none."""
    text = str(path_or_name)
    if isinstance(path_or_name, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise SuiteError(f"{text}: no such suite file")
        return path
    for d in suite_dirs():
        for suffix in (".yaml", ".yml"):
            if (d / f"{text}{suffix}").is_file():
                return d / f"{text}{suffix}"
    known = ", ".join(available_suites()) or "none"
    raise SuiteError(f"--suite {text}: no suite of that name (available: {known})")


def load_suite(path_or_name: str | Path) -> Suite:
    """Load and validate a suite by file path or bare name (see module docstring)."""
    path = resolve_suite(path_or_name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{path}: not valid YAML: {problem}{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    return parse_suite(data, path)


def parse_suite(data: Any, path: Path) -> Suite:
    """Validate already-parsed YAML; media paths resolve against ``path``'s directory."""
    top = _Ctx(path)
    if not isinstance(data, dict):
        top.fail(None, "must be a mapping with a 'cases' list")
    top.known(data, ("name", "description", "defaults", "cases"), None)
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        top.fail("name", f"must be a word of letters, digits, '._-', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        top.fail("description", "must be a string")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        top.fail("defaults", "must be a mapping")
    top.known(defaults, ("sampling", "stream", "timeout_s", "expect"), "defaults.")
    cases_raw = data.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        top.fail("cases", "must be a non-empty list of cases")
    cases: list[Case] = []
    for i, raw in enumerate(cases_raw):
        label = (
            raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else None
        )
        ctx = _Ctx(path, f"#{i + 1}" if label is None else label)
        if not isinstance(raw, dict):
            ctx.fail(None, "must be a mapping")
        case = _parse_case(raw, defaults, ctx, path.parent)
        if any(c.name == case.name for c in cases):
            ctx.fail("name", "is used by an earlier case; names must be unique")
        over = case.expect.prompt_tokens_over
        if over is not None and not any(c.name == over[0] for c in cases):
            ctx.fail("expect.prompt_tokens_over.case", f"{over[0]!r} is not an earlier case")
        cases.append(case)
    return Suite(name=name, cases=tuple(cases), description=description, path=path)


class _Ctx:
    """Where a value sits, for one-line errors: file, case, key."""

    def __init__(self, path: Path, case: str | None = None) -> None:
        self.path = path
        self.case = case

    def fail(self, key: str | None, message: str) -> NoReturn:
        where = [str(self.path)]
        if self.case is not None:
            where.append(f"case {self.case!r}")
        if key is not None:
            where.append(f"key {key!r}")
        raise SuiteError(": ".join(where) + f": {message}")

    def known(self, mapping: dict, allowed: tuple[str, ...], prefix: str | None) -> None:
        for key in mapping:
            if key not in allowed:
                self.fail(f"{prefix or ''}{key}", f"unknown key (allowed: {', '.join(allowed)})")


_SAMPLING_KEYS = tuple(f.name for f in fields(Sampling))
_CASE_KEYS = (
    "name", "modality", "prompt", "images", "video", "turns", "stream", "sampling",
    "timeout_s", "expect",
)  # fmt: skip


def _parse_case(raw: dict, defaults: dict, ctx: _Ctx, base: Path) -> Case:
    ctx.known(raw, _CASE_KEYS, None)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        ctx.fail("name", f"must be a word of letters, digits, '._-', got {name!r}")
    modality = raw.get("modality")
    if modality not in MODALITIES:
        ctx.fail("modality", f"must be one of {', '.join(MODALITIES)}, got {modality!r}")

    if "turns" in raw:
        for key in ("prompt", "images", "video"):
            if key in raw:
                ctx.fail(key, "cannot be combined with 'turns'; put it in a turn")
        turns_raw = raw["turns"]
        if not isinstance(turns_raw, list) or not turns_raw:
            ctx.fail("turns", "must be a non-empty list of {role, text, images, video}")
        turns = tuple(_parse_turn(t, ctx, f"turns[{j}].", base) for j, t in enumerate(turns_raw))
        if turns[-1].role != "user":
            ctx.fail(f"turns[{len(turns) - 1}].role", "the last turn must be the user's")
    else:
        if not isinstance(raw.get("prompt", ""), str):
            ctx.fail("prompt", "must be a string")
        turns = (_parse_turn({k: raw[k] for k in ("images", "video") if k in raw}
                             | {"text": raw.get("prompt", "")}, ctx, "", base),)  # fmt: skip
    if not any(t.text or t.images or t.video for t in turns):
        ctx.fail("prompt", "the request is empty: give a prompt, images or a video")
    actual = modality_of(turns)
    if actual != modality:
        ctx.fail("modality", f"says {modality!r} but the case's content makes it {actual!r}")

    sampling_raw = {**(defaults.get("sampling") or {}), **(raw.get("sampling") or {})}
    sampling = _parse_sampling(sampling_raw, ctx)
    stream = raw.get("stream", defaults.get("stream", False))
    if not isinstance(stream, bool):
        ctx.fail("stream", f"must be true or false, got {stream!r}")
    timeout = raw.get("timeout_s", defaults.get("timeout_s"))
    if timeout is not None:
        timeout = _number(timeout, ctx, "timeout_s", positive=True)
    expect_raw = {**(defaults.get("expect") or {}), **(raw.get("expect") or {})}
    expect = _parse_expect(expect_raw, ctx)
    if expect.max_ttft_s is not None and not stream:
        ctx.fail("expect.max_ttft_s", "needs 'stream: true': TTFT is only measured on a stream")
    return Case(name, modality, turns, sampling, stream, timeout, expect)


def _parse_turn(raw: Any, ctx: _Ctx, prefix: str, base: Path) -> TurnSpec:
    if not isinstance(raw, dict):
        ctx.fail(prefix.rstrip(".") or "turns", "must be a mapping {role, text, images, video}")
    if prefix:
        ctx.known(raw, ("role", "text", "images", "video"), prefix)
    role = raw.get("role", "user")
    if role not in ROLES:
        ctx.fail(f"{prefix}role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    text = raw.get("text", "")
    if not isinstance(text, str):
        ctx.fail(f"{prefix}text" if prefix else "prompt", "must be a string")
    images_raw = raw.get("images", [])
    if isinstance(images_raw, str):
        images_raw = [images_raw]
    if not isinstance(images_raw, list):
        ctx.fail(f"{prefix}images", "must be a list of paths or URLs")
    images = tuple(
        _media_ref(v, ctx, f"{prefix}images[{k}]", base) for k, v in enumerate(images_raw)
    )
    video = raw.get("video")
    if video is not None:
        video = _media_ref(video, ctx, f"{prefix}video", base)
    if role != "user" and (images or video):
        ctx.fail(f"{prefix}role", f"only user turns carry images or video, not {role!r}")
    return TurnSpec(role=role, text=text, images=images, video=video)


def _media_ref(value: Any, ctx: _Ctx, key: str, base: Path) -> str:
    if not isinstance(value, str) or not value:
        ctx.fail(key, "must be a file path or an http(s)/data: URL")
    if value.startswith(("http://", "https://", "data:")):
        return value
    path = (base / value).expanduser() if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        ctx.fail(key, f"{value}: no such file (paths are relative to the suite file)")
    return str(path)


def _parse_sampling(raw: Any, ctx: _Ctx) -> Sampling:
    if not isinstance(raw, dict):
        ctx.fail("sampling", "must be a mapping")
    ctx.known(raw, _SAMPLING_KEYS, "sampling.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        k = f"sampling.{key}"
        if key == "ignore_eos":
            if not isinstance(value, bool):
                ctx.fail(k, f"must be true or false, got {value!r}")
            values[key] = value
        elif key == "stop_token_ids":
            if value is not None and (
                not isinstance(value, list)
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                ctx.fail(k, f"must be a list of integers, got {value!r}")
            values[key] = tuple(value) if value is not None else None
        elif key in ("max_tokens", "top_k"):
            if not isinstance(value, int) or isinstance(value, bool):
                ctx.fail(k, f"must be an integer, got {value!r}")
            if key == "max_tokens" and value < 1:
                ctx.fail(k, f"must be >= 1, got {value}")
            if key == "top_k" and value < -1:
                ctx.fail(k, f"must be -1 (off) or a positive integer, got {value}")
            values[key] = value
        else:
            values[key] = _number(value, ctx, k, positive=key == "repetition_penalty")
            if key == "top_p" and not 0 < values[key] <= 1:
                ctx.fail(k, f"must be in (0, 1], got {value}")
            if key == "temperature" and values[key] < 0:
                ctx.fail(k, f"must be >= 0, got {value}")
    return Sampling(**values)


def _parse_expect(raw: Any, ctx: _Ctx) -> Expect:
    if not isinstance(raw, dict):
        ctx.fail("expect", "must be a mapping")
    allowed = tuple(f.name for f in fields(Expect))
    ctx.known(raw, allowed, "expect.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = f"expect.{key}"
        if key == "non_empty":
            if not isinstance(value, bool):
                ctx.fail(k, f"must be true or false, got {value!r}")
            out[key] = value
        elif key == "status":
            if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
                ctx.fail(k, f"must be an HTTP status code, got {value!r}")
            out[key] = value
        elif key in ("finish_reason", "contains"):
            items = [value] if isinstance(value, str) else value
            if (
                not isinstance(items, list)
                or not items
                or not all(isinstance(s, str) and s for s in items)
            ):
                ctx.fail(k, f"must be a string or a list of strings, got {value!r}")
            out[key] = tuple(items)
        elif key == "regex":
            if not isinstance(value, str):
                ctx.fail(k, f"must be a string, got {value!r}")
            try:
                re.compile(value)
            except re.error as exc:
                ctx.fail(k, f"is not a valid regular expression: {exc}")
            out[key] = value
        elif key == "prompt_tokens_over":
            if not isinstance(value, dict) or set(value) - {"case", "min"} or "case" not in value:
                ctx.fail(k, "must be a mapping {case: NAME, min: N}")
            margin = value.get("min", 1)
            if not isinstance(margin, int) or isinstance(margin, bool) or margin < 0:
                ctx.fail(f"{k}.min", f"must be an integer >= 0, got {margin!r}")
            out[key] = (str(value["case"]), margin)
        elif key in ("min_prompt_tokens", "completion_tokens", "min_completion_tokens"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                ctx.fail(k, f"must be an integer >= 0, got {value!r}")
            out[key] = value
        else:  # max_latency_s, max_ttft_s
            out[key] = _number(value, ctx, k, positive=True)
    return Expect(**out)


def _number(value: Any, ctx: _Ctx, key: str, *, positive: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        ctx.fail(key, f"must be a number, got {value!r}")
    if positive and value <= 0:
        ctx.fail(key, f"must be > 0, got {value!r}")
    return float(value)
