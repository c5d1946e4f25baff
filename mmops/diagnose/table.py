"""Known failures as data: the one table that serve, logs --errors, diagnose and the TUI read.

The table itself is ``mmops/diagnose/signatures.yaml`` (its header documents the fields); this module
loads and validates it, matches single lines against it and renders fixes and remedies with the
numbers a log gave. Ranking a whole log into cause and consequences lives in ``mmops.diagnose.scan``.

Normalisation: ``match_line`` takes a RAW log line and strips ANSI colours and known prefixes
itself (``mmops.diagnose.logread.normalize``), so callers never need to. Callers that already hold the
normalised message (the diagnose scanner) use ``match_text`` and skip that work.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from string import Formatter
from typing import Any, Literal

import yaml

from mmops.diagnose.logread import normalize
from mmops.launch.allocator import merge_alloc_conf
from mmops.yamlcheck import Located, choice, compose_text, mapping, scalar, sequence_items

try:  # the regex parser, to find each pattern's required literal for the scanner's pre-filter
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # Python 3.10
    import sre_constants as _sre_c
    import sre_parse as _sre_parse

RemedyKind = Literal["env_merge", "env_set", "arg_set"]
Role = Literal["cause", "consequence", "context"]
FindingRole = Literal["cause", "consequence"]  # a signature's place in one incident
Phase = Literal["startup", "runtime", "any"]
Marker = Literal["started", "stop", "stop_weak", "request_failed", "request_ok"]

# (a signature's position in the table, the literal sets one of whose strings a match holds)
Requirement = tuple[int, tuple[tuple[str, ...], ...]]

_ROLES: tuple[Role, ...] = ("cause", "consequence", "context")
_PHASES: tuple[Phase, ...] = ("startup", "runtime", "any")
_MARKERS: tuple[Marker, ...] = ("started", "stop", "stop_weak", "request_failed", "request_ok")
_REMEDY_KINDS: tuple[RemedyKind, ...] = ("env_merge", "env_set", "arg_set")
MIN_LITERAL = 3
# Python 3.10 has no possessive repeats.
_REPEATS = tuple(
    getattr(_sre_c, n)
    for n in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    if hasattr(_sre_c, n)
)


@dataclass(frozen=True)
class Remedy:
    """One change to the launch that retrying with can fix the failure.

    ``env_merge``: merge ``value`` (``key:val`` pairs) into the comma-separated env var ``name``,
    keeping the user's other keys (PYTORCH_NPU_ALLOC_CONF; see ``merge_alloc_conf``).
    ``env_set``: set env var ``name``. ``arg_set``: set vLLM flag ``name`` (e.g.
    ``--max-model-len``). ``value`` may name captures of the matching pattern as ``{capture}``;
    ``resolve_remedy`` fills them in.
    """

    kind: RemedyKind
    name: str
    value: str


@dataclass(frozen=True)
class Signature:
    """One failure class of the table (fields documented in ``data/signatures.yaml``)."""

    id: str
    title: str
    patterns: tuple[re.Pattern[str], ...]
    meaning: str
    fix: str  # the first fix template; see fix_templates and render_fix
    retryable: bool  # can a plain retry (or the remedy) help, or is it a config error?
    role: Role = "cause"
    remedy: Remedy | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    phase: Phase = "startup"
    fatal: bool = False  # a runtime entry that also kills the engine (see signatures.yaml)
    stall: bool = False  # start-up waits on it; with nothing failed yet the start is incomplete
    platform: str = "any"
    weak_patterns: tuple[re.Pattern[str], ...] = ()
    secondary_patterns: tuple[re.Pattern[str], ...] = ()
    capture_patterns: tuple[re.Pattern[str], ...] = ()  # only for numbers, never a trigger
    # Traceback frames (file / function / code lines) that show the failure when the final
    # exception is generic; judged with the exception that ends their traceback (frame_raises).
    frame_patterns: tuple[re.Pattern[str], ...] = ()
    frame_raises: re.Pattern[str] | None = None
    excludes: tuple[re.Pattern[str], ...] = ()
    marker: Marker | None = None
    fix_templates: tuple[str, ...] = ()
    # Per pattern (strong, secondary, frame, weak): the literals of which one must occur in a matching line.
    literals: tuple[tuple[str, ...], ...] = ()


Tier = Literal["strong", "secondary", "frame", "weak"]
TIERS: tuple[Tier, ...] = ("strong", "secondary", "frame", "weak")  # strongest first


@dataclass(frozen=True)
class LineMatch:
    """A line that matched ``signature``; ``captures`` holds its named groups."""

    signature: Signature
    captures: dict[str, str]
    # strong: the line names the failure. secondary: fatal, but often the echo of another
    # rank's failure (a collective watchdog); it yields to any strong cause. frame: a traceback
    # frame whose exception fits (the scanner holds it until the traceback ends). weak: noise that
    # points at the cause only when something else failed (a harmless hub lookup).
    tier: Tier = "strong"

    @property
    def weak(self) -> bool:
        return self.tier == "weak"


# ----------------------------------------------------------------------------- literals


# What the private regex parser gives: (opcode, argument) pairs, untyped in typeshed.
_Parsed = Iterable[tuple[Any, Any]]


def _pure_literal(sub: _Parsed) -> str | None:
    chars = []
    for op, av in sub:
        if op is not _sre_c.LITERAL:
            return None
        chars.append(chr(av))
    return "".join(chars)


def _runs(items: _Parsed) -> list[tuple[str, ...]]:
    """Required literal sets of a parsed regex: each tuple is 'one of these must occur'."""
    out: list[tuple[str, ...]] = []
    cur: list[str] = []

    def flush() -> None:
        if cur:
            out.append(("".join(cur),))
            cur.clear()

    for op, av in items:
        if op is _sre_c.LITERAL:
            cur.append(chr(av))
        elif op is _sre_c.AT:
            continue  # zero-width: ^ $ \b do not break a literal run
        elif op is _sre_c.SUBPATTERN:
            add_flags, sub = av[1], av[3]
            if add_flags & _sre_c.SRE_FLAG_IGNORECASE:
                flush()
                continue
            lit = _pure_literal(sub)
            if lit is not None:
                cur.append(lit)
            else:
                flush()
                out.extend(_runs(sub))
        elif op is _sre_c.BRANCH:
            flush()
            alts = [_best(_runs(b)) for b in av[1]]
            if all(alts):
                out.append(tuple(x for alt in alts for x in alt))
        elif op in _REPEATS:
            flush()
            if av[0] >= 1:
                out.extend(_runs(av[2]))
        elif op is _sre_c.IN and len(av) == 1 and av[0][0] is _sre_c.LITERAL:
            cur.append(chr(av[0][1]))  # a one-character class such as [.]
        else:
            flush()
    flush()
    return out


def _best(runs: list[tuple[str, ...]]) -> tuple[str, ...]:
    return max(runs, key=lambda alts: min(len(a) for a in alts), default=())


def required_runs(pattern: str) -> list[tuple[str, ...]]:
    """Every literal set a match of ``pattern`` needs (each: one of these strings occurs)."""
    parsed = _sre_parse.parse(pattern)
    if parsed.state.flags & re.IGNORECASE:
        return []
    return [r for r in _runs(parsed) if min(len(a) for a in r) >= MIN_LITERAL]


def required_literals(pattern: str) -> tuple[str, ...]:
    """Literals of which at least one occurs in every line ``pattern`` matches (the longest)."""
    return _best(required_runs(pattern))


# ----------------------------------------------------------------------------- loading


_SIG_KEYS = (
    "id", "title", "patterns", "meaning", "fix", "retryable", "role", "remedy", "tags", "phase",
    "platform", "weak_patterns", "secondary_patterns", "capture_patterns", "excludes", "marker",
    "frame_patterns", "frame_raises", "fatal", "stall",
)  # fmt: skip
_REQUIRED = ("id", "title", "patterns", "meaning", "fix")
TABLE = Path("mmops/diagnose/signatures.yaml")  # how errors name the packaged file


def _compile(loc: Located | None, what: str) -> tuple[tuple[re.Pattern[str], ...], list]:
    compiled, lits = [], []
    for item in sequence_items(loc) if loc is not None else ():
        p = scalar(item, (str,))
        try:
            rx = re.compile(p)
        except re.error as exc:
            raise item.error(f"bad {what}: {exc}") from None
        req = required_literals(p)
        if what not in ("exclude", "capture pattern") and (
            not req or min(len(x) for x in req) < MIN_LITERAL
        ):
            raise item.error(
                f"{what} has no case-sensitive literal of {MIN_LITERAL}+ characters (the "
                "scanner's pre-filter needs one)"
            )
        compiled.append(rx)
        lits.append(req)
    return tuple(compiled), lits


def _compile_one(loc: Located, what: str) -> re.Pattern[str]:
    try:
        return re.compile(scalar(loc, (str,)))
    except re.error as exc:
        raise loc.error(f"bad {what}: {exc}") from None


def _text(loc: Located) -> str:
    return " ".join(scalar(loc, (str,)).split())


def _parse(loc: Located) -> Signature:
    given = mapping(loc, allowed=_SIG_KEYS)
    for key in _REQUIRED:
        if key not in given:
            raise loc.error(f"has no '{key}'")
    marker = choice(given["marker"], _MARKERS) if "marker" in given else None
    patterns, lits = _compile(given["patterns"], "pattern")
    secondary, sec_lits = _compile(given.get("secondary_patterns"), "secondary pattern")
    frames, frame_lits = _compile(given.get("frame_patterns"), "frame pattern")
    weak, weak_lits = _compile(given.get("weak_patterns"), "weak pattern")
    raises = None
    if "frame_raises" in given:
        if not frames:
            raise given["frame_raises"].error("needs frame_patterns")
        raises = _compile_one(given["frame_raises"], "frame_raises")
    excludes, _ = _compile(given.get("excludes"), "exclude")
    capture, _ = _compile(given.get("capture_patterns"), "capture pattern")
    fix = given["fix"]
    fixes = (
        [_text(f) for f in sequence_items(fix)]
        if isinstance(fix.node, yaml.SequenceNode)
        else [_text(fix)]
    )
    remedy = None
    if "remedy" in given:
        r = mapping(given["remedy"], allowed=("kind", "name", "value"))
        if set(r) != {"kind", "name", "value"}:
            raise given["remedy"].error("needs kind, name and value")
        remedy = Remedy(
            choice(r["kind"], _REMEDY_KINDS), scalar(r["name"], (str,)), scalar(r["value"], (str,))
        )
    return Signature(
        id=scalar(given["id"], (str,)),
        title=scalar(given["title"], (str,)),
        patterns=patterns,
        meaning=_text(given["meaning"]),
        fix=fixes[0],
        retryable=scalar(given["retryable"], (bool,)) if "retryable" in given else False,
        role=choice(given["role"], _ROLES) if "role" in given else "cause",
        remedy=remedy,
        tags=tuple(scalar(t, (str,)) for t in sequence_items(given["tags"]))
        if "tags" in given
        else (),
        phase=choice(given["phase"], _PHASES) if "phase" in given else "startup",
        fatal=scalar(given["fatal"], (bool,)) if "fatal" in given else False,
        stall=scalar(given["stall"], (bool,)) if "stall" in given else False,
        platform=scalar(given["platform"], (str,)) if "platform" in given else "any",
        weak_patterns=weak,
        secondary_patterns=secondary,
        frame_patterns=frames,
        frame_raises=raises,
        capture_patterns=capture,
        excludes=excludes,
        marker=marker,
        fix_templates=tuple(fixes),
        literals=tuple(lits + sec_lits + frame_lits + weak_lits),
    )


@cache
def load_signatures() -> tuple[Signature, ...]:
    """The packaged signature table, parsed once (table order is priority)."""
    text = resources.files("mmops.diagnose").joinpath("signatures.yaml").read_text("utf-8")
    root = mapping(compose_text(text, TABLE), allowed=("signatures",))
    sigs: list[Signature] = []
    for loc in sequence_items(root["signatures"]):
        sig = _parse(loc)
        if any(s.id == sig.id for s in sigs):
            raise mapping(loc)["id"].error("is used by an earlier signature")
        sigs.append(sig)
    return tuple(sigs)


def by_id(sig_id: str) -> Signature:
    """The signature with this id (KeyError if none)."""
    for sig in load_signatures():
        if sig.id == sig_id:
            return sig
    raise KeyError(sig_id)


@cache
def prefilter_literals() -> frozenset[str]:
    """Every literal some pattern needs: a line containing none of them matches no signature."""
    return frozenset(lit for sig in load_signatures() for alts in sig.literals for lit in alts)


@cache
def prefilter_requirements() -> tuple[Requirement, ...]:
    """Per pattern of the table: (its signature's position, its options).

    Each option is a literal set of which a matching line holds one string; every option is
    necessary, so a scanner may search for whichever is cheapest in a given log (``vLLM ``
    rather than ``server version ``) and pass the positions it saw to ``match_text``.
    """
    return tuple(
        (pos, tuple(required_runs(p.pattern)))
        for pos, sig in enumerate(load_signatures())
        for p in _triggers(sig)
    )


# ----------------------------------------------------------------------------- matching


@cache
def _index() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(literal, signature positions needing it) for every literal of the table."""
    needed: dict[str, set[int]] = {}
    for pos, sig in enumerate(load_signatures()):
        for alts in sig.literals:
            for lit in alts:
                needed.setdefault(lit, set()).add(pos)
    return tuple((lit, tuple(sorted(p))) for lit, p in needed.items())


def _triggers(sig: Signature) -> tuple[re.Pattern[str], ...]:
    """Every pattern that can trigger ``sig``, strongest tier first (``literals``' order)."""
    return sig.patterns + sig.secondary_patterns + sig.frame_patterns + sig.weak_patterns


def _tier(sig: Signature, hit: int) -> Tier:
    for tier, n in zip(
        TIERS, (len(sig.patterns), len(sig.secondary_patterns), len(sig.frame_patterns)),
        strict=False,
    ):
        if hit < n:
            return tier
        hit -= n
    return "weak"


def _match_sig(sig: Signature, text: str) -> LineMatch | None:
    all_pats = _triggers(sig)
    # Frame patterns never classify a line by themselves: a frame is evidence only with the
    # exception that ends its traceback, which the scanner judges (see ``frame_matches``).
    lo = len(sig.patterns) + len(sig.secondary_patterns)
    frames = range(lo, lo + len(sig.frame_patterns))
    hit = -1
    for i, pat in enumerate(all_pats):
        if i not in frames and any(a in text for a in sig.literals[i]) and pat.search(text):
            hit = i
            break
    if hit < 0 or any(ex.search(text) for ex in sig.excludes):
        return None
    captures: dict[str, str] = {}
    for i, pat in enumerate(all_pats + sig.capture_patterns):
        if i in frames or (
            i != hit and i < len(all_pats) and not any(a in text for a in sig.literals[i])
        ):
            continue
        m = pat.search(text)
        if m:
            for k, v in m.groupdict().items():
                if v is not None and k not in captures:
                    captures[k] = v
    return LineMatch(sig, captures, _tier(sig, hit))


def match_text(text: str, candidates: set[int] | None = None) -> LineMatch | None:
    """Match an already normalised message (see ``normalize``); first signature in table order.

    Strong patterns win over secondary and weak ones within a signature; captures of all the
    winning signature's patterns that match are merged (the first value of a name wins).
    ``candidates``: positions in ``load_signatures()`` that may match (a scanner that knows
    which literals the line holds passes them); None means try every signature.
    """
    if candidates is None:
        candidates = {p for lit, positions in _index() if lit in text for p in positions}
    if not candidates:
        return None
    sigs = load_signatures()
    for pos in sorted(candidates):
        lm = _match_sig(sigs[pos], text)
        if lm is not None:
            return lm
    return None


def frame_matches(text: str) -> list[LineMatch]:
    """Every signature whose frame patterns match ``text``, in table order (a frame may fit
    several causes; the exception that ends its traceback picks one: see ``frame_raises``)."""
    out = []
    for sig in _framed():
        for i, pat in enumerate(sig.frame_patterns):
            lits = sig.literals[len(sig.patterns) + len(sig.secondary_patterns) + i]
            if any(a in text for a in lits) and (m := pat.search(text)):
                out.append(LineMatch(sig, {k: v for k, v in m.groupdict().items() if v}, "frame"))
                break
    return out


@cache
def _framed() -> tuple[Signature, ...]:
    return tuple(s for s in load_signatures() if s.frame_patterns)


@cache
def tally_positions() -> dict[int, re.Pattern[bytes]]:
    """Positions of the entries a scanner only counts (request_ok: a 2xx access line), with a
    bytes regex of their patterns: a serving log is mostly such lines, so the scanner counts
    them per chunk and leaves them out of its line pre-filter."""
    out = {}
    for i, s in enumerate(load_signatures()):
        if s.marker == "request_ok" and not s.excludes:
            out[i] = re.compile("|".join(p.pattern for p in s.patterns).encode())
    return out


@cache
def framed_positions() -> frozenset[int]:
    """Positions in ``load_signatures()`` of the signatures with frame patterns (a scanner
    holding a line's candidate positions calls ``frame_matches`` only when one is among them)."""
    return frozenset(i for i, s in enumerate(load_signatures()) if s.frame_patterns)


def match_line(line: str) -> LineMatch | None:
    """The first signature (in table order) matching this RAW line, with captures.

    ANSI colours, CRLF and prefixes such as ``(EngineCore_DP0 pid=1) ERROR 03-05 07:15:39
    [core.py:1]`` are stripped first, so pass lines exactly as the log has them.
    """
    return match_text(normalize(line))


# ----------------------------------------------------------------------------- fixes

_SIZE = re.compile(r"([\d.]+)\s*([KMGT]?)i?B")
_UNIT = {"": 1 / 1024**3, "K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


def size_gib(text: str) -> float | None:
    """'2.00 GiB' / '136.00 MiB' / '3 GB' -> GiB as float (None if unreadable)."""
    m = _SIZE.search(text or "")
    if not m:
        return None
    try:
        return float(m.group(1)) * _UNIT[m.group(2)]
    except ValueError:
        return None


def _fmt_gib(v: float) -> str:
    return f"{v:.2f} GiB" if v >= 0.1 else f"{v * 1024:.0f} MiB"


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text.replace(",", "")))
    except ValueError:
        return None


def derive(sig: Signature, captures: dict[str, str], facts: dict | None = None) -> dict[str, str]:
    """Numbers computed from captures (and facts of the same log) for the fix templates."""
    facts = facts or {}
    out: dict[str, str] = {}
    tried, free, total = (size_gib(captures.get(k, "")) for k in ("tried", "free", "total"))
    if tried is not None and free is not None:
        short = max(tried - free, 0.0)
        out["short"] = _fmt_gib(short)
        if total:
            # Leave room for the shortfall plus a margin of 1 % of the device.
            drop = math.ceil((short / total + 0.01) * 100) / 100
            out["util_drop"] = f"{drop:.2f}"
            util = facts.get("gpu_memory_utilization")
            if util is not None:
                with contextlib.suppress(ValueError):
                    out["util_suggest"] = f"{max(float(util) - drop, 0.05):.2f}"
    derived = _int(captures.get("derived"))
    if derived is not None:
        out["derived_int"] = str(derived)
    heads, tp = _int(captures.get("heads")), _int(captures.get("tp"))
    if heads:
        valid = [d for d in (1, 2, 4, 8, 16, 32) if heads % d == 0 and d <= heads]
        if tp:
            valid = [d for d in valid if d != tp]
        out["valid_tp"] = ", ".join(str(d) for d in valid)
    if sig.remedy and sig.remedy.kind == "env_merge":
        current = (
            facts.get("npu_alloc_conf") if sig.remedy.name == "PYTORCH_NPU_ALLOC_CONF" else None
        )
        if current:
            out["alloc_conf_merged"] = merge_alloc_conf(current, sig.remedy.value)
    for k in ("gpu_memory_utilization",):
        if k in facts:
            out[k] = str(facts[k])
    return out


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def render_fix(sig: Signature, captures: dict[str, str], facts: dict | None = None) -> str:
    """The fix text with the log's numbers: the first template whose fields are all known."""
    values = {**{k: str(v) for k, v in (facts or {}).items()}, **captures}
    values.update(derive(sig, captures, facts))
    for template in sig.fix_templates or (sig.fix,):
        if _fields(template) <= values.keys():
            return template.format(**values)
    # No template fits entirely: show the last one with unknown fields named.
    return sig.fix_templates[-1].format_map(_Missing(values))


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def resolve_remedy(sig: Signature, captures: dict[str, str]) -> Remedy | None:
    """The signature's remedy with ``{capture}`` fields filled in; None when a field is unknown."""
    if sig.remedy is None:
        return None
    needed = _fields(sig.remedy.value)
    if not needed <= captures.keys():
        return None
    value = sig.remedy.value.format(**{k: captures[k].replace(",", "") for k in needed})
    return Remedy(sig.remedy.kind, sig.remedy.name, value)
