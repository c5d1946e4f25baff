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
:class:`SuiteError` with one line naming the file, the line and the key
(``checks/x.yaml:12: key 'cases[2].sampling.top_p' must be in (0, 1], got 1.5``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mmops.errors import SuiteError
from mmops.probe.request import MODALITIES, Role, Sampling, modality_of, sampling_value
from mmops.yamlcheck import (
    Located,
    choice,
    compose_file,
    mapping,
    mapping_items,
    scalar,
    sequence_items,
    to_python,
)

ROLES: tuple[Role, ...] = ("user", "assistant", "system")
REPO_CHECKS = Path(__file__).resolve().parents[2] / "checks"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TurnSpec:
    """One message of a case; media are resolved paths or URLs, loaded only at send time."""

    role: Role = "user"
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
    return parse_suite(compose_file(resolve_suite(path_or_name), SuiteError))


def parse_suite(root: Located) -> Suite:
    """Validate a composed suite file; media paths resolve against its directory."""
    top = mapping(root, SuiteError, _TOP_KEYS)
    name = _name(top["name"]) if "name" in top else root.file.stem
    if not _NAME_RE.match(name):
        raise root.error(
            f"has no 'name', and its file name {name!r} is not a word of letters, digits, '._-'",
            SuiteError,
        )
    description = scalar(top["description"], (str,), SuiteError) if "description" in top else ""
    defaults = _parse_defaults(top["defaults"]) if "defaults" in top else _Defaults()
    if "cases" not in top:
        raise root.error("needs a non-empty 'cases' list", SuiteError)
    items = sequence_items(top["cases"], SuiteError)
    if not items:
        raise top["cases"].error("must be a non-empty list of cases", SuiteError)
    cases: list[Case] = []
    for loc in items:
        cases.append(_parse_case(loc, defaults, root.file.parent, cases))
    return Suite(name=name, cases=tuple(cases), description=description, path=root.file)


_TOP_KEYS = ("name", "description", "defaults", "cases")
_DEFAULT_KEYS = ("sampling", "stream", "timeout_s", "expect")
_CASE_KEYS = (
    "name", "modality", "prompt", "images", "video", "turns", "stream", "sampling",
    "timeout_s", "expect",
)  # fmt: skip
_TURN_KEYS = ("role", "text", "images", "video")
_SAMPLING_KEYS = tuple(f.name for f in fields(Sampling))
_EXPECT_KEYS = tuple(f.name for f in fields(Expect))


def _name(loc: Located) -> str:
    name = scalar(loc, (str,), SuiteError)
    if not _NAME_RE.match(name):
        raise loc.error(f"must be a word of letters, digits, '._-', got {name!r}", SuiteError)
    return name


@dataclass
class _Defaults:
    """``defaults:`` validated where it stands, merged into each case key by key."""

    sampling: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    timeout_s: float | None = None
    expect: dict[str, tuple[Any, Located]] = field(default_factory=dict)


def _parse_defaults(loc: Located) -> _Defaults:
    given = mapping(loc, SuiteError, _DEFAULT_KEYS)
    out = _Defaults()
    if "sampling" in given:
        out.sampling = _parse_sampling(given["sampling"])
    if "stream" in given:
        out.stream = scalar(given["stream"], (bool,), SuiteError)
    if "timeout_s" in given:
        out.timeout_s = _positive(given["timeout_s"])
    if "expect" in given:
        out.expect = _parse_expect(given["expect"])
    return out


def _parse_case(loc: Located, defaults: _Defaults, base: Path, earlier: list[Case]) -> Case:
    given = mapping(loc, SuiteError, _CASE_KEYS)
    if "name" not in given:
        raise loc.error(
            "has no 'name': give each case a word of letters, digits, '._-'", SuiteError
        )
    name = _name(given["name"])
    if any(c.name == name for c in earlier):
        raise given["name"].error("is used by an earlier case; names must be unique", SuiteError)
    if "modality" not in given:
        raise loc.error(f"has no 'modality': one of {', '.join(MODALITIES)}", SuiteError)
    modality = choice(given["modality"], MODALITIES, SuiteError)

    if "turns" in given:
        for key in ("prompt", "images", "video"):
            if key in given:
                raise given[key].error(
                    "cannot be combined with 'turns'; put it in a turn", SuiteError
                )
        items = sequence_items(given["turns"], SuiteError)
        if not items:
            raise given["turns"].error(
                "must be a non-empty list of {role, text, images, video}", SuiteError
            )
        turns = []
        for item in items:
            turn_keys = mapping(item, SuiteError, _TURN_KEYS)
            turns.append(_parse_turn(turn_keys, "text", base))
        if turns[-1].role != "user":
            raise turn_keys["role"].error("the last turn must be the user's", SuiteError)
    else:
        turns = [_parse_turn(given, "prompt", base)]
    if not any(t.text or t.images or t.video for t in turns):
        raise loc.error("the request is empty: give a prompt, images or a video", SuiteError)
    actual = modality_of(turns)
    if actual != modality:
        raise given["modality"].error(
            f"says {modality!r} but the case's content makes it {actual!r}", SuiteError
        )

    sampling = {**defaults.sampling}
    if "sampling" in given:
        sampling.update(_parse_sampling(given["sampling"]))
    stream = scalar(given["stream"], (bool,), SuiteError) if "stream" in given else defaults.stream
    timeout = _positive(given["timeout_s"]) if "timeout_s" in given else defaults.timeout_s
    expect = {**defaults.expect}
    if "expect" in given:
        expect.update(_parse_expect(given["expect"]))
    if "max_ttft_s" in expect and not stream:
        raise expect["max_ttft_s"][1].error(
            "needs 'stream: true': TTFT is only measured on a stream", SuiteError
        )
    if "prompt_tokens_over" in expect:
        (over, _), where = expect["prompt_tokens_over"]
        if not any(c.name == over for c in earlier):
            raise where.error(f"{over!r} is not an earlier case", SuiteError)
    return Case(
        name, modality, tuple(turns), Sampling(**sampling), stream, timeout,
        Expect(**{key: value for key, (value, _) in expect.items()}),
    )  # fmt: skip


def _parse_turn(given: dict[str, Located], text_key: str, base: Path) -> TurnSpec:
    """One turn from a turn mapping, or from the case itself (``prompt`` is its text)."""
    role = choice(given["role"], ROLES, SuiteError) if "role" in given else "user"
    text = scalar(given[text_key], (str,), SuiteError) if text_key in given else ""
    images: tuple[str, ...] = ()
    if "images" in given:
        loc = given["images"]
        refs = [loc] if isinstance(loc.node, yaml.ScalarNode) else sequence_items(loc, SuiteError)
        images = tuple(_media_ref(ref, base) for ref in refs)
    video = _media_ref(given["video"], base) if "video" in given else None
    if role != "user" and (images or video):
        raise given["role"].error(
            f"only user turns carry images or video, not {role!r}", SuiteError
        )
    return TurnSpec(role=role, text=text, images=images, video=video)


def _media_ref(loc: Located, base: Path) -> str:
    value = to_python(loc)
    if not isinstance(value, str) or not value:
        raise loc.error("must be a file path or an http(s)/data: URL", SuiteError)
    if value.startswith(("http://", "https://", "data:")):
        return value
    path = (base / value).expanduser() if not Path(value).is_absolute() else Path(value)
    if not path.is_file():
        raise loc.error(f"{value}: no such file (paths are relative to the suite file)", SuiteError)
    return str(path)


def _parse_sampling(loc: Located) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, sub in mapping_items(loc, SuiteError, _SAMPLING_KEYS):
        value = to_python(sub)
        try:
            values[key] = sampling_value(key, value)
        except ValueError as exc:
            raise sub.error(f"{exc}, got {value!r}", SuiteError) from None
    return values


def _parse_expect(loc: Located) -> dict[str, tuple[Any, Located]]:
    """Each given expectation with where it stands (a check across keys points there)."""
    out: dict[str, tuple[Any, Located]] = {}
    for key, sub in mapping_items(loc, SuiteError, _EXPECT_KEYS):
        where = sub
        if key == "non_empty":
            value: Any = scalar(sub, (bool,), SuiteError)
        elif key == "status":
            value = scalar(sub, (int,), SuiteError)
            if not 100 <= value <= 599:
                raise sub.error(f"must be an HTTP status code, got {value!r}", SuiteError)
        elif key in ("finish_reason", "contains"):
            value = _strings(sub)
        elif key == "regex":
            value = scalar(sub, (str,), SuiteError)
            try:
                re.compile(value)
            except re.error as exc:
                raise sub.error(f"is not a valid regular expression: {exc}", SuiteError) from None
        elif key == "prompt_tokens_over":
            over = mapping(sub, SuiteError, ("case", "min"))
            if "case" not in over:
                raise sub.error("must be a mapping {case: NAME, min: N}", SuiteError)
            where = over["case"]
            margin = _count(over["min"]) if "min" in over else 1
            value = (scalar(where, (str,), SuiteError), margin)
        elif key in ("min_prompt_tokens", "completion_tokens", "min_completion_tokens"):
            value = _count(sub)
        else:  # max_latency_s, max_ttft_s
            value = _positive(sub)
        out[key] = (value, where)
    return out


def _strings(loc: Located) -> tuple[str, ...]:
    value = to_python(loc)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
        raise loc.error(f"must be a string or a list of strings, got {value!r}", SuiteError)
    return tuple(items)


def _count(loc: Located) -> int:
    value = scalar(loc, (int,), SuiteError)
    if value < 0:
        raise loc.error(f"must be an integer >= 0, got {value!r}", SuiteError)
    return value


def _positive(loc: Located) -> float:
    value = scalar(loc, (float,), SuiteError)
    if value <= 0:
        raise loc.error(f"must be > 0, got {value!r}", SuiteError)
    return value
