"""The helper `mmops serve` keeps running, in vLLM's interpreter, to watch a Ray cluster's nodes.

    python -u node_watch.py --address HOST:PORT|auto [--timeout S]

It is a file of the mmops package but imports nothing from mmops and only the standard library
at the top (as node_probe.py): it runs where Ray is, mmops never imports Ray. Protocol, one JSON
object per line on stdout:

- at start, ``{"watch": "mmops-ray-node-watch", "ok": true, "ready": true, ...}`` once connected,
  else ``{"ok": false, "kind": "no-ray" | "unreachable" | "ray-error", "error": ...}`` and exit;
- for each ``poll`` line read on stdin, one document: ``{"ok": true, "nodes": [...],
  "elapsed_ms": ...}`` (every node the GCS knows, alive or dead, with its address, id and why
  it died), or ``{"ok": false, ...}`` when the GCS did not answer within --timeout;
- end of stdin (mmops closed it, or died): exit 0. It never outlives mmops: the reaper it runs
  under (mmops/serve/reaper.py) ends it too.

The read is the cheapest one Ray has: one ``GetAllNodeInfo`` RPC to the GCS through Ray's own
``GcsClient`` (what ``ray.nodes()`` reads under a driver), with no driver registered, no job and
no worker started anywhere. Measured on Ray 2.60 (docs/multinode.md): about 0.6 ms and 0.3 ms of
CPU per poll, 80 MB resident, 1.7 s of CPU once for ``import ray``. A Ray without that client
falls back to ``ray.init`` + ``ray.nodes()`` (a driver, hence a job entry, for the server's life).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

WATCH = "mmops-ray-node-watch"
EXIT_NO_RAY = 3
EXIT_UNREACHABLE = 4
EXIT_RAY_ERROR = 1


def say(**doc: Any) -> None:
    sys.stdout.write(json.dumps({"watch": WATCH, **doc}, sort_keys=True) + "\n")
    sys.stdout.flush()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: " + (text[:300] + ("..." if len(text) > 300 else ""))


def _death(info: Any) -> str | None:
    try:
        death = info.death_info
        reason = death.DESCRIPTOR.fields_by_name["reason"].enum_type.values_by_number
        name = reason[death.reason].name if death.reason in reason else None
        message = death.reason_message or ""
    except Exception:
        return None
    parts = [p for p in (name if name != "UNSPECIFIED" else None, message) if p]
    return ": ".join(parts) or None


def _tcp_check(address: str, timeout: float) -> None:
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConnectionError(f"the Ray GCS at {address} does not answer ({why})") from None


def gcs_reader(address: str, timeout: float) -> tuple[Callable[[], list[dict[str, Any]]], str]:
    """A function reading every node from the GCS, and the GCS address it reads from."""
    from ray._private.services import (  # type: ignore[import-not-found,unused-ignore]
        canonicalize_bootstrap_address,
    )
    from ray._raylet import GcsClient  # type: ignore[import-not-found,unused-ignore]

    resolved = canonicalize_bootstrap_address(address)
    if not resolved:
        raise ConnectionError(f"no Ray cluster found at {address}")
    # A GCS that is not there makes GcsClient wait ~35 s; a refused connect says it at once.
    _tcp_check(resolved, timeout)
    client = GcsClient(address=resolved)

    def read() -> list[dict[str, Any]]:
        nodes = []
        for node_id, info in client.get_all_node_info(timeout=timeout).items():
            alive = int(info.state) == 0  # GcsNodeInfo.GcsNodeState.ALIVE
            nodes.append(
                {
                    "node_id": node_id.hex() if hasattr(node_id, "hex") else str(node_id),
                    "alive": alive,
                    "ip": info.node_manager_address or None,
                    "hostname": info.node_manager_hostname or None,
                    "is_head": bool(getattr(info, "is_head_node", False)),
                    "death": None if alive else _death(info),
                }
            )
        return nodes

    read()  # the first answer proves the GCS is there
    return read, resolved


def driver_reader(address: str) -> tuple[Callable[[], list[dict[str, Any]]], str]:
    """The fallback: a Ray driver and ``ray.nodes()``."""
    import logging

    import ray  # type: ignore[import-not-found,unused-ignore]

    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)

    def read() -> list[dict[str, Any]]:
        return [
            {
                "node_id": n.get("NodeID"),
                "alive": bool(n.get("Alive")),
                "ip": n.get("NodeManagerAddress"),
                "hostname": n.get("NodeManagerHostname"),
                "is_head": "node:__internal_head__" in (n.get("Resources") or {}),
                "death": None if n.get("Alive") else (n.get("DeathReasonMessage") or None),
            }
            for n in ray.nodes()
        ]

    return read, address


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="node_watch.py")
    parser.add_argument("--address", default="auto")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        say(ok=False, kind="no-ray", error=f"Ray is not importable in {sys.executable}: {exc}")
        return EXIT_NO_RAY
    if args.address.startswith("ray://"):
        say(ok=False, kind="ray-error", error="a Ray Client address (ray://) has no GCS to read")
        return EXIT_RAY_ERROR
    how = "gcs"
    try:
        try:
            read, gcs = gcs_reader(args.address, args.timeout)
        except (ImportError, AttributeError, TypeError):  # another Ray: no such client
            read, gcs = driver_reader(args.address)
            how = "driver"
    except ConnectionError as exc:
        say(ok=False, kind="unreachable", error=_one_line(exc))
        return EXIT_UNREACHABLE
    except Exception as exc:  # Ray raises many kinds; each is one line
        kind = "unreachable" if "timed out" in str(exc).lower() else "ray-error"
        say(ok=False, kind=kind, error=_one_line(exc))
        return EXIT_RAY_ERROR
    say(
        ok=True,
        ready=True,
        gcs_address=gcs,
        reader=how,
        ray_version=getattr(ray, "__version__", None),
        start_s=round(time.monotonic() - t0, 3),
    )
    for line in sys.stdin:
        if line.strip() != "poll":
            continue
        t = time.monotonic()
        try:
            nodes = read()
        except Exception as exc:
            kind = "unreachable" if "unavailable" in str(exc).lower() else "ray-error"
            say(ok=False, kind=kind, error=_one_line(exc))
            continue
        say(ok=True, nodes=nodes, elapsed_ms=round((time.monotonic() - t) * 1000, 3))
    return 0


if __name__ == "__main__":
    # Run as a file, this folder heads sys.path: nothing here may shadow what Ray imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.exit(main(sys.argv[1:]))
