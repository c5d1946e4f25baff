"""`mmops plan`: print exactly what `mmops serve` would run, after the preflight."""

from __future__ import annotations

import argparse
import json
import sys

from mmops.commands.doctor import add_ray_arguments, ray_launch
from mmops.launch.preflight import launch_spec, preflight
from mmops.launch.spec import add_launch_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="print the vLLM argv and environment `serve` would run",
        description="Print exactly what `mmops serve` would run for this profile/flags: the argv "
        "(a list, shown shell-quoted), the environment delta, the allocator mode and which values "
        "came from the reference defaults. Any `vllm serve` flag may follow. Secrets are masked.",
    )
    add_launch_arguments(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--no-preflight", action="store_true", help="do not run the doctor first")
    add_ray_arguments(p)
    p.set_defaults(func=run, accepts_vllm_flags=True)


def run(args: argparse.Namespace) -> int:
    from mmops.launch.plan import build_plan, render

    spec, ray_timeout = ray_launch(args, launch_spec(args))
    spec, pre = preflight(spec, args.no_preflight, ray_timeout)
    plan = build_plan(spec)
    if args.json:
        json.dump(plan.to_dict(preflight=pre.to_dict()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(plan, preflight_line=pre.summary()))
    if pre.failed:
        print("preflight failed; `mmops serve` would not start:", file=sys.stderr)
        print("\n".join(pre.failures()), file=sys.stderr)
        return 2
    return 0
