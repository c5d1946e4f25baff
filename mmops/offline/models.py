"""Model types of `mmops offline`, as data: how each family's prompt is built and stopped.

The prompt formats are those of vLLM's ``examples/offline_inference/vision_language.py``, read
through the search tool (the vLLM snapshot itself is over `fetch`'s 500 MB limit):

- v0.7.2, the release the reference names: its docs page
  https://docs.vllm.ai/en/v0.7.2/getting_started/examples/vision_language.html (each ``run_*``
  takes one ``question`` and returns ``(llm, prompt, stop_token_ids)``);
- vllm-project/vllm at 005c67723f52 and at b4e69e0af33f (2025: ``run_*`` take a list of
  questions and return ``ModelRequestData``), and the newest stored version of the file
  (2026, with ``run_glm_ocr``; its commit is not shown by the index).

Facts taken from them:

- ``run_qwen2_5_vl`` and ``run_qwen2_vl`` build the same chat-format string by hand in every
  version read: a system turn "You are a helpful assistant.", then
  ``<|vision_start|>{placeholder}<|vision_end|>{question}`` as the user turn, with
  ``<|image_pad|>`` or ``<|video_pad|>`` as the placeholder; no stop tokens. Both set
  ``mm_processor_kwargs`` min_pixels 28*28 and max_pixels 1280*28*28 (Qwen2.5-VL also fps 1).
- ``run_internvl`` puts ``<image>\\n{question}`` as the user message through the model's own
  chat template (``tokenizer.apply_chat_template(..., tokenize=False,
  add_generation_prompt=True)``) and stops on ``convert_tokens_to_ids`` of ``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``, ``<|end|>``; it sets ``trust_remote_code=True``.
  Where v0.7.2 and main differ, main is followed: main also takes video (``<video>`` as the
  placeholder; v0.7.2 asserts image) and drops the ids a tokenizer does not have (``None``),
  which v0.7.2 would have passed on to SamplingParams.

A new model type is one entry in ``MODEL_TYPES``; nothing else changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmops.errors import UsageError

# The user turn of the Qwen2-VL / Qwen2.5-VL examples; {placeholder} and {question} are filled in.
QWEN_VL_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|>{placeholder}<|vision_end|>{question}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
QWEN_VL_PLACEHOLDERS = {"image": "<|image_pad|>", "video": "<|video_pad|>"}
QWEN_VL_PIXELS = {"min_pixels": 28 * 28, "max_pixels": 1280 * 28 * 28}
# vision_language.py's InternVL stop words ("models variants may have different stop tokens").
INTERNVL_STOP_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>")


@dataclass(frozen=True)
class ModelType:
    """How one model family's prompts are built, and what the example sets for it."""

    name: str  # the --model-type value, as vision_language.py names it
    architectures: tuple[str, ...]  # config.json architectures that identify the family
    placeholders: Mapping[str, str]  # modality -> its placeholder in the prompt
    # A prompt string with {placeholder} and {question}; None: the user message ``content``
    # goes through the model's own chat template (its tokenizer, in vLLM's interpreter).
    template: str | None = None
    content: str = "{placeholder}\n{question}"
    stop_tokens: tuple[str, ...] = ()  # looked up in the model's tokenizer
    engine: Mapping[str, Any] = field(default_factory=dict)  # vLLM flags the example sets

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.placeholders)

    @property
    def needs_tokenizer(self) -> bool:
        """Whether building prompts or stop ids needs the model's tokenizer."""
        return self.template is None or bool(self.stop_tokens)

    def to_child(self, modality: str) -> dict[str, Any]:
        """What the child program needs to build this type's prompts for ``modality``."""
        return {
            "name": self.name,
            "placeholder": self.placeholders[modality],
            "template": self.template,
            "content": self.content,
            "stop_tokens": list(self.stop_tokens),
        }


MODEL_TYPES: dict[str, ModelType] = {
    t.name: t
    for t in (
        ModelType(
            name="qwen2_5_vl",
            architectures=("Qwen2_5_VLForConditionalGeneration",),
            placeholders=QWEN_VL_PLACEHOLDERS,
            template=QWEN_VL_TEMPLATE,
            engine={"mm-processor-kwargs": {**QWEN_VL_PIXELS, "fps": 1}},
        ),
        ModelType(
            name="qwen2_vl",
            architectures=("Qwen2VLForConditionalGeneration",),
            placeholders=QWEN_VL_PLACEHOLDERS,
            template=QWEN_VL_TEMPLATE,
            engine={"mm-processor-kwargs": dict(QWEN_VL_PIXELS)},
        ),
        ModelType(
            name="internvl_chat",
            architectures=("InternVLChatModel",),
            placeholders={"image": "<image>", "video": "<video>"},
            stop_tokens=INTERNVL_STOP_TOKENS,
            engine={"trust-remote-code": True},
        ),
    )
}


def model_type(name: str) -> ModelType:
    """The model type called ``name``; a one-line UsageError listing the valid ones if none."""
    try:
        return MODEL_TYPES[name]
    except KeyError:
        valid = ", ".join(sorted(MODEL_TYPES))
        raise UsageError(f"--model-type {name!r}: unknown; valid: {valid}") from None


def architecture(model_dir: str | Path) -> str | None:
    """The first ``architectures`` entry of a model directory's config.json, if readable."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    archs = config.get("architectures") if isinstance(config, dict) else None
    return str(archs[0]) if isinstance(archs, list) and archs else None


def for_architecture(arch: str | None) -> ModelType | None:
    """The model type whose family ``arch`` belongs to, if any."""
    return next((t for t in MODEL_TYPES.values() if arch in t.architectures), None)


def resolve(name: str | None, model_dir: str | None) -> tuple[ModelType, list[str]]:
    """The --model-type to use (given, or read from config.json) and notes on a mismatch."""
    arch = architecture(model_dir) if model_dir else None
    found = for_architecture(arch)
    if name is None:
        if found is None:
            valid = ", ".join(sorted(MODEL_TYPES))
            where = Path(model_dir).expanduser() if model_dir else None
            if where is not None and not where.is_dir():  # a typo in --model, said as one
                what = "is a file" if where.exists() else "does not exist"
                raise UsageError(f"--model {model_dir}: {what}; give the model's directory")
            what = f"config.json says {arch}" if arch else f"no readable config.json in {model_dir}"
            raise UsageError(f"--model-type not given and {what}; pass one of: {valid}")
        return found, []
    chosen = model_type(name)
    notes = []
    if found is not None and found is not chosen:
        notes.append(
            f"--model-type {chosen.name}, but config.json says {arch} ({found.name}): "
            f"the prompts will be in {chosen.name}'s format"
        )
    return chosen, notes
