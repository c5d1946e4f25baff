"""What a terminal may be sent: decided once, here, for every renderer.

ANSI escapes only go to a terminal that understands them (a TTY whose TERM is not ``dumb``);
colour also respects ``NO_COLOR`` (https://no-color.org: set and not empty means no colour).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is a TTY (False for a closed or replaced stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or "I/O operation on closed file"
        return False


def supports_ansi(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when escapes such as ``\\r\\x1b[K`` (clear the line) work on ``stream``."""
    env = os.environ if env is None else env
    return is_terminal(stream) and env.get("TERM") != "dumb"


def use_color(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` may be coloured: an ANSI terminal, and NO_COLOR unset or empty."""
    env = os.environ if env is None else env
    return supports_ansi(stream, env) and not env.get("NO_COLOR")


def paint(text: str, code: str, color: bool) -> str:
    """``text`` in SGR ``code`` (``"31"`` red, ``"1"`` bold, ``"32;1"``) when ``color``."""
    return f"\x1b[{code}m{text}\x1b[0m" if color else text
