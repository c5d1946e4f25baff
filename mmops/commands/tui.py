"""`mmops tui`: the on-call screen, in launch, attach or post-mortem mode."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mmops.commands.doctor import add_ray_arguments, ray_launch
from mmops.errors import UsageError
from mmops.launch.spec import add_launch_arguments

if TYPE_CHECKING:
    from mmops.tui.app import Target


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tui",
        help="the on-call screen: preflight, server state, live log, devices, probes, metrics",
        description="Launch mode (--profile/--model and any vLLM flag, as `serve`): preflight at "
        "once, start with s (or --start). --attach URL: watch a server started elsewhere. "
        "--run RUN: open a finished run read-only. Press ? for the keys.",
    )
    add_launch_arguments(p)
    p.add_argument(
        "--state-dir", metavar="DIR", help="where run folders go (default: XDG state dir)"
    )
    p.add_argument("--start", action="store_true", help="start the server as the screen opens")
    p.add_argument("--no-preflight", action="store_true", help="do not run the doctor first")
    add_ray_arguments(p)
    p.add_argument("--attach", metavar="URL", help="watch a server started elsewhere")
    p.add_argument("--log-file", metavar="PATH", help="with --attach: the server's log file")
    p.add_argument("--model-path", metavar="DIR", help="with --attach: the model dir (stop ids)")
    p.add_argument("--api-key", metavar="KEY", help="with --attach: the server's API key")
    p.add_argument("--run", metavar="RUN", dest="run_ref", help="open a recorded run (post-mortem)")
    p.add_argument(
        "--suite",
        metavar="NAME",
        help="what the probe key runs (default: the launch's suite, or smoke)",
    )
    p.add_argument(
        "--stop-timeout", type=float, default=15.0, metavar="S",
        help="seconds after SIGINT, and after SIGTERM, before SIGKILL (default 15)",
    )  # fmt: skip
    p.set_defaults(func=run, accepts_vllm_flags=True)


def _target(args: argparse.Namespace) -> Target:
    from mmops.tui.app import Target

    if args.attach and args.run_ref:
        raise UsageError("--attach and --run: pick one (a live server or a recorded run)")
    watching = args.attach or args.run_ref
    launch_only = (args.profile, args.model, getattr(args, "vllm_argv", None), args.start,
                   args.ray_address, args.ray_timeout)  # fmt: skip
    if watching and any(launch_only):
        raise UsageError(
            "--attach/--run watch an existing server: drop --profile/--model/--start and vLLM flags"
        )
    if args.suite:
        from mmops.probe.suite import load_suite

        load_suite(args.suite)  # a wrong name is a one-line error now, not at the first probe
    if args.run_ref:
        from mmops.serve.replay import RunReplay
        from mmops.serve.runs import find_run, state_root

        path = find_run(args.run_ref, state_root(args.state_dir))
        return Target("run", RunReplay(path, live=True), path.name, poll_devices=False)
    if args.attach:
        from mmops.serve.attach import AttachSource, run_for_url
        from mmops.serve.runs import state_root

        log_file = Path(args.log_file).expanduser() if args.log_file else None
        if log_file is not None and log_file.is_dir():
            raise UsageError(f"--log-file {log_file}: is a directory; give the server's log file")
        if log_file is not None and not log_file.exists():
            raise UsageError(f"--log-file {log_file}: no such file; give the server's log file")
        if args.model_path and not Path(args.model_path).expanduser().is_dir():
            raise UsageError(
                f"--model-path {args.model_path}: not a directory; give the served model's "
                "directory (for its stop token ids), or leave it out"
            )
        run_dir = None if log_file else run_for_url(args.attach, state_root(args.state_dir))
        source = AttachSource(args.attach, log_file=log_file, run_dir=run_dir, api_key=args.api_key)
        return Target("attach", source, args.attach, model_path=args.model_path, suite=args.suite)
    from mmops.launch.preflight import launch_spec
    from mmops.serve.session import Session
    from mmops.serve.supervisor import Options

    stop_s = max(0.0, args.stop_timeout)
    spec, ray_timeout = ray_launch(args, launch_spec(args))
    session = Session.prepare(
        spec,
        skip_preflight=args.no_preflight,
        ray_timeout=ray_timeout,
        state_dir=args.state_dir,
        options=Options(stop_sigint_s=stop_s, stop_sigterm_s=stop_s),
    )
    cpu = session.spec.device.kind == "cpu"
    plan = session.plan()
    cluster = None
    if plan.ray:  # the Devices tab shows the Ray nodes, from the doctor's node probe
        import functools

        from mmops.cluster.probe import DEFAULT_TIMEOUT_S, probe_cluster

        model = os.path.abspath(session.spec.model) if session.spec.model else None
        address = str(plan.ray.get("address") or "auto")
        timeout = ray_timeout or DEFAULT_TIMEOUT_S
        cluster = functools.partial(probe_cluster, plan.python, address, model, timeout)
    return Target(
        "launch", session.supervisor, session.spec.name, session=session,
        start_now=args.start, cpu=cpu, suite=args.suite, url=plan.url, cluster=cluster,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if not sys.stdout.isatty() and not os.environ.get("MMOPS_TUI_HEADLESS"):
        raise UsageError(
            "tui needs a terminal (stdout is not a tty); use `mmops serve` or `mmops logs`"
        )
    target = _target(args)
    from mmops.tui.app import MmopsApp

    app = MmopsApp(target)
    try:
        code = app.run()
    finally:
        # Whatever ended the screen (an exception included), no server outlives it.
        sup = target.source if target.mode == "launch" else None
        pid = getattr(sup, "pid", None)
        if pid:
            from mmops.serve.reaper import kill_tree

            kill_tree(pid)
    return int(code or 0)
