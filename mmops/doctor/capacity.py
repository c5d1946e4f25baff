"""Checks that the model fits: parallel sizes and memory."""

from __future__ import annotations

from mmops.doctor.core import (
    CheckResult,
    Context,
    check,
    result,
)
from mmops.doctor.devices import runtime_memory_mib
from mmops.model import estimate
from mmops.model.facts import VISION_HEADS_PADDED, ModelFacts


@check("parallel.tp", "Tensor / pipeline parallel sizes")
def _tp(ctx: Context) -> CheckResult:
    cid = "parallel.tp"
    tp, pp = ctx.spec.tp, ctx.spec.pp
    if tp < 1 or pp < 1:
        return result(
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
    across = str(ctx.spec.get("distributed-executor-backend") or "").lower() == "ray"
    if across and not problems:
        # A Ray launch spreads TP x PP over the cluster's nodes: cluster.devices counts them.
        return result(
            cid,
            "pass",
            f"TP {tp} x PP {pp} = {tp * pp} device(s) across the Ray cluster (see cluster.devices)",
        )
    if not across and ctx.vendor not in (None, "cpu") and tp * pp > visible:
        problems.append(f"TP x PP = {tp * pp} but only {visible} device(s) visible")
        fixes.append(
            f"Make {tp * pp} devices visible, or lower --tensor-parallel-size to {max(1, visible // pp)}."
        )
    if problems:
        return result(cid, "fail", problems[0], "\n".join(problems), " ".join(fixes))
    used = f"TP {tp} x PP {pp} = {tp * pp} device(s)"
    if ctx.vendor not in (None, "cpu") and visible > tp * pp:
        return result(cid, "pass", f"{used}; {visible - tp * pp} more visible and unused")
    return result(cid, "pass", used)


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
        return result(cid, "skip", "weights unreadable: nothing to size (see model.weights)")
    limit = f.max_len.value if f.max_len else None
    max_len = ctx.spec.max_model_len or limit
    inp = _fit_input(ctx, max_len)
    if ctx.vendor == "cpu":
        return _cpu_fit(ctx, f, inp, max_len)
    if not ctx.used_devices:
        return result(
            cid, "skip", "no device to size against (plan offline with --device 910b3 --devices N)"
        )
    d = min(ctx.used_devices, key=lambda x: x.memory_total_mib - x.memory_used_mib)
    total_mib, used_mib = runtime_memory_mib(d)
    total = total_mib * estimate.MIB
    free = (total_mib - used_mib) * estimate.MIB
    fit = estimate.fit(f, inp, total, free)
    if fit is None:
        return result(
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
        return result(
            cid,
            "fail",
            f"no room for the KV cache: short by {g(short)} per device",
            detail,
            fix,
            **data,
        )
    fit_len = min(fit.max_len_fit, limit) if limit else fit.max_len_fit
    if max_len and fit.max_len_fit < max_len:
        return result(
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
        return result(
            cid,
            "warn",
            summary + " (little headroom)",
            detail,
            f"Largest --max-model-len that fits: {fit_len}; raise memory or TP for concurrency.",
            **data,
        )
    if fit.concurrency < min(seqs, 4):
        return result(
            cid,
            "warn",
            summary,
            detail,
            f"Only {fit.concurrency:.1f} full-length requests fit; --max-num-seqs {seqs} will queue.",
            **data,
        )
    return result(
        cid,
        "pass",
        summary,
        detail + f"\nLargest --max-model-len that fits: {fit_len}.",
        fix="",
        **data,
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
        return result(cid, "skip", "cannot size the KV cache from config.json")
    try:
        space = float(raw) * estimate.GIB if raw else 4 * estimate.GIB  # vLLM CPU default 4 GiB
    except ValueError:
        return result(
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
        return result(
            cid,
            "fail",
            f"CPU KV cache holds {tokens:,} tokens < --max-model-len {max_len:,}",
            detail,
            f"Raise VLLM_CPU_KVCACHE_SPACE to {max_len * kv_tok / estimate.GIB:.2f} or use --max-model-len {tokens}.",
        )
    return result(
        cid,
        "pass",
        f"CPU KV cache ~{tokens:,} tokens = {tokens / max_len:.1f} requests of {max_len:,}",
        detail,
    )
