"""Generate a tiny random-weight Qwen2.5-VL model directory that the real vLLM CPU build serves.

Run it with the vLLM venv's python (scripts/vllm_venv.sh prints its path):

    python scripts/make_tiny_model.py DIR [--max-position-embeddings N] [--head-dim 64]
    python scripts/make_tiny_model.py --cached [--max-position-embeddings N] [--head-dim 64]

The model has the real architecture (Qwen2_5_VLForConditionalGeneration: vision tower, merger,
text decoder with mrope) at toy sizes, a byte-level BPE tokenizer trained here on a few sentences
plus the Qwen special tokens, Qwen2-VL's chat template, and saved image and video processors with
a small max_pixels so an image costs a handful of tokens. Outputs are meaningless text, which is
enough for operations tests. Everything is seeded, so two runs write the same files.

head_dim 64 is the default because vLLM's CPU attention kernel rejects head_dim 16 at the first
request; --head-dim 16 reproduces that engine death on purpose.

--cached writes under ${MMOPS_CACHE:-~/.cache/mmops}/tiny-models/<hash of this script>/, reuses
an existing directory, and prints its path as the last stdout line, so callers share one copy.
The directory appears atomically (written to a temp dir, then renamed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

SEED = 1234
TEXT_HIDDEN = 128
VISION_HIDDEN = 128
VISION_HEADS = 2
PATCH = 14
MERGE = 2
# 28x28 pixels make one image token after the 2x2 merge; 112x112 caps an image at 16 tokens.
MIN_PIXELS = (PATCH * MERGE) ** 2 * 4
MAX_PIXELS = (PATCH * MERGE) ** 2 * 16
TOKENIZER_VOCAB = 512

# Qwen2.5-VL's special tokens in the upstream order (ids differ: this vocab is tiny).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL-7B-Instruct's chat template: image/video content parts become vision placeholders.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Describe this image in one sentence.",
    "What is shown in the video? Answer briefly.",
    "A red square on a white background, next to a blue circle.",
    "mmops checks that the multimodal server answers image and video requests.",
    "0123456789 + - * / = ( ) [ ] { } < > , . ; : ! ? ' \" @ # $ % & _",
    "You are a helpful assistant. The user asks; the assistant answers.",
]


def cache_dir(max_position_embeddings: int, head_dim: int) -> Path:
    """Where --cached keeps the model for these settings, keyed by this script's contents."""
    root = Path(os.environ.get("MMOPS_CACHE") or Path.home() / ".cache" / "mmops")
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    name = f"qwen2_5_vl-tiny-hd{head_dim}-mpe{max_position_embeddings}"
    return root / "tiny-models" / key / name


def build_tokenizer():
    """Train a byte-level BPE on CORPUS and wrap it as a Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    # Same pre-tokenisation as Qwen2Tokenizer, so the trained merges apply unchanged.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    vocab = tok.get_vocab(with_added_tokens=True)
    # The serialised model lists merges in rank order (as pairs, or "a b" strings in old files).
    merges = [
        tuple(m) if isinstance(m, list) else tuple(m.split(" "))
        for m in json.loads(tok.to_str())["model"]["merges"]
    ]
    qtok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=None,
    )
    qtok.chat_template = CHAT_TEMPLATE
    return qtok


def build_model_files(out: Path, max_position_embeddings: int, head_dim: int) -> None:
    """Write config, safetensors weights, tokenizer and processors for one tiny model into out."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    if TEXT_HIDDEN % head_dim or head_dim % 4:
        raise SystemExit(f"--head-dim {head_dim}: must divide {TEXT_HIDDEN} and be a multiple of 4")
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up, as real checkpoints pad the embedding
    heads = TEXT_HIDDEN // head_dim
    # mrope splits head_dim/2 rotary frequencies over (time, height, width), 1:1.5:1.5 as Qwen.
    half = head_dim // 2
    t_sec = half // 4
    mrope_section = [t_sec, (half - t_sec) // 2, half - t_sec - (half - t_sec) // 2]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
            "max_position_embeddings": max_position_embeddings,
            "max_window_layers": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": 256,
            "num_heads": VISION_HEADS,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": TEXT_HIDDEN,
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        dtype="bfloat16",
    )
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)


def write_atomically(dest: Path, max_position_embeddings: int, head_dim: int) -> None:
    """Build in a sibling temp dir and rename it to dest, so dest is never half written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp.", dir=dest.parent))
    try:
        build_model_files(tmp, max_position_embeddings, head_dim)
        # mkdtemp and the safetensors writer make owner-only files; a model dir is read by all.
        tmp.chmod(0o755)
        for path in tmp.iterdir():
            path.chmod(0o644)
        try:
            tmp.rename(dest)
        except OSError:
            if not (dest / "config.json").is_file():
                raise
            shutil.rmtree(tmp)  # a concurrent run finished first; its copy is identical
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("dir", nargs="?", type=Path, help="output directory (must not exist)")
    where.add_argument("--cached", action="store_true", help="use/reuse the shared cache dir")
    parser.add_argument("--max-position-embeddings", type=int, default=4096)
    parser.add_argument("--head-dim", type=int, default=64)
    args = parser.parse_args(argv)
    if args.max_position_embeddings < 64:
        parser.error("--max-position-embeddings must be at least 64")
    if args.cached:
        dest = cache_dir(args.max_position_embeddings, args.head_dim)
        if not (dest / "config.json").is_file():
            write_atomically(dest, args.max_position_embeddings, args.head_dim)
    else:
        dest = args.dir.resolve()
        if dest.exists():
            parser.error(f"{dest} already exists; pick a new directory")
        write_atomically(dest, args.max_position_embeddings, args.head_dim)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
