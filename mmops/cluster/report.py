"""What the node probe saw, as typed records: the cluster, its nodes, and each node's facts.

Built from the one JSON document mmops/cluster/node_probe.py prints (``ClusterReport.from_json``);
the checks (mmops/cluster/checks.py) read only these records, so they are tested on recorded
documents without Ray.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from mmops.cluster.status import RayStatus, StatusParseError, parse_status

HEAD_RESOURCE = "node:__internal_head__"


class ProbeOutputError(ValueError):
    """The probe's output is not the document it should print."""


@dataclass(frozen=True)
class ModelCopy:
    """A node's copy of the model directory: present or not, and its fingerprint."""

    path: str
    exists: bool
    fingerprint: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCopy:
        return cls(
            path=str(d.get("path", "")),
            exists=bool(d.get("exists")),
            fingerprint=d.get("fingerprint"),
            files=dict(d.get("files") or {}),
            missing=tuple(d.get("missing") or ()),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class NodeFacts:
    """What a task on the node reported about its host and python."""

    hostname: str | None = None
    python: str | None = None  # the interpreter the node's Ray workers run
    python_version: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)
    cann: str | None = None
    drivers: dict[str, str] = field(default_factory=dict)  # "ascend" / "nvidia" -> version
    devices: dict[str, int] = field(default_factory=dict)  # "davinci" / "nvidia" -> files
    model: ModelCopy | None = None
    env: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, tuple[str, ...]] = field(default_factory=dict)
    interfaces_from: str | None = None
    errors: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeFacts:
        py = d.get("python") or {}
        model = d.get("model")
        return cls(
            hostname=d.get("hostname"),
            python=py.get("executable"),
            python_version=py.get("version"),
            packages=dict(d.get("packages") or {}),
            cann=(d.get("cann") or {}).get("version"),
            drivers=dict(d.get("drivers") or {}),
            devices={k: int(v) for k, v in (d.get("devices") or {}).items()},
            model=ModelCopy.from_dict(model) if isinstance(model, dict) else None,
            env={str(k): str(v) for k, v in (d.get("env") or {}).items()},
            interfaces={k: tuple(v or ()) for k, v in (d.get("interfaces") or {}).items()},
            interfaces_from=d.get("interfaces_from"),
            errors=tuple(d.get("errors") or ()),
        )


@dataclass(frozen=True)
class Node:
    """One Ray node as the GCS knows it, with what its task reported (None if it did not)."""

    node_id: str
    alive: bool
    ip: str | None
    hostname: str | None = None
    is_head: bool = False
    is_driver: bool = False
    resources: dict[str, float] = field(default_factory=dict)
    available: dict[str, float] | None = None
    facts: NodeFacts | None = None
    error: str | None = None  # why the task gave no facts
    death: str | None = None  # why the GCS marked it dead

    @property
    def label(self) -> str:
        """How findings name the node: role, address and the start of its Ray node id."""
        role = "head" if self.is_head else "node"
        return f"{role} {self.ip or self.hostname or '?'} ({self.node_id[:8]})"

    def count(self, resource: str) -> float:
        return float(self.resources.get(resource, 0.0))


@dataclass(frozen=True)
class ClusterReport:
    """The node probe's whole answer."""

    address: str
    gcs_address: str | None = None  # what the address resolved to ("auto" -> HOST:PORT)
    python: str | None = None
    ray_version: str | None = None
    error_kind: str | None = None  # no-ray, unreachable, timeout, ray-error
    error: str | None = None
    nodes: tuple[Node, ...] = ()
    ray_status: RayStatus | None = None
    ray_status_text: str | None = None
    ray_status_error: str | None = None
    elapsed_s: float | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    @property
    def dead(self) -> list[Node]:
        return [n for n in self.nodes if not n.alive]

    @property
    def driver(self) -> Node | None:
        return next((n for n in self.nodes if n.is_driver), None)

    @property
    def answered(self) -> list[Node]:
        """Alive nodes whose task reported facts."""
        return [n for n in self.alive if n.facts is not None]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterReport:
        if d.get("probe") != "mmops-ray-node-probe":
            raise ProbeOutputError("not a node-probe document (no 'probe' key)")
        err = d.get("error") or {}
        driver = d.get("driver_node_id")
        nodes = []
        for n in d.get("nodes") or []:
            resources = {str(k): float(v) for k, v in (n.get("resources") or {}).items()}
            avail = n.get("available")
            facts = n.get("facts")
            nodes.append(
                Node(
                    node_id=str(n.get("node_id") or "?"),
                    alive=bool(n.get("alive")),
                    ip=n.get("ip"),
                    hostname=n.get("hostname"),
                    is_head=bool(n.get("is_head")) or HEAD_RESOURCE in resources,
                    is_driver=driver is not None and n.get("node_id") == driver,
                    resources=resources,
                    available={str(k): float(v) for k, v in avail.items()}
                    if isinstance(avail, dict)
                    else None,
                    facts=NodeFacts.from_dict(facts) if isinstance(facts, dict) else None,
                    error=n.get("error"),
                    death=n.get("death") or None,
                )
            )
        nodes.sort(key=_node_order)
        text = d.get("ray_status")
        status, status_error = None, d.get("ray_status_error")
        if text:
            try:
                status = parse_status(text)
            except StatusParseError as exc:
                status_error = str(exc)
        return cls(
            address=str(d.get("address") or "auto"),
            gcs_address=d.get("gcs_address"),
            python=d.get("python"),
            ray_version=d.get("ray_version"),
            error_kind=err.get("kind"),
            error=err.get("message"),
            nodes=tuple(nodes),
            ray_status=status,
            ray_status_text=text,
            ray_status_error=status_error,
            elapsed_s=d.get("elapsed_s"),
            timings_s=dict(d.get("timings_s") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterReport:
        """The report from the probe's stdout: its last line that is a JSON object (Ray may
        print its own lines before it), or the whole text when it is one (a recording)."""
        whole = text.strip()
        if whole.startswith("{"):
            try:
                data = json.loads(whole)
            except ValueError:
                pass
            else:
                if isinstance(data, dict):
                    return cls.from_dict(data)
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise ProbeOutputError(f"the probe's JSON does not parse: {exc}") from None
                if isinstance(data, dict):
                    return cls.from_dict(data)
        raise ProbeOutputError("the probe printed no JSON document")


def _node_order(node: Node) -> tuple[bool, bool, int, str]:
    """Head first, then the driver, then by address: findings list nodes in a stable order."""
    try:
        ip = int(ipaddress.ip_address(node.ip or ""))
    except ValueError:
        ip = 0
    return (not node.is_head, not node.is_driver, ip, node.node_id)
