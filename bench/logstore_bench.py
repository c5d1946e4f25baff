"""Log store benchmark: open, jump around in and search a big vLLM log, against the shell tools.

Builds a log of MB MiB (default 1024) in a temp dir: a real vLLM start-up
(tests/fixtures/logs/real-cpu/healthy-start.log), then a long-running server's output (access
log lines, engine stats every few lines, a warning now and then, a traceback now and then),
with one unique request id (the needle) at 99% of the file. Then prints:

1. first index: LogStore.refresh() on a fresh store in a child process, against `wc -l`;
   cold (the file's pages dropped with posix_fadvise(DONTNEED), which needs no root; a VM's
   host may still cache them) and warm; the child's RSS before and after, its peak, and the
   index's own size;
2. random access: lines(n, 50) at random n on a fresh store (p50/p99), against
   `tail -n +N | head -50` (fewer samples: each one reads the file up to N);
3. search for the needle from the top: literal, case-blind literal (the TUI's default) and a
   regex, against `grep -n -F`, `grep -n -i -F` and `grep -n -E` (median of 3; grep's output
   goes to a pipe, since GNU grep stops at the first match when it writes to /dev/null);
4. filter: filter_lines() with the log view's warnings-and-errors pattern over the whole
   file, against `grep -c -E`;
5. follow under a flood: 50k lines/s appended in 50 ms ticks (2,500 lines each); per tick,
   refresh() + lines(last 50) + filter_lines() (the view following the tail), p50/p99 and the
   share of a tick that is.

It prints figures, not pass/fail, and deletes the temp dir unless --keep.

    python bench/logstore_bench.py [--mb 1024] [--samples 500] [--shell-samples 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import locale
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmops.serve.logstore import LogStore  # noqa: E402

STARTUP = ROOT / "tests" / "fixtures" / "logs" / "real-cpu" / "healthy-start.log"
NEEDLE = "chatcmpl-9f1c2e7a5b3d4c10"
REGEX = r"chatcmpl-9f1c2e7a\w+ failed"
# The TUI log view's "warnings and errors only" (mmops/tui/widgets/logview.py), and as an ERE.
FILTER = (
    rb"\b(?:WARNING|WARN|ERROR|CRITICAL|FATAL)\b|Traceback \(most recent|\w+(?:Error|Exception):"
)
FILTER_ERE = (
    r"\b(WARNING|WARN|ERROR|CRITICAL|FATAL)\b|Traceback \(most recent|\w+(Error|Exception):"
)
TICK_LINES = 2_500  # 50k lines/s in 50 ms ticks (a traceback entry adds 3 more lines)
TICKS = 200


# ----------------------------------------------------------------------------- the log


def serving_lines(rng: random.Random, n: int, t0: int) -> list[bytes]:
    """`n` lines of a busy server: mostly access log, engine stats, some warnings/tracebacks."""
    out = []
    for i in range(n):
        t = t0 + i // 400
        stamp = f"{(t // 86400) % 28 + 1:02d}-{t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d}"
        r = rng.random()
        if r < 0.80:
            out.append(
                f'INFO:     127.0.0.1:{rng.randrange(30000, 65000)} - "POST /v1/chat/completions '
                f'HTTP/1.1" 200 OK\n'
            )
        elif r < 0.93:
            out.append(
                f"(APIServer pid=11056) INFO 11-{stamp} [loggers.py:335] Engine 000: Avg prompt "
                f"throughput: {rng.uniform(0, 9000):.1f} tokens/s, Avg generation throughput: "
                f"{rng.uniform(0, 3000):.1f} tokens/s, Running: {rng.randrange(64)} reqs, "
                f"Waiting: {rng.randrange(8)} reqs, GPU KV cache usage: {rng.uniform(0, 99):.1f}%, "
                f"Prefix cache hit rate: {rng.uniform(0, 80):.1f}%\n"
            )
        elif r < 0.985:
            out.append(
                f"(APIServer pid=11056) INFO 11-{stamp} [logger.py:43] Received request "
                f"chatcmpl-{rng.getrandbits(64):016x}: prompt: '<|im_start|>user\\n"
                f"<|vision_start|><|image_pad|><|vision_end|>Describe the image.', params: "
                f"SamplingParams(n=1, temperature={rng.random():.2f}, max_tokens=512), "
                f"lora_request: None.\n"
            )
        elif r < 0.997:
            out.append(
                f"(APIServer pid=11056) WARNING 11-{stamp} [protocol.py:58] The following "
                f"fields were present in the request but ignored: {{'top_k'}}\n"
            )
        else:
            out.append(
                f"(APIServer pid=11056) ERROR 11-{stamp} [serving_chat.py:1221] Error in "
                f"chat completion stream generator.\n"
                f"(APIServer pid=11056) ERROR 11-{stamp} [serving_chat.py:1221] Traceback "
                f"(most recent call last):\n"
                f'(APIServer pid=11056) ERROR 11-{stamp} [serving_chat.py:1221]   File "/usr/'
                f'lib/python3.11/site-packages/vllm/entrypoints/openai/serving_chat.py", line '
                f"1180, in chat_completion_stream_generator\n"
                f"(APIServer pid=11056) ERROR 11-{stamp} [serving_chat.py:1221] asyncio."
                f"exceptions.CancelledError\n"
            )
    return [s.encode() for s in out]


def build_log(path: Path, mib: int) -> tuple[int, int]:
    """Write the log; return (bytes, line number of the needle)."""
    rng = random.Random(20261204)
    target = mib * 2**20
    needle_at = int(target * 0.99)
    needle_line = -1
    lines = 0
    t = 0
    with path.open("wb") as fh:
        head = STARTUP.read_bytes()
        fh.write(head)
        size, lines = len(head), head.count(b"\n")
        while size < target:
            chunk = serving_lines(rng, 20_000, t)
            t += 50
            if needle_line < 0 and size + 4 * 2**20 > needle_at:
                k = len(chunk) // 2
                chunk.insert(
                    k,
                    f"(APIServer pid=11056) ERROR 11-25 11:02:03 [serving_chat.py:1221] request "
                    f"{NEEDLE} failed: the engine core died\n".encode(),
                )
                needle_line = lines + sum(line.count(b"\n") for line in chunk[:k])
            data = b"".join(chunk)
            fh.write(data)
            size += len(data)
            lines += data.count(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return size, needle_line


# ----------------------------------------------------------------------------- measuring


def drop_cache(path: Path) -> None:
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed_shell(cmd: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, check=False)
    return time.perf_counter() - t0, done.stdout.decode(errors="replace")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(s: float) -> float:
    return round(s * 1000, 3)


def median_of(n: int, fn):
    times, result = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


_INDEX_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from mmops.serve.logstore import LogStore
def status(key):  # VmHWM, not ru_maxrss: that one is inherited from the parent across exec
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) / 1024 for l in fh if l.startswith(key))
before = status("VmRSS:")
store = LogStore(sys.argv[2])
t0 = time.perf_counter()
store.refresh()
t = time.perf_counter() - t0
print(json.dumps({"s": t, "lines": store.line_count, "rss_before": before,
                  "rss_after": status("VmRSS:"), "peak": status("VmHWM:"),
                  "entries": len(store._starts)}))
"""


def first_index(log: Path) -> dict:
    """refresh() in a fresh child process (so its RSS is the store's, not the generator's).

    Cold: each tool twice, alternating, each run after posix_fadvise(DONTNEED); the second
    run of each is kept, because on a VM the first read after the build also fills the
    host's cache and whichever tool ran first would pay for it.
    """

    def store_run() -> dict:
        done = subprocess.run(
            [sys.executable, "-c", _INDEX_CHILD, str(ROOT), str(log)],
            capture_output=True,
            check=True,
            text=True,
        )
        return json.loads(done.stdout)

    out = {}
    for phase in ("cold", "warm"):
        for _ in range(2 if phase == "cold" else 1):
            if phase == "cold":
                drop_cache(log)
            t_wc, wc_out = timed_shell(f"wc -l {log}")
            if phase == "cold":
                drop_cache(log)
            child = store_run()
        out[phase] = {
            "logstore_s": round(child["s"], 3),
            "wc_l_s": round(t_wc, 3),
            "ratio_wc_over_store": round(t_wc / child["s"], 2),
            "lines": child["lines"],
            "wc_lines": int(wc_out.split()[0]),
            "rss_before_mib": round(child["rss_before"], 1),
            "rss_after_mib": round(child["rss_after"], 1),
            "peak_rss_mib": round(child["peak"], 1),
            "index_entries": child["entries"],
            "index_kib": round(child["entries"] * 16 / 1024, 1),
        }
    return out


def random_access(log: Path, samples: int, shell_samples: int) -> dict:
    store = LogStore(log)
    store.refresh()
    n = store.line_count
    rng = random.Random(1)
    starts = [rng.randrange(n - 50) for _ in range(samples)]
    times = []
    for s in starts:
        t0 = time.perf_counter()
        got = store.lines(s, 50)
        times.append(time.perf_counter() - t0)
        assert len(got) == 50
    shell = []
    same = True
    for s in starts[:shell_samples]:
        t, text = timed_shell(f"tail -n +{s + 1} {log} | head -50")
        shell.append(t)
        same &= text.splitlines() == store.lines(s, 50)
    store.close()
    p50, p50_sh = pct(times, 0.5), pct(shell, 0.5)
    return {
        "samples": samples,
        "logstore_p50_ms": ms(p50),
        "logstore_p99_ms": ms(pct(times, 0.99)),
        "shell_samples": len(shell),
        "tail_head_p50_ms": ms(p50_sh),
        "tail_head_p99_ms": ms(pct(shell, 0.99)),
        "ratio_p50": round(p50_sh / p50),
        "same_lines": same,
    }


def search(log: Path, needle_line: int) -> dict:
    store = LogStore(log)
    store.refresh()
    cases = [
        ("literal", {"ignore_case": False}, NEEDLE, f"grep -n -F '{NEEDLE}' {log}"),
        ("literal, ignore case", {}, NEEDLE.upper(), f"grep -n -i -F '{NEEDLE.upper()}' {log}"),
        ("regex", {"regex": True, "ignore_case": False}, REGEX, f"grep -n -E '{REGEX}' {log}"),
    ]
    out = {}
    for name, kw, pattern, cmd in cases:
        t_store, hit = median_of(3, lambda p=pattern, kw=kw: store.search(p, 0, **kw))
        t_grep, text = median_of(3, lambda cmd=cmd: timed_shell(cmd)[1])
        grep_line = int(text.split(":", 1)[0]) - 1 if text else None
        out[name] = {
            "logstore_s": round(t_store, 3),
            "grep_s": round(t_grep, 3),
            "ratio_grep_over_store": round(t_grep / t_store, 2),
            "found": hit == needle_line == grep_line,
        }
    t0 = time.perf_counter()
    hits = store.filter_lines(re.compile(FILTER))
    t_filter = time.perf_counter() - t0
    t_grep, text = timed_shell(f"grep -c -E '{FILTER_ERE}' {log}")
    out["filter"] = {
        "logstore_s": round(t_filter, 3),
        "grep_c_s": round(t_grep, 3),
        "ratio_grep_over_store": round(t_grep / t_filter, 2),
        "hits": len(hits),
        "same_count": len(hits) == int(text.strip() or -1),
    }
    store.close()
    return out


def follow(tmp: Path) -> dict:
    """A view following a log that grows by 50k lines/s, refreshed every 50 ms."""
    log = tmp / "flood.log"
    rng = random.Random(2)
    batches = [b"".join(serving_lines(rng, TICK_LINES, i)) for i in range(TICKS)]
    log.write_bytes(STARTUP.read_bytes())
    store = LogStore(log)
    store.refresh()
    pattern = re.compile(FILTER)
    store.filter_lines(pattern)
    times = []
    with log.open("ab", buffering=0) as fh:
        for batch in batches:
            fh.write(batch)
            t0 = time.perf_counter()
            new = store.refresh()
            view = store.lines(store.line_count - 50, 50)
            store.filter_lines(pattern)
            times.append(time.perf_counter() - t0)
            assert new == batch.count(b"\n") and len(view) == 50
    store.close()
    p50, p99 = pct(times, 0.5), pct(times, 0.99)
    return {
        "ticks": TICKS,
        "lines_per_tick": TICK_LINES,
        "mib_per_tick": round(len(batches[0]) / 2**20, 2),
        "tick_p50_ms": ms(p50),
        "tick_p99_ms": ms(p99),
        "share_of_50ms_tick_p50": f"{p50 / 0.05:.1%}",
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=1024, help="log size in MiB (default 1024)")
    ap.add_argument("--samples", type=int, default=500, help="random lines(n, 50) reads")
    ap.add_argument("--shell-samples", type=int, default=20, help="tail | head runs")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmops-logstore-"))
    try:
        log = tmp / "attempt-1.log"
        t0 = time.perf_counter()
        size, needle_line = build_log(log, args.mb)
        built_s = time.perf_counter() - t0
        result = {
            "log": {
                "mib": round(size / 2**20, 1),
                "build_s": round(built_s, 1),
                "needle_line": needle_line,
                "locale": locale.setlocale(locale.LC_CTYPE, ""),
            },
            "first_index": first_index(log),
            "random_access": random_access(log, args.samples, args.shell_samples),
            "search": search(log, needle_line),
            "follow": follow(tmp),
        }
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lg, fi, ra, se, fo = (
        result[k] for k in ("log", "first_index", "random_access", "search", "follow")
    )
    print(f"log: {lg['mib']} MiB, built in {lg['build_s']} s, needle on line {lg['needle_line']:,}")
    for phase in ("cold", "warm"):
        f = fi[phase]
        print(
            f"first index ({phase}): LogStore.refresh {f['logstore_s']} s, wc -l {f['wc_l_s']} s "
            f"(x{f['ratio_wc_over_store']}); {f['lines']:,} lines (wc: {f['wc_lines']:,}); "
            f"child RSS {f['rss_before_mib']} -> {f['rss_after_mib']} MiB (peak "
            f"{f['peak_rss_mib']}); index "
            f"{f['index_entries']:,} entries, {f['index_kib']} KiB"
        )
    print(
        f"lines(n, 50) at random n: p50 {ra['logstore_p50_ms']} ms, p99 {ra['logstore_p99_ms']} ms "
        f"({ra['samples']} samples); tail -n +N | head -50: p50 {ra['tail_head_p50_ms']} ms, "
        f"p99 {ra['tail_head_p99_ms']} ms ({ra['shell_samples']} samples); x{ra['ratio_p50']} at "
        f"p50; same lines: {ra['same_lines']}"
    )
    for name in ("literal", "literal, ignore case", "regex"):
        s = se[name]
        print(
            f"search ({name}) for the needle from the top: LogStore {s['logstore_s']} s, grep -n "
            f"{s['grep_s']} s (grep/LogStore x{s['ratio_grep_over_store']}); found: {s['found']}"
        )
    f = se["filter"]
    print(
        f"filter warnings+errors: LogStore {f['logstore_s']} s, grep -c -E {f['grep_c_s']} s "
        f"(x{f['ratio_grep_over_store']}); {f['hits']:,} lines, same count: {f['same_count']}"
    )
    print(
        f"follow at 50k lines/s ({fo['ticks']} ticks of {fo['lines_per_tick']:,} lines, "
        f"{fo['mib_per_tick']} MiB): refresh + last 50 lines + filter per tick p50 "
        f"{fo['tick_p50_ms']} ms, p99 {fo['tick_p99_ms']} ms ({fo['share_of_50ms_tick_p50']} of "
        f"a 50 ms tick at p50)"
    )
    print(f"locale for grep: {lg['locale']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
