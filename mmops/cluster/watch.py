"""The Ray cluster's nodes as the supervisor watches them: one poll of the GCS's node table
(mmops/cluster/node_watch.py prints it), which nodes died since a baseline, whether a dead one
is back, and the named failure a dead node is.

The failure says what the signature table says of ``ray.node_died`` (its title, meaning and
fix, with the node's address filled in), so `mmops serve`, `mmops diagnose` and the TUI tell
the same story; the event adds the node itself (address, Ray node id, why the GCS marked it
dead).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

SIGNATURE = "ray.node_died"


@dataclass(frozen=True)
class NodeState:
    """One node of the GCS's node table."""

    node_id: str
    alive: bool
    ip: str | None = None
    hostname: str | None = None
    is_head: bool = False
    death: str | None = None  # why the GCS marked it dead

    @property
    def label(self) -> str:
        """As the doctor names nodes: ``node 10.0.0.2 (3f9c01ab)``."""
        role = "head" if self.is_head else "node"
        return f"{role} {self.ip or self.hostname or '?'} ({self.node_id[:8]})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "ip": self.ip,
            "hostname": self.hostname,
            "is_head": self.is_head,
            "alive": self.alive,
            "death": self.death,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeState:
        return cls(
            node_id=str(d.get("node_id") or "?"),
            alive=bool(d.get("alive")),
            ip=d.get("ip") or None,
            hostname=d.get("hostname") or None,
            is_head=bool(d.get("is_head")),
            death=d.get("death") or None,
        )


@dataclass(frozen=True)
class NodePoll:
    """One answer of the node watch: the node table, or why there is none."""

    nodes: tuple[NodeState, ...] = ()
    error: str | None = None
    kind: str | None = None  # no-ray | unreachable | timeout | ray-error | probe
    elapsed_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def alive(self) -> list[NodeState]:
        return [n for n in self.nodes if n.alive]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodePoll:
        if not d.get("ok"):
            return cls(error=str(d.get("error") or "no answer"), kind=d.get("kind") or "probe")
        nodes = [NodeState.from_dict(n) for n in d.get("nodes") or [] if isinstance(n, dict)]
        nodes.sort(key=_order)
        return cls(nodes=tuple(nodes), elapsed_ms=d.get("elapsed_ms"))

    @classmethod
    def from_json(cls, line: str) -> NodePoll:
        try:
            data = json.loads(line)
        except ValueError as exc:
            return cls(error=f"the node watch printed no JSON: {exc}", kind="probe")
        if not isinstance(data, dict):
            return cls(error="the node watch printed no JSON object", kind="probe")
        return cls.from_dict(data)


def _order(node: NodeState) -> tuple[bool, int, str]:
    """Head first, then by address (as the doctor lists nodes)."""
    try:
        ip = int(ipaddress.ip_address(node.ip or ""))
    except ValueError:
        ip = 0
    return (not node.is_head, ip, node.node_id)


def lost_nodes(baseline: NodePoll, now: NodePoll) -> list[NodeState]:
    """Nodes alive in ``baseline`` that are not alive in ``now`` (dead, or gone from the table),
    head first; as ``now`` reports them when it does (with why they died). Nothing when ``now``
    has no table (a poll that failed says nothing about the nodes)."""
    if not now.ok:
        return []
    by_id = {n.node_id: n for n in now.nodes}
    lost = []
    for node in baseline.alive:
        mine = by_id.get(node.node_id)
        if mine is None:
            lost.append(NodeState(node.node_id, False, node.ip, node.hostname, node.is_head,
                                  "no longer in the GCS's node table"))  # fmt: skip
        elif not mine.alive:
            lost.append(mine)
    return sorted(lost, key=_order)


def head_lost(baseline: NodePoll, now: NodePoll) -> NodeState | None:
    """The baseline's head, as a dead node, when the GCS itself stopped answering: the head's
    GCS is the node table, so a dead head shows only as a cluster that does not answer."""
    if now.ok or now.kind not in ("unreachable", "timeout"):
        return None
    head = next((n for n in baseline.alive if n.is_head), None)
    if head is None:
        return None
    return NodeState(head.node_id, False, head.ip, head.hostname, True,
                     f"the head's GCS does not answer: {now.error}")  # fmt: skip


def is_back(node: NodeState, baseline: NodePoll, now: NodePoll) -> NodeState | None:
    """The alive node that stands for ``node`` again, if any: the same node id, or a node on
    the same address (a `ray start` run again there joins with a new id); failing both, any node
    once as many are alive as at the baseline (a replacement host)."""
    if not now.ok:
        return None
    alive = now.alive
    for n in alive:
        if n.node_id == node.node_id or (node.ip and n.ip == node.ip):
            return n
    known = {n.node_id for n in baseline.alive}
    if len(alive) >= len(baseline.alive):
        fresh = [n for n in alive if n.node_id not in known]
        return fresh[0] if fresh else None
    return None


def describe(nodes: list[NodeState]) -> str:
    """``node 10.0.0.3 (3f9c01ab) is dead (reason)``, for one or several nodes."""
    parts = []
    for n in nodes:
        why = f" ({n.death})" if n.death else ""
        parts.append(f"{n.label}{why}")
    verb = "is" if len(nodes) == 1 else "are"
    return f"Ray {' and '.join(parts)} {verb} dead"
