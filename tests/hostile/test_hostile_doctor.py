"""`mmops doctor` against broken model directories, configs, shards, flags, profiles and --python.

A good launch here passes (``launch``: CPU backend, a free port), so each exit code 2 below is
the hostile input's own. Model problems are told by a failed check on stdout (the doctor's
report is its output); bad flags and profiles by one error line on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

ROOT = os.geteuid() == 0


def set_config(model: Path, key: str, value: object, section: str | None = None) -> None:
    """Write one config.json key (in ``section``, e.g. vision_config), as JSON allows it
    (NaN and Infinity included: Python's json writes and reads them, as transformers does)."""
    path = model / "config.json"
    cfg = json.loads(path.read_text())
    (cfg[section] if section else cfg)[key] = value
    path.write_text(json.dumps(cfg))


def write_shard(path: Path, header: bytes, length: int | None = None, data: bytes = b"") -> None:
    """A safetensors file: 8-byte little-endian length (``length``, default the true one),
    the header bytes, then the data."""
    n = len(header) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + header + data)


def only_shard(model: Path) -> Path:
    """Make the model one shard (no index): model.safetensors, returned for the case to break."""
    (model / "model.safetensors.index.json").unlink()
    for p in model.glob("model-*.safetensors"):
        p.unlink()
    return model / "model.safetensors"


# ----------------------------------------------------------------------- the model directory


def test_model_dir_missing(hostile, launch, tmp_path):
    missing = tmp_path / "no-such-model"
    hostile.run(
        ["doctor", "--model", missing, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", f"model path {missing} does not exist"],
    )


def test_model_dir_is_a_file(hostile, launch, model):
    cfg = model / "config.json"
    hostile.run(
        ["doctor", "--model", cfg, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", f"{cfg} is not a directory", "holds config.json"],
    )


def test_model_dir_empty(hostile, launch, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    hostile.run(
        ["doctor", "--model", empty, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", f"{empty / 'config.json'}: missing"],
    )


def test_model_dir_symlink_loop(hostile, launch, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    hostile.run(
        ["doctor", "--model", loop, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", str(loop)],
    )


def test_config_json_symlink_loop(hostile, launch, model):
    cfg = model / "config.json"
    cfg.unlink()
    cfg.symlink_to(cfg)
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", f"{cfg}: cannot read", "symbolic links"],
    )


@pytest.mark.skipif(ROOT, reason="runs as root here: chmod 000 does not stop root reading")
def test_model_dir_unreadable(hostile, launch, model):
    model.chmod(0)
    try:
        hostile.run(
            ["doctor", "--model", model, *launch],
            expect_rc=2,
            where="stdout",
            mention=["✗ model.config", "config.json"],
        )
    finally:
        model.chmod(0o755)


# ----------------------------------------------------------------------------- config.json


def test_config_truncated(hostile, launch, model):
    cfg = model / "config.json"
    cfg.write_bytes(cfg.read_bytes()[:200])
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", f"{cfg}: invalid JSON", "looks truncated"],
    )


def test_config_is_a_json_array(hostile, launch, model):
    (model / "config.json").write_text("[1, 2, 3]")
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", "expected a JSON object, got list"],
    )


def test_config_not_utf8(hostile, launch, model):
    (model / "config.json").write_bytes(b'{"a": "\xff\xfe"}')
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", "not UTF-8"],
    )


BAD_NUMBERS = [
    # (key, value, section): lengths and head counts as strings, zero, negative, NaN, huge.
    ("max_position_embeddings", "abc", None),
    ("max_position_embeddings", -5, None),
    ("max_position_embeddings", 0, None),
    ("max_position_embeddings", float("nan"), None),
    ("max_position_embeddings", float("inf"), None),
    ("num_attention_heads", "28", None),
    ("num_attention_heads", 0, None),
    ("num_attention_heads", -4, None),
    ("num_attention_heads", True, None),
    ("num_attention_heads", 10**30, None),
    ("num_key_value_heads", 0, None),
    ("hidden_size", "x", None),
    ("hidden_size", 1e300, None),
    ("num_hidden_layers", "a", None),
    ("num_hidden_layers", 2**40, None),
    ("intermediate_size", "big", None),
    ("vocab_size", -1, None),
    ("head_dim", 0, None),
    ("num_heads", "16", "vision_config"),
    ("hidden_size", 0, "vision_config"),
    ("rope_scaling", {"type": "yarn", "factor": "x"}, None),
]


@pytest.mark.parametrize(
    "key,value,section",
    BAD_NUMBERS,
    ids=[f"{s or 'text'}.{k}={v!r}"[:48] for k, v, s in BAD_NUMBERS],
)
def test_config_bad_number(hostile, launch, model, key, value, section):
    set_config(model, key, value, section)
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.config", "config.json unusable", key, "must be a positive"],
    )


# ----------------------------------------------------------------------------- safetensors

HEADER = json.dumps(
    {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 16]}}
).encode()


def test_shard_header_length_2_pow_60(hostile, launch, model):
    write_shard(only_shard(model), HEADER, length=2**60, data=bytes(16))
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "model.safetensors: header length field claims", "limit"],
    )


def test_shard_header_not_json(hostile, launch, model):
    write_shard(only_shard(model), b"this is no json at all!!", data=bytes(16))
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "model.safetensors: header is not valid JSON"],
    )


def test_shard_header_is_a_list(hostile, launch, model):
    write_shard(only_shard(model), b"[1, 2, 3]", data=bytes(16))
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "header is not a JSON object"],
    )


def test_shard_shorter_than_its_header_says(hostile, launch, model):
    write_shard(only_shard(model), HEADER, data=bytes(7))  # the header promises 16 data bytes
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "spans bytes 0-16", "the file is truncated"],
    )


def test_shard_cut_inside_its_header(hostile, launch, model):
    write_shard(only_shard(model), HEADER[:20], length=len(HEADER))
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", f"header claims {len(HEADER)} bytes", "truncated"],
    )


def test_shard_too_short_for_a_length_field(hostile, launch, model):
    only_shard(model).write_bytes(b"\x01\x02\x03")
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "file is 3 bytes, too short for a header"],
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "BF16", "shape": ["a", 4], "data_offsets": [0, 16]},
        {"dtype": "BF16", "shape": [2, 4], "data_offsets": ["0", "16"]},
        {"dtype": "BF16", "shape": 8, "data_offsets": [0, 16]},
        {"dtype": ["BF16"], "shape": [2, 4], "data_offsets": [0, 16]},
        {"dtype": "BF16", "shape": [2, -4], "data_offsets": [0, 16]},
        {"shape": [2, 4], "data_offsets": [0, 16]},
    ],
    ids=["shape-str", "offsets-str", "shape-int", "dtype-list", "shape-negative", "no-dtype"],
)
def test_shard_tensor_entry_malformed(hostile, launch, model, entry):
    write_shard(only_shard(model), json.dumps({"w": entry}).encode(), data=bytes(16))
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "tensor 'w' has a malformed entry"],
    )


def test_index_names_missing_shards(hostile, launch, model):
    gone = sorted(model.glob("model-*.safetensors"))
    for p in gone[1:]:
        p.unlink()
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", f"{len(gone) - 1} of {len(gone)} shards", gone[-1].name],
    )


def test_index_not_json(hostile, launch, model):
    (model / "model.safetensors.index.json").write_text('{"weight_map": ')
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "model.safetensors.index.json is unreadable"],
    )


def test_index_weight_map_is_a_list(hostile, launch, model):
    (model / "model.safetensors.index.json").write_text('{"weight_map": ["a", "b"]}')
    hostile.run(
        ["doctor", "--model", model, *launch],
        expect_rc=2,
        where="stdout",
        mention=["✗ model.weights", "model.safetensors.index.json is unreadable"],
    )


# ---------------------------------------------------------------------------- vLLM flags

BAD_FLAGS = [
    # (flag, value, what the message must say is valid)
    ("--gpu-memory-utilization", "abc", "expects a number"),
    ("--gpu-memory-utilization", "0", "above 0 and at most 1"),
    ("--gpu-memory-utilization", "-0.5", "above 0 and at most 1"),
    ("--gpu-memory-utilization", "1.5", "above 0 and at most 1"),
    ("--gpu-memory-utilization", "nan", "above 0 and at most 1"),
    ("--gpu-memory-utilization", "inf", "above 0 and at most 1"),
    ("--tensor-parallel-size", "0", "at least 1"),
    ("--tensor-parallel-size", "-2", "at least 1"),
    ("--tensor-parallel-size", "abc", "expects an integer"),
    ("--tensor-parallel-size", "1.5", "expects an integer"),
    ("--pipeline-parallel-size", "0", "at least 1"),
    ("--data-parallel-size", "0", "at least 1"),
    ("--max-model-len", "-1", "at least 1"),
    ("--max-model-len", "0", "at least 1"),
    ("--max-model-len", "abc", "expects an integer"),
    ("--max-model-len", "1e9", "expects an integer"),
    ("--max-num-seqs", "abc", "expects an integer"),
    ("--max-num-seqs", "0", "at least 1"),
    ("--max-num-seqs", "-3", "at least 1"),
    ("--max-num-batched-tokens", "0", "at least 1"),
    ("--block-size", "0", "at least 1"),
    ("--block-size", "-16", "at least 1"),
    ("--port", "70000", "from 1 to 65535"),
    ("--port", "0", "from 1 to 65535"),
    ("--port", "-1", "from 1 to 65535"),
    ("--port", "http", "expects an integer"),
    ("--swap-space", "-4", "at least 0"),
    ("--seed", "-1", "from 0 to 4294967295"),
    ("--max-logprobs", "-2", "at least -1"),
    ("--dtype", "float8", "must be one of"),
    ("--trust-remote-code=maybe", None, "expects true/false"),
]


@pytest.mark.parametrize("flag,value,valid", BAD_FLAGS, ids=[f"{f}={v}" for f, v, _ in BAD_FLAGS])
def test_bad_vllm_flag_value(hostile, launch, model, flag, value, valid):
    hostile.run(
        ["doctor", "--model", model, *launch, flag, *([value] if value is not None else [])],
        expect_rc=2,
        mention=[flag.split("=")[0], valid],
    )


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_devices_count(hostile, model, value):
    hostile.run(
        ["doctor", "--model", model, "--device", "910b3", "--devices", value],
        expect_rc=2,
        mention=["--devices"],
    )


def test_vllm_flag_needs_a_value(hostile, launch, model):
    hostile.run(
        ["doctor", "--model", model, *launch, "--max-model-len"],
        expect_rc=2,
        mention=["--max-model-len needs a value"],
    )


def test_vllm_flag_typo(hostile, launch, model):
    hostile.run(
        ["doctor", "--model", model, *launch, "--max-model-lenn", "4096"],
        expect_rc=2,
        mention=["unknown flag --max-model-lenn", "did you mean --max-model-len"],
    )


# ---------------------------------------------------------------------------------- profiles

BAD_PROFILES = [
    # (file body, what the error must name)
    ("name: x\nserve: [1, 2\n", ["bad.yaml:3", "YAML syntax error"]),
    ("name: x\nfoo: 1\n", ["bad.yaml:2", "'foo'", "valid keys"]),
    ("name: x\nserve:\n  max-model-len: abc\n", ["bad.yaml:3", "max-model-len", "integer"]),
    ("name: x\nserve:\n  gpu-memory-utilization: 1.5\n", ["bad.yaml:3", "at most 1"]),
    ("name: x\nserve:\n  max-num-seqs: 0\n", ["bad.yaml:3", "max-num-seqs", "at least 1"]),
    ("name: x\nserve:\n  max-model-len: .inf\n", ["bad.yaml:3", "max-model-len", "integer"]),
    ("name: x\nserve: 5\n", ["bad.yaml:2", "'serve'", "mapping"]),
    ("- a\n- b\n", ["bad.yaml:1", "expected a mapping"]),
    ("", ["bad.yaml", "empty"]),
    ("name: x\nrestart: {max_attempts: x}\n", ["bad.yaml:2", "max_attempts", "integer"]),
    ("name: x\nrestart: {backoff_initial_s: -1}\n", ["bad.yaml:2", "negative"]),
    ("name: x\ndevice: {count: 0}\n", ["bad.yaml:2", "device.count", "at least 1"]),
    ("name: x\ndevice: {kind: gpu}\n", ["bad.yaml:2", "device.kind"]),
    ("name: x\nserve:\n  a: 1\n  a: 2\n", ["bad.yaml:4", "twice"]),
    ("name: x\nserve:\n  gpu-memory-utilizaton: 0.9\n", ["bad.yaml:3", "gpu-memory-utilization"]),
    ("name: x\nenv:\n  A: [1]\n", ["bad.yaml:3", "env.A"]),
    ("name: x\nserve:\n  model: /m\n", ["bad.yaml:3", "top-level 'model'"]),
]


@pytest.mark.parametrize(
    "body,mention", BAD_PROFILES, ids=[f"p{i}" for i in range(len(BAD_PROFILES))]
)
def test_bad_profile(hostile, model, tmp_path, body, mention):
    bad = tmp_path / "bad.yaml"
    bad.write_text(body)
    hostile.run(["doctor", "--profile", bad, "--model", model], expect_rc=2, mention=mention)


def test_profile_not_utf8(hostile, model, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00name: x\n")
    hostile.run(
        ["doctor", "--profile", bad, "--model", model], expect_rc=2, mention=["bad.yaml", "utf-8"]
    )


def test_profile_that_does_not_exist(hostile):
    hostile.run(
        ["doctor", "--profile", "nope"],
        expect_rc=2,
        mention=["--profile nope", "no such file or profile name", "known:", "tiny-cpu"],
    )


def test_profile_is_a_directory(hostile, tmp_path):
    d = tmp_path / "prof.yaml"
    d.mkdir()
    hostile.run(["doctor", "--profile", d], expect_rc=2, mention=[str(d), "is a directory"])


def test_profile_file_missing(hostile, tmp_path):
    gone = tmp_path / "gone.yaml"
    hostile.run(["doctor", "--profile", gone], expect_rc=2, mention=[str(gone), "no such file"])


# ---------------------------------------------------------------------------------- --python


def test_python_missing(hostile, launch, model, tmp_path):
    gone = tmp_path / "venv" / "bin" / "python"
    hostile.run(
        ["doctor", "--model", model, *launch, "--python", gone],
        expect_rc=2,
        mention=[f"--python {gone}", "no such file"],
    )


def test_python_is_a_directory(hostile, launch, model, tmp_path):
    hostile.run(
        ["doctor", "--model", model, *launch, "--python", tmp_path],
        expect_rc=2,
        mention=[f"--python {tmp_path}", "is a directory", "bin/python"],
    )


def test_python_not_executable(hostile, launch, model, tmp_path):
    py = tmp_path / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o644)
    hostile.run(
        ["doctor", "--model", model, *launch, "--python", py],
        expect_rc=2,
        mention=[f"--python {py}", "not executable"],
    )


def test_python_not_python(hostile, launch, model):
    true = shutil.which("true")
    assert true
    hostile.run(
        ["doctor", "--model", model, *launch, "--python", true],
        expect_rc=2,
        mention=[f"--python {true}", "not a Python interpreter"],
    )


def test_python_a_script_without_vllm_warns(hostile, launch, model, tmp_path):
    # A wrapper script may exec any interpreter, so it is accepted; the doctor then says
    # plainly that no vLLM is found there (a warning: exit 1 under --strict).
    wrapper = tmp_path / "vllm-wrapper"
    wrapper.write_text("#!/bin/sh\nexit 0\n")
    wrapper.chmod(0o755)
    hostile.run(
        ["doctor", "--model", model, *launch, "--python", wrapper, "--strict"],
        expect_rc=1,
        where="stdout",
        mention=["! software.versions", f"vLLM is not installed (in {wrapper})"],
    )


# --------------------------------------------------------------- paths that must simply work


def test_unicode_and_spaces_in_model_path_work(hostile, launch, model, tmp_path):
    odd = tmp_path / "模型 dir with spaces" / "Qwen é ü 7B"
    odd.parent.mkdir()
    model.rename(odd)
    out = hostile.run(["doctor", "--model", odd, *launch], expect_rc=0, where=None)
    assert f"mmops doctor: {odd}" in out.stdout and "✓ model.weights" in out.stdout


def test_unicode_and_spaces_in_profile_path_work(hostile, launch, model, tmp_path):
    prof = tmp_path / "профиль с пробелом" / "my prof ü.yaml"
    prof.parent.mkdir()
    prof.write_text(
        f"model: {json.dumps(str(model))}\ndevice: {{kind: cpu}}\n"
        "serve: {max-model-len: 4096, max-num-batched-tokens: 4096}\n"
        "env: {VLLM_IMAGE_FETCH_TIMEOUT: 100, VLLM_ENGINE_ITERATION_TIMEOUT_S: 600}\n",
        encoding="utf-8",
    )
    out = hostile.run(["doctor", "--profile", prof, "--port", launch[-1]], expect_rc=0, where=None)
    assert "(profile my prof ü)" in out.stdout
