"""`mmops doctor`: preflight a launch, one verdict per check."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from mmops import term
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
    p.set_defaults(func=run, accepts_vllm_flags=True)


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
    report = doctor.run_checks(spec, only=args.check)
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
