"""Which network interfaces the collective libraries' variables select, on a given node.

- ``NCCL_SOCKET_IFNAME`` and ``HCCL_SOCKET_IFNAME``: comma-separated name prefixes; ``=`` before
  the list makes them exact names, ``^`` excludes instead of selects (``^docker,lo``,
  ``^=eth0``). NCCL documents this syntax (docs.nvidia.com/deeplearning/nccl, Environment
  Variables); CANN's HCCL_SOCKET_IFNAME takes the same forms.
- ``GLOO_SOCKET_IFNAME`` (torch.distributed's Gloo): comma-separated exact names, each must exist.
- ``TP_SOCKET_IFNAME`` (TensorPipe, torch RPC): one exact name.
- ``HCCL_IF_IP``: an IP address that must be one of the node's own.

Which value a Ray worker sees: vLLM copies some of the driver's variables to every worker
(vllm/ray/ray_env.py, vLLM 0.32: the ``NCCL_`` prefix among others, plus what
``VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY`` / ``VLLM_RAY_EXTRA_ENV_VARS_TO_COPY`` add); the rest
a worker inherits from the environment its node's ``ray start`` ran in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

PREFIX_VARS = ("HCCL_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
EXACT_VARS = ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME")
IP_VARS = ("HCCL_IF_IP",)
NETWORK_VARS = (
    "HCCL_SOCKET_IFNAME",
    "HCCL_IF_IP",
    "GLOO_SOCKET_IFNAME",
    "TP_SOCKET_IFNAME",
    "NCCL_SOCKET_IFNAME",
)
# vllm/ray/ray_env.py DEFAULT_ENV_VAR_PREFIXES (vLLM 0.32.0): copied from the driver to workers.
CARRIED_PREFIXES = (
    "VLLM_",
    "FLASH_ATTENTION_",
    "LMCACHE_",
    "NCCL_",
    "UCX_",
    "HF_",
    "HUGGING_FACE_",
)


@dataclass(frozen=True)
class Selection:
    """What one variable selects on one node. ``problem`` is None when it selects something
    that exists there."""

    var: str
    value: str
    source: str  # "driver" (copied by vLLM) or "node" (the node's own environment)
    selected: tuple[str, ...]
    problem: str | None = None


def carried(var: str, driver_env: Mapping[str, str]) -> bool:
    """Whether vLLM copies ``var`` from the driver's environment to its Ray workers."""
    prefixes = set(CARRIED_PREFIXES) | _csv(
        driver_env.get("VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY")
    )
    names = _csv(driver_env.get("VLLM_RAY_EXTRA_ENV_VARS_TO_COPY"))
    return var in names or any(var.startswith(p) for p in prefixes)


def effective(
    var: str, node_env: Mapping[str, str], driver_env: Mapping[str, str]
) -> tuple[str | None, str]:
    """(value, source) a vLLM worker on the node sees for ``var``."""
    if carried(var, driver_env) and var in driver_env:
        return driver_env[var], "driver"
    return node_env.get(var), "node"


def select(
    var: str, value: str, names: Mapping[str, tuple[str, ...]], source: str = "node"
) -> Selection:
    """Apply one variable's value to a node's interfaces (name -> addresses)."""
    have = ", ".join(sorted(names)) or "none"
    value = value.strip()
    if var in IP_VARS:
        return _select_ip(var, value, names, source)
    if var in EXACT_VARS:
        wanted = [v.strip() for v in value.split(",") if v.strip()]
        if var == "TP_SOCKET_IFNAME" and len(wanted) > 1:
            return Selection(
                var,
                value,
                source,
                (),
                f"{var}={value} names {len(wanted)} interfaces; TensorPipe takes one",
            )
        missing = [w for w in wanted if w not in names]
        if not wanted or missing:
            what = ", ".join(missing) or "nothing"
            return Selection(
                var, value, source, (), f"{var}={value}: no interface {what} here (it has: {have})"
            )
        return Selection(var, value, source, tuple(wanted))
    exclude = value.startswith("^")
    body = value[1:] if exclude else value
    exact = body.startswith("=")
    body = body[1:] if exact else body
    items = [v.strip() for v in body.split(",") if v.strip()]

    def hit(name: str) -> bool:
        return any(name == i if exact else name.startswith(i) for i in items)

    if exclude:
        chosen = tuple(n for n in sorted(names) if not hit(n) and n != "lo")
    else:
        chosen = tuple(n for n in sorted(names) if hit(n))
    if not chosen:
        how = "leaves no interface" if exclude else "matches no interface"
        return Selection(var, value, source, (), f"{var}={value} {how} here (it has: {have})")
    return Selection(var, value, source, chosen)


def _select_ip(
    var: str, value: str, names: Mapping[str, tuple[str, ...]], source: str
) -> Selection:
    try:
        want = ipaddress.ip_address(value)
    except ValueError:
        return Selection(var, value, source, (), f"{var}={value} is not an IP address")
    owners = tuple(sorted(n for n, addrs in names.items() if any(_same_ip(want, a) for a in addrs)))
    if not owners:
        return Selection(var, value, source, (), f"{var}={value} is not an address of this node")
    return Selection(var, value, source, owners)


def _same_ip(want: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%")[0]) == want
    except ValueError:
        return False


def _csv(value: str | None) -> set[str]:
    return {t.strip() for t in (value or "").split(",") if t.strip()}
