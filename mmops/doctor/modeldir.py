"""Checks on the model directory: config, length, tokenizer, template, code, weights."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from mmops.doctor.core import (
    CheckResult,
    Context,
    Status,
    check,
    from_problems,
    result,
)
from mmops.model import estimate
from mmops.model.facts import NEEDS_PREPROCESSOR
from mmops.platform.software import parse_version


def _why_missing(path: Path) -> tuple[str, str]:
    """Why ``path`` does not resolve, and the fix: a symlink loop, a dangling symlink, or absent."""
    if os.path.islink(path) or any(os.path.islink(p) for p in path.parents):
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python 3.11 reports a loop this way
            return (
                "is a symlink loop",
                "Point the link at the real model directory (ls -l shows the chain).",
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return (
                    "is a symlink loop",
                    "Point the link at the real model directory (ls -l shows the chain).",
                )
            target = os.path.realpath(path)
            return (
                f"is a symlink to {target}, which does not exist",
                "Mount or copy the model there, or re-point the link (inside the container, if vLLM runs in one).",
            )
    return "does not exist", "Check the path (inside the container, if vLLM runs in one)."


@check("model.config", "Model directory and config.json")
def _model_config(ctx: Context) -> CheckResult:
    cid = "model.config"
    f = ctx.facts
    if f is None:
        return result(
            cid, "fail", "no model given", "", "Pass --model DIR or set model: in the profile."
        )
    if not f.exists:
        why, fix = _why_missing(Path(f.path))
        return result(cid, "fail", f"model path {f.path} {why}", "", fix)
    if not f.is_dir:
        return result(
            cid,
            "fail",
            f"model path {f.path} is not a directory",
            "",
            "Pass the directory that holds config.json, not a file in it.",
        )
    if f.config is None:
        return result(
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
        return result(
            cid,
            "warn",
            "config.json names no architectures",
            detail,
            "vLLM picks the model class from `architectures`; add it.",
        )
    if not f.is_multimodal:
        return result(
            cid,
            "warn",
            f"{arch} is not a multimodal architecture",
            detail,
            "mmops probes images and video; a text-only model serves text only.",
        )
    return result(cid, "pass", f"{arch} (multimodal)", detail, arch=arch)


@check("model.max_len", "--max-model-len within the model's limit", needs_config=True)
def _max_len(ctx: Context) -> CheckResult:
    cid = "model.max_len"
    f = ctx.model
    ml = f.max_len
    req = ctx.spec.max_model_len
    if ml is None:
        return result(
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
        return result(
            cid,
            "pass",
            f"--max-model-len unset: vLLM will use the model's {limit}",
            detail,
            limit=limit,
        )
    if req > limit:
        if ctx.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") in ("1", "true", "True"):
            return result(
                cid,
                "warn",
                f"--max-model-len {req} > {ml.key}={limit}, allowed by VLLM_ALLOW_LONG_MAX_MODEL_LEN",
                detail,
                f"Positions past {limit} give NaNs with RoPE; prefer --max-model-len {limit}.",
                limit=limit,
                apply={"arg": "max-model-len", "value": limit},
            )
        return result(
            cid,
            "fail",
            f"--max-model-len {req} exceeds the model's {ml.key}={limit}",
            detail
            + f". vLLM would exit: User-specified max_model_len ({req}) is greater than the derived max_model_len.",
            f"Use --max-model-len {limit} or less.",
            limit=limit,
            apply={"arg": "max-model-len", "value": limit},
        )
    return result(cid, "pass", f"--max-model-len {req} <= {ml.key}={limit}", detail, limit=limit)


@check("args.batched_tokens", "--max-num-batched-tokens vs --max-model-len")
def _batched(ctx: Context) -> CheckResult:
    cid = "args.batched_tokens"
    spec = ctx.spec
    bt = spec.get("max-num-batched-tokens")
    ml = spec.max_model_len or (
        ctx.facts.max_len.value if ctx.facts and ctx.facts.max_len else None
    )
    if bt is None or ml is None:
        return result(cid, "pass", "--max-num-batched-tokens unset: vLLM sizes it")
    if bt >= ml:
        return result(cid, "pass", f"--max-num-batched-tokens {bt} >= --max-model-len {ml}")
    chunked_off = (
        spec.get("no-enable-chunked-prefill") or spec.get("enable-chunked-prefill") is False
    )
    ver = parse_version(ctx.vllm_version)
    # vLLM V0 (default before 0.8) refuses this unless chunked prefill is on; V1 always chunks.
    v0 = ver is not None and ver.release < (0, 8)
    summary = f"--max-num-batched-tokens {bt} < --max-model-len {ml}"
    fix = f"Use --max-num-batched-tokens {ml} (or more), or --max-model-len {bt}."
    if chunked_off or v0:
        why = (
            "chunked prefill is off"
            if chunked_off
            else f"vLLM {ctx.vllm_version} runs the V0 engine"
        )
        return result(
            cid,
            "fail",
            summary,
            f"{why}: vLLM raises 'max_num_batched_tokens ({bt}) is smaller than max_model_len ({ml})'.",
            fix,
        )
    known = f"vLLM {ctx.vllm_version}" if ver else "vLLM (version unknown)"
    return result(
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
            return result(
                cid,
                "fail",
                f"--tokenizer {tok} is not a directory",
                "",
                "Point --tokenizer at a directory with tokenizer files.",
            )
        return result(cid, "pass", f"--tokenizer {tok}")
    files = f.tokenizer_files
    has_cfg = f.tokenizer_config is not None
    if not files:
        return result(
            cid,
            "fail",
            "no tokenizer files in the model directory",
            f"Looked for {', '.join(('tokenizer.json', 'tokenizer.model', 'vocab.json + merges.txt'))} in {f.path}",
            "Copy the original tokenizer files next to the weights (converted checkpoints often lack them), or pass --tokenizer DIR.",
        )
    if not has_cfg:
        return result(
            cid,
            "warn",
            f"{', '.join(files)} present but no tokenizer_config.json",
            "",
            "Copy tokenizer_config.json from the original model.",
        )
    return result(cid, "pass", ", ".join(files) + " + tokenizer_config.json")


@check("model.chat_template", "Chat template and preprocessor", needs_config=True)
def _chat_template(ctx: Context) -> CheckResult:
    cid = "model.chat_template"
    f = ctx.model
    from pathlib import Path

    flag = ctx.spec.get("chat-template")
    problems: list[tuple[Status, str, str]] = []
    src: str | None
    if flag:
        p = Path(str(flag))
        if "{" in str(flag):
            src = "--chat-template (inline)"
        elif not p.is_file():
            return result(
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
        return from_problems(cid, problems)
    pre = " + image processor config" if f.preprocessor_config is not None else ""
    return result(cid, "pass", f"chat template from {src}{pre}")


@check("model.remote_code", "trust-remote-code", needs_config=True)
def _remote_code(ctx: Context) -> CheckResult:
    cid = "model.remote_code"
    f = ctx.model
    trust = bool(ctx.spec.get("trust-remote-code"))
    am = f.auto_map
    if not am:
        if trust:
            return result(
                cid,
                "pass",
                "--trust-remote-code set; the model has no custom code (auto_map empty)",
            )
        return result(cid, "pass", "no custom model code needed")
    files = sorted({str(v).split(".")[0] for v in am.values() if isinstance(v, str)})
    missing = [m for m in files if "--" not in m and not (f.path / f"{m}.py").is_file()]
    detail = f"config.json auto_map: {', '.join(f'{k} -> {v}' for k, v in am.items())}"
    if missing:
        detail += f"\nMissing code files: {', '.join(m + '.py' for m in missing)}"
    if not trust:
        return result(
            cid,
            "fail",
            "the model ships its own code (auto_map): vLLM needs --trust-remote-code",
            detail,
            "Add --trust-remote-code (it runs the model's Python code: use it only with a model directory you trust).",
            apply={"arg": "trust-remote-code", "value": True},
        )
    if missing:
        return result(
            cid,
            "fail",
            "auto_map names code files that are not in the directory",
            detail,
            "Copy the .py files from the original model repository.",
        )
    return result(
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
        return result(
            cid,
            "fail",
            "model.safetensors.index.json is broken",
            w.index_error,
            "Re-download the index file.",
        )
    if not w.expected:
        if w.other_formats:
            return result(
                cid,
                "warn",
                f"no safetensors; found {', '.join(w.other_formats[:3])}",
                "mmops reads sizes from safetensors headers only.",
                "Prefer safetensors weights (faster, safer load).",
            )
        return result(
            cid,
            "fail",
            "no weight files in the model directory",
            f"Looked for *.safetensors in {f.path}",
            "Download the weights (all shards) into the model directory.",
        )
    if w.missing:
        return result(
            cid,
            "fail",
            f"{len(w.missing)} of {len(w.expected)} shards named by the index are missing",
            "Missing: " + ", ".join(w.missing[:8]) + (" ..." if len(w.missing) > 8 else ""),
            "Finish the download: every shard in model.safetensors.index.json must be present.",
        )
    if w.errors:
        return result(
            cid,
            "fail",
            # The first one named in the summary: serve's refusal shows summaries, not details.
            f"{len(w.errors)} shard(s) unreadable: {w.errors[0]}",
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
        from mmops.model.facts import run_dtype

        if run_dtype(f, dtype) == "BF16":
            names = sorted({d.name for d in ctx.devices if not d.bf16})
            return result(
                cid,
                "fail",
                f"{', '.join(names)} has no bfloat16; the model would run in bfloat16",
                summary,
                "Pass --dtype float16.",
            )
    return result(cid, "pass", summary, data_bytes=w.total_bytes)


def _count(n: int) -> str:
    """Parameter counts as people say them: 7.62B, 3.1M, 812."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)
