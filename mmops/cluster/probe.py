"""Run the node probe in the vLLM interpreter and read its answer.

mmops never imports Ray: ``node_probe.py`` runs as a child of the interpreter that will run vLLM
(``--python`` / ``vllm_python:``), through the same injectable CommandRunner as npu-smi and
nvidia-smi, so tests feed it recorded documents. The child bounds itself with ``--timeout``;
the runner's own limit, a little longer, catches a child that could not even do that.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmops.cluster import node_probe
from mmops.cluster.report import ClusterReport, ProbeOutputError
from mmops.errors import UsageError
from mmops.platform.runner import CommandRunner, system_runner

PROGRAM = Path(node_probe.__file__).resolve()
DEFAULT_TIMEOUT_S = 30.0
GRACE_S = 15.0  # python + `import ray` before the child's own clock starts, and its exit


def default_address(env: dict[str, str] | None = None) -> str:
    """Where vLLM's ``ray.init()`` would connect: RAY_ADDRESS, else ``auto`` (the cluster
    started on this machine)."""
    env = dict(os.environ) if env is None else env
    return env.get("RAY_ADDRESS") or "auto"


def check_address(text: str, flag: str = "--ray-address") -> str:
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` (Ray Client), port 1-65535; anything else
    is a UsageError naming ``flag``."""
    value = text.strip()
    if value == "auto":
        return value
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    expect = "expected auto, HOST:PORT (the head's GCS port, 6379 by default) or ray://HOST:PORT"
    if scheme not in ("", "ray"):
        raise UsageError(f"{flag} {text}: unknown scheme {scheme}://; {expect}")
    host, colon, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or any(c.isspace() or c in "/@?#" for c in host):
        raise UsageError(f"{flag} {text}: {expect}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{flag} {text}: port must be a number from 1 to 65535; {expect}")
    return value


def probe_argv(python: str, address: str, model: str | None, timeout_s: float) -> list[str]:
    argv = [python, "-u", str(PROGRAM), "--address", address, "--timeout", f"{timeout_s:g}"]
    if model:
        argv += ["--model", model]
    return argv


def probe_cluster(
    python: str,
    address: str,
    model: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    runner: CommandRunner = system_runner,
) -> ClusterReport:
    """What the cluster at ``address`` looks like from ``python``. Never raises for a cluster
    that is down or a python without Ray: the report's ``error_kind`` says so."""
    res = runner(probe_argv(python, address, model, timeout_s), timeout_s + GRACE_S)
    if res.error is not None and not res.stdout.strip():
        return ClusterReport(
            address=address,
            python=python,
            error_kind="timeout" if "timed out" in res.error else "probe",
            error=f"could not run the node probe with {python}: {res.error}",
        )
    try:
        return ClusterReport.from_json(res.stdout)
    except ProbeOutputError as exc:
        tail = [ln for ln in res.stderr.strip().splitlines() if ln.strip()][-1:]
        said = f"; it said: {tail[0][:300]}" if tail else ""
        return ClusterReport(
            address=address,
            python=python,
            error_kind="probe",
            error=f"the node probe (exit {res.returncode}) gave no answer: {exc}{said}",
        )
