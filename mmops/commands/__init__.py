"""One module per subcommand: parse flags, call the core, render, return an exit code."""

from __future__ import annotations

import argparse

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def switch(value: str) -> bool:
    """An optional yes/no flag value, as the reference's scripts pass them (``--stream 1``,
    ``--ignore-eos True``). Their ``type=bool`` read ``False`` as true; here it is false."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false or yes/no, got {value!r}")
