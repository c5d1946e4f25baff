"""What the hostile cases that do not go through ``Hostile.run`` report to the tally that
``conftest.py`` prints at the end of the run: the signal matrices, the state-dir cases' disks,
and the secrets leak counter."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SignalCase:
    command: str  # serve, offline, tui
    signal: str
    phase: str
    survivors: list[str] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # JSON files or lines that do not parse
    ended: str | None = None  # how the record says the run ended (None: nobody left to say)


SIGNAL_TALLY: list[SignalCase] = []
DISKS: list[str] = []  # "tmpfs" or "injected", one per state-dir case
# The secrets leak counter: place -> occurrences of the planted secrets found there.
LEAKS: dict[str, int] = {}
PLANTED: list[str] = []  # the secrets the counter looked for
