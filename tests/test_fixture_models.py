"""The model-directory fixtures are what they claim: real files, valid shards, named breakages.

Shard headers are parsed here with a few lines of stdlib code on purpose, so the fixtures are
checked independently of mmops' own safetensors reader.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

import pytest
from fixtures.build_model_dir import (
    HUGE_HEADER_LEN,
    INDEX_NAME,
    MODELS_DIR,
    PARTIAL,
    VARIANTS,
    FixtureUnavailable,
    build_model_dir,
    recorded_files,
    recorded_models,
)

QWEN7 = "Qwen2.5-VL-7B-Instruct"
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4}


def parse_header(path: Path) -> tuple[int, dict]:
    """(header length, header dict) of a safetensors file, checked against the spec."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, "header must be padded to 8-byte alignment"
    assert 8 + n <= len(raw), "header length runs past the end of the file"
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    return n, header


def check_offsets(path: Path, n: int, header: dict) -> list[str]:
    """Assert data_offsets are contiguous, sized by dtype and shape, and fill the data section."""
    data_len = path.stat().st_size - 8 - n
    tensors = sorted(
        ((k, v) for k, v in header.items() if k != "__metadata__"),
        key=lambda kv: kv[1]["data_offsets"][0],
    )
    pos = 0
    for _name, spec in tensors:
        begin, end = spec["data_offsets"]
        assert begin == pos
        assert end - begin == math.prod(spec["shape"]) * DTYPE_BYTES[spec["dtype"]]
        pos = end
    assert pos == data_len
    return [name for name, _ in tensors]


@pytest.fixture
def qwen7_index() -> dict:
    return json.loads((MODELS_DIR / QWEN7 / INDEX_NAME).read_text())


def test_every_recorded_json_file_parses_and_has_a_source_note() -> None:
    assert set(recorded_models()) == {
        QWEN7,
        "Qwen2.5-VL-72B-Instruct",
        "InternVL2_5-8B",
        "InternVL2_5-78B",
    }
    for name in recorded_models():
        note = (MODELS_DIR / name / "SOURCE.md").read_text()
        for fname, path in recorded_files(name).items():
            json.loads(path.read_text(encoding="utf-8"))
            assert fname in note
        for fname in PARTIAL.get(name, ()):
            assert "PARTIAL" in note and fname in note


def test_qwen7_recorded_facts(qwen7_index: dict) -> None:
    cfg = json.loads((MODELS_DIR / QWEN7 / "config.json").read_text())
    assert "text_config" not in cfg  # the classic flat layout
    assert cfg["max_position_embeddings"] == 128000
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (28, 4)
    assert (cfg["hidden_size"], cfg["num_hidden_layers"]) == (3584, 28)
    assert cfg["vision_config"]["num_heads"] == 16
    assert cfg["torch_dtype"] == "bfloat16"
    tok = json.loads((MODELS_DIR / QWEN7 / "tokenizer_config.json").read_text())
    assert tok["chat_template"].startswith("{% set image_count = namespace(value=0) %}")
    assert tok["added_tokens_decoder"]["151645"]["content"] == "<|im_end|>"
    assert qwen7_index["metadata"]["total_size"] == 16584333312
    assert len(set(qwen7_index["weight_map"].values())) == 5


def test_internvl_generation_configs_match_hf_stated_sizes() -> None:
    # HF shows 115 and 117 bytes; our whitespace reconstruction must give the same.
    eight = MODELS_DIR / "InternVL2_5-8B" / "generation_config.json"
    big = MODELS_DIR / "InternVL2_5-78B" / "generation_config.json"
    assert eight.stat().st_size == 115
    assert big.stat().st_size == 117
    assert json.loads(eight.read_text())["eos_token_id"] == [92542, 92543]
    assert json.loads(big.read_text())["eos_token_id"] == [151644, 151645]


def test_ok_dir_has_valid_shards_named_after_the_real_index(
    tmp_path: Path, qwen7_index: dict
) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m")
    weight_map = qwen7_index["weight_map"]
    for shard in sorted(set(weight_map.values())):
        path = d / shard
        assert path.is_file(), f"index names {shard} but it is not on disk"
        n, header = parse_header(path)
        assert header["__metadata__"] == {"format": "pt"}
        names = check_offsets(path, n, header)
        assert names, f"{shard} holds no tensor"
        for name in names:
            assert weight_map[name] == shard  # real tensor names, in their real shard
            assert header[name]["dtype"] == "BF16"
    assert json.loads((d / INDEX_NAME).read_text()) == qwen7_index
    total = sum(p.stat().st_size for p in d.glob("*.safetensors"))
    assert total < 4096, f"shards should be a few KB, got {total} bytes"


def test_written_index_matches_the_shard_headers(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", index="written")
    index = json.loads((d / INDEX_NAME).read_text())
    seen: dict[str, str] = {}
    data_bytes = 0
    for path in d.glob("*.safetensors"):
        n, header = parse_header(path)
        for name in check_offsets(path, n, header):
            seen[name] = path.name
        data_bytes += path.stat().st_size - 8 - n
    assert index["weight_map"] == seen
    assert index["metadata"]["total_size"] == data_bytes


def test_missing_shard_variant(tmp_path: Path, qwen7_index: dict) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="missing-shard")
    listed = set(qwen7_index["weight_map"].values())
    missing = {s for s in listed if not (d / s).exists()}
    assert missing == {max(listed)}


def test_huge_header_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="huge-header")
    first = d / "model-00001-of-00005.safetensors"
    (n,) = struct.unpack("<Q", first.read_bytes()[:8])
    assert n == HUGE_HEADER_LEN == 10_000_000_000
    assert first.stat().st_size < 1024
    parse_header(d / "model-00002-of-00005.safetensors")  # the others stay valid


def test_truncated_header_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="truncated-header")
    raw = (d / "model-00001-of-00005.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 < len(raw) < 8 + n  # the length is honest, the file just ends inside the JSON
    with pytest.raises(ValueError):
        json.loads(raw[8:].decode("utf-8"))


def test_truncated_data_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="truncated-data")
    path = d / "model-00001-of-00005.safetensors"
    n, header = parse_header(path)  # the header itself is intact
    last_end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert last_end > path.stat().st_size - 8 - n


def test_lfs_pointer_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="lfs-pointer")
    path = d / "model-00001-of-00005.safetensors"
    text = path.read_text(encoding="ascii")
    assert re.fullmatch(
        r"version https://git-lfs\.github\.com/spec/v1\noid sha256:[0-9a-f]{64}\nsize \d+\n", text
    )
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert n > path.stat().st_size  # read as safetensors, the "length" is absurd


def test_truncated_config_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="truncated-config")
    raw = (d / "config.json").read_bytes()
    real = (MODELS_DIR / QWEN7 / "config.json").read_bytes()
    assert real.startswith(raw) and 0 < len(raw) < len(real)
    with pytest.raises(ValueError):
        json.loads(raw)
    parse_header(d / "model-00001-of-00005.safetensors")  # shards untouched


def test_config_not_json_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="config-not-json")
    with pytest.raises(ValueError):
        json.loads((d / "config.json").read_text())


def test_no_shards_variant(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", shards="none")
    assert not list(d.glob("*.safetensors"))
    assert (d / INDEX_NAME).is_file()


def test_without_tokenizer(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", with_tokenizer=False)
    assert not (d / "tokenizer_config.json").exists()
    assert not (d / "tokenizer.json").exists()
    assert (d / "chat_template.json").is_file()


def test_without_chat_template_anywhere(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m", with_chat_template=False)
    assert not (d / "chat_template.json").exists()
    assert not list(d.glob("*.jinja"))
    tok = json.loads((d / "tokenizer_config.json").read_text())
    assert "chat_template" not in tok
    assert tok["eos_token"] == "<|im_end|>"  # the rest of the real file is kept
    for path in d.glob("*.json"):
        assert "chat_template" not in json.loads(path.read_text())


def test_synthetic_tokenizer_json_keeps_real_special_tokens(tmp_path: Path) -> None:
    d = build_model_dir(QWEN7, tmp_path / "m")
    tok = json.loads((d / "tokenizer.json").read_text())
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert tok["model"]["type"] == "BPE"
    vocab = tok["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    added = {str(t["id"]): t["content"] for t in tok["added_tokens"]}
    assert added == {k: v["content"] for k, v in cfg["added_tokens_decoder"].items()}


def test_internvl8_real_index_builds_shards(tmp_path: Path) -> None:
    index = json.loads((MODELS_DIR / "InternVL2_5-8B" / INDEX_NAME).read_text())
    weight_map = index["weight_map"]
    assert index["metadata"]["total_size"] == 16150730752
    assert len(weight_map) == 573
    shards = sorted(set(weight_map.values()))
    assert shards == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    assert weight_map["language_model.model.tok_embeddings.weight"] == shards[0]
    layers = {k.split(".")[3] for k in weight_map if k.startswith("language_model.model.layers.")}
    assert len(layers) == 32
    d = build_model_dir("InternVL2_5-8B", tmp_path / "m")
    for shard in shards:
        n, header = parse_header(d / shard)
        for name in check_offsets(d / shard, n, header):
            assert weight_map[name] == shard
    assert not (d / "tokenizer.json").exists()  # no real tokenizer_config.json to base it on
    d = build_model_dir("InternVL2_5-8B", tmp_path / "miss", shards="missing-shard")
    assert not (d / shards[-1]).exists() and (d / shards[0]).is_file()


def test_models_without_a_real_index_cannot_fake_shards(tmp_path: Path) -> None:
    for name in ("Qwen2.5-VL-72B-Instruct", "InternVL2_5-78B"):
        with pytest.raises(FixtureUnavailable, match="not found"):
            build_model_dir(name, tmp_path / name)
    d = build_model_dir("Qwen2.5-VL-72B-Instruct", tmp_path / "q72", shards="none")
    assert sorted(p.name for p in d.iterdir()) == ["config.json"]
    assert json.loads((d / "config.json").read_text())["max_position_embeddings"] == 128000
    with pytest.raises(FixtureUnavailable, match="config.json"):
        build_model_dir("InternVL2_5-78B", tmp_path / "i78", shards="truncated-config")


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid"):
        build_model_dir(QWEN7, tmp_path / "m", shards="sideways")
    assert "ok" in VARIANTS
