"""A stand-in for `vllm serve` that behaves like vLLM where the supervisor can tell.

It takes vLLM's flags, REPLAYS real vLLM / vllm-ascend log lines (tests/fakes/lines, sources in
SOURCES.yaml), really binds its port on 127.0.0.1 (so a taken port fails with Python's real
OSError), serves /health, /v1/models and /v1/chat/completions over real HTTP, can start an
"EngineCore" child process, and shuts down on SIGINT/SIGTERM printing what vLLM prints.

Behaviour comes from the environment, like vLLM's own knobs:

FAKE_VLLM_SCENARIO  serve (default) | crash | npu_vm | kv | config_error | flood | hang
FAKE_VLLM_RECORD    file: one JSON line per start (pid, argv, allocator env) and exit
FAKE_VLLM_STARTUP_S seconds of "loading" between binding the port and answering (or crashing)
FAKE_VLLM_ENGINE    1: start an EngineCore child; "setsid": one that leaves the process group
FAKE_VLLM_DIE       silent | logged: the engine dies FAKE_VLLM_DIE_AFTER_S after serving,
                    only on start number FAKE_VLLM_DIE_ON (default 1)
FAKE_VLLM_FLOOD     number of lines the flood scenario prints before exiting 1
FAKE_VLLM_VM_ALWAYS 1: the npu_vm failure happens even with expandable_segments:False
FAKE_VLLM_IGNORE    INT or INT,TERM: signals to ignore (to test the SIGTERM/SIGKILL escalation)
FAKE_VLLM_RAY       1, with --distributed-executor-backend ray (needs an interpreter with Ray):
                    ray.init() as vLLM's initialize_ray_cluster calls it (no address: RAY_ADDRESS,
                    the job config in RAY_JOB_CONFIG_JSON_ENV_VAR), one actor pinned to each
                    alive node as vLLM's workers are (num_cpus=0 here, per-actor env_vars as
                    RayExecutorV2 adds them), records what each sees of the variables named in
                    FAKE_VLLM_RAY_ENV; when an actor dies, logs Ray's actor-died line and
                    EngineDeadError, and /health answers 503, as vLLM's API does then

Stdlib only, so it starts in tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LINES = Path(__file__).resolve().parent / "lines"
ENV = os.environ


def replay(name: str, stream=sys.stdout) -> None:
    stream.write((LINES / name).read_text())
    stream.flush()


def flag(argv: list[str], name: str, default: str | None = None) -> str | None:
    for i, tok in enumerate(argv):
        if tok == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(f"--{name}="):
            return tok.split("=", 1)[1]
    return default


def positional_model(argv: list[str]) -> str | None:
    # `vllm serve MODEL ...` form: the first bare token after "serve"
    if "serve" in argv:
        i = argv.index("serve")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            return argv[i + 1]
    return None


def record(**fields) -> int:
    """Append a JSON line to FAKE_VLLM_RECORD; returns this start's number (1-based)."""
    path = ENV.get("FAKE_VLLM_RECORD")
    if not path:
        return 1
    with open(path, "a") as fh:
        fh.write(json.dumps({"t": time.time(), "pid": os.getpid(), **fields}) + "\n")
    with open(path) as fh:
        return sum(1 for line in fh if '"event": "start"' in line)


def exit_now(code: int) -> None:
    record(event="exit", code=code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class RayWorker:
    """Stands where a vLLM worker actor stands: pinned to a node, in that node's environment."""

    def report(self, names: list[str]) -> dict:
        import ray

        return {
            "ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "env": {n: os.environ.get(n) for n in names},
        }

    def ping(self) -> bool:
        return True


def start_ray_workers() -> None:
    import logging

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(log_to_driver=False, logging_level=logging.ERROR)
    names = [n for n in ENV.get("FAKE_VLLM_RAY_ENV", "").split(",") if n]
    worker = ray.remote(RayWorker)
    actors = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        env = {"RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES": "1"}
        actors.append(
            worker.options(
                num_cpus=0, scheduling_strategy=strategy, max_restarts=0,
                runtime_env={"env_vars": env},
            ).remote()
        )  # fmt: skip
    seen = ray.get([a.report.remote(names) for a in actors], timeout=120)
    record(event="ray_workers", workers=seen)
    threading.Thread(target=watch_ray_workers, args=(ray, actors), daemon=True).start()


def watch_ray_workers(ray, actors) -> None:
    while True:
        time.sleep(0.5)
        try:
            ray.get([a.ping.remote() for a in actors], timeout=30)
        except Exception:  # ActorDiedError, or a node too slow to answer: a dead worker
            replay("ray_actor_died_gpustack_2415.log")
            State.engine_dead = True
            replay("engine_dead_vllm_42362.log")
            record(event="engine_died")
            return


def start_engine(mode: str) -> subprocess.Popen:
    code = "import time\nwhile True: time.sleep(1)"
    return subprocess.Popen(
        [sys.executable, "-c", code, "fake-EngineCore"],
        start_new_session=(mode == "setsid"),
    )


class State:
    engine_dead = False
    model = "model"
    engine: subprocess.Popen | None = None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):  # uvicorn-style access line, like vLLM prints
        sys.stdout.write(
            f'INFO:     127.0.0.1:0 - "{self.requestline}" {args[1] if len(args) > 1 else ""}\n'
        )
        sys.stdout.flush()

    def _json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            if State.engine_dead:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": State.model, "object": "model"}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
        elif State.engine_dead:
            self._json(500, {"error": "EngineDeadError"})
        else:
            self._json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": State.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "a cat"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 90, "completion_tokens": 2, "total_tokens": 92},
                },
            )


def on_stop(signum, frame):
    # vLLM 0.32 on a requested stop: server shutdown, then EngineDeadError from the API side.
    replay("shutdown_uvicorn_lmcache_969.log")
    replay("engine_dead_vllm_42362.log")
    if State.engine is not None and State.engine.poll() is None:
        State.engine.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            State.engine.wait(5)
    exit_now(0)


def main(argv: list[str]) -> None:
    scenario = ENV.get("FAKE_VLLM_SCENARIO", "serve")
    model = positional_model(argv) or flag(argv, "model") or "model"
    State.model = flag(argv, "served-model-name") or model
    host = flag(argv, "host", "127.0.0.1")
    port = int(flag(argv, "port", "8000"))
    max_len = int(flag(argv, "max-model-len", "4096"))
    start_no = record(
        event="start",
        argv=argv,
        alloc=ENV.get("PYTORCH_NPU_ALLOC_CONF"),
        max_model_len=max_len,
    )
    ignored = {x.strip() for x in ENV.get("FAKE_VLLM_IGNORE", "").split(",") if x.strip()}
    for name in ("INT", "TERM"):
        sig = getattr(signal, f"SIG{name}")
        signal.signal(sig, signal.SIG_IGN if name in ignored else on_stop)
    # vLLM logs its non-default CLI args at start, api_key included (format of
    # vllm/entrypoints/openai/cli_args.py `logger.info("non-default args: %s", ...)`, vllm#19438;
    # tenstorrent/tt-inference-server#874 is about that key landing in logs in plain text).
    shown = {k: flag(argv, k) for k in ("api-key", "max-model-len", "port") if flag(argv, k)}
    shown = {k.replace("-", "_"): v for k, v in shown.items()}
    print(f"INFO 05-07 17:14:39 [cli_args.py:309] non-default args: {shown}", flush=True)

    if scenario == "crash":
        time.sleep(float(ENV.get("FAKE_VLLM_STARTUP_S", "0")))
        replay("hccl_socket_timeout_vllm_ascend_486.log")
        exit_now(1)
    if scenario == "config_error":
        replay("max_len_above_derived_vllm_cpu.log")
        exit_now(1)
    if scenario == "npu_vm":
        # Like vllm-ascend's platform.py, which logs the allocator setting it runs with.
        alloc = ENV.get("PYTORCH_NPU_ALLOC_CONF", "expandable_segments:True")
        print(f"INFO fake platform.py] Set PYTORCH_NPU_ALLOC_CONF={alloc}", flush=True)
        if "expandable_segments:False" not in alloc or ENV.get("FAKE_VLLM_VM_ALWAYS") == "1":
            replay("npu_vm_vllm_ascend_116.log")
            exit_now(1)
    if scenario == "kv":
        limit = 5632  # what the replayed line estimates
        if max_len > limit:
            replay("kv_too_small_tpu_inference_223.log")
            exit_now(1)
    if scenario == "flood":
        n = int(ENV.get("FAKE_VLLM_FLOOD", "100000"))
        out = sys.stdout.buffer
        # Shape of vLLM 0.11's periodic stats line (vllm/v1/metrics/loggers.py:128), numbered.
        line = b"INFO 10-15 16:32:15 [loggers.py:128] Engine 000: Avg prompt throughput: %d\n"
        batch = 1000
        for start in range(0, n, batch):
            out.write(b"".join(line % i for i in range(start, min(n, start + batch))))
        out.flush()
        exit_now(1)
    if scenario == "hang":
        while True:
            time.sleep(1)

    # Bind first, as vLLM does (create_server_socket before the engine starts).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # vLLM's create_server_socket sets SO_REUSEADDR too: a restart must not trip on TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    if ENV.get("FAKE_VLLM_RAY") == "1" and flag(argv, "distributed-executor-backend") == "ray":
        start_ray_workers()
    engine_mode = ENV.get("FAKE_VLLM_ENGINE")
    if engine_mode:
        State.engine = start_engine(engine_mode)
        record(event="engine", engine_pid=State.engine.pid)
    time.sleep(float(ENV.get("FAKE_VLLM_STARTUP_S", "0")))
    server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    replay("startup_vllm_38820.log")
    die = ENV.get("FAKE_VLLM_DIE")
    if die and start_no == int(ENV.get("FAKE_VLLM_DIE_ON", "1")):
        threading.Thread(target=engine_dies, args=(die,), daemon=True).start()
    server.serve_forever(poll_interval=0.05)


def engine_dies(mode: str) -> None:
    time.sleep(float(ENV.get("FAKE_VLLM_DIE_AFTER_S", "0.5")))
    if mode == "silent":
        # vllm-project/vllm#39863: EngineCore gone, the API still answers its health check.
        if State.engine is not None:
            State.engine.kill()
            State.engine.wait()
            record(event="engine_died")
    else:
        State.engine_dead = True
        replay("engine_dead_vllm_42362.log")
        record(event="engine_died")


if __name__ == "__main__":
    main(sys.argv[1:])
