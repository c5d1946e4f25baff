"""One archive for an on-call escalation: a run's record and the machine's facts, redacted.

``collect`` gathers (``collect.py``: run folder, versions, devices, environment, doctor;
``summary.py``: the one-page summary.md; ``versions.py``: collect-env's report; ``manifest.py``:
what is in it and what was left out), ``write_archive`` writes the .tar.gz whole or not at all
(``archive.py``). `mmops bundle` and a FAILED `mmops serve` both come through ``write_bundle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmops.bundle.archive import output_path, write_archive
from mmops.bundle.collect import DEFAULT_LINES, collect
from mmops.bundle.manifest import Bundle, Member, Omission, human_size

__all__ = [
    "DEFAULT_LINES",
    "FAILURE_BUNDLE",
    "Bundle",
    "Member",
    "Omission",
    "Written",
    "collect",
    "failure_bundle",
    "human_size",
    "output_path",
    "write_archive",
    "write_bundle",
]


@dataclass(frozen=True)
class Written:
    """A bundle on disk: where, how big, and its manifest."""

    path: Path
    size: int
    bundle: Bundle


def write_bundle(path: Path, run: Path | None, *, lines: int = DEFAULT_LINES) -> Written:
    """Collect a bundle of ``run`` (None: the machine's facts only) and write it to ``path``."""
    bundle = collect(run, lines=lines)
    return Written(path, write_archive(bundle, path), bundle)


FAILURE_BUNDLE = "bundle.tar.gz"  # what a run that ended FAILED leaves in its folder


def failure_bundle(run: Path) -> str:
    """Bundle a run that ended FAILED into its own folder; one line saying where, or why not.

    Best effort, for `serve` and the TUI alike: whatever goes wrong is that one line, never an
    exception that would hide the run's own failure.
    """
    try:
        written = write_bundle(run / FAILURE_BUNDLE, run)
    except (Exception, KeyboardInterrupt) as exc:
        return f"no failure bundle: {type(exc).__name__}: {exc}"
    return f"failure bundle: {written.path} ({human_size(written.size)}), for an escalation"
