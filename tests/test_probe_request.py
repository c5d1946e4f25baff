"""mmops.probe.request: the one sampling validation and the one modality rule."""

from __future__ import annotations

import pytest

from mmops.probe.request import MODALITIES, Turn, modality_of, sampling_value
from mmops.probe.suite import TurnSpec


@pytest.mark.parametrize(
    ("name", "value", "normalised"),
    [
        ("max_tokens", 1, 1),
        ("temperature", 0, 0.0),
        ("temperature", 0.7, 0.7),
        ("top_k", -1, -1),
        ("top_k", 50, 50),
        ("top_p", 1, 1.0),
        ("top_p", 0.01, 0.01),
        ("ignore_eos", True, True),
        ("repetition_penalty", 1.05, 1.05),
        ("stop_token_ids", [0, 92543], (0, 92543)),
        ("stop_token_ids", None, None),
    ],
)
def test_valid_sampling_values_are_normalised(name, value, normalised):
    out = sampling_value(name, value)
    assert out == normalised and type(out) is type(normalised)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("max_tokens", 0, "must be an integer >= 1"),
        ("max_tokens", "many", "must be an integer"),
        ("max_tokens", 8.0, "must be an integer"),
        ("max_tokens", True, "must be an integer"),
        ("temperature", -0.1, "must be >= 0"),
        ("temperature", "hot", "must be a number"),
        ("top_k", 0, "must be -1 (off) or an integer >= 1"),  # refused by vLLM before 0 meant off
        ("top_k", -2, "must be -1 (off) or an integer >= 1"),
        ("top_p", 0, "must be in (0, 1]"),
        ("top_p", 1.5, "must be in (0, 1]"),
        ("repetition_penalty", 0, "must be > 0"),
        ("ignore_eos", "yes", "must be true or false"),
        ("stop_token_ids", [1, "x"], "must be a list of integers"),
        ("stop_token_ids", 7, "must be a list of integers"),
    ],
)
def test_invalid_sampling_values_say_what_is_valid(name, value, message):
    with pytest.raises(ValueError) as err:
        sampling_value(name, value)
    assert str(err.value) == message


def test_unknown_sampling_name_is_a_key_error():
    with pytest.raises(KeyError):
        sampling_value("seed", 1)


@pytest.mark.parametrize(
    ("turns", "modality"),
    [
        ((Turn(text="hi"),), "text"),
        ((Turn(text="x", images=("a",)),), "image"),
        ((Turn(text="x", images=("a", "b")),), "multi-image"),
        ((Turn(text="x", images=("a",), video="v"),), "video"),
        ((Turn(text="a"), Turn(role="assistant", text="b"), Turn(text="c")), "multi-turn"),
        ((Turn(role="system", text="s"), Turn(text="x", images=("a",))), "image"),
    ],
)
def test_one_modality_rule_for_requests_and_suite_cases(turns, modality):
    assert modality in MODALITIES
    assert modality_of(turns) == modality
    spec_turns = tuple(TurnSpec(t.role, t.text, t.images, t.video) for t in turns)
    assert modality_of(spec_turns) == modality
