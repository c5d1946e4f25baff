"""Loaded by Python at start-up when this folder is on PYTHONPATH: the fallback of the hostile
state-dir cases where the machine refuses `mount -t tmpfs` (not root, a locked-down container).

``MMOPS_HOSTILE_REFUSE=CODE:DIR`` (CODE an errno name: ENOSPC, EROFS) makes every attempt to
create or write a file or folder under DIR fail with that error, as a full or read-only disk
would: ``os.open``/``open`` for writing, ``os.mkdir``. Reads and everything elsewhere are
untouched. A real small tmpfs is used wherever the machine allows it (tests/hostile/disks.py).
"""

from __future__ import annotations

import builtins
import errno
import io
import os

_SPEC = os.environ.get("MMOPS_HOSTILE_REFUSE", "")
if _SPEC:
    _name, _, _root = _SPEC.partition(":")
    _code = getattr(errno, _name)
    _root = os.path.abspath(_root)
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _under(path: object) -> bool:
        if isinstance(path, int):
            return False
        try:
            full = os.path.abspath(os.fsdecode(os.fspath(path)))  # type: ignore[arg-type]
        except TypeError:
            return False
        return full == _root or full.startswith(_root + os.sep)

    def _refuse(path: object) -> OSError:
        return OSError(_code, os.strerror(_code), os.fsdecode(os.fspath(path)))  # type: ignore[arg-type]

    _os_open = os.open
    _os_mkdir = os.mkdir
    _io_open = io.open

    def _open_fd(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if flags & _WRITE and _under(path):
            raise _refuse(path)
        return _os_open(path, flags, mode, dir_fd=dir_fd)

    def _mkdir(path, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if _under(path) and not os.path.isdir(path):
            raise _refuse(path)
        return _os_mkdir(path, mode, dir_fd=dir_fd)

    def _open(file, mode="r", *args, **kw):  # type: ignore[no-untyped-def]
        if any(c in mode for c in "wax+") and _under(file):
            raise _refuse(file)
        return _io_open(file, mode, *args, **kw)

    os.open = _open_fd
    os.mkdir = _mkdir
    io.open = _open
    builtins.open = _open
