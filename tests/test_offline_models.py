"""Prompt formats and stop ids of `mmops offline`'s model types, against what vLLM's
vision_language.py builds (read at 005c67723f52, b4e69e0af33f and the v0.7.2 docs page; the
Qwen prompt is the same in all) and what the models' recorded tokenizer files give
(tests/fixtures/offline/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mmops.errors import UsageError
from mmops.offline import child, models
from mmops.probe.request import INTERNLM2_STOP_IDS, stop_token_ids_for_model

FIX = Path(__file__).parent / "fixtures" / "offline"
MODELS = Path(__file__).parent / "fixtures" / "models"
REFERENCE_INTERNVL_STOP_IDS = [0, 92543, 92542]  # the reference's online_serving.py

# What run_qwen2_5_vl (and run_qwen2_vl) build for the example's first image and video question.
QWEN_IMAGE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
    "What is the content of this image?<|im_end|>\n"
    "<|im_start|>assistant\n"
)
QWEN_VIDEO = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
    "Why is this video funny?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


class RecordedTokenizer:
    """What a transformers tokenizer does with a recorded tokenizer_config.json, for the two
    calls vision_language.py makes: apply_chat_template renders ``chat_template`` with Jinja as
    transformers does (sandboxed, trim_blocks, lstrip_blocks); convert_tokens_to_ids looks the
    token up in ``added_tokens_decoder`` and otherwise answers what the tokenizer kind answers
    for an unknown token (a sentencepiece tokenizer: its <unk> id; a fast BPE one: None)."""

    def __init__(self, config: dict, unknown: int | None) -> None:
        self.config = config
        self.unknown = unknown
        self.vocab = {
            spec["content"]: int(tid)
            for tid, spec in (config.get("added_tokens_decoder") or {}).items()
        }

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        template = env.from_string(self.config["chat_template"])
        return template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.config.get("bos_token") or "",
        )

    def convert_tokens_to_ids(self, token: str):
        return self.vocab.get(token, self.unknown)


def recorded(name: str) -> dict:
    return json.loads((FIX / f"{name}.tokenizer_config.partial.json").read_text())


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen2_vl"])
def test_qwen_prompts_for_image_and_video_equal_the_examples(name):
    spec = models.model_type(name)
    image = child.render_prompts(spec.to_child("image"), ["What is the content of this image?"])
    video = child.render_prompts(spec.to_child("video"), ["Why is this video funny?"])
    assert image == [QWEN_IMAGE]
    assert video == [QWEN_VIDEO]
    assert spec.stop_tokens == () and not spec.needs_tokenizer


def test_qwen_question_with_braces_is_kept_verbatim():
    spec = models.model_type("qwen2_5_vl").to_child("image")
    (prompt,) = child.render_prompts(spec, ["Is {this} a {placeholder}?"])
    assert "<|vision_end|>Is {this} a {placeholder}?<|im_end|>" in prompt


def test_internvl_prompt_goes_through_the_models_recorded_chat_template():
    tok = RecordedTokenizer(recorded("InternVL2_5-1B"), unknown=None)
    spec = models.model_type("internvl_chat")
    (image,) = child.render_prompts(spec.to_child("image"), ["What is in it?"], tok)
    (video,) = child.render_prompts(spec.to_child("video"), ["Why is this video funny?"], tok)
    # vision_language.py: content f"<image>\n{question}" through apply_chat_template(...,
    # tokenize=False, add_generation_prompt=True); main uses <video> for video.
    assert image == "<|im_start|>user\n<image>\nWhat is in it?<|im_end|>\n<|im_start|>assistant\n"
    assert video == (
        "<|im_start|>user\n<video>\nWhy is this video funny?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_internvl_without_a_tokenizer_is_a_programming_error():
    with pytest.raises(ValueError, match="chat template"):
        child.render_prompts(models.model_type("internvl_chat").to_child("image"), ["q"])


def test_internlm2_based_internvl_stop_ids_are_the_references(tmp_path):
    """InternVL2.5-2B/8B/26B: a sentencepiece tokenizer, unknown tokens -> <unk> = 0."""
    tok = RecordedTokenizer(recorded("InternVL2-2B"), unknown=0)
    ids = child.stop_token_ids(tok, list(models.INTERNVL_STOP_TOKENS))
    assert ids == REFERENCE_INTERNVL_STOP_IDS
    # The same as `mmops probe` reads from a model directory of that family (one concept).
    model = tmp_path / "InternVL2_5-8B"
    model.mkdir()
    for name in ("config.json", "generation_config.json"):
        (model / name).write_text((MODELS / "InternVL2_5-8B" / name).read_text())
    (model / "tokenizer_config.json").write_text(
        (FIX / "InternVL2-2B.tokenizer_config.partial.json").read_text()
    )
    assert list(stop_token_ids_for_model(model)) == ids == list(INTERNLM2_STOP_IDS)


def test_qwen_based_internvl_drops_the_stop_tokens_its_tokenizer_lacks():
    """InternVL2.5-1B/4B/38B/78B: a fast Qwen2 tokenizer answers None for <|end|> (main drops
    it; v0.7.2 passed None on). Ids of Qwen2's vocabulary: <|endoftext|> 151643,
    <|im_start|> 151644, <|im_end|> 151645 (InternVL2_5-78B's generation_config.json has
    eos_token_id [151644, 151645], tests/fixtures/models/InternVL2_5-78B)."""
    config = {
        **recorded("InternVL2_5-1B"),
        "added_tokens_decoder": {
            "151643": {"content": "<|endoftext|>"},
            "151644": {"content": "<|im_start|>"},
            "151645": {"content": "<|im_end|>"},
        },
    }
    tok = RecordedTokenizer(config, unknown=None)
    assert child.stop_token_ids(tok, list(models.INTERNVL_STOP_TOKENS)) == [151643, 151644, 151645]


def test_model_type_is_read_from_config_json(model_dir):
    qwen, notes = models.resolve(None, str(model_dir("Qwen2.5-VL-7B-Instruct")))
    assert qwen.name == "qwen2_5_vl" and notes == []
    intern, _ = models.resolve(None, str(model_dir("InternVL2_5-8B")))
    assert intern.name == "internvl_chat"
    assert intern.engine["trust-remote-code"] is True


def test_a_model_type_that_contradicts_config_json_is_noted(model_dir):
    chosen, notes = models.resolve("internvl_chat", str(model_dir("Qwen2.5-VL-7B-Instruct")))
    assert chosen.name == "internvl_chat"
    assert "config.json says Qwen2_5_VLForConditionalGeneration (qwen2_5_vl)" in notes[0]


def test_unknown_model_type_lists_the_valid_ones():
    with pytest.raises(UsageError) as err:
        models.model_type("llava")
    assert (
        str(err.value)
        == "--model-type 'llava': unknown; valid: internvl_chat, qwen2_5_vl, qwen2_vl"
    )


def test_no_model_type_and_an_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(UsageError, match="config.json says LlamaForCausalLM; pass one of"):
        models.resolve(None, str(tmp_path))


def test_a_new_model_type_is_one_data_entry():
    """Nothing but the entry: the child builds any template-type prompt from the data."""
    entry = models.ModelType(
        name="toy", architectures=("ToyForCausalLM",), placeholders={"image": "<img>"},
        template="USER: {placeholder}\n{question}\nASSISTANT:",
    )  # fmt: skip
    assert child.render_prompts(entry.to_child("image"), ["hi"]) == ["USER: <img>\nhi\nASSISTANT:"]
