"""Launch profiles: validated YAML in ``profiles/`` describing one model served one way.

A profile names the model directory, the `vllm serve` flags, the environment, the devices and
the sample suite. Every error names the file, the line and the key, and says what is valid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mmops.errors import MmopsError, ProfileError
from mmops.launch import flags as vllm_flags
from mmops.yamlcheck import Located, choice, compose_file, mapping_items, scalar, to_python

DEVICE_KINDS = ("auto", "ascend", "nvidia", "cpu")
PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles"


@dataclass(frozen=True)
class RestartPolicy:
    """When and how often the supervisor restarts a failed server."""

    max_attempts: int = 5  # attempts within window_s before giving up (FAILED)
    window_s: float = 900.0
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 60.0
    jitter: float = 0.2  # +/- fraction of each delay, so restarts of many nodes spread out
    healthy_reset_s: float = 300.0  # READY this long resets the backoff and the attempt count


@dataclass(frozen=True)
class Readiness:
    timeout_s: float = 900.0  # weights of a 72B model take minutes to load
    interval_s: float = 2.0


@dataclass(frozen=True)
class DeviceRequest:
    kind: str = "auto"  # auto | ascend | nvidia | cpu
    model: str | None = None  # accelerator spec id for offline planning, e.g. "910b3"
    count: int | None = None


@dataclass(frozen=True)
class Profile:
    path: Path | None
    name: str
    description: str = ""
    model: str | None = None
    served_model_name: str | None = None
    vllm_python: str | None = None
    device: DeviceRequest = field(default_factory=DeviceRequest)
    serve: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    suite: str | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    readiness: Readiness = field(default_factory=Readiness)


_TOP_KEYS = (
    "name",
    "description",
    "model",
    "served_model_name",
    "vllm_python",
    "device",
    "serve",
    "env",
    "suite",
    "restart",
    "readiness",
)


def expand(value: str) -> str:
    """``~`` and ``${VAR}`` / ``${VAR:-default}`` in path-like profile values."""
    import re

    def sub(m: re.Match[str]) -> str:
        name, _, default = m.group(1).partition(":-")
        return os.environ.get(name) or default

    return os.path.expanduser(re.sub(r"\$\{([^}]+)\}", sub, value))


def resolve_path(ref: str) -> Path:
    """A profile given as a path, or as a bare name found in ``profiles/``."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in ref:
        return p
    candidate = PROFILE_DIR / f"{ref}.yaml"
    if candidate.exists():
        return candidate
    names = ", ".join(sorted(x.stem for x in PROFILE_DIR.glob("*.yaml"))) or "none"
    raise ProfileError(f"--profile {ref}: no such file or profile name (known: {names})")


def load_profile(ref: str | Path) -> Profile:
    """Read and validate a profile; raise ProfileError naming file, line and key."""
    path = resolve_path(str(ref))
    root = compose_file(path, ProfileError)
    values: dict[str, Any] = {}
    for key, loc in mapping_items(root, ProfileError, _TOP_KEYS):
        values[key] = _PARSERS[key](loc)
    values.setdefault("name", path.stem)
    return Profile(path=path, **values)


def _str(loc: Located) -> str:
    return scalar(loc, (str,), ProfileError)


def _path_str(loc: Located) -> str:
    return expand(scalar(loc, (str,), ProfileError))


def _device(loc: Located) -> DeviceRequest:
    out: dict[str, Any] = {}
    for key, sub in mapping_items(loc, ProfileError, ("kind", "model", "count")):
        if key == "kind":
            out["kind"] = choice(sub, DEVICE_KINDS, ProfileError)
        elif key == "model":
            out["model"] = scalar(sub, (str,), ProfileError).lower()
        elif key == "count":
            count = scalar(sub, (int,), ProfileError)
            if count < 1:
                raise sub.error(f"must be at least 1; got {count}", ProfileError)
            out["count"] = count
    return DeviceRequest(**out)


def _serve(loc: Located) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in mapping_items(loc, ProfileError):
        name = vllm_flags.canonical(key)
        guess = vllm_flags.near_miss(name)
        if guess is not None:
            raise sub.error(f"unknown vLLM flag; did you mean '{guess}'?", ProfileError)
        if name == "model":
            raise sub.error("put the model path in the top-level 'model' key", ProfileError)
        value = to_python(sub)
        if value is None:
            raise sub.error("has no value", ProfileError)
        try:
            out[name] = vllm_flags.coerce(name, value, sub.where)
        except MmopsError as exc:
            raise ProfileError(str(exc)) from None
    return out


def _env(loc: Located) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, sub in mapping_items(loc, ProfileError):
        value = scalar(sub, (str, int, float, bool), ProfileError)
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


_Numbers = TypeVar("_Numbers", RestartPolicy, Readiness)


def _numbers(cls: type[_Numbers], loc: Located) -> _Numbers:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, sub in mapping_items(loc, ProfileError, tuple(fields)):
        kind = (int,) if fields[key].type == "int" else (float,)
        value = scalar(sub, kind, ProfileError)
        if value < 0:
            raise sub.error(f"must not be negative; got {value}", ProfileError)
        out[key] = value
    return cls(**out)


_PARSERS: dict[str, Callable[[Located], object]] = {
    "name": _str,
    "description": _str,
    "model": _path_str,
    "served_model_name": _str,
    "vllm_python": _path_str,
    "device": _device,
    "serve": _serve,
    "env": _env,
    "suite": _str,
    "restart": lambda loc: _numbers(RestartPolicy, loc),
    "readiness": lambda loc: _numbers(Readiness, loc),
}
