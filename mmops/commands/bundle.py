"""`mmops bundle`: one .tar.gz for an escalation: a run's record and the machine's facts."""

from __future__ import annotations

import argparse
import errno
import json
import time
from pathlib import Path

from mmops.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle",
        help="one archive for an escalation: run record, versions, devices, env (redacted)",
        description="Write a .tar.gz for whoever takes the escalation: summary.md (verdict, "
        "signatures, remedies tried, `mmops diagnose` of the last failed attempt), doctor.json, "
        "plan.json, versions, raw npu-smi / nvidia-smi output, the relevant environment, "
        "events.jsonl and the tail of each attempt log, and MANIFEST.txt (what is in it, what "
        "was left out and why). Secrets are masked. Without a run it still bundles the machine.",
    )
    p.add_argument(
        "--run", metavar="RUN", help="run folder, its name, or part of its name (default: newest)"
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where run folders are (default: XDG state dir)"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="archive to write (a directory: the default name in it; default: "
        "./mmops-bundle-<run name or time>.tar.gz)",
    )
    p.add_argument(
        "--lines",
        type=int,
        metavar="N",
        help="last N lines of each attempt log (default 500)",
    )
    p.add_argument("--json", action="store_true", help="print the path and manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmops.bundle import DEFAULT_LINES, collect, human_size, output_path, write_archive
    from mmops.serve import runs

    lines = DEFAULT_LINES if args.lines is None else args.lines
    if lines < 1:
        raise UsageError(f"--lines {lines}: must be at least 1")
    root = runs.state_root(args.state_dir)
    run_dir: Path | None = None
    if args.run or runs.list_runs(root):
        run_dir = runs.find_run(args.run, root)
    # Name the output before the (slow) collection: a bad -o fails at once.
    now = time.time()
    path = output_path(
        args.output, f"mmops-bundle-{run_dir.name if run_dir else runs.utc_stamp(now)}"
    )
    bundle = collect(run_dir, lines=lines, root=root, now=now)
    try:
        size = write_archive(bundle, path)
    except OSError as exc:
        fix = (
            "free space there, or pass -o PATH on another disk"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "pass -o PATH where mmops may write"
        )
        raise UsageError(
            f"-o {args.output or path}: cannot write {path}: {exc.strerror or exc}; {fix}"
        ) from None
    if args.json:
        print(
            json.dumps({"path": str(path), "bytes": size, "manifest": bundle.to_json()}, indent=2)
        )
        return 0
    said = f"{human_size(size)}, {len(bundle.members)} files"
    if bundle.left_out:
        said += f"; {len(bundle.left_out)} left out, see MANIFEST.txt"
    print(f"wrote {path} ({said})")
    return 0
