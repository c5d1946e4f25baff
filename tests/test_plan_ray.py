"""The plan of a Ray launch: what reaches vLLM's workers on the other nodes, and how.

mmops/cluster/runtime_env.py decides it from vLLM 0.32's and Ray 2.60's source (cited there);
these tests pin the decisions: the launch's own variables go into the job's Ray runtime
environment (RAY_JOB_CONFIG_JSON_ENV_VAR, which ray.init reads), collective variables only
inherited from the shell are named in VLLM_RAY_EXTRA_ENV_VARS_TO_COPY where vLLM reads it,
per-node values, paths, Ray's own settings and secrets are left out with the reason.
tests/real/test_serve_ray_real.py checks on a real 2-node cluster that the runtime environment
reaches a worker on the other node."""

from __future__ import annotations

import json
import sys

import pytest

from mmops import cli
from mmops.cluster.runtime_env import EXTRA_VARS, JOB_CONFIG_VAR, plan_ray_env, v2_executor
from mmops.launch.plan import Installed, build_plan, render
from mmops.launch.spec import LaunchSpec

NAMES_032 = frozenset({EXTRA_VARS, "VLLM_USE_RAY_V2_EXECUTOR_BACKEND", "VLLM_HOST_IP"})
NAMES_OLD = frozenset({"VLLM_HOST_IP", "VLLM_ENGINE_ITERATION_TIMEOUT_S"})  # no ray_env.py yet


def job_env(env: dict[str, str]) -> dict[str, str]:
    return json.loads(env[JOB_CONFIG_VAR])["runtime_env"]["env_vars"]


def test_the_launchs_own_variables_reach_every_node_through_the_job_runtime_env():
    launch = {"PYTORCH_NPU_ALLOC_CONF": "expandable_segments:False", "HCCL_CONNECT_TIMEOUT": "7200"}
    r = plan_ray_env(launch, {}, NAMES_032, (0, 32, 0))
    assert job_env(r.env) == launch
    assert sorted(r.carried) == ["HCCL_CONNECT_TIMEOUT", "PYTORCH_NPU_ALLOC_CONF"]
    assert any("ray/_private/worker.py:1789" in n for n in r.notes)


def test_inherited_collective_variables_are_left_to_vllm_where_it_can_copy_them():
    parent = {
        "HCCL_SOCKET_IFNAME": "enp189s0f0",
        "GLOO_SOCKET_IFNAME": "enp189s0f0",
        "TP_SOCKET_IFNAME": "enp189s0f0",
        "NCCL_SOCKET_IFNAME": "eth0",
        EXTRA_VARS: "MY_VAR",
        "SHELL": "/bin/bash",
    }
    r = plan_ray_env({}, parent, NAMES_032, (0, 32, 0))
    # NCCL_* is among vLLM's own prefixes; the others are added to the user's list.
    assert r.env[EXTRA_VARS] == "MY_VAR,GLOO_SOCKET_IFNAME,HCCL_SOCKET_IFNAME,TP_SOCKET_IFNAME"
    assert set(r.copied_by_vllm) == {
        "GLOO_SOCKET_IFNAME",
        "HCCL_SOCKET_IFNAME",
        "NCCL_SOCKET_IFNAME",
        "TP_SOCKET_IFNAME",
    }
    assert JOB_CONFIG_VAR not in r.env  # nothing forced over a node's own interface names
    assert "SHELL" not in r.copied_by_vllm


def test_an_old_vllm_without_the_copy_knob_gets_them_through_the_runtime_env():
    parent = {"HCCL_SOCKET_IFNAME": "eth0", "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True"}
    r = plan_ray_env({}, parent, NAMES_OLD, (0, 9, 1))
    assert job_env(r.env) == parent
    assert EXTRA_VARS not in r.env


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("HCCL_IF_IP", "own address"),
        ("VLLM_HOST_IP", "own address"),
        ("ASCEND_RT_VISIBLE_DEVICES", "picks devices"),
        ("CUDA_VISIBLE_DEVICES", "picks devices"),
        ("PYTHONPATH", "install path"),
        ("ASCEND_TOOLKIT_HOME", "install path"),
        ("RAY_DEDUP_LOGS", "Ray setting"),
        ("HF_TOKEN", "secret"),
    ],
)
def test_per_node_values_paths_ray_settings_and_secrets_are_never_forced(name, words):
    r = plan_ray_env({name: "x"}, {}, NAMES_032, (0, 32, 0))
    assert name not in r.carried
    assert words in r.left_out[name]
    assert JOB_CONFIG_VAR not in r.env or name not in job_env(r.env)


def test_visible_devices_get_the_caveat_of_each_executor():
    v2 = plan_ray_env({}, {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}, NAMES_032, (0, 32, 0))
    note = next(n for n in v2.notes if n.startswith("ASCEND_RT_VISIBLE_DEVICES=0,1"))
    assert "RayExecutorV2 copies it" in note and "ray_utils.py:33" in note
    assert "RAY_EXPERIMENTAL_NOSET_ASCEND_RT_VISIBLE_DEVICES=1" in note
    v1 = plan_ray_env(
        {"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"}, {"ASCEND_RT_VISIBLE_DEVICES": "0"},
        NAMES_032, (0, 32, 0),
    )  # fmt: skip
    assert any("vLLM does not copy it" in n for n in v1.notes)


def test_which_executor_runs():
    assert v2_executor({}, NAMES_032, (0, 32, 0)) is True
    assert v2_executor({"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"}, NAMES_032, (0, 32, 0)) is False
    assert v2_executor({}, NAMES_032, (0, 20, 0)) is False  # there, but off by default
    assert v2_executor({}, NAMES_OLD, (0, 9, 1)) is False  # no such executor
    assert v2_executor({}, None, None) is None


def test_a_ray_job_submission_keeps_its_own_runtime_env():
    theirs = {"runtime_env": {"env_vars": {"HCCL_CONNECT_TIMEOUT": "600", "A": "1"},
                              "working_dir": "gcs://x.zip"}, "metadata": {"k": "v"}}  # fmt: skip
    r = plan_ray_env(
        {"HCCL_CONNECT_TIMEOUT": "7200", "B": "2"},
        {JOB_CONFIG_VAR: json.dumps(theirs)},
        NAMES_032,
        (0, 32, 0),
    )
    merged = json.loads(r.env[JOB_CONFIG_VAR])
    assert merged["runtime_env"]["env_vars"] == {"HCCL_CONNECT_TIMEOUT": "600", "A": "1", "B": "2"}
    assert merged["runtime_env"]["working_dir"] == "gcs://x.zip"
    assert merged["metadata"] == {"k": "v"}
    assert any("HCCL_CONNECT_TIMEOUT: the Ray job's runtime_env already sets it" in n
               for n in r.notes)  # fmt: skip
    assert "HCCL_CONNECT_TIMEOUT" not in r.carried


def test_a_job_config_that_is_not_json_is_left_alone_and_said():
    r = plan_ray_env({"B": "2"}, {JOB_CONFIG_VAR: "{not json"}, NAMES_032, (0, 32, 0))
    assert JOB_CONFIG_VAR not in r.env
    assert any("is not JSON" in n for n in r.notes)


# ------------------------------------------------------------------------------ the plan


def ray_spec(**env: str) -> LaunchSpec:
    return LaunchSpec(
        model="/models/Qwen2.5-VL-72B-Instruct",
        vllm_python="/opt/vllm/bin/python",
        args={"distributed-executor-backend": "ray", "tensor-parallel-size": 8},
        env={"RAY_ADDRESS": "10.0.0.1:6379", **env},
        env_defaults={"VLLM_IMAGE_FETCH_TIMEOUT": "100"},
    )


def test_plan_of_a_ray_launch_carries_the_env_and_says_so():
    plan = build_plan(
        ray_spec(PYTORCH_NPU_ALLOC_CONF="expandable_segments:False"),
        vllm_version=Installed("0.32.0", "vllm", NAMES_032),
        parent_env={"GLOO_SOCKET_IFNAME": "eth0", "HCCL_IF_IP": "10.0.0.1"},
    )
    assert plan.env["RAY_ADDRESS"] == "10.0.0.1:6379"
    assert job_env(plan.env) == {
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:False",
        "VLLM_IMAGE_FETCH_TIMEOUT": "100",
    }
    assert plan.env[EXTRA_VARS] == "GLOO_SOCKET_IFNAME"
    data = plan.to_dict()
    assert data["ray"]["address"] == "10.0.0.1:6379"
    assert data["ray"]["runtime_env_var"] == JOB_CONFIG_VAR
    assert data["ray"]["left_out"]["HCCL_IF_IP"].startswith("the node's own address")
    text = render(plan)
    assert "ray: joins 10.0.0.1:6379" in text
    assert (
        "ray: every node's workers get (job runtime env, RAY_JOB_CONFIG_JSON_ENV_VAR): "
        "PYTORCH_NPU_ALLOC_CONF, VLLM_IMAGE_FETCH_TIMEOUT" in text
    )
    assert "ray: vLLM copies from this shell: GLOO_SOCKET_IFNAME" in text
    assert "ray: not carried: HCCL_IF_IP: the node's own address" in text


def test_a_launch_value_equal_to_the_shells_is_still_the_launchs():
    plan = build_plan(
        ray_spec(HCCL_SOCKET_IFNAME="eth0"),
        vllm_version=Installed("0.32.0", "vllm", NAMES_032),
        parent_env={"HCCL_SOCKET_IFNAME": "eth0"},
    )
    assert job_env(plan.env)["HCCL_SOCKET_IFNAME"] == "eth0"


def test_other_launches_plan_nothing_of_ray():
    plain = LaunchSpec(model="/m", vllm_python="/opt/vllm/bin/python", env={"HCCL_IF_IP": "x"})
    plan = build_plan(plain, vllm_version=Installed("0.32.0", "vllm", NAMES_032), parent_env={})
    assert "ray" not in plan.to_dict()
    assert JOB_CONFIG_VAR not in plan.env and EXTRA_VARS not in plan.env
    assert "ray:" not in render(plan)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_cli_ray_address_becomes_ray_address_in_the_json(capsys, tmp_path):
    code, out, _ = run_cli(
        ["plan", "--model", str(tmp_path), "--no-preflight", "--json", "--python", sys.executable,
         "--env", "PYTORCH_NPU_ALLOC_CONF=expandable_segments:False",
         "--ray-address", "127.0.0.2:6379", "--distributed-executor-backend", "ray"],
        capsys,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["env"]["RAY_ADDRESS"] == "127.0.0.2:6379"
    assert data["ray"]["address"] == "127.0.0.2:6379"
    assert "PYTORCH_NPU_ALLOC_CONF" in data["ray"]["carried"]
    assert "RAY_ADDRESS" not in json.loads(data["env"][JOB_CONFIG_VAR])["runtime_env"]["env_vars"]


@pytest.mark.parametrize("command", ["plan", "serve"])
def test_ray_flags_need_the_ray_backend_and_a_real_address(capsys, tmp_path, command):
    base = [command, "--model", str(tmp_path), "--no-preflight", "--python", sys.executable]
    code, _, err = run_cli([*base, "--ray-address", "127.0.0.2:6379"], capsys)
    assert code == 2 and "--ray-address: only with --distributed-executor-backend ray" in err
    code, _, err = run_cli(
        [*base, "--ray-address", "head", "--distributed-executor-backend", "ray"], capsys
    )
    assert code == 2 and "--ray-address head: expected auto, HOST:PORT" in err
    code, _, err = run_cli(
        [*base, "--ray-timeout", "0", "--distributed-executor-backend", "ray"], capsys
    )
    assert code == 2 and "--ray-timeout 0: must be above 0" in err
