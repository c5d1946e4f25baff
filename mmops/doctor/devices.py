"""Checks on the accelerators: visible, and with enough free memory."""

from __future__ import annotations

from mmops import platform
from mmops.doctor.core import (
    CheckResult,
    Context,
    check,
    result,
)


@check("device.visible", "Accelerators visible")
def _device_visible(ctx: Context) -> CheckResult:
    cid = "device.visible"
    if ctx.vendor == "cpu":
        return result(cid, "pass", "CPU backend requested: no accelerator needed")
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
        return result(cid, "fail", f"{what} found", f"Looked at: {looked}", fix)
    names = sorted({d.name for d in ctx.devices})
    sim = " (simulated for offline planning)" if rep.simulated else ""
    warn = list(rep.warnings)
    need = ctx.spec.tp * ctx.spec.pp
    summary = f"{len(ctx.devices)} x {', '.join(names)} visible{sim}"
    detail = "; ".join([f"Looked at: {looked}", *warn])
    if warn:
        return result(cid, "warn", summary, detail, "See the warnings above.", count=len(ctx.devices))
    if len(ctx.devices) < need:
        return result(cid, "pass", summary, detail, count=len(ctx.devices))  # parallel.tp says why
    return result(cid, "pass", summary, detail, count=len(ctx.devices))


def runtime_memory_mib(d: platform.Device) -> tuple[int, int]:
    """(total, used) as the framework sees them, which is what vLLM multiplies by
    gpu-memory-utilization. On Ascend the driver reserves ~3 GiB per chip that npu-smi counts
    as used but torch_npu leaves out of the total: a 64 GiB 910B reports "60.96 GiB total
    capacity" in its OOM messages (vllm-ascend#3965, #6611) while npu-smi says 3378/65536 MB
    used at idle. So both the total and the used figure lose that idle baseline. On NVIDIA the
    driver's reserve (total - used - free in nvidia-smi, ~615 MiB on an H200) is outside CUDA's
    total and counted nowhere else, so only the total loses it."""
    if d.vendor != "ascend":
        return d.memory_total_mib - d.memory_reserved_mib, d.memory_used_mib
    spec = platform.match_spec(d.name, d.memory_total_mib)
    idle = spec.idle_used_mib if spec is not None else 0
    return d.memory_total_mib - idle, max(0, d.memory_used_mib - idle)


@check("device.memory", "Free device memory")
def _device_memory(ctx: Context) -> CheckResult:
    cid = "device.memory"
    if ctx.vendor == "cpu":
        return result(cid, "skip", "CPU backend: KV cache comes from VLLM_CPU_KVCACHE_SPACE")
    if not ctx.used_devices:
        return result(cid, "skip", "no device to check")
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
        return result(
            cid,
            "fail",
            f"device {idx}: free {free} MiB < {want:.0f} MiB requested by --gpu-memory-utilization {util:g}",
            "\n".join(lines) + "\nvLLM refuses to start when free memory is below total x "
            "gpu-memory-utilization." + who,
            f"Stop what holds the memory, or lower --gpu-memory-utilization to {max(0.05, max_util - 0.01):.2f}.",
        )
    return result(
        cid,
        "pass",
        f"{len(ctx.used_devices)} device(s) have room for {util:g} x total",
        "\n".join(lines),
    )
