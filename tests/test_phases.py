"""Start-up phases read from real vLLM logs: the sequence reached, shard progress, block splits.

The real-cpu logs are whole captures of vLLM 0.32.0 (tests/fixtures/logs/real-cpu/SOURCES.md).
Other lines are real lines quoted in public issue threads (named beside each) or in the corpus
under tests/fixtures/logs/corpus/ (sources in MANIFEST.yaml); where a test strings several of
them together as one start, the assembly is synthesised and says so.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmops.diagnose import phases
from mmops.diagnose.phases import PHASES, PhaseHit, PhaseTracker, last_phase

REAL_CPU = Path(__file__).resolve().parent / "fixtures" / "logs" / "real-cpu"

STARTED = ["args", "config", "workers", "weights", "profiling", "kv_cache", "api", "ready"]
SERVED = [*STARTED, "serving"]  # ... and answered requests (uvicorn access lines)
# The phases each real CPU capture goes through, in order (0.32 logs no platform line at INFO
# and captures no graphs on the CPU).
SEQUENCES = {
    "healthy-start.log": SERVED,
    "engine-dead-first-request.log": SERVED,  # dies at the first request, after ready
    "chat-template-missing.log": SERVED,
    "requested-stop-sigint.log": SERVED,
    "requested-stop-sigterm.log": SERVED,
    "requested-stop-sigterm-busy.log": SERVED,
    "requested-stop-sigterm-group.log": SERVED,
    # Fails sizing the KV cache: the traceback runs through get_kv_cache_configs.
    "kv-cache-too-small.log": ["args", "config", "workers", "weights", "profiling", "kv_cache"],
    # The model config is refused (ModelConfig validation, via create_model_config).
    "max-model-len-rejected.log": ["args", "config"],
    "trust-remote-code-missing.log": ["args", "config"],
    # The model path is checked while the arguments become engine args.
    "model-path-missing.log": ["args"],
    # 0.32 binds the API port before it builds the engine: create_server_socket fails.
    "port-in-use.log": ["args", "api"],
}


def _text(name: str) -> str:
    return (REAL_CPU / name).read_bytes().decode("utf-8")


def _feed_all(text: str) -> tuple[list[PhaseHit], PhaseTracker]:
    tracker = PhaseTracker()
    return tracker.feed(text), tracker


def _phases_of(hits: list[PhaseHit]) -> list[str]:
    out: list[str] = []
    for h in hits:
        if not out or out[-1] != h.phase:
            out.append(h.phase)
    return out


def test_phases_are_the_start_up_order():
    assert [pid for pid, _ in PHASES] == [
        "args",
        "platform",
        "config",
        "workers",
        "weights",
        "profiling",
        "kv_cache",
        "graph",
        "api",
        "ready",
        "serving",
    ]
    assert dict(PHASES)["weights"] == "loading weights"


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_real_cpu_logs_reach_the_phase_where_they_stopped(name):
    hits, tracker = _feed_all(_text(name))
    assert _phases_of(hits) == SEQUENCES[name]
    assert tracker.current is not None and tracker.current.phase == SEQUENCES[name][-1]
    assert tracker.current == hits[-1]
    titles = dict(PHASES)
    assert all(h.title == titles[h.phase] for h in hits)
    assert all(h.line == h.line.strip() and h.line for h in hits)


def test_healthy_start_details():
    hits, tracker = _feed_all(_text("healthy-start.log"))
    by_phase: dict[str, list[PhaseHit]] = {}
    for h in hits:
        by_phase.setdefault(h.phase, []).append(h)
    assert by_phase["args"][0].detail == "vLLM 0.32.0"
    assert [h.detail for h in by_phase["config"]] == [
        "Qwen2_5_VLForConditionalGeneration",
        "max model len 2048",
    ]
    kv = by_phase["kv_cache"]
    assert len(kv) == 1 and kv[0].detail == "2,097,152 tokens"
    assert "CPU KV cache size: 2,097,152 tokens" in kv[0].line
    assert [h.detail for h in by_phase["profiling"]] == [
        "",
        "warm-up run 0.33 s",
        "1.0 GiB for KV cache",
    ]
    assert by_phase["api"][0].detail == "http://127.0.0.1:49339"
    assert tracker.current.phase == "serving" and tracker.current.title == "serving requests"
    assert by_phase["ready"][0].line == "INFO:     Application startup complete."
    # Nothing after ready moves it, nor is it searched: the shutdown and requests come after.
    assert tracker.feed(_text("healthy-start.log")) == []


def test_failing_start_stops_at_the_phase_it_failed_in():
    hits, tracker = _feed_all(_text("kv-cache-too-small.log"))
    profiling = [h for h in hits if h.phase == "profiling"]
    assert profiling[-1].detail == "0.0 GiB for KV cache"  # --kv-cache-memory-bytes 1M
    cur = tracker.current
    assert cur.phase == "kv_cache" and cur.detail == ""
    assert cur.line.endswith("in get_kv_cache_configs")


def test_shard_progress_from_real_bars():
    hits, _ = _feed_all(_text("healthy-start.log"))
    weights = [h for h in hits if h.phase == "weights"]
    assert [(h.detail, h.progress) for h in weights] == [
        ("", None),  # Starting to load model ...
        ("shard 0/1", (0, 1)),
        ("shard 1/1", (1, 1)),
        ("took 0.02 s", (1, 1)),  # the progress reached stays with later detail
    ]
    assert weights[1].line.startswith("Loading safetensors checkpoint shards:   0% Completed")


def test_shard_progress_of_several_ranks_never_goes_back():
    # vllm-project/vllm-ascend#2125: four EngineCore ranks print their bars interleaved.
    lines = [
        "Loading safetensors checkpoint shards:  62% Completed | 10/16 [00:06<00:04,  1.46it/s]",
        "Loading safetensors checkpoint shards:  69% Completed | 11/16 [00:06<00:03,  1.47it/s]",
        "Loading safetensors checkpoint shards:  94% Completed | 15/16 [00:09<00:00,  1.47it/s]",
        "(EngineCore_1 pid=302528) INFO 08-13 02:23:37 [default_loader.py:262] Loading weights "
        "took 9.93 seconds",
        "Loading safetensors checkpoint shards: 100% Completed | 16/16 [00:10<00:00,  1.44it/s]",
        "Loading safetensors checkpoint shards: 100% Completed | 16/16 [00:10<00:00,  1.55it/s]",
        "Loading safetensors checkpoint shards:  88% Completed | 14/16 [00:08<00:01,  1.52it/s]",
    ]
    hits, tracker = _feed_all("\n".join(lines) + "\n")
    assert [h.progress for h in hits] == [(10, 16), (11, 16), (15, 16), (15, 16), (16, 16)]
    assert hits[3].detail == "took 9.93 s"
    assert tracker.current.progress == (16, 16) and tracker.current.detail == "shard 16/16"
    # vllm-project/vllm#38820: a 9-shard model, as the worker prints it.
    hits, _ = _feed_all(
        "Loading safetensors checkpoint shards:  56% Completed | 5/9 [00:13<00:11,  2.87s/it]\n"
    )
    assert hits[0].progress == (5, 9) and hits[0].detail == "shard 5/9"


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_random_block_splits_give_the_same_progress(name):
    text = _text(name)
    whole, ref = _feed_all(text)
    lines = text.split("\n")
    rng = random.Random(name)
    for _ in range(5):
        tracker = PhaseTracker()
        got: list[PhaseHit] = []
        i = 0
        while i < len(lines):
            n = rng.randint(1, 40)
            block = "\n".join(lines[i : i + n])
            i += n
            got.extend(tracker.feed(block + "\n" if i < len(lines) else block))
        assert got == whole
        assert tracker.current == ref.current
    # One line at a time, as a slow child writes them.
    tracker = PhaseTracker()
    got = [h for line in lines for h in tracker.feed(line + "\n")]
    assert got == whole


def test_last_phase():
    lines = _text("healthy-start.log").split("\n")
    assert last_phase(lines).phase == "serving"
    assert last_phase(_text("kv-cache-too-small.log").split("\n")).phase == "kv_cache"
    assert last_phase(iter(_text("port-in-use.log").splitlines())).phase == "api"
    assert last_phase([]) is None
    assert last_phase(['INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK']) is None
    served = ['INFO:     127.0.0.1:1 - "POST /v1/chat/completions HTTP/1.1" 400 Bad Request']
    assert last_phase(served).phase == "serving"  # a client was answered, even with a 400
    # Big inputs go through in blocks: the same answer as one feed.
    many = ["(Worker pid=1) WARNING 11-25 09:50:27 [cpu_worker.py:114] noise"] * 5000
    assert last_phase([*many, *lines, *many]) == _feed_all(_text("healthy-start.log"))[1].current


def test_never_goes_backwards():
    tracker = PhaseTracker()
    # corpus 045: uvicorn logs "Uvicorn running on" after "Application startup complete."
    assert [h.phase for h in tracker.feed("INFO:     Started server process [3928685]\n")] == [
        "api"
    ]
    later = (
        "(EngineCore pid=1) INFO 03-13 09:00:22 [__init__.py:256] Automatically detected "
        "platform cuda.\n"  # vllm-project/vllm#12529; each spawned process logs it again
        "(EngineCore pid=1) INFO 11-25 09:50:59 [kv_cache_utils.py:2327] CPU KV cache size: "
        "2,097,152 tokens, Maximum concurrency for 2,048 tokens per request: 1024.00x\n"
    )
    assert tracker.feed(later) == []
    assert tracker.current.phase == "api"
    done = tracker.feed(
        "INFO:     Waiting for application startup.\n"
        "INFO:     Application startup complete.\n"
        "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)\n"
    )
    assert [h.phase for h in done] == ["ready"]
    assert tracker.feed("INFO:     Started server process [1]\n") == []
    assert tracker.current.phase == "ready"


# Real lines, one per rule shape: (line, phase, detail).
LINES = [
    # vllm-project/vllm#12529 (0.7.4): platform before the arguments
    (
        "INFO 03-13 09:00:22 [__init__.py:256] Automatically detected platform cuda.",
        "platform",
        "cuda",
    ),
    (
        "INFO 03-13 09:00:23 [api_server.py:912] vLLM API server version 0.7.4.dev390+gdebd6bbf0",
        "args",
        "vLLM 0.7.4.dev390+gdebd6bbf0",
    ),
    (
        "INFO 04-29 05:17:32 [api_server.py:1044] args: Namespace(subparser='serve', "
        "model_tag='google/gemma-3-1b-it', config='', host='0.0.0.0', port=8000)",  # vllm#17386
        "args",
        "",
    ),
    # vllm-project/vllm#23967
    (
        "INFO 08-29 14:35:22 [__init__.py:239] No platform detected, vLLM is running on "
        "UnspecifiedPlatform",
        "platform",
        "none detected",
    ),
    # vllm-project/vllm-ascend#1875
    (
        "INFO 07-18 06:48:54 [__init__.py:235] Platform plugin ascend is activated",
        "platform",
        "ascend",
    ),
    # vllm-ascend 0.7.1 sample output in its docs
    (
        "INFO 02-18 08:50:12 config.py:526] This model supports multiple tasks: {'embed', "
        "'classify', 'generate', 'score', 'reward'}. Defaulting to 'generate'.",
        "config",
        "",
    ),
    # vllm-project/vllm-ascend#2210
    (
        "(EngineCore_1 pid=515701) INFO 08-05 11:16:46 [core.py:71] Initializing a V1 LLM engine "
        "(v0.9.2.dev301+g3c545c0c3) with config: model='/home/xxx/Qwen3-30B-A3B'",
        "config",
        "",
    ),
    # vllm-project/vllm#38820
    (
        "(Worker_TP0 pid=34322) INFO 05-06 20:59:59 [gpu_model_runner.py:4879] Model loading took "
        "12.66 GiB memory and 31.657031 seconds",
        "weights",
        "12.66 GiB",
    ),
    # vllm-project/vllm#18577 (V1) and vllm-ascend#19 (V0): the start failed loading weights
    (
        "(VllmWorker rank=0 pid=220) ERROR 05-22 21:17:38 [multiproc_executor.py:435]   File "
        '"/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_worker.py", line 162, in '
        "load_model",
        "weights",
        "",
    ),
    (
        "(VllmWorkerProcess pid=25847) ERROR 03-06 01:17:36 multiproc_worker_utils.py:240] "
        "Exception in worker VllmWorkerProcess while processing method load_model.",
        "weights",
        "",
    ),
    # vllm-project/vllm#8903 (V0, multiproc): the start failed profiling
    (
        "(VllmWorkerProcess pid=214) ERROR 09-27 05:20:38 multiproc_worker_utils.py:233] Exception "
        "in worker VllmWorkerProcess while processing method determine_num_available_blocks: CUDA "
        "out of memory. Tried to allocate 19.63 GiB.",
        "profiling",
        "",
    ),
    # vllm-project/vllm#38820 (V1)
    (
        "(Worker_TP0 pid=34322) INFO 05-06 21:00:16 [backends.py:1128] Dynamo bytecode transform "
        "time: 3.54 s",
        "profiling",
        "",
    ),
    # vllm-project/vllm#29636 (V1): the start failed profiling
    (
        '(EngineCore_DP0 pid=185173)   File "/mnt/mydisk0/shangzhensen/anaconda3/envs/qwen_llama/'
        'lib/python3.10/site-packages/vllm/v1/executor/abstract.py", line 126, in '
        "determine_available_memory",
        "profiling",
        "",
    ),
    # corpus 006 (vllm#10517, V0)
    ("Loading model weights took 14.9888 GB", "weights", "14.9888 GB"),
    (
        "Memory profiling results: total_gpu_memory=23.58GiB initial_memory_usage=15.34GiB "
        "peak_torch_memory=17.98GiB memory_usage_post_profile=15.35GiB non_torch_memory=0.35GiB "
        "kv_cache_size=2.89GiB gpu_memory_utilization=0.90",
        "profiling",
        "2.89 GiB for KV cache",
    ),
    ("# GPU blocks: 1478, # CPU blocks: 2048", "kv_cache", "1478 GPU blocks"),
    # mellea#416 (V0)
    (
        "INFO 02-11 10:17:54 [worker.py:294] Memory profiling takes 0.44 seconds",
        "profiling",
        "took 0.44 s",
    ),
    (
        "INFO 02-11 10:17:54 [worker.py:294] model weights take 1.12GiB; non_torch_memory takes "
        "0.16GiB; PyTorch activation peak memory takes 0.23GiB; the rest of the memory reserved "
        "for KV Cache is 61.84GiB.",
        "profiling",
        "61.84 GiB for KV cache",
    ),
    (
        "INFO 02-11 10:17:54 [executor_base.py:113] # cuda blocks: 36184, # CPU blocks: 2340",
        "kv_cache",
        "36184 cuda blocks",
    ),
    (
        "INFO 02-11 10:17:57 [model_runner.py:1513] Capturing cudagraphs for decoding. This may "
        "lead to unexpected consequences if the model is not static.",
        "graph",
        "",
    ),
    (
        "INFO 02-11 10:17:59 [model_runner.py:1671] Graph capturing finished in 2 secs, took "
        "0.13 GiB",
        "graph",
        "finished in 2 s, 0.13 GiB",
    ),
    # kubernetes-sigs/gateway-api-inference-extension#550 (V0) and vllm#36634 (V1)
    (
        "INFO 03-21 20:15:44 [monitor.py:33] torch.compile takes 28.77 s in total",
        "profiling",
        "torch.compile 28.77 s",
    ),
    (
        "(Worker_TP0 pid=3216417) INFO 03-13 17:30:51 [monitor.py:48] torch.compile took 1.71 s "
        "in total",
        "profiling",
        "torch.compile 1.71 s",
    ),
    # gpustack/runner#251 (V1)
    (
        "(Worker_TP0 pid=447) INFO 08-14 14:07:22 [gpu_worker.py:563] Available KV cache memory: "
        "6.87 GiB",
        "profiling",
        "6.87 GiB for KV cache",
    ),
    # corpus 055 (vllm-ascend#3843): vllm-ascend logs bytes
    (
        "(Worker_TP2 pid=554) INFO 10-28 21:14:48 [worker_v1.py:259] Available memory: 0, total "
        "memory: 65452113920",
        "profiling",
        "0.00 GiB for KV cache",
    ),
    # vllm-project/vllm-ascend#1007 (V0, Ray)
    (
        "(NPURayWorkerWrapper pid=21121) ERROR 05-30 09:16:50 worker_base.py:581] Error executing "
        "method 'determine_num_available_blocks'. This might cause deadlock in distributed "
        "execution.",
        "profiling",
        "",
    ),
    # notes: vllm-ascend#3479 (0.11, NPU says GPU) and vllm-ascend#397 (V0 NPU)
    (
        "INFO 10-15 16:32:15 [kv_cache_utils.py:1087] GPU KV cache size: 182,784 tokens",
        "kv_cache",
        "182,784 tokens",
    ),
    (
        "INFO 03-26 11:49:00 executor_base.py:111] # npu blocks: 3915, # CPU blocks: 910",
        "kv_cache",
        "3915 npu blocks",
    ),
    # corpus 009 (vllm#10439, V0 in docker compose): a traceback through the cache sizing
    (
        'vllm-1  | ERROR 11-18 18:07:28 engine.py:366]   File "/usr/local/lib/python3.12/'
        'dist-packages/vllm/worker/worker.py", line 493, in raise_if_cache_size_invalid',
        "kv_cache",
        "",
    ),
    # vllm-project/vllm-ascend#3508 and #4807 (ACL graphs)
    (
        "(EngineCore_DP0 pid=559) (Worker_TP0 pid=566) INFO 10-24 09:52:00 "
        "[model_runner_v1.py:3502] Starting to capture ACL graphs for cases: [512, 424, 336], "
        "mode: PIECEWISE, uniform_decode: False",
        "graph",
        "",
    ),
    (
        "Capturing ACL graphs (mixed prefill-decode, PIECEWISE): 100%|█████| 11/11 "
        "[00:21<00:00,  1.98s/it]",
        "graph",
        "mixed prefill-decode, PIECEWISE",
    ),
    # corpus 002 (vllm#56180) and aivrar/vllm-windows-build#17
    ("Capturing CUDA graphs (FULL): 50%|█████ | 1/2 [00:00<00:00, 5.53it/s]", "graph", "FULL"),
    (
        "Capturing prefill CUDA graphs (PIECEWISE): 100%|████| 3/3 [00:00<00:00, 108.10it/s]",
        "graph",
        "prefill, PIECEWISE",
    ),
    # vllm-project/vllm#3764 (vLLM 0.4.0)
    (
        "INFO 04-01 08:19:23 model_runner.py:791] Capturing the model for CUDA graphs. This may "
        "lead to unexpected consequences if the model is not static.",
        "graph",
        "",
    ),
    # nlzy/vllm-gfx906#44 (V1 0.10): the start failed capturing graphs
    (
        "(VllmWorker PP0_TP1 pid=4798) ERROR 09-29 05:54:49 [multiproc_executor.py:596]   File "
        '"/opt/torchenv/lib/python3.12/site-packages/vllm/v1/worker/gpu_model_runner.py", line '
        "2691, in capture_model",
        "graph",
        "",
    ),
    # vllm-project/vllm#11349 (V0 tqdm)
    (
        "Capturing CUDA graph shapes: 100%|█████| 35/35 [00:13<00:00,  2.51it/s]",
        "graph",
        "",
    ),
    # notes (0.11.0 api_server.py): "Starting vLLM API server %d on %s"
    (
        "(APIServer pid=1) INFO 10-15 16:32:20 [api_server.py:1912] Starting vLLM API server 0 "
        "on http://0.0.0.0:8000",
        "api",
        "http://0.0.0.0:8000",
    ),
    # corpus 045 (vllm#12600)
    (
        "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
        "api",
        "http://0.0.0.0:8000",
    ),
    # vllm-ascend (dev2/008): the route listing
    (
        "(APIServer pid=4128) INFO 10-24 13:23:36 [launcher.py:46] Route: /v1/embeddings, Methods: "
        "POST",
        "api",
        "",
    ),
    # workers: vLLM's Ray executor joining the cluster, as ray 2.60's ray/_private/worker.py:1841
    # formats it (logger.info("Connecting to existing Ray cluster at address: %s...", addr))
    (
        "2026-12-04 12:00:00,000\tINFO worker.py:1841 -- Connecting to existing Ray cluster at "
        "address: 127.0.0.1:6379...",
        "workers",
        "joining the Ray cluster",
    ),
    # ray/030 (`ray start --head` on EKS), ray/029 (production-stack's readiness probe)
    ("2024-12-12 05:27:54,657 SUCC scripts.py:860 -- Ray runtime started.", "workers", "Ray node started"),
    ("Ray cluster status: 1/2 nodes alive.", "workers", "Ray: 1/2 nodes alive"),
    # ray/024 (NCCL set-up in a Ray worker, cut there)
    (
        "(RayWorkerWrapper pid=38530, ip=10.244.1.95) llama-3-1-nemotron-ultra-253b-instruct-0-1:"
        "38530:39566 [4] NCCL INFO ncclCommInitRank comm 0x2d",
        "workers",
        "NCCL set-up",
    ),
    # dev2/009 (kserve's vLLM runtime, V0 engine lines)
    (
        "2025-05-14 17:45:10.901 1647689 kserve.trace Received request "
        "chatcmpl-017ee87d69ed40e9b67198e5c5e0ee7d: prompt: '<|im_start|>user",
        "serving",
        "",
    ),
    (
        "INFO 05-14 17:45:10 [async_llm_engine.py:211] Added request "
        "chatcmpl-017ee87d69ed40e9b67198e5c5e0ee7d.",
        "serving",
        "",
    ),
    (
        "INFO 05-14 17:45:10 [metrics.py:486] Avg prompt throughput: 2.4 tokens/s, Avg generation "
        "throughput: 0.2 tokens/s, Running: 1 reqs",
        "serving",
        "",
    ),
]


@pytest.mark.parametrize(("line", "phase", "detail"), LINES)
def test_each_line_shape(line, phase, detail):
    hits, _ = _feed_all(line + "\n")
    assert [(h.phase, h.detail) for h in hits] == [(phase, detail)]
    assert hits[0].line == line


def test_every_rule_has_a_line_here_or_in_the_real_logs():
    texts = [line for line, _, _ in LINES] + [_text(n) for n in SEQUENCES]
    for rule in phases._RULES:
        rx = phases._COMPILED[rule]
        assert any(rx.search(t) for t in texts), rule.pattern


def test_colours_and_prefixes_are_searched_through():
    line = (
        "\x1b[1;36m(EngineCore_DP0 pid=123)\x1b[0;0m \x1b[32mINFO\x1b[0m 10-15 16:32:15 "
        "[kv_cache_utils.py:1087] GPU KV cache size: 182,784 tokens\r\n"
    )
    hits, _ = _feed_all(line)
    assert [(h.phase, h.detail) for h in hits] == [("kv_cache", "182,784 tokens")]
    assert hits[0].line == (
        "(EngineCore_DP0 pid=123) INFO 10-15 16:32:15 [kv_cache_utils.py:1087] GPU KV cache "
        "size: 182,784 tokens"
    )


def _line(part: str) -> str:
    """The real line of LINES holding ``part``."""
    return next(line for line, _, _ in LINES if part in line)


def test_a_v1_gpu_start_from_real_lines():
    # Synthesised order from real lines of several threads (named in LINES and above).
    lines = [
        _line("Automatically detected platform cuda."),
        _line("vLLM API server version 0.7.4"),  # args come after the platform here
        "(APIServer pid=281) INFO 03-08 16:41:25 [utils.py:228] non-default args: "
        "{'model_tag': 'Intel/Qwen3.5-122B-A10B-int4-AutoRound'}",  # vllm#30515
        "(Worker_TP0 pid=34322) INFO 05-06 20:59:57 [default_loader.py:384] Loading weights took "
        "24.84 seconds",  # vllm#38820
        _line("Model loading took 12.66 GiB"),
        _line("torch.compile took 1.71 s"),
        _line("Available KV cache memory: 6.87 GiB"),
        "(EngineCore_DP0 pid=387) INFO 03-08 16:44:29 [kv_cache_utils.py:1314] GPU KV cache "
        "size: 188,640 tokens",  # vllm#30515
        "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|█████| 19/19 "
        "[00:00<00:00, 26.06it/s]",  # aivrar/vllm-windows-build#4
        "INFO 05-26 21:34:14 [gpu_model_runner.py:6243] Graph capturing finished in 2 secs, took "
        "0.11 GiB",  # aivrar/vllm-windows-build#4
        "(APIServer pid=34165) INFO 05-06 21:00:52 [api_server.py:602] Starting vLLM server on "
        "http://0.0.0.0:8000",  # vllm#38820 (notes)
        "(APIServer pid=34165) INFO 05-06 21:00:52 [launcher.py:37] Available routes are:",
        "(APIServer pid=14825) INFO:     Started server process [14825]",  # corpus 026
        "(APIServer pid=14825) INFO:     Waiting for application startup.",
        "(APIServer pid=14825) INFO:     Application startup complete.",
    ]
    hits, tracker = _feed_all("\n".join(lines) + "\n")
    assert _phases_of(hits) == [
        "platform",
        "weights",
        "profiling",
        "kv_cache",
        "graph",
        "api",
        "ready",
    ]
    assert [h.detail for h in hits if h.phase == "kv_cache"] == ["188,640 tokens"]
    assert [h.detail for h in hits if h.phase == "graph"] == [
        "mixed prefill-decode, PIECEWISE",
        "finished in 2 s, 0.11 GiB",
    ]
    assert tracker.current.phase == "ready"


def test_a_log_flood_is_one_regex_scan_per_block(monkeypatch):
    # Not timed: counts that no line of a flood reaches the per-line rules.
    looked: list[str] = []
    real = phases._line_hits

    def counting(line, rules):
        looked.append(line)
        return real(line, rules)

    monkeypatch.setattr(phases, "_line_hits", counting)
    tracker = PhaseTracker()
    tracker.feed(_text("healthy-start.log").split("Loading weights took")[0])
    assert tracker.current.phase == "weights"
    looked.clear()
    # Real flood shapes that say nothing of progress: prober access lines, worker warnings,
    # frames (client access lines and stats lines are the serving phase: they end tracking).
    flood = [
        'INFO:     127.0.0.1:59008 - "GET /health HTTP/1.1" 200 OK',
        'INFO:     127.0.0.1:59010 - "GET /metrics HTTP/1.1" 200 OK',
        "(Worker pid=11176) WARNING 11-25 09:50:27 [cpu_worker.py:114] libtcmalloc is not found "
        "in LD_PRELOAD. For best performance, please follow the section `set LD_PRELOAD`",
        '(EngineCore pid=11557) ERROR 11-25 09:55:30 [core.py:1510]   File "/root/.cache/mmops/'
        'vllm/v1/engine/core.py", line 1482, in run_engine_core',
    ]
    block = "\n".join(flood * 200) + "\n"
    assert len(block) > 65536
    for _ in range(50):  # about 40k lines
        assert tracker.feed(block) == []
    assert looked == []
    assert tracker.current.phase == "weights"
