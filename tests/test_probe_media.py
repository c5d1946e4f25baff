"""Media encoding, stop tokens, request bodies, and the rebuildable sample media."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
from pathlib import Path

import pytest

from mmops.probe.media import MediaError, load_media, sniff_mime
from mmops.probe.request import (
    INTERNLM2_STOP_IDS,
    ChatRequest,
    Sampling,
    Turn,
    stop_token_ids_for_model,
)

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "checks" / "media"
MODELS = REPO / "tests" / "fixtures" / "models"


def make_media_module():
    spec = importlib.util.spec_from_file_location("make_media", REPO / "scripts" / "make_media.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_media_are_rebuilt_byte_for_byte(tmp_path):
    mod = make_media_module()
    written = mod.build(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in MEDIA.iterdir())
    for path in written:
        assert path.read_bytes() == (MEDIA / path.name).read_bytes(), path.name
        assert path.stat().st_size < 200_000


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("red-circle.png", "image/png"),
        ("blue-square.jpg", "image/jpeg"),
        ("moving-dot.mp4", "video/mp4"),
    ],
)
def test_local_files_become_data_urls_with_their_real_type(name, mime):
    kind = mime.split("/")[0]
    m = load_media(MEDIA / name, kind)
    assert m.mime == mime and m.size == (MEDIA / name).stat().st_size
    head, b64 = m.url.split(",", 1)
    assert head == f"data:{mime};base64"
    assert base64.b64decode(b64) == (MEDIA / name).read_bytes()


def test_remote_urls_pass_through():
    url = "https://example.invalid/cat.jpg"
    assert load_media(url, "image").url == url
    data = "data:image/png;base64,AAAA"
    assert load_media(data, "image").url == data
    with pytest.raises(MediaError, match="a data: URL for a video must start data:video/"):
        load_media(data, "video")


def test_media_errors_are_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(
        MediaError, match=r"notes.txt: expected an image file, found not an image or video we know"
    ):
        load_media(text, "image")
    with pytest.raises(
        MediaError, match=r"moving-dot.mp4: expected an image file, found a video \(video/mp4\)"
    ):
        load_media(MEDIA / "moving-dot.mp4", "image")
    with pytest.raises(MediaError, match=r"missing.png: no such file$"):
        load_media(tmp_path / "missing.png", "image")
    with pytest.raises(MediaError, match="is a directory"):
        load_media(tmp_path, "image")
    with pytest.raises(MediaError, match=r"over the 0.000954 MB limit for one video"):
        load_media(MEDIA / "moving-dot.mp4", "video", max_bytes=1000)


def test_sniff_mime_known_signatures():
    assert sniff_mime(b"GIF89a....") == "image/gif"
    assert sniff_mime(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"\0\0\0\x18ftypqt  ") == "video/quicktime"
    assert sniff_mime(b"\x1a\x45\xdf\xa3") == "video/webm"
    assert sniff_mime(b"hello") is None


def test_body_matches_the_reference_script_shape():
    image = load_media(MEDIA / "blue-square.jpg", "image")
    req = ChatRequest((Turn(text="What is in the image?", images=(image,)),))
    body = json.loads(req.encode("m"))
    # online_serving.py: text part then image part, and these sampling keys with its defaults.
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in the image?"},
            {"type": "image_url", "image_url": {"url": image.url}},
        ]}],
        "stream": False, "max_tokens": 16, "temperature": 0.0, "top_k": -1, "top_p": 1.0,
        "ignore_eos": False, "repetition_penalty": 1.0,
    }  # fmt: skip


def test_video_multi_image_multi_turn_and_stream_bodies():
    png = load_media(MEDIA / "red-circle.png", "image")
    mp4 = load_media(MEDIA / "moving-dot.mp4", "video")
    turns = (
        Turn(text="compare", images=(png, png)),
        Turn(role="assistant", text="same"),
        Turn(text="and this?", video=mp4),
    )
    req = ChatRequest(turns, Sampling(stop_token_ids=(1, 2)), stream=True)
    body = req.body("m")
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [p["type"] for p in body["messages"][0]["content"]] == ["text", "image_url", "image_url"]
    assert body["messages"][1]["content"] == "same"
    assert body["messages"][2]["content"][1] == {"type": "video_url", "video_url": {"url": mp4.url}}
    assert body["stop_token_ids"] == [1, 2]
    assert body["stream_options"] == {"include_usage": True}
    assert req.modality == "multi-turn"
    assert ChatRequest((Turn(text="x", video=mp4),)).modality == "video"
    assert ChatRequest((Turn(text="x", images=(png, png)),)).modality == "multi-image"


def copy_model(src: Path, dst: Path, *names: str) -> Path:
    dst.mkdir()
    for name in names:
        if (src / name).exists():
            (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_stop_tokens_internlm2_based_internvl_match_the_reference(tmp_path):
    # InternVL2_5-8B: InternLM2 LLM. The reference script hard-codes [0, 92543, 92542].
    model = copy_model(MODELS / "InternVL2_5-8B", tmp_path / "m", "config.json")
    assert stop_token_ids_for_model(model) == INTERNLM2_STOP_IDS == (0, 92543, 92542)


def test_stop_tokens_internlm2_with_tokenizer_files(tmp_path):
    model = copy_model(MODELS / "InternVL2_5-8B", tmp_path / "m", "config.json")
    (model / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {
        "0": {"content": "<unk>"}, "92542": {"content": "<|im_end|>"},
        "92543": {"content": "<|im_start|>"},
    }}))  # fmt: skip
    (model / "generation_config.json").write_text('{"eos_token_id": [92542, 92543]}')
    # vLLM's recipe on this vocabulary: <|endoftext|> and <|end|> are unknown -> <unk> = 0.
    assert stop_token_ids_for_model(model) == (0, 92543, 92542)


def test_stop_tokens_qwen_based_internvl_use_qwen_ids(tmp_path):
    # No real InternVL2_5-78B config.json is on record (see its SOURCE.md), so this one is
    # synthesised: the 8B config with the LLM architecture the 78B model card names (Qwen2.5),
    # beside the 78B's real generation_config.json (eos [151644, 151645]).
    model = copy_model(MODELS / "InternVL2_5-78B", tmp_path / "m", "generation_config.json")
    config = json.loads((MODELS / "InternVL2_5-8B" / "config.json").read_text())
    config["llm_config"]["architectures"] = ["Qwen2ForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    assert stop_token_ids_for_model(model) == (151643, 151644, 151645)
    # With Qwen2's tokenizer file the ids come from it: <|end|> is not in that vocabulary.
    (model / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {
        "151643": {"content": "<|endoftext|>"}, "151644": {"content": "<|im_start|>"},
        "151645": {"content": "<|im_end|>"},
    }}))  # fmt: skip
    assert stop_token_ids_for_model(model) == (151643, 151644, 151645)


def test_no_stop_tokens_for_qwen2_5_vl():
    assert stop_token_ids_for_model(MODELS / "Qwen2.5-VL-7B-Instruct") is None


def test_a_fifo_or_device_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)  # opening it would block until a writer comes
    with pytest.raises(MediaError, match="image.jpg: not a regular file; give an image file"):
        load_media(fifo, "image")
    with pytest.raises(MediaError, match="/dev/zero: not a regular file"):
        load_media("/dev/zero", "video")
