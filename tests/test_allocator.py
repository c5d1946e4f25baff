"""mmops.launch.allocator: the one reader and merger of PYTORCH_{NPU,CUDA}_ALLOC_CONF."""

from __future__ import annotations

import pytest

from mmops.launch.allocator import (
    NPU_UNSET_NOTE,
    allocator_mode,
    format_alloc_conf,
    merge_alloc_conf,
    parse_alloc_conf,
)


def test_parse_keeps_order_strips_blanks_and_bare_keys():
    assert parse_alloc_conf(" expandable_segments : True ,, max_split_size_mb:256,") == {
        "expandable_segments": "True",
        "max_split_size_mb": "256",
    }
    assert parse_alloc_conf("expandable_segments") == {"expandable_segments": ""}
    assert parse_alloc_conf(None) == {} and parse_alloc_conf("") == {}


def test_format_round_trips():
    text = "max_split_size_mb:256,expandable_segments:True"
    assert format_alloc_conf(parse_alloc_conf(text)) == text


@pytest.mark.parametrize(
    ("current", "update", "merged"),
    [
        (None, "expandable_segments:False", "expandable_segments:False"),
        (
            "max_split_size_mb:256,expandable_segments:True",
            "expandable_segments:False",
            "max_split_size_mb:256,expandable_segments:False",
        ),
        (
            "garbage_collection_threshold:0.6",
            "expandable_segments:False",
            "garbage_collection_threshold:0.6,expandable_segments:False",
        ),
    ],
)
def test_merge_changes_one_key_and_keeps_the_others(current, update, merged):
    assert merge_alloc_conf(current, update) == merged


def test_allocator_mode_prefers_the_delta_over_the_parent():
    parent = {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True", "PATH": "/bin"}
    assert allocator_mode({}, parent) == {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    delta = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False"}
    assert allocator_mode(delta, parent) == {
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False",
    }
    assert allocator_mode({}, {}) == {}


def test_unset_note_names_the_vllm_ascend_release():
    assert "vllm-ascend >= 0.14.0rc1" in NPU_UNSET_NOTE
