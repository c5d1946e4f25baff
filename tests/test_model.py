import json

from mmops.model.facts import inspect_model, run_dtype


def test_qwen25_vl_7b_real_config(model_dir):
    f = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct"))
    assert f.config_error is None
    assert f.arch == "Qwen2_5_VLForConditionalGeneration" and f.is_multimodal
    assert f.text_config_key is None  # the classic flat config
    assert (f.num_layers, f.num_heads, f.num_kv_heads, f.head_dim) == (28, 28, 4, 128)
    assert f.vision_heads == 16
    # vLLM: smallest length key; tokenizer_config model_max_length 131072 is larger; mrope adds no factor
    assert f.max_len.value == 128000 and f.max_len.key == "max_position_embeddings"
    assert f.chat_template_source is not None
    assert f.preprocessor_config is not None
    assert f.auto_map is None
    assert run_dtype(f, "auto") == "BF16" and run_dtype(f, "float16") == "F16"


def test_nested_text_config_wins(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2_5_VLForConditionalGeneration"],
                "text_config": {
                    "max_position_embeddings": 32768,
                    "num_attention_heads": 16,
                    "num_key_value_heads": 2,
                    "hidden_size": 2048,
                    "num_hidden_layers": 36,
                },
                "vision_config": {"num_heads": 16},
            }
        )
    )
    f = inspect_model(tmp_path)
    assert f.text_config_key == "text_config"
    assert (
        f.max_len.value == 32768
        and f.max_len.where == "config.json: text_config.max_position_embeddings"
    )
    assert f.head_dim == 128


def test_llm_config_and_tokenizer_limit(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["InternVLChatModel"],
                "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
                "llm_config": {
                    "max_position_embeddings": 32768,
                    "num_attention_heads": 32,
                    "num_key_value_heads": 8,
                    "hidden_size": 4096,
                    "num_hidden_layers": 32,
                },
            }
        )
    )
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    f = inspect_model(tmp_path)
    assert f.text_config_key == "llm_config"
    # vLLM takes min(config length, tokenizer_config.model_max_length)
    assert f.max_len.value == 8192 and f.max_len.where.startswith("tokenizer_config.json")
    assert f.auto_map


def test_yarn_rope_scaling_multiplies(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["X"],
                "max_position_embeddings": 32768,
                "rope_scaling": {
                    "type": "yarn",
                    "factor": 4.0,
                    "original_max_position_embeddings": 32768,
                },
            }
        )
    )
    assert inspect_model(tmp_path).max_len.value == 131072


def test_bad_dirs_never_raise(tmp_path, model_dir):
    assert not inspect_model(tmp_path / "nope").exists
    f = tmp_path / "file"
    f.write_text("x")
    assert not inspect_model(f).is_dir
    assert "missing" in inspect_model(tmp_path).config_error
    trunc = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct", shards="truncated-config"))
    assert trunc.config is None and "invalid JSON" in trunc.config_error
    notjson = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct", shards="config-not-json"))
    assert notjson.config is None and "invalid JSON" in notjson.config_error


def test_weights_ok_and_broken(model_dir):
    ok = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct")).weights
    assert ok.expected and not ok.missing and not ok.errors
    assert set(ok.bytes_by_dtype) == {"BF16"} and ok.total_bytes > 0
    missing = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct", shards="missing-shard")).weights
    assert missing.missing == [missing.expected[-1]]
    huge = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct", shards="huge-header")).weights
    assert any("claims 10,000,000,000 bytes" in e for e in huge.errors)
    for variant in ("truncated-header", "truncated-data", "lfs-pointer"):
        w = inspect_model(model_dir("Qwen2.5-VL-7B-Instruct", shards=variant)).weights
        assert w.errors, variant
