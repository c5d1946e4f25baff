"""The sampling flags of the reference's scripts (SamplingParams' names), for `probe` and
`offline`: one definition, one check, so a bad value is refused before anything is sent or
started."""

from __future__ import annotations

import argparse
from typing import Any

from mmops.commands import switch
from mmops.errors import UsageError

# Scalar sampling flags, by their SamplingParams / Sampling field name (stop ids: a list).
SAMPLING_ARGS = ("max_tokens", "temperature", "top_k", "top_p", "ignore_eos", "repetition_penalty")


def add_sampling_arguments(
    p: argparse.ArgumentParser, *, title: str, temperature_help: str, stop_help: str
) -> None:
    """``--max-tokens --temperature --top-k --top-p --ignore-eos --repetition-penalty
    --stop-token-ids``, all default None (the caller's defaults apply to what is not given)."""
    samp = p.add_argument_group(title)
    samp.add_argument("--max-tokens", type=int, metavar="N", help="default 16")
    samp.add_argument("--temperature", type=float, metavar="T", help=temperature_help)
    samp.add_argument("--top-k", type=int, metavar="K", help="default -1 (off)")
    samp.add_argument("--top-p", type=float, metavar="P", help="default 1.0")
    samp.add_argument(
        "--ignore-eos", nargs="?", const=True, default=None, type=switch, metavar="1|0",
        help="keep generating past EOS (default off)",
    )  # fmt: skip
    samp.add_argument("--repetition-penalty", type=float, metavar="R", help="default 1.0")
    samp.add_argument("--stop-token-ids", type=int, nargs="+", metavar="ID", help=stop_help)


def given_sampling(args: argparse.Namespace) -> dict[str, Any]:
    """The scalar sampling flags given (not None), each checked; a bad one is a UsageError
    naming the flag and what is valid."""
    from mmops.probe.request import sampling_value

    given: dict[str, Any] = {}
    for name in SAMPLING_ARGS:
        value = getattr(args, name)
        if value is None:
            continue
        try:
            sampling_value(name, value)
        except ValueError as exc:
            raise UsageError(f"--{name.replace('_', '-')} {value}: {exc}") from None
        given[name] = value
    return given
