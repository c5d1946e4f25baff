"""Past one node: what a vLLM launch on a Ray cluster will find there.

- ``status``: read `ray status` text (nodes, resources used of total, pending demands);
- ``node_probe``: the program run in vLLM's interpreter that connects to the cluster and has
  one task on each alive node report its versions, model copy, interfaces and devices;
- ``probe``: runs that program through the injectable command runner;
- ``report``: its answer as typed records;
- ``interfaces``: what HCCL/NCCL/Gloo/TensorPipe interface variables select on a node;
- ``checks``: pure checks over a report for a launch (TP x PP, versions, model, network);
- ``view``: a report as the TUI's Devices tab shows it (one row per node, what differs);
- ``runtime_env``: what the plan adds so the launch's environment reaches the other nodes;
- ``node_watch``: the helper `mmops serve` keeps in vLLM's interpreter to read the GCS's node
  table while the server runs; ``watch``: its answers, and which nodes died since READY.

mmops never imports Ray, vLLM or torch: only ``node_probe`` and ``node_watch`` run Ray, in the
other interpreter.
"""

from mmops.cluster.checks import CHECK_IDS, Finding, Verdict, Want, run_all
from mmops.cluster.probe import default_address, probe_cluster
from mmops.cluster.report import ClusterReport, ModelCopy, Node, NodeFacts
from mmops.cluster.status import RayStatus, StatusParseError, Usage, parse_status

__all__ = [
    "CHECK_IDS",
    "ClusterReport",
    "Finding",
    "ModelCopy",
    "Node",
    "NodeFacts",
    "RayStatus",
    "StatusParseError",
    "Usage",
    "Verdict",
    "Want",
    "default_address",
    "parse_status",
    "probe_cluster",
    "run_all",
]
