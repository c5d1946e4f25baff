"""doctor: one pass and one fail per check, on real model files and recorded device outputs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, write_sparse_weights

from mmops import doctor
from mmops.cli import build_parser
from mmops.launch.spec import spec_from_args
from mmops.platform import ReplayRunner

NPU = FIXTURES / "npu-smi"
NO_TOOLS = ReplayRunner({})
CANN_ENV = {"ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest"}
MM_ENV = {"VLLM_IMAGE_FETCH_TIMEOUT": "100", "VLLM_ENGINE_ITERATION_TIMEOUT_S": "600"}


def spec(*argv: str):
    parser = build_parser(only="doctor")
    args, extra = parser.parse_known_args(["doctor", *argv])
    args.vllm_argv = extra
    return spec_from_args(args)


def run(
    *argv: str, only: str | None = None, env: dict | None = None, runner=NO_TOOLS, dev_root=None
):
    rep = doctor.run_checks(
        spec(*argv),
        only=[only] if only else None,
        runner=runner,
        env={**MM_ENV, **(env or {})},
        dev_root=dev_root or Path("/nonexistent-dev"),
    )
    return rep.get(only) if only else rep


def npu(fixture: str, tmp_path: Path, count: int = 8) -> dict:
    dev = tmp_path / "dev"
    dev.mkdir(exist_ok=True)
    for i in range(count):
        (dev / f"davinci{i}").touch()
    return {
        "runner": ReplayRunner({("npu-smi", "info"): NPU / fixture}),
        "dev_root": dev,
        "env": CANN_ENV,
    }


@pytest.fixture
def qwen7b(model_dir):
    return str(model_dir("Qwen2.5-VL-7B-Instruct"))


# ----------------------------------------------------------------------------- devices
def test_device_visible_real_910b_table(tmp_path, qwen7b):
    r = run("--model", qwen7b, only="device.visible", **npu("910b3-x8-idle.txt", tmp_path))
    assert r.status == "pass" and "8 x 910B3" in r.summary


def test_device_visible_none_says_what_was_looked_at(qwen7b):
    r = run("--model", qwen7b, only="device.visible")
    assert r.status == "fail" and "no NPU or GPU found" in r.summary
    assert "npu-smi" in r.detail and "nvidia-smi" in r.detail
    assert "--device 910b3" in r.fix


def test_device_memory_idle_pass_busy_fail(tmp_path, qwen7b):
    ok = run("--model", qwen7b, only="device.memory", **npu("910b3-x8-idle.txt", tmp_path))
    assert ok.status == "pass"
    busy = run(
        "--model",
        qwen7b,
        "--tensor-parallel-size",
        "8",
        only="device.memory",
        **npu("910b4-1-x8-busy.txt", tmp_path),
    )
    assert busy.status == "fail"
    assert "gpu-memory-utilization" in busy.summary and "lower --gpu-memory-utilization" in busy.fix


def test_device_memory_leaves_out_the_driver_reserved_hbm(tmp_path, qwen7b):
    # npu-smi: 3378/65536 MB used on an idle 910B3. 0.95 x 65536 = 62259 > 62158 free, yet
    # torch_npu (what vLLM asks) sees ~61 GiB total with nearly all of it free: no failure.
    r = run(
        "--model", qwen7b, "--gpu-memory-utilization", "0.95", only="device.memory",
        **npu("910b3-x8-idle.txt", tmp_path),
    )  # fmt: skip
    assert r.status == "pass", r.detail
    assert "3378 MiB driver-reserved excluded" in r.detail


def test_device_memory_on_a_recorded_h200_sizes_against_cudas_total(qwen7b):
    # Recorded on a real H200 with a torch process holding 100 GiB (h200-idle.source.md).
    nv = FIXTURES / "nvidia-smi"
    runner = ReplayRunner(
        {
            ("nvidia-smi", "--query-gpu"): nv / "h200-busy.query-gpu.csv",
            ("nvidia-smi", "--query-compute-apps"): nv / "h200-busy.compute-apps.csv",
        }
    )
    r = run("--model", qwen7b, "--device", "nvidia", only="device.memory", runner=runner)
    assert r.status == "fail", r.detail
    # vLLM compares CUDA's free memory with 0.9 x CUDA's total (used + free = 143157 MiB),
    # not with nvidia-smi's 143771, which holds 614 MiB the driver keeps.
    assert "free 40138 MiB < 128841 MiB" in r.summary
    assert "614 MiB driver-reserved excluded" in r.detail and "pid 520 python3 103010 MiB" in r.detail
    assert "lower --gpu-memory-utilization to 0.27" in r.fix


# ------------------------------------------------------------------------------ env
def _venv_with_vllm_envs(root: Path, keys: list[str]) -> Path:
    """A venv whose vLLM 0.32 lists ``keys`` in vllm/envs.py, in that file's own layout."""
    site = root / "lib" / "python3.11" / "site-packages"
    (site / "vllm-0.32.0.dist-info").mkdir(parents=True)
    (site / "vllm").mkdir()
    body = "".join(f'    "{k}": lambda: int(os.getenv("{k}", "5")),\n' for k in keys)
    (site / "vllm" / "envs.py").write_text(f"environment_variables = {{\n{body}}}\n")
    (root / "pyvenv.cfg").write_text("version_info = 3.11.7\n")
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to(sys.executable)  # never run: doctor reads files only
    return root / "bin" / "python"


def test_env_names_the_step_timeout_this_vllm_reads(tmp_path, qwen7b):
    # vLLM 0.32 (V1) has no VLLM_ENGINE_ITERATION_TIMEOUT_S: it warns "Unknown vLLM environment
    # variable detected" and ignores it; its step timeout is VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS.
    py = _venv_with_vllm_envs(
        tmp_path / "venv", ["VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"]
    )
    r = run("--model", qwen7b, "--python", str(py), only="env.npu")
    assert r.status == "warn" and "not read by vLLM 0.32.0" in r.summary
    assert "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=600" in r.fix
    ok = run(
        "--model", qwen7b, "--python", str(py), only="env.npu",
        env={"VLLM_ENGINE_ITERATION_TIMEOUT_S": None, "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "600"},
    )  # fmt: skip
    assert ok.status == "pass" and "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=600" in ok.summary
    # A vLLM that still reads the old name: nothing to say.
    old = _venv_with_vllm_envs(
        tmp_path / "old", ["VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_ENGINE_ITERATION_TIMEOUT_S"]
    )
    assert run("--model", qwen7b, "--python", str(old), only="env.npu").status == "pass"


def test_env_alloc_conf_conflict_fails(tmp_path, qwen7b):
    kw = npu("910b3-x8-idle.txt", tmp_path)
    kw["env"] = {
        **CANN_ENV,
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True,max_split_size_mb:128",
    }
    r = run("--model", qwen7b, only="env.npu", **kw)
    assert r.status == "fail" and "max_split_size_mb" in r.summary
    assert "expandable_segments:False,max_split_size_mb:128" in r.fix


def test_env_cann_not_sourced_fails_and_sourced_passes(tmp_path, qwen7b):
    kw = npu("910b3-x8-idle.txt", tmp_path)
    kw["env"] = {}
    r = run("--model", qwen7b, only="env.npu", **kw)
    assert (
        r.status == "fail" and "CANN environment not sourced" in r.summary and "set_env.sh" in r.fix
    )
    kw["env"] = {**CANN_ENV, "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    assert run("--model", qwen7b, only="env.npu", **kw).status == "pass"


def test_env_bad_timeout_value(qwen7b):
    r = run(
        "--model",
        qwen7b,
        "--device",
        "cpu",
        only="env.npu",
        env={"VLLM_IMAGE_FETCH_TIMEOUT": "soon"},
    )
    assert r.status == "fail" and "VLLM_IMAGE_FETCH_TIMEOUT" in r.summary


# ---------------------------------------------------------------------------- model
def test_model_config_pass_and_fails(tmp_path, model_dir, qwen7b):
    assert run("--model", qwen7b, only="model.config").status == "pass"
    missing = run("--model", str(tmp_path / "nope"), only="model.config")
    assert missing.status == "fail" and "does not exist" in missing.summary
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert "not a directory" in run("--model", str(f), only="model.config").summary
    trunc = run("--model", str(model_dir(shards="truncated-config")), only="model.config")
    assert trunc.status == "fail" and "invalid JSON" in trunc.detail


def test_max_len_pass_and_fail_names_key_file_value(qwen7b):
    assert run("--model", qwen7b, "--max-model-len", "4096", only="model.max_len").status == "pass"
    r = run("--model", qwen7b, "--max-model-len", "200000", only="model.max_len")
    assert r.status == "fail"
    assert "max_position_embeddings=128000" in r.summary
    assert "config.json" in r.detail and "128000" in r.fix


def test_batched_tokens_warns_with_chunked_prefill_and_fails_without(qwen7b):
    w = run(
        "--model",
        qwen7b,
        "--max-model-len",
        "8192",
        "--max-num-batched-tokens",
        "4096",
        only="args.batched_tokens",
    )
    assert w.status == "warn" and "--max-num-batched-tokens 8192" in w.fix
    f = run(
        "--model",
        qwen7b,
        "--max-model-len",
        "8192",
        "--max-num-batched-tokens",
        "4096",
        "--no-enable-chunked-prefill",
        only="args.batched_tokens",
    )
    assert f.status == "fail"
    assert (
        run("--model", qwen7b, only="args.batched_tokens").status == "pass"
    )  # reference 4096/4096


def test_tokenizer_and_chat_template(model_dir, qwen7b, tmp_path):
    assert run("--model", qwen7b, only="model.tokenizer").status == "pass"
    assert run("--model", qwen7b, only="model.chat_template").status == "pass"
    bare = str(model_dir(with_tokenizer=False, with_chat_template=False))
    t = run("--model", bare, only="model.tokenizer")
    assert t.status == "fail" and "no tokenizer files" in t.summary
    c = run("--model", bare, only="model.chat_template")
    assert c.status == "fail" and "--chat-template" in c.fix
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ messages }}")
    assert (
        run("--model", bare, "--chat-template", str(tpl), only="model.chat_template").status
        == "pass"
    )
    gone = run(
        "--model",
        qwen7b,
        "--chat-template",
        str(tmp_path / "none.jinja"),
        only="model.chat_template",
    )
    assert gone.status == "fail" and "no such file" in gone.summary


def test_remote_code_needed_for_internvl(model_dir, qwen7b):
    internvl = str(model_dir("InternVL2_5-8B", shards="none"))
    r = run("--model", internvl, only="model.remote_code")
    assert r.status == "fail" and "--trust-remote-code" in r.fix
    assert run("--model", internvl, "--trust-remote-code", only="model.remote_code").status in (
        "warn",
        "fail",
    )
    assert run("--model", qwen7b, only="model.remote_code").status == "pass"


def test_weights_pass_and_fails(model_dir, qwen7b):
    ok = run("--model", qwen7b, only="model.weights")
    assert ok.status == "pass" and "BF16" in ok.summary
    miss = run("--model", str(model_dir(shards="missing-shard")), only="model.weights")
    assert (
        miss.status == "fail"
        and "missing" in miss.summary
        and "model-00005-of-00005" in miss.detail
    )
    huge = run("--model", str(model_dir(shards="huge-header")), only="model.weights")
    assert huge.status == "fail" and "10,000,000,000" in huge.detail
    none = run("--model", str(model_dir(shards="none")), only="model.weights")
    assert none.status == "fail"


def test_bf16_on_310p_fails(model_dir, qwen7b):
    r = run("--model", qwen7b, "--device", "310p3", "--devices", "1", only="model.weights")
    assert r.status == "fail" and "--dtype float16" in r.fix


# ------------------------------------------------------------------------ parallelism
def test_tp_divisibility(qwen7b):
    bad = run(
        "--model",
        qwen7b,
        "--tensor-parallel-size",
        "8",
        "--device",
        "910b3",
        "--devices",
        "8",
        only="parallel.tp",
    )
    assert bad.status == "fail" and "28" in bad.summary and "1, 2, 4" in bad.fix
    ok = run(
        "--model",
        qwen7b,
        "--tensor-parallel-size",
        "4",
        "--device",
        "910b3",
        "--devices",
        "4",
        only="parallel.tp",
    )
    assert ok.status == "pass"


def test_tp_more_than_visible(tmp_path, qwen7b):
    kw = npu("910b3-x8-idle.txt", tmp_path)
    kw["env"] = {**CANN_ENV, "ASCEND_RT_VISIBLE_DEVICES": "0,1"}
    r = run("--model", qwen7b, "--tensor-parallel-size", "4", only="parallel.tp", **kw)
    assert r.status == "fail" and "only 2 device(s) visible" in r.summary


# ----------------------------------------------------------------------------- memory
def test_memory_fit_7b_on_910b3(qwen7b):
    write_sparse_weights(Path(qwen7b), 16_584_333_312)  # the real model's total_size
    r = run("--model", qwen7b, "--device", "910b3", "--devices", "1", only="memory.fit")
    assert r.status == "pass", r.detail
    assert r.data["max_len_fit"] > 4096 and r.data["concurrency"] > 10


def test_memory_fit_kv_too_small_gives_largest_len(qwen7b):
    write_sparse_weights(Path(qwen7b), 16_584_333_312)
    r = run(
        "--model",
        qwen7b,
        "--device",
        "910b4",
        "--devices",
        "1",
        "--max-model-len",
        "128000",
        "--gpu-memory-utilization",
        "0.7",
        only="memory.fit",
    )
    assert r.status == "fail" and "KV cache holds" in r.summary
    n = r.data["max_len_fit"]
    assert 0 < n < 128000 and f"--max-model-len {n}" in r.fix


def test_memory_fit_weights_too_big(qwen7b):
    write_sparse_weights(Path(qwen7b), 146_000_000_000)  # a 72B model's bf16 weights
    r = run("--model", qwen7b, "--device", "910b3", "--devices", "8", only="memory.fit")
    assert r.status == "fail" and "no room for the KV cache" in r.summary
    assert "--tensor-parallel-size" in r.fix
    ok = run(
        "--model",
        qwen7b,
        "--device",
        "910b3",
        "--devices",
        "4",
        "--tensor-parallel-size",
        "4",
        only="memory.fit",
    )
    assert ok.status == "pass"


def test_memory_fit_cpu_kv_space(qwen7b):
    r = run(
        "--model",
        qwen7b,
        "--device",
        "cpu",
        "--max-model-len",
        "32768",
        only="memory.fit",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    )
    # 28 layers x 4 kv heads x 128 x 2 x 2 bytes = 57,344 bytes/token -> 18,724 tokens in 1 GiB
    assert r.status == "fail" and "18,724" in r.summary
    assert (
        run(
            "--model",
            qwen7b,
            "--device",
            "cpu",
            "--max-model-len",
            "8192",
            only="memory.fit",
            env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        ).status
        == "pass"
    )


# ----------------------------------------------------------------------------- host
def test_port_free_busy_and_exposed(qwen7b):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = run("--model", qwen7b, "--port", str(port), only="host.port")
        assert (
            busy.status == "fail"
            and "already in use" in busy.summary
            and f"--port {port + 1}" in busy.fix
        )
    assert run("--model", qwen7b, "--port", str(port), only="host.port").status == "pass"
    exposed = run("--model", qwen7b, "--host", "0.0.0.0", "--port", str(port), only="host.port")
    assert exposed.status == "warn" and "exposes" in exposed.summary


def test_block_size(tmp_path, qwen7b):
    kw = npu("910b3-x8-idle.txt", tmp_path)
    assert (
        run("--model", qwen7b, "--block-size", "64", only="args.block_size", **kw).status == "warn"
    )
    assert (
        run("--model", qwen7b, "--block-size", "128", only="args.block_size", **kw).status == "pass"
    )
    assert (
        run(
            "--model", qwen7b, "--device", "cpu", "--block-size", "24", only="args.block_size"
        ).status
        == "fail"
    )


# ------------------------------------------------------------------------------- CLI
def mmops(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "mmops", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_cli_json_shape_and_exit_codes(qwen7b):
    p = mmops(
        "doctor",
        "--model",
        qwen7b,
        "--device",
        "910b3",
        "--devices",
        "1",
        "--max-model-len",
        "200000",
        "--json",
    )
    assert p.returncode == 2, p.stderr
    out = json.loads(p.stdout)
    assert set(out) == {"checks", "summary"}
    assert {"id", "status", "summary", "detail", "fix"} <= set(out["checks"][0])
    assert next(c for c in out["checks"] if c["id"] == "model.max_len")["status"] == "fail"
    ok = mmops("doctor", "--model", qwen7b, "--device", "cpu", "--check", "model", "--json")
    assert ok.returncode == 0, ok.stdout
    assert all(c["id"].startswith("model.") for c in json.loads(ok.stdout)["checks"])


def test_cli_strict_and_human_output(qwen7b):
    p = mmops(
        "doctor",
        "--model",
        qwen7b,
        "--check",
        "args.batched_tokens",
        "--max-model-len",
        "8192",
        "--strict",
    )
    assert p.returncode == 1 and "! args.batched_tokens" in p.stdout and "fix:" in p.stdout
    p = mmops("doctor", "--model", qwen7b, "--check", "model.max_len", "--max-model-len", "999999")
    assert p.returncode == 2 and "✗ model.max_len" in p.stdout and "launch will fail" in p.stdout


def test_cli_bad_input_is_one_line(tmp_path, qwen7b):
    for argv in (
        ["doctor", "--model", qwen7b, "--check", "no.such"],
        ["doctor", "--model", qwen7b, "--max-model-len", "lots"],
        ["doctor", "--model", qwen7b, "--max-model-length", "10"],
        ["doctor", "--profile", str(tmp_path / "missing.yaml")],
        ["doctor", "--model", qwen7b, "--device", "tpu9"],
    ):
        p = mmops(*argv)
        assert p.returncode == 2, (argv, p.stdout)
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_cli_list_checks_and_no_heavy_imports(qwen7b):
    p = mmops("doctor", "--list-checks")
    ids = [line.split()[0] for line in p.stdout.splitlines()]
    assert ids == [c.id for c in doctor.list_checks()] == list(doctor.core.ORDER)
    code = (
        f"import sys; from mmops.cli import main; main(['doctor','--model',{qwen7b!r},'--json']);"
        "bad=[m for m in ('torch','vllm','textual','httpx','torch_npu') if m in sys.modules];"
        "sys.exit(9 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode != 9, "doctor imported a heavy module"


def test_profile_values_and_cli_override(qwen7b, tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(f"model: {qwen7b}\ndevice: {{kind: cpu}}\nserve:\n  max-model-len: 200000\n")
    p = mmops("doctor", "--profile", str(prof), "--check", "model.max_len", "--json")
    assert json.loads(p.stdout)["checks"][0]["status"] == "fail"
    p = mmops(
        "doctor",
        "--profile",
        str(prof),
        "--check",
        "model.max_len",
        "--max-model-len",
        "4096",
        "--json",
    )
    assert json.loads(p.stdout)["checks"][0]["status"] == "pass"


def test_model_path_says_why_it_does_not_resolve(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert run("--model", str(loop), only="model.config").summary.endswith("is a symlink loop")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    r = run("--model", str(dangling), only="model.config")
    assert r.summary.endswith(f"is a symlink to {tmp_path / 'gone'}, which does not exist")
    assert "re-point the link" in r.fix
    assert run("--model", str(tmp_path / "nothere"), only="model.config").summary.endswith(
        "does not exist"
    )
