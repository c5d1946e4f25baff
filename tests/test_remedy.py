"""The remedy ladder on real classified log lines: one change per retry, never for config errors."""

from __future__ import annotations

from pathlib import Path

from mmops.diagnose.table import by_id
from mmops.launch.spec import LaunchSpec
from mmops.serve.remedy import propose
from mmops.serve.supervisor import classify_attempt

LINES = Path(__file__).parent / "fakes" / "lines"  # real lines; sources in SOURCES.yaml


def cause_of(name: str):
    cause = classify_attempt((LINES / name).read_text().splitlines())
    assert cause is not None
    return cause


def test_virtual_memory_remedy_keeps_other_allocator_keys():
    cause = cause_of("npu_vm_vllm_ascend_116.log")  # vllm-ascend#116, fixed by this very change
    assert cause.id == "npu.virtual_memory"
    spec = LaunchSpec(
        model="/m", env={"PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:256,expandable_segments:True"}
    )
    change = propose(spec, cause.signature, cause.captures, base_env={})
    assert change is not None
    assert (
        change.spec.env["PYTORCH_NPU_ALLOC_CONF"]
        == "max_split_size_mb:256,expandable_segments:False"
    )
    assert (
        change.describe()
        == "PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256,expandable_segments:False"
    )
    assert spec.env["PYTORCH_NPU_ALLOC_CONF"].endswith("True")  # the original launch is untouched
    # Applied twice, it changes nothing: no blind retry of the same configuration.
    assert propose(change.spec, cause.signature, cause.captures, base_env={}) is None


def test_env_merge_starts_from_what_the_child_would_inherit():
    cause = cause_of("npu_vm_vllm_ascend_116.log")
    spec = LaunchSpec(model="/m")
    change = propose(
        spec,
        cause.signature,
        cause.captures,
        base_env={"PYTORCH_NPU_ALLOC_CONF": "garbage_collection_threshold:0.6"},
    )
    assert (
        change.spec.env["PYTORCH_NPU_ALLOC_CONF"]
        == "garbage_collection_threshold:0.6,expandable_segments:False"
    )
    assert change.old == "garbage_collection_threshold:0.6"
    # Reference defaults (env_defaults) count as what the child would see.
    spec = LaunchSpec(
        model="/m", env_defaults={"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    )
    change = propose(spec, cause.signature, cause.captures, base_env={})
    assert change.spec.env["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:False"


def test_kv_too_small_sets_max_model_len_to_vllms_estimate():
    cause = cause_of("kv_too_small_tpu_inference_223.log")
    assert cause.captures["estimated"] == "5632"
    spec = LaunchSpec(
        model="/m", args={"max-model-len": 131072}, defaults=frozenset({"max-model-len"})
    )
    change = propose(spec, cause.signature, cause.captures, base_env={})
    assert change.describe() == "--max-model-len 5632"
    assert change.spec.args["max-model-len"] == 5632 and change.old == 131072
    assert "max-model-len" not in change.spec.defaults  # no longer the reference's value


def test_config_errors_get_no_remedy():
    cause = cause_of("max_len_above_derived_vllm_cpu.log")
    assert cause.id == "config.max_len_above_derived" and not cause.signature.retryable
    assert (
        propose(
            LaunchSpec(model="/m", args={"max-model-len": 8192}), cause.signature, cause.captures
        )
        is None
    )


def test_remedy_needing_a_number_the_log_did_not_give_is_skipped():
    sig = by_id("kv.max_len_exceeds_cache")
    assert (
        propose(LaunchSpec(model="/m", args={"max-model-len": 8192}), sig, {}, base_env={}) is None
    )
