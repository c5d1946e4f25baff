"""A text sparkline (▁▂▃▄▅▆▇█) of the last samples: cheap, and it reads without colour."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int, top: float | None = None) -> str:
    """The last ``width`` values as bars scaled to ``top`` (default: their maximum)."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    known = [v for v in vals if v is not None]
    hi = top if top is not None else (max(known) if known else 0.0)
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif hi <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, max(0, int(v / hi * (len(BARS) - 1) + 0.5)))])
    return "".join(out)
