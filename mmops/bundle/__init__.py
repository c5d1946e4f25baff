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
    "Bundle",
    "Member",
    "Omission",
    "Written",
    "collect",
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
