"""One attempt's process: spawned under the reaper in its own group, its pipe read into the
attempt log, and stopped with the SIGINT -> SIGTERM -> SIGKILL ladder.

The pipe is read in 64 KiB chunks; complete lines are masked (secrets), appended to the log
(unbuffered: the kernel holds every line, so a kill of mmops loses nothing) and handed to
``on_text``. Nothing in that path waits on anything but the pipe, so a flood never delays a
state decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import BinaryIO

from mmops import redact
from mmops.serve import reaper

MAX_PARTIAL = 1 << 20  # a "line" longer than 1 MiB is written as it is, unsplit


class Child:
    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        log: BinaryIO | None,
        redactor: redact.Redactor,
        on_text: Callable[[str], None],
        reaper_grace_s: float,
        on_log_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.redactor = redactor
        self.on_text = on_text
        self.reaper_grace_s = reaper_grace_s
        self.on_log_error = on_log_error
        self.log_error: OSError | None = None  # the write the disk refused (full, gone)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def spawn(self) -> None:
        """Start the process (OSError when even the reaper cannot start)."""
        self.proc = await asyncio.create_subprocess_exec(
            *reaper.reaper_argv(self.argv, self.reaper_grace_s),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def read_output(self) -> None:
        """Pipe -> log file (complete lines, masked) -> ``on_text``, until the pipe closes."""
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
        partial = b""
        while True:
            chunk = await stream.read(1 << 16)
            if not chunk:
                break
            data = partial + chunk
            cut = data.rfind(b"\n")
            if cut < 0 and len(data) < MAX_PARTIAL:
                partial = data
                continue
            if cut < 0:
                cut = len(data) - 1
            block, partial = data[: cut + 1], data[cut + 1 :]
            self._ingest(block)
        if partial:
            self._ingest(partial)

    def _ingest(self, block: bytes) -> None:
        block = self.redactor.chunk(block)
        if self.log is not None:
            try:
                self.log.write(block)
            except OSError as exc:
                # A full disk: stop writing, but keep draining the pipe (a child blocked on
                # a full pipe would hang), and say so once; the owner decides what follows.
                self.log_error = exc
                self.close_log()
                if self.on_log_error is not None:
                    self.on_log_error(exc)
        self.on_text(block.decode("utf-8", "replace"))

    async def terminate(
        self,
        sigint_s: float,
        sigterm_s: float,
        force: asyncio.Event,
        on_step: Callable[[str, str], None] = lambda sig, why: None,
    ) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to the group and whole tree. ``on_step(signal,
        why)`` is told of each escalation past the first signal."""
        assert self.proc is not None
        pgid = self.proc.pid
        waiter = asyncio.ensure_future(self.proc.wait())
        forced = asyncio.ensure_future(force.wait())
        try:
            for sig, wait_s in ((signal.SIGINT, sigint_s), (signal.SIGTERM, sigterm_s)):
                if waiter.done() or forced.done():
                    break
                if sig == signal.SIGTERM:
                    on_step("SIGTERM", f"still running after {sigint_s:g} s")
                reaper.signal_group(pgid, sig)
                await asyncio.wait(
                    {waiter, forced}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
                )
            if not waiter.done():
                on_step("SIGKILL", "killing the process group")
                reaper.kill_tree(pgid)
                await waiter
        finally:
            forced.cancel()
            if not waiter.done():
                waiter.cancel()

    async def kill(self) -> None:
        """Leave nothing behind (cancelled from outside, mmops failing)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        reaper.kill_tree(self.proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)

    def close_log(self) -> None:
        # No fsync: the kernel holds every line already, and syncing a big log would stall the
        # loop for no gain.
        if self.log is not None:
            log, self.log = self.log, None
            with contextlib.suppress(OSError):  # a full disk may refuse the last bytes again
                log.close()
