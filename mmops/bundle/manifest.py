"""What a bundle holds: its members, what was left out and why, and MANIFEST.txt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmops.serve.events import iso_time

MANIFEST = "MANIFEST.txt"


@dataclass(frozen=True)
class Member:
    """One file of the archive: its name inside the bundle folder, its (redacted) bytes, and a
    note saying what it is or how it was cut."""

    name: str
    data: bytes
    note: str = ""


@dataclass(frozen=True)
class Omission:
    """Something a bundle would hold but does not: a missing file, a cut log, a command."""

    what: str
    why: str


@dataclass
class Bundle:
    """A bundle ready to be written: ``name`` is its folder in the archive and the stem of
    its default file name (``mmops-bundle-<run name or time>``)."""

    name: str
    created: float
    run: Path | None
    members: list[Member] = field(default_factory=list)
    left_out: list[Omission] = field(default_factory=list)

    def add(self, name: str, data: bytes, note: str = "") -> None:
        self.members.append(Member(name, data, note))

    def leave_out(self, what: str, why: str) -> None:
        self.left_out.append(Omission(what, why))

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The manifest as `mmops bundle --json` prints it."""
        return {
            "name": self.name,
            "created": iso_time(self.created),
            "run": str(self.run) if self.run else None,
            "files": [{"name": m.name, "bytes": len(m.data), "note": m.note} for m in self.members],
            "left_out": [{"what": o.what, "why": o.why} for o in self.left_out],
        }


def render_manifest(bundle: Bundle) -> str:
    """MANIFEST.txt: every file in the archive (this one included), then what was left out."""
    lines = [f"{bundle.name}: written {iso_time(bundle.created)}"]
    if bundle.run is not None:
        lines.append(f"run: {bundle.run}")
    else:
        lines.append("run: none (no `mmops serve` run folder was found; machine facts only)")
    lines.append("")
    lines.append("files:")
    names = [m.name for m in bundle.members] + [MANIFEST]
    width = max(len(n) for n in names)
    for m in bundle.members:
        note = f"  {m.note}" if m.note else ""
        lines.append(f"  {m.name:<{width}}  {human_size(len(m.data)):>9}{note}")
    lines.append(f"  {MANIFEST:<{width}}  {'':>9}  this list")
    lines.append("")
    if bundle.left_out:
        lines.append("left out:")
        for o in bundle.left_out:
            lines.append(f"  {o.what}: {o.why}")
    else:
        lines.append("left out: nothing")
    lines.append("")
    lines.append(
        "secrets: values of secret-named variables and flags, bearer tokens, hf_ and sk- keys "
        "and URL credentials are replaced by *** in every file."
    )
    return "\n".join(lines) + "\n"


def human_size(n: int) -> str:
    """A byte count as people read it: 812 B, 12.4 KiB, 3.1 MiB."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
