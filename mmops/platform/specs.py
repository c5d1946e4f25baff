"""Accelerators mmops knows by heart, for planning without the hardware (``--device 910b3``).

Memory figures are what the vendor tool reports (npu-smi "MB" columns and nvidia-smi
``memory.total``, both MiB), not the marketing GB, because that is what vLLM can allocate
from. ``idle_used_mib`` is what the tool shows used on an idle device: on Ascend the driver
reserves about 3.3 GiB of each 64 GiB HBM chip before any process starts. Every entry names
its source.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmops.errors import UsageError
from mmops.platform.records import Device, MemoryKind, PlatformReport, Vendor


@dataclass(frozen=True)
class AcceleratorSpec:
    id: str
    vendor: Vendor
    name: str  # exactly as npu-smi / nvidia-smi prints it
    memory_total_mib: int
    kind: MemoryKind
    bf16: bool
    idle_used_mib: int
    source: str


_VLLM_ASCEND = "https://github.com/vllm-project/vllm-ascend/issues/"
_MODAL = "https://github.com/modal-labs/modal-client/pull/2797 (nvidia-smi totals per GPU type)"
_EXPORTER = (
    "https://github.com/utkuozdemir/nvidia_gpu_exporter/tree/"
    "e656cd81a180e7e0e7862b53c9acd4c2fb0f590b/internal/captures"
)

# Columns: id, vendor, name as the tool prints it, memory_total_mib, kind, bf16, idle_used_mib,
# source.
# fmt: off
_SPECS = tuple(AcceleratorSpec(*row) for row in (
    # Atlas A2 (910B): 64 GiB HBM per chip except 910B4 (32 GiB); all bf16.
    ("910b1", "ascend", "910B1", 65536, "HBM", True, 3373,
     _VLLM_ASCEND + "152 (npu-smi 24.1.rc3, idle 3373 / 65536)"),
    ("910b2", "ascend", "910B2", 65536, "HBM", True, 3379,
     _VLLM_ASCEND + "612 (8 idle chips, 3373-3379 / 65536)"),
    ("910b3", "ascend", "910B3", 65536, "HBM", True, 3378,
     _VLLM_ASCEND + "3114 (8 idle chips, 3378 / 65536; tests/fixtures/npu-smi/910b3-x8-idle)"),
    ("910b4", "ascend", "910B4", 32768, "HBM", True, 2859,
     _VLLM_ASCEND + "1401 (4 idle chips, 2847-2859 / 32768)"),
    ("910b4-1", "ascend", "910B4-1", 65536, "HBM", True, 3448,
     _VLLM_ASCEND + "3810 (idle chips 3444-3448 / 65536)"),
    # Atlas A3 (910_93): npu-smi names it "Ascend910", two dies per NPU, 64 GiB HBM per die.
    ("a3", "ascend", "Ascend910", 65536, "HBM", True, 3158,
     _VLLM_ASCEND + "6245 (16 idle dies, 2879-3158 / 65536)"),
    # 310P3 has no bf16 (vLLM runs it with --dtype float16). Memory is DDR, per chip.
    # Atlas 300I Duo 96 GB: two chips per card, 43757 and 44216 MiB; the smaller is used.
    ("310p3", "ascend", "310P3", 43757, "DDR", False, 1758,
     _VLLM_ASCEND + "2416 (Atlas 300I Duo, chips 1196-1758 / 43757-44216); Syllo/nvtop#421"),
    # 24 GB chip (Atlas 300I Pro; the 48 GB 300I Duo has two of them: UNVERIFIED per chip).
    ("310p3-24g", "ascend", "310P3", 21534, "DDR", False, 1074,
     "https://github.com/Ascend/ModelZoo-PyTorch ACL_PyTorch model READMEs "
     "(npu-smi sample: 1074 / 21534)"),
    # NVIDIA: nvidia-smi reports 0 MiB used on an idle datacenter GPU (its reserve is already
    # left out of memory.total), e.g. the H100/H200/L40S idle captures.
    ("a10", "nvidia", "NVIDIA A10", 23028, "VRAM", True, 0, _MODAL),
    ("l20", "nvidia", "NVIDIA L20", 46068, "VRAM", True, 0,
     "48 GB GDDR6; 46068 MiB in public nvidia-smi captures (same as L40S; the repository "
     "holding them was not identified)"),
    ("l40s", "nvidia", "NVIDIA L40S", 46068, "VRAM", True, 0, _MODAL),
    ("l4", "nvidia", "NVIDIA L4", 23034, "VRAM", True, 0, _MODAL),
    ("a100-40", "nvidia", "NVIDIA A100-SXM4-40GB", 40960, "VRAM", True, 0, _MODAL),
    ("a100-80", "nvidia", "NVIDIA A100-SXM4-80GB", 81920, "VRAM", True, 0, _MODAL),
    ("h20", "nvidia", "NVIDIA H20", 97871, "VRAM", True, 0,
     "https://github.com/NVIDIA/nvtrust/issues/128 (nvidia-smi: 0MiB / 97871MiB)"),
    ("h100-80", "nvidia", "NVIDIA H100 80GB HBM3", 81559, "VRAM", True, 0,
     _MODAL + "; " + _EXPORTER),
    ("h200", "nvidia", "NVIDIA H200", 143771, "VRAM", True, 0,
     _EXPORTER + "/linux-x86_64__nvidia-h200__590.48.01.txt"),
    ("rtx4090", "nvidia", "NVIDIA GeForce RTX 4090", 24564, "VRAM", True, 0,
     "https://github.com/vllm-project/vllm/issues/7553 (23859MiB / 24564MiB)"),
    # Pre-Ampere: no bf16.
    ("v100-32", "nvidia", "Tesla V100-SXM2-32GB", 32768, "VRAM", False, 0,
     "https://github.com/NVIDIA/dcgm-exporter/issues/250 (0MiB / 32768MiB)"),
    ("t4", "nvidia", "Tesla T4", 15360, "VRAM", False, 0, _MODAL),
))
# fmt: on

_ALIASES = {
    "910_93": "a3",
    "910c": "a3",
    "ascend910": "a3",
    "atlas-a3": "a3",
    "300i-duo": "310p3",
    "h100": "h100-80",
    "a100": "a100-80",
    "v100": "v100-32",
    "4090": "rtx4090",
}


def known_accelerators() -> dict[str, AcceleratorSpec]:
    """Every known accelerator by id (``910b3``, ``h100-80``, ...)."""
    return {spec.id: spec for spec in _SPECS}


def lookup(kind: str) -> AcceleratorSpec:
    """The spec for an id or alias, case-insensitive; UsageError names the valid ids."""
    key = kind.strip().lower()
    specs = known_accelerators()
    spec = specs.get(_ALIASES.get(key, key))
    if spec is None:
        raise UsageError(
            f"--device {kind!r} is not a known accelerator; valid: {', '.join(sorted(specs))}"
        )
    return spec


def match_spec(name: str, memory_total_mib: int) -> AcceleratorSpec | None:
    """The spec a detected device corresponds to: same tool name, closest memory size."""
    same = [spec for spec in _SPECS if spec.name.lower() == name.strip().lower()]
    if not same:
        return None
    return min(same, key=lambda spec: abs(spec.memory_total_mib - memory_total_mib))


def simulate(kind: str, count: int) -> PlatformReport:
    """A report of ``count`` idle ``kind`` devices, for planning without the hardware."""
    spec = lookup(kind)
    if count < 1:
        raise UsageError(f"--devices must be at least 1, got {count}")
    devices = tuple(
        Device(
            vendor=spec.vendor,
            index=i,
            physical_id=i,
            name=spec.name,
            memory_total_mib=spec.memory_total_mib,
            memory_used_mib=spec.idle_used_mib,
            memory_kind=spec.kind,
            health="OK" if spec.vendor == "ascend" else None,
            bf16=spec.bf16,
        )
        for i in range(count)
    )
    looked_at = (
        f"simulated: {count} x {spec.name} ({spec.id}), {spec.memory_total_mib} MiB "
        f"{spec.kind} each, {spec.idle_used_mib} MiB used when idle [{spec.source}]",
    )
    return PlatformReport(devices=devices, looked_at=looked_at, simulated=True)
