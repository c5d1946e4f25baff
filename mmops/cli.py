"""Command-line entry point: one argparse parser, subcommands registered lazily.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``func`` (called with the parsed namespace, returns the exit code). Modules are
imported only when named in the table, so ``mmops doctor`` never pays for the TUI or httpx.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from collections.abc import Sequence

from mmops import __version__
from mmops.errors import MmopsError

# command name -> module that registers it. Order is the order shown in --help.
COMMANDS: dict[str, str] = {
    "doctor": "mmops.commands.doctor",
    "plan": "mmops.commands.plan",
    "serve": "mmops.commands.serve",
    "logs": "mmops.commands.logs",
    "probe": "mmops.commands.probe",
    "offline": "mmops.commands.offline",
    "diagnose": "mmops.commands.diagnose",
    "bundle": "mmops.commands.bundle",
    "tui": "mmops.commands.tui",
}


def _available(name: str, module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmops",
        description="Serve multimodal models with vLLM on Ascend NPUs or NVIDIA GPUs, "
        "and know why it breaks.",
    )
    parser.add_argument("--version", action="version", version=f"mmops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            # Still list it in --help without importing it.
            if _available(name, module):
                sub.add_parser(name, help=f"see mmops {name} --help")
            continue
        if not _available(name, module):
            continue
        importlib.import_module(module).register(sub)
    for sp in sub.choices.values():
        sp.allow_abbrev = False  # `--max` must not silently mean one of our own flags
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in COMMANDS else None)
    # Launch-shaped commands (doctor, plan, serve, tui) take any `vllm serve` flag after their
    # own; they opt in with set_defaults(accepts_vllm_flags=True) and read args.vllm_argv.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "accepts_vllm_flags", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.vllm_argv = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MmopsError as exc:
        print(f"mmops {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # `mmops ... | head` closed the pipe: not an error worth a traceback.
        sys.stderr.close()
        return 0
