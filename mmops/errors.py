"""Errors a user can cause. The CLI and TUI catch these once and show one line."""

from __future__ import annotations


class MmopsError(Exception):
    """A user-facing error: bad input, a missing file, an invalid flag. Shown as one line."""

    exit_code = 2


class UsageError(MmopsError):
    """A bad command-line flag or value."""


class ProfileError(MmopsError):
    """A profile YAML file that cannot be used (syntax, unknown key, wrong type)."""


class SuiteError(MmopsError):
    """A check-suite YAML file that cannot be used."""


class RecordError(MmopsError):
    """A run folder that cannot be written: a read-only or full disk, a state dir that is a file.

    ``fix`` says what to do (also the end of the message)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}; {fix}")
        self.fix = fix
