"""`mmops doctor`: preflight a launch, one verdict per check."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from mmops import term
from mmops.errors import UsageError
from mmops.launch.spec import LaunchSpec, add_launch_arguments, spec_from_args

if TYPE_CHECKING:
    from mmops.doctor import DoctorReport

MARKS = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}
COLORS = {"pass": "32", "warn": "33", "fail": "31", "skip": "2"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="preflight a launch: devices, model dir, flags, memory",
        description="Check, before vLLM loads a byte, whether a launch can work and how to fix it. "
        "Any `vllm serve` flag may follow (e.g. --max-model-len 8192 --tensor-parallel-size 4).",
    )
    add_launch_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check warns")
    p.add_argument(
        "--check",
        action="append",
        metavar="ID",
        help="run only this check (repeatable; prefix ok: model)",
    )
    p.add_argument("--list-checks", action="store_true", help="list check ids and exit")
    p.add_argument(
        "--list-devices", action="store_true", help="list accelerators known for offline planning"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show detail for every check")
    add_ray_arguments(p, "check")
    p.set_defaults(func=run, accepts_vllm_flags=True)


def add_ray_arguments(p: argparse.ArgumentParser, verb: str = "join") -> None:
    """--ray-address / --ray-timeout, shared by doctor, plan, serve and tui."""
    p.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help=f"with --distributed-executor-backend ray: the Ray head to {verb} (default: "
        "RAY_ADDRESS, else auto, the cluster started on this machine)",
    )
    p.add_argument(
        "--ray-timeout",
        metavar="S",
        help="with --distributed-executor-backend ray: seconds the cluster probe may take "
        "(default 30)",
    )


def run(args: argparse.Namespace) -> int:
    from mmops import doctor

    if args.list_checks:
        for c in doctor.list_checks():
            print(f"{c.id:22} {c.title}")
        return 0
    if args.list_devices:
        from mmops.platform import known_accelerators

        for key, acc in sorted(known_accelerators().items()):
            print(f"{key:12} {acc.name:28} {acc.memory_total_mib / 1024:6.0f} GiB {acc.kind}")
        return 0
    t0 = time.perf_counter()
    spec = spec_from_args(args)
    ray = ray_options(args, spec)
    report = doctor.run_checks(spec, only=args.check, **ray)
    elapsed = time.perf_counter() - t0
    if args.json:
        out = report.to_dict()
        out["summary"]["elapsed_s"] = round(elapsed, 3)
        print(json.dumps(out, indent=2))
    else:
        print(render(report, spec, elapsed, verbose=args.verbose, color=term.use_color(sys.stdout)))
    if report.failed:
        return 2
    if args.strict and report.warned:
        return 1
    return 0


BACKENDS = ("ray", "mp", "uni", "external_launcher")  # vLLM's --distributed-executor-backend


def ray_options(args: argparse.Namespace, spec: LaunchSpec) -> dict[str, Any]:
    """--ray-address / --ray-timeout, checked against the launch's executor backend."""
    backend = spec.get("distributed-executor-backend")
    if backend is not None and str(backend).lower() not in BACKENDS:
        raise UsageError(
            f"--distributed-executor-backend {backend}: expected one of {', '.join(BACKENDS)}"
        )
    ray = str(backend or "").lower() == "ray"
    out: dict[str, Any] = {}
    for flag, value in (("--ray-address", args.ray_address), ("--ray-timeout", args.ray_timeout)):
        if value is not None and not ray:
            raise UsageError(f"{flag}: only with --distributed-executor-backend ray")
    if args.ray_address is not None:
        from mmops.cluster.probe import check_address

        out["ray_address"] = check_address(args.ray_address, "--ray-address")
    if args.ray_timeout is not None:
        out["ray_timeout"] = seconds(args.ray_timeout, "--ray-timeout")
    return out


def ray_launch(args: argparse.Namespace, spec: LaunchSpec) -> tuple[LaunchSpec, float | None]:
    """For the commands that launch (plan, serve, tui): --ray-address becomes the server's
    RAY_ADDRESS, which vLLM's ray.init(address=None) joins (ray/_private/worker.py:1688, Ray
    2.60; vllm/v1/executor/ray_utils.py:570 passes no address) and the preflight probes;
    --ray-timeout bounds that probe."""
    opts = ray_options(args, spec)
    if "ray_address" in opts:
        spec = spec.with_env("RAY_ADDRESS", opts["ray_address"])
    return spec, opts.get("ray_timeout")


def seconds(text: str, flag: str) -> float:
    """A positive, finite number of seconds, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text}: expected a number of seconds, e.g. 60") from None
    if not 0 < value <= 3600:  # NaN fails this too
        raise UsageError(f"{flag} {text}: must be above 0 and at most 3600 seconds")
    return value


def render(
    report: DoctorReport,
    spec: LaunchSpec,
    elapsed: float,
    verbose: bool = False,
    color: bool = False,
) -> str:
    def paint(status: str, text: str) -> str:
        return term.paint(text, COLORS[status], color)

    where = spec.model or "(no model)"
    prof = f" (profile {spec.profile.name})" if spec.profile else ""
    lines = [f"mmops doctor: {where}{prof}"]
    width = max((len(c.id) for c in report.checks), default=10)
    for c in report.checks:
        lines.append(f" {paint(c.status, MARKS[c.status])} {c.id:<{width}}  {c.summary}")
        if c.status in ("fail", "warn") or verbose:
            for d in c.detail.splitlines() if (verbose or c.status == "fail") else []:
                if d != c.summary:  # a detail that only repeats the summary says nothing
                    lines.append(f"     {d}")
            if c.fix and c.status in ("fail", "warn"):
                for i, f in enumerate(c.fix.splitlines()):
                    lines.append(f"     {'fix: ' if i == 0 else '     '}{f}")
    n = report.counts()
    parts = [f"{n['fail']} failed", f"{n['warn']} warning(s)", f"{n['pass']} passed"]
    if n["skip"]:
        parts.append(f"{n['skip']} skipped")
    verdict = "fail" if n["fail"] else "warn" if n["warn"] else "pass"
    head = {
        "fail": "launch will fail",
        "warn": "launch should work, see warnings",
        "pass": "ready to launch",
    }[verdict]
    lines.append(paint(verdict, f"{MARKS[verdict]} {head}: {', '.join(parts)} ({elapsed:.2f} s)"))
    return "\n".join(lines)
