"""Secrets never reach what mmops prints or writes; the child still gets the real values."""

from __future__ import annotations

from mmops.redact import MASK, Redactor, is_secret_env, mask_argv, mask_env, secret_values


def test_mask_argv_both_spellings_and_nothing_else():
    argv = [
        "vllm",
        "serve",
        "/m",
        "--api-key",
        "sk-abc123",
        "--api_key=sk-def456",
        "--port",
        "8000",
    ]
    assert mask_argv(argv) == [
        "vllm",
        "serve",
        "/m",
        "--api-key",
        MASK,
        "--api_key=" + MASK,
        "--port",
        "8000",
    ]
    assert argv[4] == "sk-abc123"  # the input is not modified


def test_mask_env_by_name():
    env = {
        "HF_TOKEN": "hf_x",
        "OPENAI_API_KEY": "sk-1",
        "MY_SECRET": "s",
        "VLLM_IMAGE_FETCH_TIMEOUT": "100",
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:False",
        "VLLM_API_KEY": "k",
    }
    masked = mask_env(env)
    assert (
        masked["HF_TOKEN"]
        == masked["OPENAI_API_KEY"]
        == masked["MY_SECRET"]
        == masked["VLLM_API_KEY"]
        == MASK
    )
    assert masked["VLLM_IMAGE_FETCH_TIMEOUT"] == "100"
    assert masked["PYTORCH_NPU_ALLOC_CONF"] == "expandable_segments:False"
    assert not is_secret_env("VLLM_ENGINE_ITERATION_TIMEOUT_S")


def test_redactor_masks_known_values_anywhere_and_secret_shapes():
    secrets = secret_values(["--api-key", "sk-live-9876"], {"HF_TOKEN": "hf_" + "z" * 34, "X": "1"})
    assert "1" not in secrets  # too short to mask safely by value
    r = Redactor(secrets)
    # vLLM's own start-up line (format of vllm/entrypoints/openai/cli_args.py, vllm#19438)
    line = "INFO 05-07 17:14:39 [cli_args.py:309] non-default args: {'api_key': 'sk-live-9876', 'port': 8000}"
    assert (
        r.line(line)
        == "INFO 05-07 17:14:39 [cli_args.py:309] non-default args: {'api_key': '***', 'port': 8000}"
    )
    assert "z" * 34 not in r.line("token file says hf_" + "z" * 34)
    # values mmops was never told about, in key=value or header shape
    assert (
        r.line("curl -H 'Authorization: Bearer abcdef123456'")
        == "curl -H 'Authorization: Bearer ***'"
    )
    assert r.line("api_key=unknown-secret-value") == "api_key=***"
    assert r.line("'api_key': ['listed-secret']") == "'api_key': ['***']"
    assert r.line("Avg prompt throughput: 0.0 tokens/s, max_tokens=512") == (
        "Avg prompt throughput: 0.0 tokens/s, max_tokens=512"
    )


def test_redactor_chunk_is_bytes_in_bytes_out_and_keeps_lines():
    r = Redactor(["sk-live-9876"])
    block = b"line one\n--api-key sk-live-9876\nGPU KV cache size: 182,784 tokens\n"
    assert r.chunk(block) == b"line one\n--api-key ***\nGPU KV cache size: 182,784 tokens\n"
    plain = b"INFO: nothing to see\n" * 3
    assert r.chunk(plain) is plain  # fast path: untouched object


def test_chunk_masks_exactly_what_line_masks_and_leaves_stats_lines_alone():
    from mmops.redact import Redactor

    lines = [
        "INFO 11-25 09:51:14 [loggers.py:259] Avg prompt throughput: 6.3 tokens/s, max_tokens=16",
        "non-default args: {'api_key': 'sk-abcdef123', 'model': 'm'}",
        "Authorization: Bearer abcd1234efgh",
        "token: hunter22 and password = p4ssw0rd",
        "hf_" + "a" * 24 + " leaked",
        "--api-key s3cr3tkey --port 8000",
        "plain line",
    ] * 50
    red = Redactor(["sk-abcdef123"])
    block = ("\n".join(lines) + "\n").encode()
    assert red.chunk(block).decode() == "\n".join(red.line(x) for x in lines) + "\n"
    stats = ("\n".join([lines[0]] * 100) + "\n").encode()
    assert red.chunk(stats) is stats or red.chunk(stats) == stats
