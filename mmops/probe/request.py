"""Build OpenAI ``/v1/chat/completions`` bodies the way the reference ``online_serving.py`` does.

The reference sends one user turn whose content is ``[{"type": "text"}, {"type": "image_url"}]``
plus ``max_tokens, temperature, ignore_eos, stream, top_k, top_p, stop_token_ids,
repetition_penalty``. :class:`Sampling` keeps the script's defaults; :class:`ChatRequest`
generalises the turn to several images, a ``video_url`` and several turns.

:meth:`ChatRequest.encode` builds the JSON once per case and run, cheaply: each local file's
``data:`` URL (already cached per file by :mod:`mmops.probe.media`) is spliced into the bytes
rather than run through ``json.dumps``, which would scan every base64 character for escapes.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from mmops.probe.media import Media

Role = Literal["user", "assistant", "system"]
MODALITIES = ("text", "image", "multi-image", "video", "multi-turn")


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters with the reference script's defaults (temperature 0 = greedy)."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_k: int = -1
    top_p: float = 1.0
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "ignore_eos": self.ignore_eos,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.stop_token_ids is not None:
            out["stop_token_ids"] = list(self.stop_token_ids)
        return out


# Rules of vLLM's SamplingParams._verify_args, as (kind, test, what the value must be). top_k 0
# means "off" only from the vLLM release that accepts it ("top_k must be 0 (disable), or at least
# 1"); earlier ones refuse it ("must be -1 (disable), or at least 1"), so a portable suite uses -1.
_SAMPLING_RULES: dict[str, tuple[type, Callable[[Any], bool] | None, str]] = {
    "max_tokens": (int, lambda v: v >= 1, "an integer >= 1"),
    "temperature": (float, lambda v: v >= 0, ">= 0"),
    "top_k": (int, lambda v: v == -1 or v >= 1, "-1 (off) or an integer >= 1"),
    "top_p": (float, lambda v: 0 < v <= 1, "in (0, 1]"),
    "ignore_eos": (bool, None, "true or false"),
    "repetition_penalty": (float, lambda v: v > 0, "> 0"),
    "stop_token_ids": (tuple, None, "a list of integers"),
}
_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false"}


def sampling_value(name: str, value: Any) -> Any:
    """``value`` checked as the sampling parameter ``name`` and normalised (numbers as float,
    token ids as a tuple). Raises ``ValueError("must be ...")``, which callers complete with
    where the value came from; ``KeyError`` for a name :class:`Sampling` does not have."""
    kind, ok, rule = _SAMPLING_RULES[name]
    if kind is tuple:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ValueError(f"must be {rule}")
        return tuple(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be {rule}")
        return value
    if not (_is_int(value) or (kind is float and isinstance(value, float))):
        raise ValueError(f"must be {_KIND_NAMES[kind]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")  # inf would go out as JSON Infinity
    if ok is not None and not ok(value):
        raise ValueError(f"must be {rule}")
    return float(value) if kind is float else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Turn:
    """One chat message: text plus any images and video (user turns only carry media)."""

    role: Role = "user"
    text: str = ""
    images: tuple[Media, ...] = ()
    video: Media | None = None

    def message(self) -> dict[str, Any]:
        if not self.images and self.video is None:
            return {"role": self.role, "content": self.text}
        # Text first, then media: the order of the reference script and of `vllm bench serve`.
        parts: list[dict[str, Any]] = []
        if self.text:
            parts.append({"type": "text", "text": self.text})
        parts += [{"type": "image_url", "image_url": {"url": m.url}} for m in self.images]
        if self.video is not None:
            parts.append({"type": "video_url", "video_url": {"url": self.video.url}})
        return {"role": self.role, "content": parts}


@dataclass(frozen=True)
class ChatRequest:
    """A complete chat request minus the model name, which is known only at send time."""

    turns: tuple[Turn, ...]
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False

    def body(self, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [t.message() for t in self.turns],
            "stream": self.stream,
            **self.sampling.body(),
        }
        if self.stream:
            # Without this vLLM sends no usage in a stream; `vllm bench serve` asks for it too.
            body["stream_options"] = {"include_usage": True}
        return body

    def encode(self, model: str) -> bytes:
        """The JSON body as bytes: built once and reused for every repeat of a load run.

        Equal to ``json.dumps(self.body(model), separators=(",", ":")).encode()``: the ``data:``
        URLs of local files (base64 and a MIME type, nothing JSON escapes) are put in as bytes
        in place of a short placeholder, each distinct URL encoded to bytes once.
        """
        urls: dict[str, str] = {}  # placeholder -> URL
        ids: dict[int, str] = {}  # id(url) -> placeholder, so a repeated image is one entry
        nonce = secrets.token_hex(8)

        def stand_in(media: Media) -> Media:
            if media.mime is None:  # a remote URL: short, and json.dumps escapes it if need be
                return media
            key = ids.get(id(media.url))
            if key is None:
                key = ids[id(media.url)] = f"mmops-media-{nonce}-{len(ids)}"
                urls[key] = media.url
            return replace(media, url=key)

        turns = tuple(
            replace(
                t,
                images=tuple(stand_in(m) for m in t.images),
                video=stand_in(t.video) if t.video is not None else None,
            )
            for t in self.turns
        )
        data = json.dumps(replace(self, turns=turns).body(model), separators=(",", ":")).encode()
        for key, url in urls.items():
            data = data.replace(f'"{key}"'.encode(), b'"' + url.encode("ascii") + b'"')
        return data

    @property
    def modality(self) -> str:
        return modality_of(self.turns)


class _Message(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def images(self) -> tuple[object, ...]: ...  # Media when sent, a path in a suite
    @property
    def video(self) -> object: ...


def modality_of(turns: Iterable[_Message]) -> str:
    """The modality turns amount to (a request's, or what a suite case's ``modality:`` must say):
    several user turns are multi-turn; else any video is video; else by the number of images."""
    turns = tuple(turns)
    if sum(1 for t in turns if t.role == "user") > 1:
        return "multi-turn"
    if any(t.video is not None for t in turns):
        return "video"
    images = sum(len(t.images) for t in turns)
    return "multi-image" if images > 1 else "image" if images else "text"


# Stop tokens: the reference returns [0, 92543, 92542] whenever config.json's first architecture
# is InternVLChatModel. That list is vLLM's vision_language.py recipe (convert_tokens_to_ids of
# <|endoftext|>, <|im_start|>, <|im_end|>, <|end|>) evaluated on an InternLM2 tokenizer, where the
# first and last are not in the vocabulary and map to <unk> = 0 (shared/notes/failure-signatures.md
# section 5). InternVL2.5 sizes built on Qwen2.5 (1B, 4B, 38B, 78B) have another vocabulary:
# there <|im_start|>/<|im_end|> are 151644/151645 (their generation_config.json eos_token_id) and
# <|endoftext|> is 151643, so the InternLM2 ids would stop on ordinary text tokens. We apply the
# same recipe to the model's own tokenizer files and fall back to the reference list only for
# InternLM2-based models.
_INTERNVL_STOP_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>")
INTERNLM2_STOP_IDS = (0, 92543, 92542)
QWEN2_STOP_IDS = (151643, 151644, 151645)


def stop_token_ids_for_model(model_dir: str | Path) -> tuple[int, ...] | None:
    """Stop token ids a model directory needs in each request, or None when it needs none.

    Raises ``FileNotFoundError``/``ValueError`` for a directory without a readable config.json.
    """
    root = Path(model_dir)
    config = json.loads((root / "config.json").read_text())
    archs = config.get("architectures") or []
    if not archs or archs[0] != "InternVLChatModel":
        return None
    llm = config.get("llm_config") or {}
    llm_arch = ((llm.get("architectures") or [""])[0] or "").lower()
    vocab = _added_tokens(root)
    if vocab:
        ids: list[int] = []
        for token in _INTERNVL_STOP_TOKENS:
            if token in vocab:
                ids.append(vocab[token])
            elif "internlm2" in llm_arch:
                ids.append(0)  # convert_tokens_to_ids of an unknown token is InternLM2's <unk>
        ids += _generation_eos(root)
        if ids:
            return tuple(dict.fromkeys(ids))  # dedupe, keep order
    if "qwen2" in llm_arch:
        return tuple(dict.fromkeys([*QWEN2_STOP_IDS, *_generation_eos(root)]))
    return INTERNLM2_STOP_IDS


def _added_tokens(root: Path) -> dict[str, int]:
    """Special-token -> id from tokenizer_config.json or tokenizer.json, if either is present."""
    out: dict[str, int] = {}
    try:
        tc = json.loads((root / "tokenizer_config.json").read_text())
        for tid, spec in (tc.get("added_tokens_decoder") or {}).items():
            if isinstance(spec, dict) and "content" in spec:
                out[spec["content"]] = int(tid)
    except (OSError, ValueError):
        pass
    try:
        tj = json.loads((root / "tokenizer.json").read_text())
        for spec in tj.get("added_tokens") or []:
            out.setdefault(spec["content"], int(spec["id"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def _generation_eos(root: Path) -> list[int]:
    try:
        eos = json.loads((root / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, ValueError):
        return []
    if isinstance(eos, int):
        return [eos]
    return [int(e) for e in eos] if isinstance(eos, list) else []
