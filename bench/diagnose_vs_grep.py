"""Benchmark: `mmops diagnose` against GNU `grep -E` over the same patterns on one big log.

Builds a log of SIZE MB (default 512) in a temp dir from real lines: the healthy-start
excerpts of tests/fixtures/logs/ (MANIFEST entries with verdict `started`, plus real-cpu/
healthy logs when present) repeated, then a real crash excerpt (an NPU OOM, corpus 004) at the
end. Runs `python -m mmops diagnose --json` and `grep -E -n -f PATTERNS` on it (grep's
output goes to a file: GNU grep stops at the first match when it writes to /dev/null), prints
MB/s, the time ratio and the peak RSS of each child (os.wait4), checks the verdict, and
deletes the temp dir.

    python bench/diagnose_vs_grep.py [--size-mb 512] [--mode startup|serving] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "tests" / "fixtures" / "logs"
sys.path.insert(0, str(ROOT))

from mmops.diagnose.table import load_signatures  # noqa: E402

CRASH_EXCERPT = LOGS / "corpus" / "004-npu-runtime-oom-207001-el0004.log"


def healthy_lines() -> list[bytes]:
    """Real lines of healthy starts and serving, from the fixture corpus."""
    import yaml

    manifest = yaml.safe_load((LOGS / "MANIFEST.yaml").read_text())
    files = [LOGS / e["file"] for e in manifest if e.get("expected_verdict") == "started"]
    lines: list[bytes] = []
    for f in files:
        lines.extend(line for line in f.read_bytes().splitlines(keepends=True) if line.strip())
    if not lines:
        raise SystemExit("no healthy-start fixtures found in MANIFEST.yaml")
    return [line if line.endswith(b"\n") else line + b"\n" for line in lines]


_STARTUP_WORDS = (b"Started server process", b"Waiting for application", b"Application startup")


def build_log(path: Path, size_mb: int, mode: str = "startup") -> int:
    """``startup``: the healthy-start excerpts repeated whole (a start marker every 10 lines:
    the worst case for the per-line work). ``serving``: one start, then their serving lines
    (access log, stats, request logs) repeated, as a long-running server's log is."""
    lines = healthy_lines()
    target = size_mb * 1024 * 1024
    with path.open("wb") as out:
        written = 0
        if mode == "serving":
            head = b"".join(lines)
            out.write(head)
            written += len(head)
            lines = [ln for ln in lines if not any(w in ln for w in _STARTUP_WORDS)]
        block = b"".join(lines)
        while written < target:
            out.write(block)
            written += len(block)
        tail = CRASH_EXCERPT.read_bytes()
        out.write(tail)
        written += len(tail)
    return written


def to_ere(pattern: str) -> str:
    """A Python regex of the table as POSIX ERE for GNU grep (same meaning on these patterns)."""
    p = re.sub(r"\(\?P<\w+>", "(", pattern)
    p = p.replace("(?:", "(")
    p = p.replace(r"\d", "[0-9]").replace(r"\s", "[[:space:]]").replace(r"\S", "[^[:space:]]")
    p = p.replace(r"\w", "[[:alnum:]_]")
    p = re.sub(r"\*\?", "*", p)  # lazy -> greedy: same set of matching lines
    p = re.sub(r"\+\?", "+", p)
    p = p.replace("\\'", "'")
    return p


def grep_patterns() -> list[str]:
    pats = []
    for sig in load_signatures():
        for rx in (*sig.patterns, *sig.secondary_patterns, *sig.weak_patterns):
            pats.append(to_ere(rx.pattern))
    # diagnose also reads ERROR lines, exceptions and traceback headers
    pats += ["ERROR", "Error", "Exception", r"Traceback \(most recent call last\)"]
    return pats


# A small launcher process runs each command, so the peak RSS that wait4 reports for the
# command is not inflated by this script's own memory (a forked child starts as a copy of it).
_LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
pid = os.fork()
if pid == 0:
    os.dup2(out, 1)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_child(cmd: list[str], stdout_path: Path, env=None) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in MiB and exit status of one command."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, str(stdout_path), *cmd],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    wall, rss_kb, code = done.stdout.split()
    if int(code) not in (0, 1, 3):
        raise SystemExit(f"{cmd[0]} failed ({code}): {done.stderr[-2000:]}")
    return float(wall), int(rss_kb) // 1024, int(code)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--mode", choices=("startup", "serving"), default="startup")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmops-bench-"))
    try:
        log = tmp / "big.log"
        size = build_log(log, args.size_mb, args.mode)
        mb = size / 1024 / 1024
        pats = tmp / "patterns.txt"
        pats.write_text("\n".join(grep_patterns()) + "\n")
        print(f"log: {mb:.0f} MB ({args.mode}), {len(grep_patterns())} patterns")
        # Warm the page cache so both read from memory.
        subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)

        out_json = tmp / "diagnose.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        d_wall, d_rss, _ = run_child(
            [sys.executable, "-m", "mmops", "diagnose", "--json", str(log)], out_json, env
        )
        verdict = json.loads(out_json.read_text())
        results = {}
        for label, env in (
            ("grep -E", None),
            ("grep -E, LC_ALL=C", {**os.environ, "LC_ALL": "C"}),
        ):
            g_wall, g_rss, _ = run_child(
                ["grep", "-E", "-n", "-f", str(pats), str(log)], tmp / "grep.out", env
            )
            results[label] = (g_wall, g_rss)
        cause = verdict["findings"][0]["id"] if verdict["findings"] else None
        print(f"mmops diagnose: {d_wall:6.2f} s  {mb / d_wall:7.1f} MB/s  peak RSS {d_rss} MiB")
        for label, (g_wall, g_rss) in results.items():
            print(
                f"{label:18}: {g_wall:6.2f} s  {mb / g_wall:7.1f} MB/s  peak RSS {g_rss} MiB  "
                f"ratio diagnose/grep {d_wall / g_wall:.2f}x"
            )
        print(f"verdict: {verdict['verdict']}, cause: {cause}, lines: {verdict['facts']['lines']}")
        ok = verdict["verdict"] == "crash" and cause == "device.oom.npu"
        if not ok:
            print("UNEXPECTED VERDICT", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
