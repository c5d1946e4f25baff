"""Preflight fixes that are a change to the launch, applied with one key in the TUI.

A doctor check whose fix is one vLLM flag or one environment variable says so in its data
(``apply={"arg": "max-model-len", "value": 4096}`` or ``{"env": NAME, "value": V}``); this
module turns that into a new launch and says in words what it changes, before it is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mmops.launch import flags as vllm_flags
from mmops.launch.spec import LaunchSpec


@dataclass(frozen=True)
class LaunchFix:
    check_id: str
    kind: Literal["arg", "env"]
    name: str
    value: Any

    def describe(self) -> str:
        if self.kind == "arg":
            return f"--{self.name}" if self.value is True else f"--{self.name} {self.value}"
        return f"{self.name}={self.value}"

    def apply(self, spec: LaunchSpec) -> LaunchSpec:
        if self.kind == "arg":
            return spec.with_arg(self.name, self.value)
        return spec.with_env(self.name, str(self.value))


def from_check(check_id: str, data: Mapping[str, Any]) -> LaunchFix | None:
    """The launch change a check's result proposes, or None when its fix is not one."""
    spec = data.get("apply")
    if not isinstance(spec, Mapping) or "value" not in spec:
        return None
    if "arg" in spec:
        name = vllm_flags.canonical(str(spec["arg"]))
        return LaunchFix(check_id, "arg", name, spec["value"])
    if "env" in spec:
        return LaunchFix(check_id, "env", str(spec["env"]), str(spec["value"]))
    return None
