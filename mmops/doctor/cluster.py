"""Checks on the Ray cluster a launch with ``--distributed-executor-backend ray`` joins.

They run only for such a launch (any other leaves them out of its report, and imports nothing
of mmops.cluster): the first one to run probes the cluster once (Context.cluster, the node
probe in vLLM's interpreter), and each reports its part of mmops.cluster.checks over it.
"""

from __future__ import annotations

from typing import Any

from mmops.doctor.core import CheckResult, Context, check, result
from mmops.launch.spec import LaunchSpec

APPLIES_TO = "--distributed-executor-backend ray"


def is_ray_launch(spec: LaunchSpec) -> bool:
    return str(spec.get("distributed-executor-backend") or "").lower() == "ray"


def _verdicts(ctx: Context) -> dict[str, Any]:
    """Every cluster check's verdict, computed once per doctor run."""
    cached = ctx.__dict__.get("_cluster_verdicts")
    if cached is None:
        from mmops.cluster import checks

        want = checks.Want(
            tp=ctx.spec.tp,
            pp=ctx.spec.pp,
            vendor=ctx.vendor if ctx.vendor in checks.DEVICE_KEYS else None,
            model=_model_path(ctx),
            driver_env=ctx.env,
            timeout_s=ctx.ray_timeout,
        )
        cached = {v.check: v for v in checks.run_all(ctx.cluster, want)}
        ctx.__dict__["_cluster_verdicts"] = cached
    return cached


def _model_path(ctx: Context) -> str | None:
    import os

    return os.path.abspath(ctx.spec.model) if ctx.spec.model else None


def _report(ctx: Context, cid: str) -> CheckResult:
    v = _verdicts(ctx)[cid]
    data: dict[str, Any] = {}
    if v.nodes:
        data["nodes"] = v.nodes  # the nodes the findings name, worst first
    if cid == "cluster.ray":
        rep = ctx.cluster
        data.update(address=rep.address, python=rep.python, ray_version=rep.ray_version)
        if rep.error_kind:
            data["error_kind"] = rep.error_kind
    return result(cid, v.status, v.summary, v.detail, v.fix, **data)


def _ray_check(cid: str, title: str) -> None:
    @check(cid, title, applies=is_ray_launch, applies_to=APPLIES_TO)
    def _fn(ctx: Context) -> CheckResult:
        return _report(ctx, cid)


_ray_check("cluster.ray", "Ray installed and its head reachable")
_ray_check("cluster.nodes", "Ray nodes alive and answering")
_ray_check("cluster.devices", "Device resources for TP x PP across nodes")
_ray_check("cluster.versions", "Same versions on every node")
_ray_check("cluster.model", "Model directory on every node, same fingerprint")
_ray_check("cluster.network", "Interface variables name real interfaces")
