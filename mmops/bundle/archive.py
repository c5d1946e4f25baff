"""Writing a bundle: one .tar.gz, complete or absent (temp file beside it, then a rename)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from mmops.bundle.manifest import MANIFEST, Bundle
from mmops.errors import UsageError

SUFFIX = ".tar.gz"
# Shown first by `tar tzf`: what to read first.
_FIRST = ("summary.md", MANIFEST)


def output_path(option: str | None, bundle_name: str, cwd: Path | None = None) -> Path:
    """Where ``-o`` says (a directory gets the default file name), else ``<name>.tar.gz`` in
    the current directory. A folder that does not exist is the user's error, named as ``-o``."""
    here = cwd or Path.cwd()
    default = bundle_name + SUFFIX
    if not option:
        return here / default
    path = here / Path(option).expanduser()
    if path.is_dir():
        return path / default
    if option.endswith(os.sep):  # "DIR/" means a folder, even one that is missing
        raise UsageError(f"-o {option}: directory {path} does not exist")
    if path.exists() and not path.is_file():
        # A FIFO or a device (/dev/full as root) would be replaced by the rename: refuse.
        raise UsageError(f"-o {option}: not a regular file or a directory")
    parent = path.parent
    if not parent.exists():
        raise UsageError(f"-o {option}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"-o {option}: {parent} is not a directory")
    return path


def write_archive(bundle: Bundle, path: Path) -> int:
    """Write ``bundle`` to ``path`` as a gzipped tar under one folder named for the bundle;
    returns its size. Readers see the whole archive or none: it is written to a temp file in
    the same directory and renamed when complete. Raises OSError (the temp file removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    members = sorted(
        bundle.members, key=lambda m: _FIRST.index(m.name) if m.name in _FIRST else len(_FIRST)
    )
    try:
        with tmp.open("xb") as fh:
            with tarfile.open(fileobj=fh, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_info(bundle.name, 0, bundle.created, directory=True))
                for m in members:
                    info = _info(f"{bundle.name}/{m.name}", len(m.data), bundle.created)
                    tar.addfile(info, io.BytesIO(m.data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def _info(name: str, size: int, mtime: float, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o755 if directory else 0o644
    if directory:
        info.type = tarfile.DIRTYPE
    return info
