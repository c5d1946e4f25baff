"""Facts about a HuggingFace model directory, read the way vLLM reads them, without torch.

Nothing here raises for a broken directory: problems are recorded on the facts so each doctor
check can fail with its own reason. Only the files needed are opened; safetensors shards are
read header-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mmops.model.safetensors import HeaderError, ShardInfo, read_header

# vLLM's candidate length keys, smallest present wins (vllm/config/model.py,
# _get_and_verify_max_len; same list in 0.7.2 and 0.33).
MAX_LEN_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)

# Architectures vLLM serves with image/video input (vLLM's supported multimodal models list).
MULTIMODAL_ARCHS = frozenset(
    {
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLMoeForConditionalGeneration",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        "InternVLChatModel",
        "InternVLForConditionalGeneration",
        "InternS1ForConditionalGeneration",
        "H2OVLChatModel",
        "NVLM_D",
        "LlavaForConditionalGeneration",
        "LlavaNextForConditionalGeneration",
        "LlavaNextVideoForConditionalGeneration",
        "LlavaOnevisionForConditionalGeneration",
        "MiniCPMV",
        "MiniCPMO",
        "MllamaForConditionalGeneration",
        "Llama4ForConditionalGeneration",
        "Gemma3ForConditionalGeneration",
        "Gemma3nForConditionalGeneration",
        "Idefics3ForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
        "Phi3VForCausalLM",
        "Phi4MMForCausalLM",
        "PaliGemmaForConditionalGeneration",
        "Glm4vForConditionalGeneration",
        "Glm4vMoeForConditionalGeneration",
        "GLM4VForCausalLM",
        "KimiVLForConditionalGeneration",
        "DeepseekVLV2ForCausalLM",
        "Mistral3ForConditionalGeneration",
        "PixtralForConditionalGeneration",
        "MolmoForCausalLM",
        "AriaForConditionalGeneration",
        "Ovis",
        "ChameleonForConditionalGeneration",
        "Blip2ForConditionalGeneration",
        "FuyuForCausalLM",
        "Step3VLForConditionalGeneration",
    }
)
# Vision towers whose attention heads vLLM shards across TP without padding; InternViT pads
# dummy heads (vllm intern_vit.py num_dummy_heads), so its 25-head 6B tower runs at TP 8.
VISION_HEADS_PADDED = frozenset(
    {"InternVLChatModel", "H2OVLChatModel", "NVLM_D", "InternS1ForConditionalGeneration"}
)
# Architectures whose processor vLLM loads from the HF preprocessor_config.json.
NEEDS_PREPROCESSOR = frozenset(
    {
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLMoeForConditionalGeneration",
        "LlavaForConditionalGeneration",
        "LlavaNextForConditionalGeneration",
        "LlavaOnevisionForConditionalGeneration",
        "Idefics3ForConditionalGeneration",
        "Gemma3ForConditionalGeneration",
        "MllamaForConditionalGeneration",
    }
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "tiktoken.model",
    "qwen.tiktoken",
)
DTYPE_NAMES = {
    "bfloat16": "BF16",
    "float16": "F16",
    "float32": "F32",
    "half": "F16",
    "float": "F32",
}
DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4}


@dataclass(frozen=True)
class MaxLen:
    """The model's own length limit, as vLLM derives it, and where it came from."""

    value: int
    key: str
    where: str  # e.g. "config.json: llm_config.max_position_embeddings"
    scaled_by: float = 1.0


@dataclass
class Weights:
    shards: list[ShardInfo] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # shard names the index lists
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    index_error: str | None = None
    other_formats: list[str] = field(default_factory=list)  # *.bin / *.pt / *.gguf seen

    @property
    def bytes_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.bytes_by_dtype.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def params_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.params_by_dtype.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())

    @property
    def total_params(self) -> int:
        return sum(self.params_by_dtype.values())


@dataclass
class ModelFacts:
    path: Path
    exists: bool
    is_dir: bool
    config: dict[str, Any] | None = None
    config_error: str | None = None

    # -- config-derived -------------------------------------------------------------------
    @property
    def architectures(self) -> list[str]:
        archs = (self.config or {}).get("architectures") or []
        return [a for a in archs if isinstance(a, str)]

    @property
    def arch(self) -> str | None:
        return self.architectures[0] if self.architectures else None

    @property
    def model_type(self) -> str | None:
        return (self.config or {}).get("model_type")

    @property
    def text_config_key(self) -> str | None:
        """Where the language model's settings live: nested key, or None for a flat config."""
        cfg = self.config or {}
        for key in ("text_config", "llm_config", "language_config"):
            if isinstance(cfg.get(key), dict):
                return key
        return None

    @property
    def text_config(self) -> dict[str, Any]:
        key = self.text_config_key
        return (self.config or {})[key] if key else (self.config or {})

    @property
    def vision_config(self) -> dict[str, Any] | None:
        vc = (self.config or {}).get("vision_config")
        return vc if isinstance(vc, dict) else None

    def _text(self, *keys: str) -> Any:
        tc = self.text_config
        for k in keys:
            if tc.get(k) is not None:
                return tc[k]
        return None

    @property
    def num_heads(self) -> int | None:
        return self._text("num_attention_heads", "n_head", "num_heads")

    @property
    def num_kv_heads(self) -> int | None:
        kv = self._text("num_key_value_heads", "multi_query_group_num", "n_head_kv")
        return kv if kv is not None else self.num_heads

    @property
    def num_layers(self) -> int | None:
        return self._text("num_hidden_layers", "num_layers", "n_layer")

    @property
    def hidden_size(self) -> int | None:
        return self._text("hidden_size", "n_embd", "d_model")

    @property
    def intermediate_size(self) -> int | None:
        return self._text("intermediate_size", "ffn_hidden_size")

    @property
    def vocab_size(self) -> int | None:
        return self._text("vocab_size", "padded_vocab_size")

    @property
    def head_dim(self) -> int | None:
        hd = self._text("head_dim", "kv_channels")
        if hd:
            return int(hd)
        if self.hidden_size and self.num_heads:
            return self.hidden_size // self.num_heads
        return None

    @property
    def vision_heads(self) -> int | None:
        vc = self.vision_config or {}
        return vc.get("num_heads") or vc.get("num_attention_heads")

    @property
    def config_dtype(self) -> str | None:
        cfg = self.config or {}
        for c in (cfg, self.text_config, self.vision_config or {}):
            d = c.get("torch_dtype") or c.get("dtype")
            if isinstance(d, str):
                return d
        return None

    @property
    def auto_map(self) -> dict[str, Any] | None:
        am = (self.config or {}).get("auto_map")
        return am if isinstance(am, dict) and am else None

    @property
    def is_multimodal(self) -> bool:
        return bool(set(self.architectures) & MULTIMODAL_ARCHS) or self.vision_config is not None

    # -- length ---------------------------------------------------------------------------
    @cached_property
    def max_len(self) -> MaxLen | None:
        """The model's limit as vLLM derives it (vllm/config/model.py _get_and_verify_max_len)."""
        if self.config is None:
            return None
        tc = self.text_config
        prefix = f"{self.text_config_key}." if self.text_config_key else ""
        best: tuple[float, str] | None = None
        for key in MAX_LEN_KEYS:
            v = tc.get(key)
            if (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and (best is None or v < best[0])
            ):
                best = (v, key)
        if best is None:
            return None
        value, key = float(best[0]), best[1]
        where = f"config.json: {prefix}{key}"
        # vLLM also honours tokenizer_config.json's model_max_length when smaller.
        tok_len = (self.tokenizer_config or {}).get("model_max_length")
        if (
            isinstance(tok_len, (int, float))
            and not isinstance(tok_len, bool)
            and 0 < tok_len < value
        ):
            value, key, where = (
                float(tok_len),
                "model_max_length",
                "tokenizer_config.json: model_max_length",
            )
        scale = 1.0
        rope = tc.get("rope_scaling") or tc.get("rope_parameters")
        if isinstance(rope, dict):
            rtype = rope.get("rope_type") or rope.get("type")
            # mrope (Qwen2-VL family) is patched to "default" by vLLM: no factor.
            if rtype not in ("su", "longrope", "llama3", "mrope", "default", None):
                scale = float(rope.get("factor", 1.0) or 1.0)
                if rtype == "yarn" and rope.get("original_max_position_embeddings"):
                    value = float(rope["original_max_position_embeddings"])
        return MaxLen(int(value * scale), key, where, scale)

    # -- files ----------------------------------------------------------------------------
    def _json(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    @cached_property
    def tokenizer_config(self) -> dict[str, Any] | None:
        return self._json("tokenizer_config.json") if self.is_dir else None

    @cached_property
    def tokenizer_files(self) -> list[str]:
        if not self.is_dir:
            return []
        found = [n for n in TOKENIZER_FILES if (self.path / n).is_file()]
        if "vocab.json" in found and not (self.path / "merges.txt").is_file():
            found.remove("vocab.json")  # a BPE vocab without merges cannot load
        return found

    @cached_property
    def chat_template_source(self) -> str | None:
        """Where the model's own chat template lives, if anywhere."""
        if not self.is_dir:
            return None
        tc = self.tokenizer_config or {}
        if tc.get("chat_template"):
            return "tokenizer_config.json: chat_template"
        for name in ("chat_template.jinja", "chat_template.json"):
            if (self.path / name).is_file():
                return name
        proc = self._json("processor_config.json") or {}
        if proc.get("chat_template"):
            return "processor_config.json: chat_template"
        return None

    @cached_property
    def preprocessor_config(self) -> dict[str, Any] | None:
        """The image processor settings: preprocessor_config.json, or (transformers >= 5
        saves it there) the ``image_processor`` entry of processor_config.json."""
        if not self.is_dir:
            return None
        pre = self._json("preprocessor_config.json")
        if pre is not None:
            return pre
        nested = (self._json("processor_config.json") or {}).get("image_processor")
        return nested if isinstance(nested, dict) else None

    @cached_property
    def generation_config(self) -> dict[str, Any] | None:
        return self._json("generation_config.json") if self.is_dir else None

    @cached_property
    def weights(self) -> Weights:
        w = Weights()
        if not self.is_dir:
            return w
        index_path = self.path / "model.safetensors.index.json"
        names: list[str]
        if index_path.is_file():
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
                names = sorted(set(index["weight_map"].values()))
            except (
                OSError,
                UnicodeDecodeError,
                json.JSONDecodeError,
                KeyError,
                TypeError,
                AttributeError,
            ) as exc:
                w.index_error = f"model.safetensors.index.json is unreadable: {exc}"
                names = sorted(p.name for p in self.path.glob("*.safetensors"))
        else:
            names = sorted(p.name for p in self.path.glob("*.safetensors"))
        w.expected = names
        for name in names:
            p = self.path / name
            if not p.is_file():
                w.missing.append(name)
                continue
            try:
                w.shards.append(read_header(p))
            except HeaderError as exc:
                w.errors.append(str(exc))
        if not names:
            w.other_formats = sorted(
                p.name for ext in ("*.bin", "*.pt", "*.pth", "*.gguf") for p in self.path.glob(ext)
            )
        return w


def inspect_model(path: str | Path) -> ModelFacts:
    """Read what can be read of a model directory; problems are recorded, never raised."""
    p = Path(path).expanduser()
    facts = ModelFacts(path=p, exists=p.exists(), is_dir=p.is_dir())
    if not facts.is_dir:
        return facts
    cfg_path = p / "config.json"
    try:
        raw = cfg_path.read_bytes()
    except FileNotFoundError:
        facts.config_error = f"{cfg_path}: missing; a HuggingFace model directory has config.json"
        return facts
    except OSError as exc:
        facts.config_error = f"{cfg_path}: cannot read: {exc.strerror or exc}"
        return facts
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        facts.config_error = f"{cfg_path}: not UTF-8 text"
        return facts
    except json.JSONDecodeError as exc:
        body = raw.strip()  # an object that never closes was cut, wherever the parser stopped
        truncated = exc.pos >= len(body) - 1 or (body[:1] == b"{" and body[-1:] != b"}")
        cut = " (the file looks truncated)" if truncated else ""
        facts.config_error = (
            f"{cfg_path}: invalid JSON at line {exc.lineno} col {exc.colno}: {exc.msg}{cut}"
        )
        return facts
    if not isinstance(data, dict):
        facts.config_error = f"{cfg_path}: expected a JSON object, got {type(data).__name__}"
        return facts
    # A string, NaN or non-positive size crashed the doctor's arithmetic (and would crash vLLM).
    bad = _bad_number(data)
    if bad is not None:
        facts.config_error = f"{cfg_path}: {bad}"
        return facts
    facts.config = data
    return facts


# config.json numbers vLLM computes with: text model sizes, vision tower sizes, lengths.
_TEXT_INTS = (
    "num_attention_heads", "n_head", "num_heads", "num_key_value_heads", "multi_query_group_num",
    "n_head_kv", "num_hidden_layers", "num_layers", "n_layer", "hidden_size", "n_embd", "d_model",
    "intermediate_size", "ffn_hidden_size", "vocab_size", "padded_vocab_size", "head_dim",
    "kv_channels",
)  # fmt: skip
_VISION_INTS = ("num_heads", "num_attention_heads", "hidden_size", "embed_dim", "patch_size")
_INT_MAX = 2**31 - 1  # no real model has a size past int32; beyond it is a corrupt file


def _bad_number(cfg: dict[str, Any]) -> str | None:
    """The first config.json number vLLM could not compute with, said with what is valid."""
    import math

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    prefix = next((k for k in ("text_config", "llm_config", "language_config")
                   if isinstance(cfg.get(k), dict)), None)  # fmt: skip
    text = cfg[prefix] if prefix else cfg
    vc = cfg.get("vision_config")
    vision: dict[str, Any] = vc if isinstance(vc, dict) else {}
    rope = text.get("rope_scaling") or text.get("rope_parameters")
    rope = rope if isinstance(rope, dict) else {}
    checks = [
        *((f"{prefix + '.' if prefix else ''}{k}", text.get(k), "int") for k in _TEXT_INTS),
        *((f"vision_config.{k}", vision.get(k), "int") for k in _VISION_INTS),
        *((f"{prefix + '.' if prefix else ''}{k}", text.get(k), "len") for k in MAX_LEN_KEYS),
        ("rope_scaling.factor", rope.get("factor"), "len"),
        ("rope_scaling.original_max_position_embeddings",
         rope.get("original_max_position_embeddings"), "len"),
    ]  # fmt: skip
    for where, v, kind in checks:
        if v is None:
            continue
        if kind == "int" and not (num(v) and v == int(v) and 1 <= v <= _INT_MAX):
            return f"{where} must be a positive integer (at most {_INT_MAX:,}); got {v!r}"
        if kind == "len" and not (num(v) and v > 0):
            return f"{where} must be a positive number; got {v!r}"
    return None


def run_dtype(facts: ModelFacts, requested: str) -> str:
    """The safetensors dtype name vLLM will compute in for --dtype (auto keeps fp16/bf16)."""
    if requested != "auto":
        return DTYPE_NAMES.get(requested, "BF16")
    cfg = DTYPE_NAMES.get(facts.config_dtype or "")
    if cfg in ("BF16", "F16"):
        return cfg
    return "F16" if cfg == "F32" else "BF16"
