"""`mmops plan`: print exactly what `mmops serve` would run, after the preflight."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from mmops.errors import UsageError
from mmops.launch.spec import LaunchSpec, add_launch_arguments, spec_from_args


@dataclass
class Preflight:
    """The doctor's verdict on a launch, as plan and serve use it."""

    report: Any | None  # mmops.doctor.DoctorReport, or None when skipped

    @property
    def failed(self) -> bool:
        return self.report is not None and self.report.failed

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": True} if self.report is None else self.report.to_dict()

    def summary(self) -> str:
        if self.report is None:
            return "skipped (--no-preflight)"
        counts = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for c in self.report.checks:
            counts[c.status] = counts.get(c.status, 0) + 1
        return ", ".join(f"{n} {k}" for k, n in counts.items() if n)

    def failures(self) -> list[str]:
        """One line per failed check, with its fix."""
        if self.report is None:
            return []
        out = []
        for c in self.report.checks:
            if c.status == "fail":
                line = f"  FAIL {c.id}: {c.summary}"
                if c.fix:
                    line += f"\n       fix: {c.fix}"
                out.append(line)
        return out


def launch_spec(args: argparse.Namespace) -> LaunchSpec:
    """The launch of a plan/serve command line; a model is required."""
    spec = spec_from_args(args)
    if not spec.model:
        raise UsageError("no model: pass --model DIR or a --profile with a model: key")
    return spec


def preflight(spec: LaunchSpec, skip: bool) -> tuple[LaunchSpec, Preflight]:
    """Run the doctor (unless skipped) and add the device's reference defaults to the launch."""
    kind = spec.device.kind
    if skip:
        return (spec.with_device_defaults(kind) if kind != "auto" else spec), Preflight(None)
    from mmops.doctor import run_checks  # deferred: the doctor pulls in platform probing

    report = run_checks(spec)
    if kind == "auto":
        kind = str(report.context.get("device") or "auto")
    return spec.with_device_defaults(kind), Preflight(report)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="print the vLLM argv and environment `serve` would run",
        description="Print exactly what `mmops serve` would run for this profile/flags: the argv "
        "(a list, shown shell-quoted), the environment delta, the allocator mode and which values "
        "came from the reference defaults. Any `vllm serve` flag may follow. Secrets are masked.",
    )
    add_launch_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--no-preflight", action="store_true", help="do not run the doctor first")
    p.set_defaults(func=run, accepts_vllm_flags=True)


def run(args: argparse.Namespace) -> int:
    from mmops.launch.plan import build_plan, render

    spec, pre = preflight(launch_spec(args), args.no_preflight)
    plan = build_plan(spec)
    if args.json:
        json.dump(plan.to_dict(preflight=pre.to_dict()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(plan, preflight_line=pre.summary()))
    if pre.failed:
        print("preflight failed; `mmops serve` would not start:", file=sys.stderr)
        print("\n".join(pre.failures()), file=sys.stderr)
        return 2
    return 0
