"""The doctor's verdict on a launch, as plan, serve and the TUI use it (one code path)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmops.errors import UsageError
from mmops.launch.spec import LaunchSpec, spec_from_args

if TYPE_CHECKING:
    from mmops.doctor.core import DoctorReport


@dataclass
class Preflight:
    """The doctor's report on a launch, or None when the preflight was skipped."""

    report: DoctorReport | None

    @property
    def failed(self) -> bool:
        return self.report is not None and self.report.failed

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": True} if self.report is None else self.report.to_dict()

    def summary(self) -> str:
        if self.report is None:
            return "skipped (--no-preflight)"
        return ", ".join(f"{n} {k}" for k, n in self.report.counts().items() if n)

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
    """The launch of a plan/serve/tui command line; a model is required."""
    spec = spec_from_args(args)
    if not spec.model:
        raise UsageError("no model: pass --model DIR or a --profile with a model: key")
    return spec


def preflight(
    spec: LaunchSpec, skip: bool, ray_timeout: float | None = None
) -> tuple[LaunchSpec, Preflight]:
    """Run the doctor (unless skipped) and add the device's reference defaults to the launch.
    ``ray_timeout``: how long a Ray launch's cluster probe may take (--ray-timeout)."""
    kind = spec.device.kind
    if skip:
        return (spec.with_device_defaults(kind) if kind != "auto" else spec), Preflight(None)
    from mmops.doctor import run_checks  # deferred: the doctor pulls in platform probing

    report = run_checks(spec, ray_timeout=ray_timeout) if ray_timeout else run_checks(spec)
    if kind == "auto":
        kind = str(report.context.get("device") or "auto")
    return spec.with_device_defaults(kind), Preflight(report)
