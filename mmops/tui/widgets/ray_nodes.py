"""Devices of a Ray launch: one panel per Ray node (address, alive or dead, its NPU/GPU as Ray
counts them, versions and model copy that differ from the driver's node), from the cluster
report (mmops.cluster.view). The app probes in a worker thread, on `d` and every few minutes;
this widget only draws what it is given."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from mmops.cluster.view import ClusterView, NodeRow


def node_text(row: NodeRow) -> Text:
    """The body of one node's panel."""
    out = Text()
    out.append("● alive" if row.alive else "✗ dead", "green" if row.alive else "bold red")
    if row.driver:
        out.append("  driver (vllm serve, rank 0)", "bold")
    if row.hostname:
        out.append(f"  host {row.hostname}", "dim")
    out.append("\n")
    for d in row.devices:
        used = "?" if d.used is None else f"{d.used:g}"
        out.append(f"{d.resource} {used}/{d.total:g} used")
        if d.used is not None and d.used >= d.total:
            out.append("  all taken", "yellow")
        out.append("\n")
    if not row.devices and row.alive:
        out.append("no NPU or GPU registered with Ray\n", "yellow")
    if row.problem:
        out.append(f"{row.problem}\n", "red")
    for line in row.drift:
        out.append(f"! {line}\n", "yellow")
    if row.model:
        out.append(f"! {row.model}\n", "yellow")
    out.rstrip()
    return out


def flagged(row: NodeRow) -> bool:
    return bool(row.drift or row.model or row.problem)


class RayNodesPanel(Vertical):
    DEFAULT_CSS = """
    RayNodesPanel { height: auto; }
    RayNodesPanel > #ray-title { height: auto; }
    RayNodesPanel > .ray-node { border: round $success; height: auto; padding: 0 1; }
    RayNodesPanel > .ray-node.-flagged { border: round $warning; }
    RayNodesPanel > .ray-node.-dead { border: round $error; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Ray cluster: probing the nodes...", id="ray-title")

    def show(self, view: ClusterView | None, error: str | None, when: str | None) -> None:
        """Draw a probe's result (``view``), or why there is none (``error``)."""
        head = Text()
        if view is not None:
            head.append(view.title, "bold")
        else:
            head.append("Ray cluster", "bold")
        extra = [*(view.notes if view else ()), f"at {when}" if when else ""]
        extra = [e for e in extra if e]
        if extra:
            head.append(f"  ({', '.join(extra)}; d: probe again)", "dim")
        problem = error or (view.error if view else None)
        if problem:
            head.append(f"\n{problem}", "bold red")
        self.query_one("#ray-title", Static).update(head)
        # Both are queued: the old panels go before the new ones are laid out.
        self.remove_children(".ray-node")
        panels = []
        for row in view.rows if view else ():
            panel = Static(node_text(row), classes="ray-node")
            panel.border_title = row.label
            panel.set_class(not row.alive, "-dead")
            panel.set_class(row.alive and flagged(row), "-flagged")
            panels.append(panel)
        if panels:
            self.mount_all(panels)
