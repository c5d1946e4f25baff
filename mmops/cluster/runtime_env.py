"""What environment vLLM's Ray workers on the other nodes get, and what mmops adds so that the
launch's variables reach them.

A Ray worker process inherits the environment of the raylet that started it, i.e. of the
`ray start` run on its node, not that of `vllm serve` on the head (vllm-project/vllm#6803 shows
it). vLLM then copies some of the driver's variables into its workers; which ones depends on
the executor (read in vLLM 0.32's source):

- ``RayDistributedExecutor`` (vllm/v1/executor/ray_executor.py:325-341): the names
  vllm/envs.py registers, those starting with a prefix of ``DEFAULT_ENV_VAR_PREFIXES``
  (``VLLM_``, ``NCCL_``, ``HF_``, ``HUGGING_FACE_``, ``UCX_``, ``LMCACHE_``,
  ``FLASH_ATTENTION_``: vllm/ray/ray_env.py:36-44), ``PYTHONHASHSEED``, and the names and
  prefixes listed in ``VLLM_RAY_EXTRA_ENV_VARS_TO_COPY`` / ``..._VAR_PREFIXES_TO_COPY``
  (ray_env.py:84-98), less ``WORKER_SPECIFIC_ENV_VARS`` (ray_utils.py:33) and the names in
  ``~/.config/vllm/ray_non_carry_over_env_vars.json``. They overwrite the node's values.
  ``HCCL_*``, ``GLOO_SOCKET_IFNAME``, ``TP_SOCKET_IFNAME`` and ``PYTORCH_NPU_ALLOC_CONF`` are
  not among them. Older releases copied still less (only the registered ``VLLM_*`` names).
- ``RayExecutorV2`` (the default when ``VLLM_USE_RAY_V2_EXECUTOR_BACKEND`` is 1, vllm/envs.py:944
  in 0.32): every driver variable but the same exclusions (ray_env_utils.get_driver_env_vars),
  applied with ``os.environ.setdefault`` (ray_executor_v2.py:173-175): a node whose `ray start`
  environment sets its own value keeps it.

So mmops arranges two things, both in the server's environment on the head:

1. What the launch itself sets (the profile's ``env:``, ``--env``, the reference defaults, an
   automatic fix such as ``PYTORCH_NPU_ALLOC_CONF=expandable_segments:False``) goes into the
   job's Ray runtime environment. Ray reads a job config from ``RAY_JOB_CONFIG_JSON_ENV_VAR``
   in the driver's environment (ray/_private/worker.py:1789-1817, Ray 2.60: the variable the
   Ray job supervisor sets for `ray job submit --runtime-env-json`); its
   ``runtime_env.env_vars`` are set in every worker process of the job, on every node, before
   any import, and merged with the per-actor ``env_vars`` vLLM adds (ray-project/ray#16378).
   vLLM's ``ray.init(address=..., runtime_env=parallel_config.ray_runtime_env)``
   (ray_utils.py:570) passes None there outside Ray Serve, so nothing conflicts.
2. Collective and allocator variables only inherited from this shell (``HCCL_*``,
   ``GLOO_SOCKET_IFNAME``, ``TP_SOCKET_IFNAME``, ``PYTORCH_NPU_ALLOC_CONF``, ...): mmops does not
   force them on nodes that may need their own values (interface names differ between hosts);
   it names them in ``VLLM_RAY_EXTRA_ENV_VARS_TO_COPY`` where the installed vLLM reads it, so
   vLLM copies them as it copies ``NCCL_*``, and carries them in the runtime environment only
   for a vLLM without that knob.

Left out, always: per-node values (``HCCL_IF_IP``, ``VLLM_HOST_IP``, ``*_VISIBLE_DEVICES``),
install paths (``PATH``, ``PYTHONPATH``, ``*_HOME``: each node's own), Ray's own settings
(``RAY_*``) and secrets (the job config is readable in Ray's dashboard and job table).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmops.redact import is_secret_env

JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # ray/_private/runtime_env/constants.py:2
EXTRA_VARS = "VLLM_RAY_EXTRA_ENV_VARS_TO_COPY"  # vllm/envs.py:1562 (0.32)
V2_FLAG = "VLLM_USE_RAY_V2_EXECUTOR_BACKEND"
# RayExecutorV2 became the default around 0.23 (NovaSky-AI/SkyRL#1653: "vllm 0.23.0 where v2 is
# the default"; NVIDIA-NeMo/RL#3891 finds it so in 0.25.1); 0.32's envs.py defaults it to "1".
V2_DEFAULT_SINCE = (0, 23, 0)

# What workers on other nodes need from the launch for their collectives and allocator.
COLLECTIVE_PREFIXES = ("HCCL_", "NCCL_")
COLLECTIVE_NAMES = frozenset(
    {"GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "PYTORCH_NPU_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"}
)
# vLLM's RayDistributedExecutor copies these by itself (vllm/ray/ray_env.py:36-44).
VLLM_COPIED_PREFIXES = (
    "VLLM_",
    "FLASH_ATTENTION_",
    "LMCACHE_",
    "NCCL_",
    "UCX_",
    "HF_",
    "HUGGING_FACE_",
)
# A value that is right on one node only.
PER_NODE = {
    "HCCL_IF_IP": "the node's own address (set it in each node's `ray start` environment)",
    "VLLM_HOST_IP": "the node's own address; vLLM never copies it (ray_utils.py:33)",
    "VLLM_HOST_PORT": "per node; vLLM never copies it (ray_utils.py:33)",
    "VLLM_NIXL_SIDE_CHANNEL_HOST": "per node; vLLM never copies it (ray_utils.py:33)",
    "LOCAL_RANK": "per worker, set by vLLM",
    "RANK": "per worker, set by vLLM",
    "WORLD_SIZE": "set by vLLM",
}
VISIBLE_DEVICES = (
    "CUDA_VISIBLE_DEVICES",
    "ASCEND_RT_VISIBLE_DEVICES",
    "ASCEND_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
)
PATH_NAMES = frozenset(
    {"PATH", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "HOME"}
)


@dataclass(frozen=True)
class RayEnv:
    """How the launch's environment reaches vLLM's Ray workers (see the module docstring)."""

    address: str  # what vLLM's ray.init() joins: RAY_ADDRESS, else auto
    env: dict[str, str] = field(default_factory=dict)  # to add to the server's environment
    carried: dict[str, str] = field(default_factory=dict)  # runtime_env env_vars, every node
    copied_by_vllm: tuple[str, ...] = ()  # inherited names vLLM copies (its rules or EXTRA_VARS)
    left_out: dict[str, str] = field(default_factory=dict)  # name -> why not carried
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "runtime_env_var": JOB_CONFIG_VAR if JOB_CONFIG_VAR in self.env else None,
            "carried": sorted(self.carried),
            "copied_by_vllm": list(self.copied_by_vllm),
            "left_out": dict(self.left_out),
        }


def _why_not(name: str) -> str | None:
    """Why a variable must not be forced on every node, or None when it may."""
    if name in PER_NODE:
        return PER_NODE[name]
    if name in VISIBLE_DEVICES:
        return (
            "picks devices on this host only; Ray gives each worker its device from the "
            "node's GPU/NPU resources (set it in a node's `ray start` environment to limit that "
            "node)"
        )
    if name in PATH_NAMES or name.endswith(("_HOME", "_PATH")):
        return "an install path: each node's own (its `ray start` environment)"
    if name.startswith("RAY_"):
        return "a Ray setting of this driver, not of the workers"
    if is_secret_env(name):
        return (
            "a secret: not written into the job config (Ray's dashboard and job table show it); "
            "vLLM's own copy, or the node's environment, provides it"
        )
    return None


def _collective(name: str) -> bool:
    return name in COLLECTIVE_NAMES or name.startswith(COLLECTIVE_PREFIXES)


def _csv(value: str) -> list[str]:
    return [tok.strip() for tok in value.split(",") if tok.strip()]


def v2_executor(
    env: Mapping[str, str], env_names: frozenset[str] | None, release: tuple[int, ...] | None
) -> bool | None:
    """Whether vLLM runs RayExecutorV2 for this launch (None: cannot tell)."""
    if env_names is not None and V2_FLAG not in env_names:
        return False
    value = env.get(V2_FLAG)
    if value is not None:
        return value.strip() not in ("0", "", "false", "False")
    if release is None or env_names is None:
        return None
    return release >= V2_DEFAULT_SINCE


def plan_ray_env(
    launch: Mapping[str, str],
    parent: Mapping[str, str],
    env_names: frozenset[str] | None,
    release: tuple[int, ...] | None = None,
) -> RayEnv:
    """What to add to the server's environment so that the launch's variables reach vLLM's Ray
    workers on every node. ``launch``: the variables the launch sets (profile, --env, reference
    defaults, fixes), with their values; ``parent``: the environment the server inherits;
    ``env_names``: the ``VLLM_*`` names the installed vLLM reads (None: unknown release);
    ``release``: its version."""
    full = {**parent, **launch}
    address = full.get("RAY_ADDRESS") or "auto"
    carried: dict[str, str] = {}
    left_out: dict[str, str] = {}
    notes: list[str] = []
    env: dict[str, str] = {}

    # 1. What the launch sets: every node, through the job's runtime environment.
    for name in sorted(launch):
        if name in (JOB_CONFIG_VAR, EXTRA_VARS, "RAY_ADDRESS"):
            continue
        why = _why_not(name)
        if why:
            left_out[name] = why
        else:
            carried[name] = launch[name]

    # 2. Collective / allocator variables inherited from this shell.
    has_extra = env_names is not None and EXTRA_VARS in env_names
    inherited = sorted(k for k in parent if k not in launch and _collective(k))
    copied: list[str] = []
    extra = _csv(full.get(EXTRA_VARS, ""))
    for name in inherited:
        why = _why_not(name)
        if why:
            left_out[name] = why
        elif name.startswith(VLLM_COPIED_PREFIXES) and has_extra:
            copied.append(name)  # vLLM's own prefixes (NCCL_*)
        elif has_extra:
            copied.append(name)
            if name not in extra:
                extra.append(name)
        else:
            carried[name] = parent[name]
    if has_extra and extra != _csv(full.get(EXTRA_VARS, "")):
        env[EXTRA_VARS] = ",".join(extra)

    # Per-node values the shell has: say what happens to them.
    for name in (*PER_NODE, *VISIBLE_DEVICES):
        if name in parent and name not in launch:
            left_out.setdefault(name, _why_not(name) or "")
    v2 = v2_executor(full, env_names, release)
    for name in VISIBLE_DEVICES:
        if name in full:
            copies = (
                "vLLM's RayExecutorV2 copies it to workers on nodes whose `ray start` "
                "environment does not set one (it is not in WORKER_SPECIFIC_ENV_VARS, "
                "vllm/v1/executor/ray_utils.py:33), so there it limits their devices too"
                if v2 is not False and name != "CUDA_VISIBLE_DEVICES"
                else "vLLM does not copy it"
            )
            notes.append(
                f"{name}={full[name]} is set here: with Ray, each worker gets its device from "
                f"Ray's {'NPU' if 'ASCEND' in name else 'GPU'} resources; {copies}. To choose "
                f"devices per node, set it (with RAY_EXPERIMENTAL_NOSET_{name}=1 on Ascend) in "
                "each node's `ray start` environment"
            )

    if carried:
        config, conflicts = _job_config(parent.get(JOB_CONFIG_VAR), carried)
        if config is None:
            notes.append(
                f"{JOB_CONFIG_VAR} in this environment is not JSON: left as it is, and the "
                f"launch's variables ({', '.join(sorted(carried))}) reach other nodes only where "
                "vLLM copies them"
            )
            carried = {}
        else:
            env[JOB_CONFIG_VAR] = config
            for name in conflicts:
                notes.append(
                    f"{name}: the Ray job's runtime_env already sets it; that value is kept"
                )
                carried.pop(name, None)
    if carried:
        notes.append(
            f"the launch's own variables ({len(carried)}) reach vLLM's Ray workers on every node "
            f"through the job's Ray runtime environment ({JOB_CONFIG_VAR}, read by ray.init: "
            "ray/_private/worker.py:1789); they override what a node's `ray start` set"
        )
    if copied:
        how = (
            f"named in {EXTRA_VARS} for vLLM to copy"
            if env.get(EXTRA_VARS)
            else "vLLM copies them (vllm/ray/ray_env.py)"
        )
        notes.append(
            f"collective variables inherited from this shell: {how}"
            + (
                "; RayExecutorV2 copies them only to nodes whose `ray start` environment does "
                "not set its own"
                if v2 is not False
                else ""
            )
        )
    if v2:
        notes.append(
            "vLLM's RayExecutorV2 also copies every other variable of this environment to its "
            "workers where the node does not set it (vllm/v1/executor/ray_env_utils.py)"
        )
    return RayEnv(address, env, carried, tuple(copied), left_out, tuple(notes))


def _job_config(existing: str | None, carried: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The job config JSON with ``carried`` in its runtime_env env_vars; an existing one (the
    Ray job supervisor's, under `ray job submit`) keeps its own values. (None, []) when the
    existing text is not a JSON object."""
    config: dict[str, Any] = {}
    if existing:
        try:
            loaded = json.loads(existing)
        except ValueError:
            return None, []
        if not isinstance(loaded, dict):
            return None, []
        config = loaded
    runtime_env = config.get("runtime_env")
    if not isinstance(runtime_env, dict):
        runtime_env = {}
    env_vars = runtime_env.get("env_vars")
    if not isinstance(env_vars, dict):
        env_vars = {}
    conflicts = sorted(k for k in carried if k in env_vars and str(env_vars[k]) != carried[k])
    merged = {**dict(carried), **{str(k): str(v) for k, v in env_vars.items()}}
    config = {**config, "runtime_env": {**runtime_env, "env_vars": merged}}
    return json.dumps(config, sort_keys=True, separators=(",", ":")), conflicts
