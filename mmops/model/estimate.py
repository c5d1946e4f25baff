"""Memory arithmetic: will weights + KV cache + activations fit each device, and how long a
context and how many concurrent requests then fit.

Mirrors how vLLM sizes the KV cache at start-up (vllm/v1/worker/gpu_worker.py
determine_available_memory; vllm-ascend's worker does the same): requested = total x
gpu_memory_utilization; KV budget = requested - (weights + peak activation + non-torch memory).
The activation and overhead terms are estimates (vLLM measures them with a dummy forward pass
that mmops cannot run); they are shown separately so a user can see what is guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmops.model.facts import DTYPE_SIZE, ModelFacts, run_dtype

GIB = 1024**3
MIB = 1024**2

# Framework memory outside torch's allocator: runtime context, communication buffers.
# Ascend's HCCL buffers are sized by HCCL_BUFFSIZE (default 200 MB per link), larger than NCCL's.
NON_TORCH_BYTES = {"ascend": int(1.5 * GIB), "nvidia": int(0.75 * GIB), "cpu": 0}
# Worst-case image tokens vLLM profiles per vision item (Qwen2.5-VL: max_pixels 12845056 /
# (14*14*4) = 16384 tokens) when the preprocessor does not say otherwise.
DEFAULT_VISION_TOKENS = 16384


@dataclass(frozen=True)
class FitInput:
    tp: int = 1
    pp: int = 1
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    max_model_len: int | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    enforce_eager: bool = False
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Fit:
    """Per-device budget, all in bytes."""

    capacity: int  # total x utilization, capped at what is free now
    weights: int
    activation: int
    vision: int
    overhead: int
    kv_budget: int
    kv_per_token: int
    max_len_fit: int  # longest single request the KV cache can hold (block-rounded)
    concurrency: float  # requests of max_model_len that fit at once

    @property
    def fits(self) -> bool:
        return self.kv_budget > 0


def kv_bytes_per_token(facts: ModelFacts, inp: FitInput) -> int | None:
    """KV cache bytes one token costs on one device: layers/pp x kv_heads/tp x head_dim x 2 x dtype."""
    layers, kv, hd = facts.num_layers, facts.num_kv_heads, facts.head_dim
    if not (layers and kv and hd):
        return None
    kv_dtype = inp.kv_cache_dtype
    if kv_dtype == "auto":
        size = DTYPE_SIZE.get(run_dtype(facts, inp.dtype), 2)
    else:
        size = 1 if kv_dtype.startswith("fp8") else 2
    kv_per_device = max(1, math.ceil(kv / inp.tp))  # kv heads are replicated when kv < tp
    return math.ceil(layers / inp.pp) * kv_per_device * hd * 2 * size


def weight_bytes(facts: ModelFacts, inp: FitInput) -> int:
    """Weights held per device: float weights converted to the run dtype, split over TP x PP."""
    run = run_dtype(facts, inp.dtype)
    total = 0
    for dtype, nbytes in facts.weights.bytes_by_dtype.items():
        if dtype in DTYPE_SIZE:  # float weights are cast to the run dtype at load
            total += nbytes // DTYPE_SIZE[dtype] * DTYPE_SIZE[run]
        else:  # quantized / integer tensors load as stored
            total += nbytes
    return math.ceil(total / (inp.tp * inp.pp))


def activation_bytes(facts: ModelFacts, inp: FitInput) -> int:
    """Peak activation of the profiling forward pass, estimated.

    One prefill chunk of max_num_batched_tokens through one layer (hidden states, QKV, the MLP's
    gate/up projections) plus fp32 logits for max_num_seqs sequences on the last rank.
    """
    hidden = facts.hidden_size or 4096
    inter = facts.intermediate_size or 4 * hidden
    size = DTYPE_SIZE.get(run_dtype(facts, inp.dtype), 2)
    tokens = inp.max_num_batched_tokens or inp.max_model_len or 8192
    per_token = (4 * hidden + 3 * inter / inp.tp) * size
    logits = inp.max_num_seqs * (facts.vocab_size or 150000) * 4
    return int(tokens * per_token + logits)


def vision_bytes(facts: ModelFacts, inp: FitInput) -> int:
    """Vision encoder peak for the largest image vLLM profiles with (attention is per image)."""
    vc = facts.vision_config
    if not vc:
        return 0
    pre = facts.preprocessor_config or {}
    patch = int(vc.get("patch_size") or pre.get("patch_size") or 14)
    max_pixels = pre.get("max_pixels") or (pre.get("size") or {}).get("max_pixels")
    if isinstance(max_pixels, (int, float)) and max_pixels > 0:
        patches = int(max_pixels) // (patch * patch)
    elif vc.get("image_size"):
        # InternVL: up to max_dynamic_patch tiles of image_size^2, plus a thumbnail.
        tiles = int((facts.config or {}).get("max_dynamic_patch") or 12) + 1
        patches = tiles * (int(vc["image_size"]) // patch) ** 2
    else:
        patches = DEFAULT_VISION_TOKENS * 4  # tokens are patches merged 2x2
    vhidden = int(vc.get("hidden_size") or vc.get("embed_dim") or 1280)
    size = DTYPE_SIZE.get(run_dtype(facts, inp.dtype), 2)
    return int(patches * vhidden * size * 12 / inp.tp)


def fit(facts: ModelFacts, inp: FitInput, total_bytes: int, free_bytes: int | None) -> Fit | None:
    """Budget one device; None when the config lacks the numbers the KV formula needs."""
    kv_tok = kv_bytes_per_token(facts, inp)
    if kv_tok is None:
        return None
    capacity = int(total_bytes * inp.gpu_memory_utilization)
    if free_bytes is not None:
        capacity = min(capacity, free_bytes)
    weights = weight_bytes(facts, inp)
    act = activation_bytes(facts, inp)
    vis = vision_bytes(facts, inp)
    overhead = NON_TORCH_BYTES.get(inp.vendor, 0)
    if inp.vendor == "nvidia" and not inp.enforce_eager:
        overhead += int(0.5 * GIB)  # CUDA graph pools
    budget = capacity - weights - max(act, vis) - overhead
    if budget <= 0:
        return Fit(capacity, weights, act, vis, overhead, budget, kv_tok, 0, 0.0)
    blocks = budget // (kv_tok * inp.block_size)
    max_len = int(blocks * inp.block_size)
    conc = max_len / inp.max_model_len if inp.max_model_len else 0.0
    return Fit(capacity, weights, act, vis, overhead, budget, kv_tok, max_len, conc)


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"
