"""Checks on the software stack and the server's environment."""

from __future__ import annotations

from mmops.doctor.core import (
    CheckResult,
    Context,
    Status,
    check,
    from_problems,
    result,
)
from mmops.launch.allocator import (
    NPU_UNSET_NOTE,
    NPU_VAR,
    format_alloc_conf,
    parse_alloc_conf,
)
from mmops.launch.spec import RENAMED_ENV
from mmops.platform import software as versions


@check("software.versions", "vLLM / torch / CANN versions")
def _software(ctx: Context) -> CheckResult:
    cid = "software.versions"
    s = ctx.stack
    shown = ", ".join(f"{k} {v}" for k, v in s.items() if v) or "none found"
    findings = versions.compatibility(s)
    fails = [f for f in findings if f.level == "fail"]
    warns = [f for f in findings if f.level == "warn"]
    where = f" (in {ctx.spec.vllm_python})" if ctx.spec.vllm_python else ""
    if fails or warns:
        worst = fails or warns
        return result(
            cid,
            "fail" if fails else "warn",
            worst[0].message,
            f"Installed{where}: {shown}\n" + "\n".join(f.message for f in findings),
            "\n".join(f.fix for f in findings if f.fix),
        )
    if not ctx.vllm_version:
        return result(
            cid,
            "warn",
            f"vLLM is not installed{where}",
            f"Installed{where}: {shown}",
            "Install vLLM (pip install 'mmops[ascend]' on Ascend), or point --python / vllm_python: "
            "at the interpreter of the venv or image that has it.",
        )
    return result(cid, "pass", shown, f"Installed{where}: {shown}")


@check("env.npu", "Server environment")
def _env(ctx: Context) -> CheckResult:
    cid = "env.npu"
    env = ctx.env
    problems: list[tuple[Status, str, str]] = []
    notes: list[str] = []
    conf = env.get(NPU_VAR)
    if conf is not None:
        keys = parse_alloc_conf(conf)
        es = keys.get("expandable_segments")
        if es is not None and es not in ("True", "False"):
            problems.append(
                (
                    "fail",
                    f"PYTORCH_NPU_ALLOC_CONF expandable_segments:{es} is not True/False",
                    "torch_npu rejects it: 'Expected a single True/False argument for expandable_segments'. Use expandable_segments:True or :False.",
                )
            )
        conflict = [k for k in ("max_split_size_mb", "garbage_collection_threshold") if k in keys]
        if es == "True" and conflict:
            others = format_alloc_conf(
                {k: v for k, v in keys.items() if k != "expandable_segments"}
            )
            problems.append(
                (
                    "fail",
                    f"PYTORCH_NPU_ALLOC_CONF sets expandable_segments:True with {', '.join(conflict)}",
                    f"torch_npu refuses this combination. Either PYTORCH_NPU_ALLOC_CONF=expandable_segments:False,{others} or drop {', '.join(conflict)}.",
                )
            )
        notes.append(
            f"PYTORCH_NPU_ALLOC_CONF={conf} (expandable segments {'on' if es == 'True' else 'off' if es == 'False' else 'unset'})"
        )
    elif ctx.vendor == "ascend":
        notes.append(f"{NPU_UNSET_NOTE}; on a virtual-memory error set expandable_segments:False")
    known = versions.vllm_env_names(ctx.stack) if ctx.vllm_version else None
    for var, want, default in (
        ("VLLM_IMAGE_FETCH_TIMEOUT", 100, 5),
        ("VLLM_ENGINE_ITERATION_TIMEOUT_S", 600, 60),
    ):
        renamed = RENAMED_ENV.get(var)
        if known is not None and var not in known and renamed and renamed[0] in known:
            # The installed vLLM reads the step timeout under its newer name only.
            if env.get(var) is not None and env.get(renamed[0]) is None:
                problems.append(
                    (
                        "warn",
                        f"{var} is not read by vLLM {ctx.vllm_version} (it warns 'Unknown vLLM "
                        f"environment variable' and ignores it)",
                        f"export {renamed[0]}={env[var]}: this vLLM's name for the engine step timeout.",
                    )
                )
                continue
            var, default = renamed
        raw = env.get(var)
        if raw is None:
            if ctx.facts is not None and ctx.facts.is_multimodal:
                problems.append(
                    (
                        "warn",
                        f"{var} unset (vLLM default {default} s)",
                        f"export {var}={want} as the reference does; large images and long first iterations on NPU exceed {default} s.",
                    )
                )
            continue
        try:
            if float(raw) <= 0:
                raise ValueError
            notes.append(f"{var}={raw}")
        except ValueError:
            problems.append(
                ("fail", f"{var}={raw!r} is not a positive number", f"export {var}={want}")
            )
    if ctx.vendor == "ascend":
        sourced = any(
            env.get(k) for k in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH", "ASCEND_OPP_PATH")
        )
        if not sourced:
            problems.append(
                (
                    "fail",
                    "CANN environment not sourced (ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH unset)",
                    "source /usr/local/Ascend/ascend-toolkit/set_env.sh (and nnal/atb/set_env.sh for vllm-ascend) before starting vLLM.",
                )
            )
        else:
            notes.append(
                f"CANN env: {env.get('ASCEND_TOOLKIT_HOME') or env.get('ASCEND_HOME_PATH')}"
            )
    if not problems:
        return result(
            cid, "pass", "; ".join(notes) or "nothing to check for this device", "\n".join(notes)
        )
    return from_problems(cid, problems, notes)
