"""Preflight: every doctor check with its verdict (✓ ! ✗ -), summary and fix."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from mmops.doctor.core import CheckResult, DoctorReport

MARK = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "dim")}


class PreflightTable(DataTable[Text]):
    """One row per check; the cursor row's fix is shown under the table by the app."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.report: DoctorReport | None = None

    def on_mount(self) -> None:
        self.add_columns(" ", "check", "summary")

    def show(self, report: DoctorReport | None, note: str = "") -> None:
        self.report = report
        self.clear()
        if report is None:
            self.add_row(Text("-"), Text("preflight"), Text(note or "skipped"))
            return
        for c in report.checks:
            mark, style = MARK.get(c.status, ("?", ""))
            self.add_row(Text(mark, style), Text(c.id), Text(c.summary), key=c.id)

    def selected(self) -> CheckResult | None:
        if self.report is None or not self.report.checks:
            return None
        row = max(0, min(self.cursor_row, len(self.report.checks) - 1))
        return self.report.checks[row]
