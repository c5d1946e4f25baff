"""Small disks for the state-dir cases: a real tmpfs where the machine allows `mount` (root in
most CI containers and on this project's machines), else an injected error (inject/).

``Disk.how`` says which one a case got: "tmpfs" (``mount -t tmpfs -o size=64k[,ro]``: the
kernel's own EROFS and ENOSPC, partial writes included) or "injected" (``sitecustomize`` in the
mmops process makes every write under the folder fail with EROFS or ENOSPC). Set
``MMOPS_HOSTILE_NO_MOUNT=1`` to force the injection.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

INJECT = Path(__file__).resolve().parent / "inject"
SIZE = "64k"


@dataclass
class Disk:
    path: Path
    how: str  # "tmpfs" or "injected"
    env: dict[str, str] = field(default_factory=dict)  # for the mmops process (the injection)

    def fill(self) -> None:
        """Fill a tmpfs to the last byte (a real full disk)."""
        assert self.how == "tmpfs", "only a real disk can be filled"
        with contextlib.suppress(OSError), (self.path / "filler").open("wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()


def _mount(path: Path, options: str) -> bool:
    if os.environ.get("MMOPS_HOSTILE_NO_MOUNT") == "1":
        return False
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return res.returncode == 0


class Disks:
    """Makes disks under one case folder, and unmounts every one it mounted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: list[Path] = []

    def make(self, kind: str) -> Disk:
        """``kind``: "readonly" (EROFS), "full" (ENOSPC from the first write) or "small" (a
        64 KiB tmpfs a case fills while mmops runs; skipped where nothing can be mounted)."""
        path = self.root / f"disk-{kind}"
        path.mkdir()
        if _mount(path, f"size={SIZE}" + (",ro" if kind == "readonly" else "")):
            self.mounted.append(path)
            disk = Disk(path, "tmpfs")
            if kind == "full":
                disk.fill()
            return disk
        if kind == "small":
            import pytest

            pytest.skip("needs a real small disk to fill while mmops runs (mount refused)")
        code = "EROFS" if kind == "readonly" else "ENOSPC"
        return Disk(path, "injected", {"MMOPS_HOSTILE_REFUSE": f"{code}:{path}",
                                       "PYTHONPATH": str(INJECT)})  # fmt: skip

    def close(self) -> None:
        for path in reversed(self.mounted):
            res = subprocess.run(["umount", str(path)], capture_output=True, timeout=10)
            if res.returncode != 0:  # something still holds a file open: detach it anyway
                subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)
        self.mounted.clear()
