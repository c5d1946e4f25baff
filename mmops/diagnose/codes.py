"""Ascend error codes as data: find CANN / ACL / HCCL / runtime / driver codes in log lines.

The table is ``mmops/diagnose/ascend_codes.yaml`` (its header documents the fields and sources).
A code listed under a family's ``codes`` is an *exact* hit with its own meaning; any other code of
a known family (an unseen ``507xxx``, a new ``EL`` code) still gets the family's meaning.

All families are compiled into ONE alternation, so a line without a code costs one regex search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from mmops.errors import MmopsError
from mmops.yamlcheck import Located, compose_file, compose_text, mapping, scalar, sequence_items

TABLE = Path("mmops/diagnose/ascend_codes.yaml")  # how errors name the packaged file

_FAMILY_KEYS = (
    "id", "context", "match", "precheck", "component", "meaning", "fix", "source", "codes",
)  # fmt: skip
_FAMILY_REQUIRED = ("id", "context", "match", "component", "meaning", "fix", "source")
_CODE_KEYS = ("code", "meaning", "fix", "source")


class CodeTableError(MmopsError):
    """The Ascend error-code table cannot be used (syntax, unknown key, bad regex)."""


@dataclass(frozen=True)
class CodeHit:
    """One error code found in a log line, with what it means."""

    family: str  # the family id, e.g. "acl.rt.507xxx"
    code: str  # as printed: "507899", "EL0004", "1" (an HcclResult)
    component: str
    meaning: str
    fix: str
    source: str
    exact: bool  # True: the code itself is in the table; False: only its family is known


@dataclass(frozen=True)
class CodeEvidence:
    """The hit ``explain`` chose and the log line it came from (0-based ``index``)."""

    hit: CodeHit
    index: int
    line: str


@dataclass(frozen=True)
class _Exact:
    meaning: str
    fix: str
    source: str


@dataclass(frozen=True)
class Family:
    """One code family of the table (fields documented in ``ascend_codes.yaml``)."""

    id: str
    pattern: str  # context + (?P<code>match), as compiled into the alternation
    precheck: str  # what a line must contain to be worth the full match (default: match)
    component: str
    meaning: str
    fix: str
    source: str
    codes: dict[str, _Exact]

    def hit(self, code: str) -> CodeHit:
        exact = self.codes.get(code)
        if exact is None:
            return CodeHit(
                self.id, code, self.component, self.meaning, self.fix, self.source, False
            )
        return CodeHit(self.id, code, self.component, exact.meaning, exact.fix, exact.source, True)


@dataclass(frozen=True)
class CodeTable:
    """The parsed table: families in priority order and their single compiled alternation."""

    families: tuple[Family, ...]
    regex: re.Pattern[str]  # group f{i} wraps family i, group c{i} is its code
    precheck: re.Pattern[str]  # every family's precheck in one alternation, without contexts

    def find(self, text: str) -> list[CodeHit]:
        """All codes in ``text``: exact hits first, then family order, then position."""
        if self.precheck.search(text) is None:  # most lines stop here
            return []
        found: list[tuple[bool, int, int, CodeHit]] = []
        seen: set[tuple[str, str]] = set()
        for m in self.regex.finditer(text):
            i = int((m.lastgroup or "f0")[1:])
            fam = self.families[i]
            code = m.group(f"c{i}")
            if (fam.id, code) in seen:
                continue
            seen.add((fam.id, code))
            h = fam.hit(code)
            found.append((not h.exact, i, m.start(), h))
        found.sort(key=lambda t: t[:3])
        return [t[3] for t in found]


# ----------------------------------------------------------------------------- loading


def _text(loc: Located) -> str:
    return " ".join(scalar(loc, (str,), CodeTableError).split())


def _regex(loc: Located, what: str) -> str:
    pattern = scalar(loc, (str,), CodeTableError)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise loc.error(f"bad {what} regex: {exc}", CodeTableError) from None
    if rx.groups:
        raise loc.error(f"the {what} regex must have no groups (use (?:...))", CodeTableError)
    return pattern


def _parse_family(loc: Located, contexts: dict[str, str]) -> tuple[Family, Located]:
    given = mapping(loc, CodeTableError, allowed=_FAMILY_KEYS)
    for key in _FAMILY_REQUIRED:
        if key not in given:
            raise loc.error(f"has no '{key}'", CodeTableError)
    ctx_name = scalar(given["context"], (str,), CodeTableError)
    if ctx_name not in contexts:
        raise given["context"].error(
            f"must be one of {', '.join(contexts)}; got {ctx_name!r}", CodeTableError
        )
    match = _regex(given["match"], "match")
    precheck = _regex(given["precheck"], "precheck") if "precheck" in given else match
    full_match = re.compile(match)
    fam_fix, fam_source = _text(given["fix"]), _text(given["source"])
    codes: dict[str, _Exact] = {}
    for item in sequence_items(given["codes"], CodeTableError) if "codes" in given else ():
        c = mapping(item, CodeTableError, allowed=_CODE_KEYS)
        if "code" not in c or "meaning" not in c:
            raise item.error("needs code and meaning", CodeTableError)
        code = scalar(c["code"], (str,), CodeTableError)
        if not full_match.fullmatch(code):
            raise c["code"].error(
                f"{code!r} is not a code of this family (match {match!r})", CodeTableError
            )
        if code in codes:
            raise c["code"].error("is listed twice in this family", CodeTableError)
        codes[code] = _Exact(
            _text(c["meaning"]),
            _text(c["fix"]) if "fix" in c else fam_fix,
            _text(c["source"]) if "source" in c else fam_source,
        )
    family = Family(
        id=scalar(given["id"], (str,), CodeTableError),
        pattern=f"{contexts[ctx_name]}(?P<code>{match})(?!\\d)",
        precheck=precheck,
        component=_text(given["component"]),
        meaning=_text(given["meaning"]),
        fix=fam_fix,
        source=fam_source,
        codes=codes,
    )
    return family, given["id"]


def parse_table(root_loc: Located) -> CodeTable:
    """Validate a composed table (``file:line`` errors) and compile its alternation."""
    root = mapping(root_loc, CodeTableError, allowed=("contexts", "families"))
    for key in ("contexts", "families"):
        if key not in root:
            raise root_loc.error(f"has no '{key}'", CodeTableError)
    contexts = {
        name: _regex(loc, f"context '{name}'")
        for name, loc in mapping(root["contexts"], CodeTableError).items()
    }
    families: list[Family] = []
    for loc in sequence_items(root["families"], CodeTableError):
        fam, id_loc = _parse_family(loc, contexts)
        if any(f.id == fam.id for f in families):
            raise id_loc.error("is used by an earlier family", CodeTableError)
        families.append(fam)
    alternation = "|".join(
        f"(?P<f{i}>{f.pattern.replace('(?P<code>', f'(?P<c{i}>')})" for i, f in enumerate(families)
    )
    precheck = "|".join(f"(?:{f.precheck})" for f in families)
    return CodeTable(tuple(families), re.compile(alternation), re.compile(precheck))


def load_table(path: Path) -> CodeTable:
    """Load a code table from ``path`` (a test's broken copy, a user's override)."""
    return parse_table(compose_file(path, CodeTableError))


@cache
def load_codes() -> CodeTable:
    """The packaged table, parsed once on first use."""
    text = resources.files("mmops.diagnose").joinpath("ascend_codes.yaml").read_text("utf-8")
    return parse_table(compose_text(text, TABLE, CodeTableError))


# ----------------------------------------------------------------------------- public API


def find_codes(text: str) -> list[CodeHit]:
    """All Ascend error codes in a line or block, most specific first (exact before family)."""
    return load_codes().find(text)


def explain_with_line(lines: Iterable[str]) -> CodeEvidence | None:
    """The most telling code in a log and its line: an exact code over a family match, the
    higher family (table order) over a lower one, and the earliest line among equals."""
    best: tuple[tuple[bool, int, int], CodeEvidence] | None = None
    table = load_codes()
    rank = {f.id: i for i, f in enumerate(table.families)}
    for index, line in enumerate(lines):
        hits = table.find(line)
        if not hits:
            continue
        hit = hits[0]
        key = (not hit.exact, rank[hit.family], index)
        if best is None or key < best[0]:
            best = (key, CodeEvidence(hit, index, line))
    return best[1] if best is not None else None


def explain(lines: Iterable[str]) -> CodeHit | None:
    """The most telling Ascend error code in a log (see ``explain_with_line``), or None."""
    evidence = explain_with_line(lines)
    return evidence.hit if evidence is not None else None
