"""The launch spec: profile + command-line flags merged into one description of a launch.

Data flows one way: profile + CLI -> LaunchSpec -> doctor / plan -> supervisor. Command-line
values override the profile's; with no profile at all, the reference document's defaults apply
(``python -m vllm.entrypoints.openai.api_server --max-num-seqs=256 --max-model-len=4096 ...``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mmops.errors import UsageError
from mmops.launch import flags as vllm_flags
from mmops.launch.profile import (
    DEVICE_KINDS,
    DeviceRequest,
    Profile,
    Readiness,
    RestartPolicy,
    expand,
    load_profile,
)

# The reference's online-serving template (../shared/reference), used when no profile is given.
REFERENCE_ARGS: dict[str, Any] = {
    "max-num-seqs": 256,
    "max-model-len": 4096,
    "max-num-batched-tokens": 4096,
    "tensor-parallel-size": 1,
    "gpu-memory-utilization": 0.9,
}
REFERENCE_ENV = {"VLLM_IMAGE_FETCH_TIMEOUT": "100", "VLLM_ENGINE_ITERATION_TIMEOUT_S": "600"}
# Reference variables that newer vLLM reads under another name, with that name's default (s):
# vllm/envs.py in 0.32 (V1) has no VLLM_ENGINE_ITERATION_TIMEOUT_S (it warns "Unknown vLLM
# environment variable detected" and ignores it); its step timeout is
# VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, 300 s by default.
RENAMED_ENV = {"VLLM_ENGINE_ITERATION_TIMEOUT_S": ("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", 300)}
# Ascend only: the reference recommends block size 128 and expandable segments on.
REFERENCE_ASCEND_ARGS: dict[str, Any] = {"block-size": 128}
REFERENCE_ASCEND_ENV = {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}

DEFAULT_PORT = 8000
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to check, plan and run one vLLM server."""

    model: str | None
    args: dict[str, Any] = field(default_factory=dict)  # vLLM flags (canonical names), no model
    env: dict[str, str] = field(default_factory=dict)  # set for the server, over the parent's
    # Reference defaults: applied only where the parent environment does not set the variable.
    env_defaults: dict[str, str] = field(default_factory=dict)
    device: DeviceRequest = field(default_factory=DeviceRequest)
    vllm_python: str | None = None
    suite: str | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    readiness: Readiness = field(default_factory=Readiness)
    profile: Profile | None = None
    defaults: frozenset[str] = frozenset()  # flag/env names filled from the reference

    @property
    def name(self) -> str:
        if self.profile is not None:
            return self.profile.name
        return (self.model or "server").rstrip("/").rsplit("/", 1)[-1] or "server"

    def get(self, flag: str, default: Any = None) -> Any:
        return self.args.get(flag, default)

    @property
    def max_model_len(self) -> int | None:
        return self.args.get("max-model-len")

    @property
    def tp(self) -> int:
        return int(self.args.get("tensor-parallel-size", 1))

    @property
    def pp(self) -> int:
        return int(self.args.get("pipeline-parallel-size", 1))

    @property
    def gpu_memory_utilization(self) -> float:
        return float(self.args.get("gpu-memory-utilization", 0.9))

    @property
    def dtype(self) -> str:
        return str(self.args.get("dtype", "auto"))

    @property
    def host(self) -> str:
        # vLLM itself binds all interfaces when --host is absent; mmops plans 127.0.0.1
        # unless told otherwise, so an unplanned exposure is never the default.
        return str(self.args.get("host", DEFAULT_HOST))

    @property
    def port(self) -> int:
        return int(self.args.get("port", DEFAULT_PORT))

    @property
    def served_name(self) -> str | None:
        return self.args.get("served-model-name") or self.model

    def child_env(self, parent: Mapping[str, str]) -> dict[str, str]:
        """The server's whole environment: defaults < parent environment < spec."""
        return {**self.env_defaults, **parent, **self.env}

    def env_delta(self, parent: Mapping[str, str]) -> dict[str, str]:
        """What the server's environment changes relative to ``parent``."""
        full = self.child_env(parent)
        return {k: v for k, v in full.items() if parent.get(k) != v}

    def with_arg(self, flag: str, value: Any) -> LaunchSpec:
        """The launch with one vLLM flag set (canonical name); no longer a reference default."""
        return replace(self, args={**self.args, flag: value}, defaults=self.defaults - {flag})

    def with_env(self, name: str, value: str) -> LaunchSpec:
        """The launch with one environment variable set for the server."""
        return replace(self, env={**self.env, name: value}, defaults=self.defaults - {name})

    def with_device_defaults(self, kind: str) -> LaunchSpec:
        """Add the reference's Ascend-only defaults once the device kind is known."""
        if kind != "ascend" or self.profile is not None:
            return self
        args = {**REFERENCE_ASCEND_ARGS, **self.args}
        env_defaults = {**self.env_defaults, **REFERENCE_ASCEND_ENV}
        added = {k for k in REFERENCE_ASCEND_ARGS if k not in self.args}
        added |= {k for k in REFERENCE_ASCEND_ENV if k not in self.env}
        return replace(self, args=args, env_defaults=env_defaults, defaults=self.defaults | added)


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every launch-shaped command (doctor, plan, serve, tui) shares."""
    parser.add_argument("--profile", "-p", help="profile YAML file, or a name in profiles/")
    parser.add_argument("--model", "-m", help="model directory (HuggingFace layout)")
    parser.add_argument(
        "--device",
        dest="device_kind",
        metavar="KIND",
        help="auto, ascend, nvidia, cpu, or an accelerator to plan for offline "
        "(e.g. 910b3, h100-80; see `mmops doctor --list-devices`)",
    )
    parser.add_argument("--devices", type=int, metavar="N", help="number of devices to plan for")
    parser.add_argument(
        "--python",
        dest="vllm_python",
        metavar="PATH",
        help="python interpreter of the venv or image that has vLLM",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server (repeatable)",
    )


def check_python(python: str) -> str:
    """``--python`` as typed must name an interpreter here: a typo otherwise showed only as
    restarts of a server that could never start (exit 127 five times)."""
    import os
    import shutil

    flag = f"--python {python}"
    path = shutil.which(python) or python  # a bare name (python3.11) is looked up on PATH
    if os.path.isdir(path):
        raise UsageError(f"{flag}: is a directory; give its interpreter (e.g. {path}/bin/python)")
    if not os.path.exists(path):
        raise UsageError(
            f"{flag}: no such file; give the python of the venv or image that has vLLM "
            "(e.g. /opt/vllm/bin/python)"
        )
    if not os.access(path, os.X_OK):
        raise UsageError(f"{flag}: not executable; give the venv's bin/python")
    names = (os.path.basename(path), os.path.basename(os.path.realpath(path)))
    if not any(k in n.lower() for n in names for k in ("python", "pypy")):
        try:
            with open(path, "rb") as fh:
                script = fh.read(2) == b"#!"  # a wrapper script may exec any interpreter
        except OSError:
            script = False
        if not script:
            raise UsageError(
                f"{flag}: not a Python interpreter (no 'python' in its name, not a script); "
                "give the venv's bin/python"
            )
    return python


def spec_from_args(args: argparse.Namespace) -> LaunchSpec:
    """Merge the profile (if any) with command-line flags; CLI wins."""
    profile = load_profile(args.profile) if getattr(args, "profile", None) else None
    cli_flags = vllm_flags.parse_argv(getattr(args, "vllm_argv", []) or [])
    if "model" in cli_flags:  # `--model` is ours, but be tolerant of it after other vLLM flags
        args.model = args.model or cli_flags.pop("model")
    env_cli: dict[str, str] = {}
    for item in getattr(args, "env", []) or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--env {item!r}: expected KEY=VALUE")
        env_cli[key] = value

    if profile is None:
        base_args: dict[str, Any] = dict(REFERENCE_ARGS)
        base_env: dict[str, str] = {}
        env_defaults = dict(REFERENCE_ENV)
        defaults = frozenset(k for k in (*REFERENCE_ARGS, *REFERENCE_ENV) if k not in cli_flags)
        defaults -= frozenset(env_cli)
        device = DeviceRequest()
        model = args.model
        python = None
        suite = None
        restart, readiness = RestartPolicy(), Readiness()
    else:
        base_args = dict(profile.serve)
        base_env = dict(profile.env)
        env_defaults = {}
        defaults = frozenset()
        device = profile.device
        model = args.model or profile.model
        python = profile.vllm_python
        suite = profile.suite
        restart, readiness = profile.restart, profile.readiness
        if profile.served_model_name:
            base_args.setdefault("served-model-name", profile.served_model_name)

    kind = getattr(args, "device_kind", None)
    if kind:
        kind = kind.lower()
        device = replace(device, kind=kind) if kind in DEVICE_KINDS else replace(device, model=kind)
    if getattr(args, "devices", None) is not None:
        if args.devices < 1:
            raise UsageError(f"--devices must be at least 1; got {args.devices}")
        device = replace(device, count=args.devices)
    if getattr(args, "vllm_python", None):
        python = check_python(expand(args.vllm_python))

    return LaunchSpec(
        model=expand(model) if model else None,
        args={**base_args, **cli_flags},
        env={**base_env, **env_cli},
        env_defaults={k: v for k, v in env_defaults.items() if k not in env_cli},
        device=device,
        vllm_python=python,
        suite=getattr(args, "suite", None) or suite,
        restart=restart,
        readiness=readiness,
        profile=profile,
        defaults=defaults,
    )
