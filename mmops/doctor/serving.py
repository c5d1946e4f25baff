"""Checks on how the server will listen and page its cache."""

from __future__ import annotations

import errno
import socket

from mmops.doctor.core import (
    CheckResult,
    Context,
    check,
    result,
)


@check("host.port", "Listen address and port")
def _port(ctx: Context) -> CheckResult:
    cid = "host.port"
    host, port = ctx.spec.host, ctx.spec.port
    if not 0 < port < 65536:
        return result(
            cid,
            "fail",
            f"--port {port} is not a TCP port",
            "",
            "Use a port between 1024 and 65535.",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = _port_holder(port)
            return result(
                cid,
                "fail",
                f"port {port} on {host} is already in use{holder}",
                "",
                f"Stop what listens there, or pass --port {port + 1}.",
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return result(
                cid,
                "fail",
                f"--host {host} is not an address of this machine",
                "",
                "Use 127.0.0.1, 0.0.0.0 or one of this host's addresses.",
            )
        if exc.errno == errno.EACCES:
            return result(
                cid, "fail", f"no permission to bind port {port}", "", "Use a port above 1023."
            )
        return result(
            cid,
            "fail",
            f"cannot bind {host}:{port}: {exc.strerror}",
            "",
            "Pick another --host/--port.",
        )
    except socket.gaierror:
        return result(
            cid,
            "fail",
            f"--host {host} does not resolve",
            "",
            "Use an IP address such as 127.0.0.1.",
        )
    if host in ("0.0.0.0", "::", ""):
        key = "--api-key" if not ctx.spec.get("api-key") else None
        return result(
            cid,
            "warn",
            f"{host}:{port} free, but binding all interfaces exposes the API to the network",
            "",
            "Bind 127.0.0.1 behind a proxy" + (f", or set {key}" if key else "") + ".",
        )
    return result(cid, "pass", f"{host}:{port} is free")


def _port_holder(port: int) -> str:
    try:
        import psutil

        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return f" (pid {c.pid} {psutil.Process(c.pid).name()})"
    except Exception:  # noqa: BLE001 - best effort: naming the holder is a nicety
        pass
    return ""


@check("args.block_size", "--block-size")
def _block_size(ctx: Context) -> CheckResult:
    cid = "args.block_size"
    bs = ctx.spec.get("block-size")
    if ctx.vendor == "ascend":
        if bs is None:
            return result(cid, "pass", "unset: vllm-ascend uses 128")
        if bs != 128:
            return result(
                cid,
                "warn",
                f"--block-size {bs} on Ascend",
                "vllm-ascend's attention kernels and prefix caching expect 128 (the reference recommends it).",
                "Use --block-size 128.",
            )
        return result(cid, "pass", "--block-size 128 (Ascend)")
    if bs is None:
        return result(cid, "pass", "unset: vLLM picks its default")
    if bs < 1 or bs & (bs - 1):
        return result(
            cid,
            "fail",
            f"--block-size {bs} is not a power of two",
            "",
            "Use 16 (GPU default) or 128 (Ascend).",
        )
    return result(cid, "pass", f"--block-size {bs}")
