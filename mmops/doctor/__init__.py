"""Preflight checks: a verdict per check on a launch, before vLLM loads a byte.

Each check is a small function registered under a stable id (``core.check``). It reads a
shared, lazily built context (model facts, devices, software stack) and returns one CheckResult
with a status, a one-line summary, detail and a concrete fix. No torch, vllm or textual import
on this path. Importing the check modules registers them, in the order the report shows.
"""

from mmops.doctor import (  # noqa: F401
    capacity,
    cluster,
    devices,
    environment,
    modeldir,
    serving,
)
from mmops.doctor.core import (
    REGISTRY,
    Check,
    CheckResult,
    Context,
    DoctorReport,
    list_checks,
    run_checks,
)

__all__ = [
    "REGISTRY",
    "Check",
    "CheckResult",
    "Context",
    "DoctorReport",
    "list_checks",
    "run_checks",
]
