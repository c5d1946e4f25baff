"""Service: vLLM's /metrics (running, waiting, KV cache usage, token throughput) with
sparklines, and the latest probe per case (verdict, TTFT, latency)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import Static

from mmops.probe.metrics import MetricsSnapshot
from mmops.probe.runner import CaseResult
from mmops.tui.widgets.sparkline import sparkline

HISTORY = 120


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.0f} ms"


class ServicePanel(Static):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.series: dict[str, deque[float | None]] = {
            k: deque(maxlen=HISTORY) for k in ("running", "waiting", "kv", "prompt_tps", "gen_tps")
        }
        self.last: MetricsSnapshot | None = None
        self.metrics_error: str | None = None
        self.cases: dict[str, CaseResult] = {}
        self.probe_note = ""

    def add_metrics(
        self,
        snap: MetricsSnapshot | None,
        rates: tuple[float | None, float | None],
        error: str | None,
    ) -> None:
        self.metrics_error = error
        if snap is not None:
            self.last = snap
            self.series["running"].append(snap.running)
            self.series["waiting"].append(snap.waiting)
            self.series["kv"].append(
                None if snap.kv_cache_usage is None else snap.kv_cache_usage * 100
            )
            self.series["prompt_tps"].append(rates[0])
            self.series["gen_tps"].append(rates[1])
        self.refresh_text()

    def set_probe(self, note: str, cases: list[CaseResult] | None = None) -> None:
        self.probe_note = note
        for c in cases or []:
            self.cases[c.name] = c
        self.refresh_text()

    def refresh_text(self) -> None:
        out = Text()
        width = max(10, min(60, self.size.width - 30 if self.size.width else 30))
        if self.metrics_error:
            out.append(f"/metrics: {self.metrics_error}\n", "yellow")
        s = self.last
        if s is not None:
            rows = (
                ("running", "running", f"{s.running:.0f}" if s.running is not None else "-", None),
                ("waiting", "waiting", f"{s.waiting:.0f}" if s.waiting is not None else "-", None),
                (
                    "KV cache",
                    "kv",
                    f"{s.kv_cache_usage * 100:.1f}%" if s.kv_cache_usage is not None else "-",
                    100.0,
                ),
                ("prompt tok/s", "prompt_tps", _rate(self.series["prompt_tps"]), None),
                ("gen tok/s", "gen_tps", _rate(self.series["gen_tps"]), None),
            )
            for label, key, value, top in rows:
                out.append(f"{label:<13}{value:>9} ")
                out.append(sparkline(self.series[key], width, top) + "\n", "cyan")
        elif not self.metrics_error:
            out.append("/metrics: waiting for the server\n", "dim")
        out.append("\nprobes", "bold")
        out.append(f"  {self.probe_note}\n" if self.probe_note else "  (p runs the suite)\n")
        for c in self.cases.values():
            mark = ("✓", "green") if c.ok else ("✗", "red")
            out.append(f" {mark[0]} ", mark[1])
            line = (
                f"{c.name:<14} TTFT {_ms(c.ttft_s):>7}  latency {_ms(c.latency_s):>7}  {c.verdict}"
            )
            room = max(20, (self.size.width or 80) - 4)
            out.append((line if len(line) <= room else line[: room - 1] + "…") + "\n")
        self.update(out)


def _rate(series: deque[float | None]) -> str:
    v = series[-1] if series else None
    return "-" if v is None else f"{v:.1f}"
