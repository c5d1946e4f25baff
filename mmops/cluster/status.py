"""Read the text `ray status` prints: nodes by state, resources used of total, pending demands.

The layout, as Ray 2.x prints it (autoscaler/_private/util.py ``format_info_string``; recorded
outputs in tests/fixtures/ray/):

    ======== Autoscaler status: 2026-12-04 11:35:54.516929 ========
    Node status
    ---------------------------------------------------------------
    Active:
     1 node_72f460b0...                  (or a node type: " 2 ray.worker.gpu")
    Idle:                                (autoscaler v2 only)
    Pending:
     (no pending nodes)                  (or " 10.0.0.7: ray.worker.gpu, setting-up")
    Recent failures:
     (no failures)                       (or " node_ab12...: NodeTerminated (ip: 10.0.0.7)")

    Resources
    ---------------------------------------------------------------
    Total Usage:                         (older Rays: "Usage:")
     0.0/18.0 NPU (0.0 used of 4.0 reserved in placement groups)
     0B/46.22GiB memory
    From request_resources:              (older: "Total Constraints:")
     (none)
    Pending Demands:                     (older: "Demands:" / "Total Demands:")
     {'NPU': 1.0} * 20 (PACK): 1+ pending placement groups

and, with ``ray status -v``, one block per node: ``Node: <id> (node_<id>)`` then `` Usage:``.
Headings vary between Ray releases, so sections are found by name, and a line this parser does
not understand is kept in ``unparsed`` rather than dropped or fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
_UNITS.update({"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12})
_NUM = r"(\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
_USAGE_RE = re.compile(
    rf"^{_NUM}\s*([KMGTP]?i?B)?\s*/\s*{_NUM}\s*([KMGTP]?i?B)?\s+(\S+)(?:\s+\((.*)\))?$"
)
_RESERVED_RE = re.compile(rf"{_NUM} used of {_NUM} reserved in placement groups")
_GROUP_RE = re.compile(r"^(\d+)\s+(\S.*)$")
_NODE_RE = re.compile(r"^Node:\s+(\S+)(?:\s+\((.*)\))?$")
_EMPTY = re.compile(r"^\((?:none|no .*)\)$")

# Section headings -> the field they fill; several Ray releases, one meaning.
_SECTIONS = {
    "active": "active",
    "idle": "idle",
    "pending": "pending",
    "recent failures": "failures",
    "usage": "usage",
    "total usage": "usage",
    "total constraints": "constraints",
    "from request_resources": "constraints",
    "demands": "demands",
    "total demands": "demands",
    "pending demands": "demands",
    "activity": "activity",  # `ray status -v` per node: what runs there (kept out of the way)
}


class StatusParseError(ValueError):
    """The text is not `ray status` output."""


@dataclass(frozen=True)
class Usage:
    """One resource: used of total. Memory amounts are in bytes."""

    name: str
    used: float
    total: float
    reserved: float | None = None  # held by placement groups (of which reserved_used is used)
    reserved_used: float | None = None

    @property
    def free(self) -> float:
        return self.total - self.used


@dataclass(frozen=True)
class NodeGroup:
    """A line of the Active / Idle lists: how many nodes of this name or type."""

    count: int
    name: str


@dataclass(frozen=True)
class RayStatus:
    when: str | None = None
    active: tuple[NodeGroup, ...] = ()
    idle: tuple[NodeGroup, ...] = ()
    pending: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    usage: dict[str, Usage] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    demands: tuple[str, ...] = ()
    per_node: dict[str, dict[str, Usage]] = field(default_factory=dict)  # `ray status -v`
    unparsed: tuple[str, ...] = ()

    @property
    def nodes_active(self) -> int:
        return sum(g.count for g in self.active) + sum(g.count for g in self.idle)

    def total(self, resource: str) -> float:
        u = self.usage.get(resource)
        return u.total if u is not None else 0.0

    def used(self, resource: str) -> float:
        u = self.usage.get(resource)
        return u.used if u is not None else 0.0

    @property
    def pending_placement_groups(self) -> tuple[str, ...]:
        """Demand lines that are placement groups still waiting for resources."""
        return tuple(d for d in self.demands if "pending placement group" in d)


def _amount(number: str, unit: str | None) -> float:
    return float(number) * _UNITS.get(unit or "", 1)


def parse_usage_line(line: str) -> Usage | None:
    """``0.0/18.0 NPU (0.0 used of 4.0 reserved in placement groups)`` -> Usage; None if not one."""
    m = _USAGE_RE.match(line.strip())
    if not m:
        return None
    used_n, used_u, total_n, total_u, name, note = m.groups()
    reserved = reserved_used = None
    if note:
        r = _RESERVED_RE.search(note)
        if r:
            reserved_used, reserved = float(r.group(1)), float(r.group(2))
    return Usage(name, _amount(used_n, used_u), _amount(total_n, total_u), reserved, reserved_used)


def parse_status(text: str) -> RayStatus:
    """Parse `ray status` (or `ray status -v`) output. Raises StatusParseError when the text
    has neither a node nor a resource section (an error message, say)."""
    lines = text.splitlines()
    when = None
    found_heading = False
    section: str | None = None
    node: str | None = None
    lists: dict[str, list[str]] = {
        k: [] for k in ("pending", "failures", "constraints", "demands", "activity")
    }
    groups: dict[str, list[NodeGroup]] = {"active": [], "idle": []}
    usage: dict[str, Usage] = {}
    per_node: dict[str, dict[str, Usage]] = {}
    unparsed: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or set(line) == {"-"}:
            continue
        m = re.match(r"^=+\s*Autoscaler status:\s*(.*?)\s*=+$", line)
        if m:
            when, found_heading = m.group(1), True
            continue
        if line in ("Node status", "Resources"):
            found_heading, section, node = True, None, None
            continue
        m = _NODE_RE.match(line)
        if m and not raw.startswith(" "):
            node, section = m.group(1), None
            per_node[node] = {}
            continue
        if line.endswith(":") and line[:-1].lower() in _SECTIONS:
            section = _SECTIONS[line[:-1].lower()]
            found_heading = True
            continue
        if section is None or _EMPTY.match(line):
            if section is None and not re.match(r"^[\w ]+ time: ", line):
                unparsed.append(line)  # "GCS request time: ..." of -v is noise, not news
            continue
        if section == "usage":
            u = parse_usage_line(line)
            if u is None:
                unparsed.append(line)
            elif node is not None:
                per_node[node][u.name] = u
            else:
                usage[u.name] = u
        elif section in groups:
            g = _GROUP_RE.match(line)
            if g:
                groups[section].append(NodeGroup(int(g.group(1)), g.group(2)))
            else:
                unparsed.append(line)
        else:
            lists[section].append(line)
    if not found_heading:
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        raise StatusParseError(f"not `ray status` output: {first[:120]!r}")
    return RayStatus(
        when=when,
        active=tuple(groups["active"]),
        idle=tuple(groups["idle"]),
        pending=tuple(lists["pending"]),
        failures=tuple(lists["failures"]),
        usage=usage,
        constraints=tuple(lists["constraints"]),
        demands=tuple(lists["demands"]),
        per_node=per_node,
        unparsed=tuple(unparsed),
    )
