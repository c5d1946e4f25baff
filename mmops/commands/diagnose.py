"""`mmops diagnose`: explain a vLLM / vllm-ascend log: verdict, root cause, evidence, fix."""

from __future__ import annotations

import argparse
import json
import sys

from mmops.term import use_color


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="explain a vLLM log: started, requested stop or crash; root cause and fix",
        description="Read vLLM / vllm-ascend logs (files, '-' for stdin, gzip, an mmops run "
        "folder) as one incident and say what happened: the verdict, the root cause over its "
        "symptoms, the evidence lines and the fix with the numbers from the log. "
        "Exit 0 started / requested-stop, 3 crash / running-errors / unknown, 2 bad input.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="log files, '-' for stdin (default)")
    p.add_argument("--json", action="store_true", help="print the incident as JSON")
    p.add_argument(
        "--all", action="store_true", help="show every finding with all kept evidence lines"
    )
    p.add_argument(
        "--attempt", type=int, metavar="N", help="with a run folder: read attempt N (default: last)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmops.diagnose.report import render
    from mmops.diagnose.scan import diagnose
    from mmops.errors import UsageError

    files = args.files or ["-"]
    if "-" in files and sys.stdin is None:  # fd 0 closed (`<&-`): there is no stdin object
        raise UsageError("'-': standard input is closed; name a FILE or a run folder")
    if "-" in files and sys.stdin.isatty():
        raise UsageError("no log given: name a FILE, a run folder, or pipe a log into '-'")
    incident = diagnose(files, attempt=args.attempt)
    if args.json:
        print(json.dumps(incident.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render(incident, show_all=args.all, color=use_color(sys.stdout)))
    return incident.exit_code


