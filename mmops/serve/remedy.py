"""The remedy ladder: turn a classified failure into ONE change to the launch, or none.

A signature may carry a Remedy (env_merge, env_set, arg_set). Applying it yields a new
LaunchSpec and a Change that says plainly what was changed, so the run can record which change
made the server come up. Rules: never for a signature that is not retryable (a config error goes
straight to FAILED with its fix); one change per retry; no change when the launch already has
that value (retrying the same config blindly is what this ladder exists to avoid).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmops.diagnose.table import Remedy, RemedyKind, Signature, resolve_remedy
from mmops.errors import MmopsError
from mmops.launch import flags as vllm_flags
from mmops.launch.allocator import merge_alloc_conf
from mmops.launch.spec import LaunchSpec


@dataclass(frozen=True)
class Change:
    """One change made to a launch because of one failure signature."""

    signature_id: str
    kind: RemedyKind
    name: str  # env var or vLLM flag (canonical, no dashes)
    old: Any
    new: Any
    spec: LaunchSpec  # the launch with the change applied

    def describe(self) -> str:
        """How a person would write the change: ``PYTORCH_NPU_ALLOC_CONF=...`` or ``--flag V``."""
        if self.kind == "arg_set":
            return f"--{self.name} {self.new}"
        return f"{self.name}={self.new}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature_id,
            "kind": self.kind,
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "change": self.describe(),
        }


def propose(
    spec: LaunchSpec,
    signature: Signature,
    captures: Mapping[str, str],
    base_env: Mapping[str, str] | None = None,
) -> Change | None:
    """The one change the signature's remedy makes to spec, or None if there is nothing to do.

    ``base_env`` is the environment the child inherits (default: ours): an env_merge starts from
    the value the child would really see, so allocator keys set outside the profile survive.
    """
    if signature.remedy is None or not signature.retryable:
        return None
    remedy = resolve_remedy(signature, dict(captures))
    if remedy is None:
        return None  # the log did not give a number the remedy needs
    value = remedy.value
    env_base = os.environ if base_env is None else base_env
    if remedy.kind in ("env_merge", "env_set"):
        old = spec.child_env(env_base).get(remedy.name)
        new = merge_alloc_conf(old, value) if remedy.kind == "env_merge" else value
        if new == old:
            return None
        return _change(
            signature,
            remedy,
            old,
            new,
            spec.with_env(remedy.name, new),
        )
    if remedy.kind == "arg_set":
        name = vllm_flags.canonical(remedy.name)
        try:
            new_val = vllm_flags.coerce(name, value, f"remedy of signature {signature.id}")
        except MmopsError:
            return None  # the log's capture was not a usable value; plain retry rules apply
        old = spec.args.get(name)
        if new_val == old:
            return None
        return _change(
            signature,
            remedy,
            old,
            new_val,
            spec.with_arg(name, new_val),
        )
    raise ValueError(f"signature {signature.id}: unknown remedy kind {remedy.kind!r}")


def _change(sig: Signature, remedy: Remedy, old: Any, new: Any, spec: LaunchSpec) -> Change:
    name = vllm_flags.canonical(remedy.name) if remedy.kind == "arg_set" else remedy.name
    return Change(sig.id, remedy.kind, name, old, new, spec)
