"""Devices: per NPU/GPU memory used/total and utilisation, with sparklines of the last minutes
(npu-smi / nvidia-smi through the platform layer, polled by the app in a worker)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import Static

from mmops.platform import PlatformReport
from mmops.tui.widgets.sparkline import sparkline

HISTORY = 120  # samples kept per device (4 minutes at the default 2 s)


class DevicesPanel(Static):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.mem: dict[str, deque[float | None]] = {}
        self.util: dict[str, deque[float | None]] = {}
        self.report: PlatformReport | None = None
        self.error: str | None = None
        self.cpu = False

    def add_sample(
        self, report: PlatformReport | None, error: str | None = None, cpu: bool = False
    ) -> None:
        self.error = error
        self.cpu = cpu
        if report is not None:
            self.report = report
            for d in report.devices:
                key = f"{d.vendor}:{d.index}"
                self.mem.setdefault(key, deque(maxlen=HISTORY)).append(
                    d.memory_used_mib / d.memory_total_mib * 100 if d.memory_total_mib else None
                )
                self.util.setdefault(key, deque(maxlen=HISTORY)).append(
                    float(d.utilization_pct) if d.utilization_pct is not None else None
                )
        self.refresh_text()

    def refresh_text(self) -> None:
        out = Text()
        if self.cpu:
            out.append("CPU backend: no accelerator is used by this launch (vLLM CPU build).\n")
        if self.error:
            out.append(f"device query: {self.error}\n", "bold red")
        rep = self.report
        if rep is not None and not rep.devices and not self.cpu:
            out.append("no NPU or GPU found\n", "bold")
            for note in rep.looked_at[-4:]:
                out.append(f"  {note}\n", "dim")
        width = max(10, min(60, self.size.width - 44 if self.size.width else 30))
        for d in rep.devices if rep is not None else ():
            key = f"{d.vendor}:{d.index}"
            util = f"{d.utilization_pct:>3}%" if d.utilization_pct is not None else "  -"
            out.append(f"{d.vendor} {d.index} {d.name[:14]:<14} ", "bold")
            out.append(
                f"{d.memory_used_mib / 1024:6.1f}/{d.memory_total_mib / 1024:.0f} GiB util {util}"
            )
            if d.health and d.health.lower() not in ("ok", "healthy"):
                out.append(f" health {d.health}", "red")
            out.append("\n  mem  " + sparkline(self.mem.get(key, ()), width, 100.0) + "\n", "cyan")
            out.append("  util " + sparkline(self.util.get(key, ()), width, 100.0) + "\n", "green")
        self.update(out if out.plain else Text("querying devices..."))
