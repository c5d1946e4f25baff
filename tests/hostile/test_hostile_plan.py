"""`mmops plan` against a broken launch: it prints the plan, then says on stderr why `serve`
would not start (exit 2); bad flags stop it before anything is planned."""

from __future__ import annotations

import shutil

import pytest


def test_plan_model_dir_missing(hostile, launch, tmp_path):
    gone = tmp_path / "no-such-model"
    hostile.run(
        ["plan", "--model", gone, *launch],
        expect_rc=2,
        quiet_stdout=False,  # the plan itself is printed, as documented
        max_lines=3,
        mention=["preflight failed", "FAIL model.config", f"model path {gone} does not exist"],
    )


def test_plan_model_dir_is_a_file(hostile, launch, model):
    cfg = model / "config.json"
    hostile.run(
        ["plan", "--model", cfg, *launch],
        expect_rc=2,
        quiet_stdout=False,
        max_lines=3,
        mention=["FAIL model.config", f"{cfg} is not a directory"],
    )


def test_plan_json_model_dir_missing(hostile, launch, tmp_path):
    out = hostile.run(
        ["plan", "--model", tmp_path / "nope", "--json", *launch],
        expect_rc=2,
        quiet_stdout=False,
        max_lines=3,
        mention=["FAIL model.config"],
    )
    assert out.stdout.lstrip().startswith("{")


def test_plan_without_a_model(hostile, launch):
    hostile.run(["plan", *launch], expect_rc=2, mention=["no model", "--model DIR", "--profile"])


@pytest.mark.parametrize(
    "flag,value,valid",
    [
        ("--max-num-seqs", "0", "at least 1"),
        ("--tensor-parallel-size", "0", "at least 1"),
        ("--gpu-memory-utilization", "1.5", "at most 1"),
        ("--port", "70000", "from 1 to 65535"),
        ("--max-model-len", "abc", "expects an integer"),
    ],
)
def test_plan_no_preflight_still_checks_flags(hostile, model, flag, value, valid):
    hostile.run(
        ["plan", "--model", model, "--no-preflight", flag, value],
        expect_rc=2,
        mention=[flag, valid],
    )


def test_plan_env_without_equals(hostile, launch, model):
    hostile.run(
        ["plan", "--model", model, *launch, "--env", "NOEQUALS"],
        expect_rc=2,
        mention=["--env 'NOEQUALS'", "KEY=VALUE"],
    )


def test_plan_profile_does_not_exist(hostile):
    hostile.run(["plan", "--profile", "nope"], expect_rc=2, mention=["--profile nope", "known:"])


def test_plan_profile_wrong_type(hostile, tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("model: /m\nserve:\n  max-num-seqs: [1, 2]\n")
    hostile.run(["plan", "--profile", prof], expect_rc=2, mention=["p.yaml:3", "max-num-seqs"])


def test_plan_python_missing(hostile, launch, model, tmp_path):
    gone = tmp_path / "nope" / "python"
    hostile.run(
        ["plan", "--model", model, *launch, "--python", gone, "--no-preflight"],
        expect_rc=2,
        mention=[f"--python {gone}", "no such file"],
    )


def test_plan_python_not_executable(hostile, launch, model, tmp_path):
    py = tmp_path / "python3"
    py.write_text("")
    hostile.run(
        ["plan", "--model", model, *launch, "--python", py],
        expect_rc=2,
        mention=[f"--python {py}", "not executable"],
    )


def test_plan_python_not_python(hostile, launch, model, tmp_path):
    junk = tmp_path / "interp"
    junk.write_text("this is text, not a program\n")
    junk.chmod(0o755)
    hostile.run(
        ["plan", "--model", model, *launch, "--python", junk],
        expect_rc=2,
        mention=[f"--python {junk}", "not a Python interpreter"],
    )


def test_plan_python_bare_name_not_on_path(hostile, launch, model):
    hostile.run(
        ["plan", "--model", model, *launch, "--python", "python9.99"],
        expect_rc=2,
        mention=["--python python9.99", "no such file"],
    )


def test_plan_unicode_and_spaces_work(hostile, launch, model, tmp_path):
    odd = tmp_path / "모델 폴더" / "with space é"
    odd.parent.mkdir()
    model.rename(odd)
    python = shutil.which("python3") or "python3"
    out = hostile.run(
        ["plan", "--model", odd, *launch, "--python", python, "--json"], expect_rc=0, where=None
    )
    import json

    plan = json.loads(out.stdout)
    assert str(odd) in plan["argv"]
